"""Figure helpers shared by every notebook, so all figures look alike (titles, labels, grey maps).

Images are shown in radiological display: the patient's left on the viewer's right.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


def to_numpy_images(images) -> np.ndarray:
    """Accept (N, H, W), (N, 1, H, W), (H, W) arrays or tensors; return (N, H, W) float numpy."""
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise ValueError(f"images must have one channel to show in grey, got shape {arr.shape}")
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, 1, H, W), got shape {arr.shape}")
    return arr


def show_images(images, titles: Sequence[str] | None = None, ncols: int = 8, value_range=(-1.0, 1.0),
                suptitle: str | None = None, size: float = 1.6, cmap: str = "gray", axes=None):
    """Show a grid of grey images. ``value_range`` maps to black..white (``None``: per-image min/max).

    Returns the matplotlib figure.
    """
    arr = to_numpy_images(images)
    n = len(arr)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    if axes is None:
        fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                                 squeeze=False)
    else:
        axes = np.atleast_2d(axes)
        fig = axes.flat[0].figure
    vmin, vmax = value_range if value_range is not None else (None, None)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(arr[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if titles is not None and i < len(titles):
                ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_curves(x, curves: Mapping[str, Sequence[float]], xlabel: str, ylabel: str, title: str,
                logy: bool = False, ax=None):
    """Plot several named curves against one x axis, with labels and a legend. Returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, y in curves.items():
        y = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
        ax.plot(np.asarray(x), y, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax
