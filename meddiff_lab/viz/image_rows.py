"""Images side by side, each with its own title, colour map and value range, and outlined masks.

:func:`show_images` (in :mod:`meddiff_lab.viz.plots`) shows a grid of images that share one range;
:func:`show_image_row` shows a row of *different* things: an image beside its restoration and an
error map, a volume slice before and after resampling. :func:`outline_masks` draws mask outlines
(a lesion, the heart) over panels already drawn by either.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np


def _as_array(image: Any) -> np.ndarray:
    """A tensor or array as a numpy array (a tensor is detached and moved to the CPU first)."""
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    return np.asarray(image)


def _per_panel(value: Any, n: int, is_single) -> list:
    """``value`` repeated for ``n`` panels when ``is_single(value)``, else checked to have ``n`` entries."""
    if is_single(value):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"expected one value for all {n} panels or one per panel, got {len(values)}")
    return values


def _is_range(value: Any) -> bool:
    return value is None or (
        len(value) == 2
        and any(v is not None for v in value)
        and all(v is None or isinstance(v, numbers.Real) for v in value)
    )


def _is_label_pair(value: Any) -> bool:
    return value is None or (len(value) == 2 and all(isinstance(v, str) for v in value))


def outline_masks(
    axes: Sequence[Any], masks: Sequence[Any], colours: str | Sequence[str] = "tab:red", linewidth: float = 0.8
) -> None:
    """Outline masks (the 0.5 contour) over images already drawn, one entry of ``masks`` per axes.

    Args:
        axes: matplotlib axes holding the images (e.g. ``fig.axes`` of :func:`show_images`).
        masks: per axes, a ``(H, W)`` mask, a ``(K, H, W)`` stack of K masks (one colour each), or
            None (nothing drawn there). Arrays or tensors, bool or float in [0, 1].
        colours: one colour for every mask, or one per mask of a stack.
        linewidth: width of the outline in points.
    """
    for ax, mask in zip(axes, masks):
        if mask is None:
            continue
        stack = _as_array(mask).astype(np.float32)
        stack = stack[None] if stack.ndim == 2 else stack
        if stack.ndim != 3:
            raise ValueError(f"a mask must be (H, W) or (K, H, W), got shape {stack.shape}")
        palette = [colours] * len(stack) if isinstance(colours, str) else list(colours)
        for channel, colour in zip(stack, palette):
            ax.contour(channel, levels=[0.5], colors=colour, linewidths=linewidth)


def show_image_row(
    images: Sequence[Any],
    titles: Sequence[str] | None = None,
    *,
    cmaps: str | Sequence[str] = "gray",
    value_ranges: tuple[float, float] | Sequence[tuple[float, float] | None] | None = (-1.0, 1.0),
    outlines: Any = None,
    outline_colour: str = "gold",
    colorbar_label: str | None = None,
    axis_labels: tuple[str, str] | Sequence[tuple[str, str] | None] | None = None,
    origin: str = "upper",
    suptitle: str | None = None,
    size: float = 2.5,
    axes=None,
):
    """Show a row of 2-D images, each in its own panel.

    Args:
        images: N images, each ``(H, W)`` or ``(1, H, W)`` (array or tensor; shapes may differ).
        titles: one title per image.
        cmaps: one colour map for every panel, or one per panel (``"gray"`` for images, ``"magma"``
            for error or uncertainty maps).
        value_ranges: ``(low, high)`` mapped to the ends of the colour map, for every panel or one
            per panel; None (or a None end): each image's own min (max). Default ``(-1, 1)``, the
            model's range.
        outlines: a ``(H, W)`` mask outlined on every panel, or one per panel (None: no outline there).
        outline_colour: colour of those outlines.
        colorbar_label: when given, a colour bar with this label beside every panel whose colour map
            is not ``"gray"`` (the grey panels are images; the others are maps with a unit).
        axis_labels: ``(xlabel, ylabel)`` for every panel or one pair per panel; with labels the
            axes show pixel (or voxel) ticks, without them the axes are hidden.
        origin: ``"upper"`` (row 0 at the top, as images) or ``"lower"`` (slices of a volume).
        suptitle: a title over the row.
        size: inches per panel.
        axes: N matplotlib axes to draw into (default: a new 1×N figure).

    Returns:
        The matplotlib figure.
    """
    n = len(images)
    if n == 0:
        raise ValueError("show_image_row needs at least one image")
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(size * n, size + 0.3 + (0.4 if suptitle else 0)), squeeze=False)
        axes = axes[0]
    else:
        axes = list(np.ravel(axes))
        if len(axes) < n:
            raise ValueError(f"show_image_row got {n} images but only {len(axes)} axes")
        fig = axes[0].figure
    cmaps = _per_panel(cmaps, n, lambda v: isinstance(v, str))
    ranges = _per_panel(value_ranges, n, _is_range)
    labels = _per_panel(axis_labels, n, _is_label_pair)
    outlines = _per_panel(outlines, n, lambda v: not isinstance(v, (list, tuple)))
    for i, (ax, image) in enumerate(zip(axes, images)):
        array = _as_array(image).astype(np.float32)
        array = array[0] if array.ndim == 3 and array.shape[0] == 1 else array
        if array.ndim != 2:
            raise ValueError(f"image {i} must be (H, W) or (1, H, W), got shape {array.shape}")
        low, high = ranges[i] if ranges[i] is not None else (None, None)
        shown = ax.imshow(array, cmap=cmaps[i], vmin=low, vmax=high, origin=origin, interpolation="nearest")
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=9)
        if labels[i] is None:
            ax.axis("off")
        else:
            ax.set(xlabel=labels[i][0], ylabel=labels[i][1])
        if colorbar_label and cmaps[i] != "gray":
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=colorbar_label)
    outline_masks(axes[:n], outlines, outline_colour, linewidth=0.6)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


__all__ = ["outline_masks", "show_image_row"]
