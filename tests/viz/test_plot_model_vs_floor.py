"""Tests for plot_model_vs_floor in meddiff_lab/viz/plots.py: one labelled bar pair per metric."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from meddiff_lab.viz.plots import plot_model_vs_floor  # noqa: E402


def test_plot_model_vs_floor_draws_one_panel_per_metric_with_labels_and_values():
    fig = plot_model_vs_floor({"FID (lower is better)": (12.5, 3.0), "recall": (0.4, 0.9)}, title="model vs floor")
    axes = fig.axes
    assert len(axes) == 2 and fig._suptitle.get_text() == "model vs floor"
    assert axes[0].get_ylabel() == "FID (lower is better)"
    heights = [bar.get_height() for bar in axes[1].patches]
    assert heights == [0.4, 0.9]
    assert {t.get_text() for t in axes[0].texts} == {"12.5", "3"}
    plt.close(fig)
