"""Figure helpers shared by every notebook, so all figures look alike (titles, labels, grey maps).

Images are shown in radiological display: the patient's left on the viewer's right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def show_images(
    images,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    value_range=(-1.0, 1.0),
    suptitle: str | None = None,
    size: float = 1.6,
    cmap: str = "gray",
    axes=None,
):
    """Show a grid of grey images. ``value_range`` maps to black..white (``None``: per-image min/max).

    Returns the matplotlib figure.
    """
    arr = to_numpy_images(images)
    n = len(arr)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    if axes is None:
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)), squeeze=False
        )
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


def plot_curves(
    x, curves: Mapping[str, Sequence[float]], xlabel: str, ylabel: str, title: str, logy: bool = False, ax=None
):
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


# ---- diffusion: schedule curves and sampling trajectories (02, 03) --------------------------------
def plot_schedules(schedules, axes=None, mark_t: int | None = None, suptitle: str | None = None):
    """β_t, ᾱ_t and log-SNR(t) of one or more noise schedules, side by side.

    Args:
        schedules: a ``NoiseSchedule`` or a mapping label → ``NoiseSchedule``.
        axes: three matplotlib axes to draw into (default: a new 1×3 figure).
        mark_t: draw a vertical line at this timestep.

    Returns:
        The matplotlib figure.
    """
    if not isinstance(schedules, Mapping):
        schedules = {schedules.name: schedules}
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    else:
        fig = axes[0].figure
    longest = max(s.num_train_timesteps for s in schedules.values())
    panels = (
        ("betas", r"$\beta_t$", r"$\beta_t$ (variance added per step)", True),
        ("alphas_cumprod", r"$\bar\alpha_t$", r"$\bar\alpha_t$ (signal fraction left)", False),
        ("log_snr", r"$\log\,\mathrm{SNR}(t)$", r"log-SNR $=\log\frac{\bar\alpha_t}{1-\bar\alpha_t}$", False),
    )
    for ax, (attr, ylabel, title, logy) in zip(axes, panels):
        for label, s in schedules.items():
            ax.plot(np.arange(s.num_train_timesteps), getattr(s, attr).cpu().numpy(), label=label)
        ax.set_xlabel("timestep t")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, longest - 1)
        if logy:
            ax.set_yscale("log")
        if mark_t is not None:
            ax.axvline(mark_t, color="k", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    if len(schedules) > 1:
        axes[0].legend(fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_trajectory(
    trajectory,
    frames: int = 8,
    index: int = 0,
    value_range=(-1.0, 1.0),
    size: float = 1.5,
    suptitle: str | None = "Reverse diffusion: $x_t$ (top) and predicted $x_0$ (bottom)",
):
    """Two rows of images along a sampling run: :math:`x_t` and the predicted :math:`\\hat x_0`, titled by t.

    Args:
        trajectory: a ``meddiff_lab.diffusion.Trajectory`` (from ``sample(..., return_trajectory=True)``).
        frames: how many steps to show (evenly spread, first and last included).
        index: which image of the batch.

    Returns:
        The matplotlib figure.
    """
    short = trajectory.subsample(frames)
    n = len(short)
    fig, axes = plt.subplots(2, n, figsize=(size * n, size * 2 + 0.5), squeeze=False)
    x_t = to_numpy_images(short.x_t[:, index])
    x0 = to_numpy_images(short.predicted_x0[:, index])
    vmin, vmax = value_range if value_range is not None else (None, None)
    for j in range(n):
        for row, images in enumerate((x_t, x0)):
            ax = axes[row, j]
            ax.imshow(images[j], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(f"t = {int(short.timesteps[j])}", fontsize=8)
    axes[0, 0].set_ylabel("$x_t$")
    axes[1, 0].set_ylabel(r"predicted $\hat x_0$")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_model_vs_floor(
    metrics: Mapping[str, tuple[float, float]],
    title: str,
    axes=None,
    labels: tuple[str, str] = ("model", "real vs real (floor)"),
):
    """One small bar chart per metric: the model's value beside its real-vs-real floor.

    ``metrics`` maps a metric name (used as the y label, with its unit or direction, e.g.
    "FID (lower is better)") to ``(model_value, floor_value)``. Returns the figure.
    """
    names = list(metrics)
    if axes is None:
        _, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 2.8), squeeze=False)
        axes = axes[0]
    for ax, name in zip(np.atleast_1d(axes), names):
        model_value, floor_value = metrics[name]
        bars = ax.bar([0, 1], [model_value, floor_value], color=["tab:orange", "tab:gray"])
        ax.set_xticks([0, 1], [labels[0], labels[1].replace(" (", "\n(")], fontsize=7)
        ax.set_ylabel(name, fontsize=8)
        for bar, value in zip(bars, (model_value, floor_value)):
            ax.annotate(
                f"{value:.3g}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.grid(alpha=0.3, axis="y")
    fig = np.atleast_1d(axes)[0].figure
    fig.suptitle(title)
    fig.tight_layout()
    return fig
