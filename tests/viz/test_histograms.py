"""Tests for meddiff_lab/viz/histograms.py: named histograms on one labelled axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from meddiff_lab.viz.histograms import plot_histograms  # noqa: E402


def test_each_sample_is_one_labelled_histogram_with_a_legend():
    rng = np.random.default_rng(0)
    ax = plot_histograms(
        {"a": rng.normal(size=(10, 10)), "b": torch.randn(200)},
        bins=np.linspace(-3, 3, 13),
        xlabel="value",
        ylabel="density",
        title="two samples",
        logy=True,
    )
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("value", "density", "two samples")
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert len(ax.patches) == 2, "histtype='step' by default: one outline per sample"
    plt.close(ax.figure)


def test_counts_one_sample_no_legend_and_options_reach_hist():
    fig, ax = plt.subplots()
    assert (
        plot_histograms(
            {"patients": [1, 1, 2, 5]},
            "images",
            "patients",
            "t",
            bins=np.arange(1, 7),
            density=False,
            histtype="bar",
            color="0.4",
            ax=ax,
        )
        is ax
    )
    assert ax.get_legend() is None
    assert [p.get_height() for p in ax.patches] == [2, 1, 0, 0, 1]
    plt.close(fig)
