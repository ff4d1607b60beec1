"""Tests for meddiff_lab/viz/image_rows.py: a row of different images, and mask outlines."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from meddiff_lab.viz.image_rows import outline_masks, show_image_row  # noqa: E402
from meddiff_lab.viz.plots import show_images  # noqa: E402


def _square_mask(size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[4:12, 4:12] = True
    return mask


def test_each_panel_gets_its_title_colour_map_and_range():
    images = [torch.zeros(1, 16, 16), np.ones((16, 8)), np.arange(64.0).reshape(8, 8)]
    fig = show_image_row(
        images,
        ["image", "restored", "error"],
        cmaps=["gray", "gray", "magma"],
        value_ranges=[(-1, 1), (-1, 1), None],
        suptitle="three panels",
    )
    panels = fig.axes
    assert [ax.get_title() for ax in panels] == ["image", "restored", "error"]
    assert fig._suptitle.get_text() == "three panels"
    shown = [ax.images[0] for ax in panels]
    assert [im.get_cmap().name for im in shown] == ["gray", "gray", "magma"]
    assert shown[0].get_clim() == (-1, 1) and shown[2].get_clim() == (0, 63)
    assert shown[1].get_array().shape == (16, 8) and not panels[0].axison
    plt.close(fig)


def test_outlines_colour_bars_and_axis_labels_where_asked():
    fig = show_image_row(
        [np.zeros((16, 16)), np.ones((16, 16))],
        ["slice", "std"],
        cmaps=["gray", "magma"],
        outlines=[_square_mask(), None],
        colorbar_label="std (model units)",
        axis_labels=("x (voxels)", "y (voxels)"),
        origin="lower",
    )
    image_ax, map_ax, colorbar_ax = fig.axes
    assert len(image_ax.collections) == 1 and len(map_ax.collections) == 0, "only the first panel is outlined"
    assert colorbar_ax.get_ylabel() == "std (model units)", "a colour bar for the map, none for the image"
    assert image_ax.get_xlabel() == "x (voxels)" and map_ax.get_ylabel() == "y (voxels)"
    assert image_ax.images[0].origin == "lower"
    plt.close(fig)


def test_draws_into_given_axes_and_names_bad_inputs():
    fig, axes = plt.subplots(1, 3)
    assert show_image_row([np.zeros((4, 4))] * 2, axes=axes[:2]) is fig
    assert len(axes[2].images) == 0
    with pytest.raises(ValueError, match="one per panel"):
        show_image_row([np.zeros((4, 4))] * 2, cmaps=["gray"], axes=axes[:2])
    with pytest.raises(ValueError, match=r"image 0 must be \(H, W\)"):
        show_image_row([np.zeros((2, 4, 4))], axes=axes[:1])
    with pytest.raises(ValueError, match="at least one image"):
        show_image_row([])
    plt.close("all")


def test_outline_masks_draws_one_contour_set_per_mask_and_skips_none():
    fig = show_images(torch.zeros(3, 1, 16, 16), ncols=3)
    stack = torch.from_numpy(np.stack([_square_mask(), _square_mask()[::-1]]))
    outline_masks(fig.axes, [stack, _square_mask(), None], colours=("tab:blue", "tab:green"))
    assert [len(ax.collections) for ax in fig.axes] == [2, 1, 0]
    with pytest.raises(ValueError, match=r"\(H, W\) or \(K, H, W\)"):
        outline_masks(fig.axes[:1], [np.zeros((1, 1, 4, 4))])
    plt.close(fig)
