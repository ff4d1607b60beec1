"""Histograms of several named samples on one axes, labelled like every other figure of the course."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np


def plot_histograms(
    samples: Mapping[str, Any],
    xlabel: str,
    ylabel: str,
    title: str,
    bins: Any = 50,
    density: bool = True,
    logy: bool = False,
    legend: bool | None = None,
    ax=None,
    **hist_options: Any,
):
    """Histogram each named sample (any shape, flattened) on one axes; returns the axes.

    Args:
        samples: label → values (array or tensor).
        xlabel, ylabel, title: the axes' labels (with units where there are units) and title.
        bins: number of bins or their edges (shared by every sample, so the bars compare).
        density: scale each histogram to unit area (else counts).
        logy: logarithmic y axis (counts that span decades).
        legend: draw a legend; default: when there is more than one sample.
        ax: matplotlib axes to draw into (default: a new figure).
        hist_options: passed to ``Axes.hist``; default ``histtype="step"`` so overlapping samples stay
            visible (``histtype="bar", alpha=0.5`` for translucent bars).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    hist_options.setdefault("histtype", "step")
    for label, values in samples.items():
        values = values.detach().float().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
        ax.hist(values.ravel(), bins=bins, density=density, label=label, **hist_options)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    if legend or (legend is None and len(samples) > 1):
        ax.legend(fontsize=7)
    return ax


__all__ = ["plot_histograms"]
