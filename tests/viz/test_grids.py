"""Tests for meddiff_lab/viz/grids.py: image grids written as PNG files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from meddiff_lab.viz.grids import GUTTER, save_image_grid


def test_a_grid_places_each_image_between_black_gutters(tmp_path):
    images = torch.stack([torch.full((1, 4, 6), v) for v in (-1.0, 0.0, 1.0, 2.0, -3.0)])
    path = save_image_grid(images, tmp_path / "sub" / "grid.png", ncols=3)
    grid = np.asarray(Image.open(path))
    assert grid.dtype == np.uint8 and grid.shape == (2 * (4 + GUTTER) + GUTTER, 3 * (6 + GUTTER) + GUTTER)

    def cell(r, c):
        top, left = GUTTER + r * (4 + GUTTER), GUTTER + c * (6 + GUTTER)
        return grid[top : top + 4, left : left + 6]

    assert [int(cell(0, c).mean()) for c in range(3)] == [0, 128, 255]
    assert int(cell(1, 0).mean()) == 255 and int(cell(1, 1).mean()) == 0, "values outside [-1, 1] are clipped"
    assert grid[0].max() == 0 and grid[:, 0].max() == 0
    assert int(cell(1, 2).max()) == 0, "an empty cell stays black"


def test_the_default_grid_is_square_and_bad_shapes_are_named(tmp_path):
    grid = np.asarray(Image.open(save_image_grid(torch.zeros(4, 1, 8, 8), tmp_path / "g.png")))
    assert grid.shape == (2 * (8 + GUTTER) + GUTTER,) * 2
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        save_image_grid(torch.zeros(4, 8, 8), tmp_path / "bad.png")


def test_the_trainer_still_exports_the_grid_writer():
    from meddiff_lab.training.trainer import save_image_grid as old

    assert old is save_image_grid
