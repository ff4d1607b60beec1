"""Tests for meddiff_lab/data/edges.py: automatic (label-free) edge maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meddiff_lab.data import edge_maps, edges_to_condition, generate_phantoms


def test_edges_of_a_square_lie_on_its_outline():
    image = np.zeros((1, 32, 32), np.float32)
    image[0, 8:24, 8:24] = 1.0
    edges = edge_maps(image, sigma=1.0)[0]
    rows, cols = np.nonzero(edges)
    assert len(rows) > 20
    on_outline = (
        np.minimum.reduce([np.abs(rows - 7.5), np.abs(rows - 23.5), np.abs(cols - 7.5), np.abs(cols - 23.5)]) <= 1.5
    )
    assert on_outline.mean() > 0.95, "edges sit on the square's border, not inside or outside it"


def test_edges_do_not_depend_on_contrast_and_find_anatomy():
    batch = generate_phantoms(4, image_size=64, seed=0)
    edges = edge_maps(batch.images)
    assert edges.shape == (4, 64, 64) and edges.dtype == bool
    assert np.array_equal(edges, edge_maps(0.5 * batch.images + 0.2)), "quantile thresholds: contrast-free"
    lung_border = batch.masks["left_lung"] ^ np.roll(batch.masks["left_lung"], 1, axis=2)
    near = np.zeros_like(edges)
    for shift in (-1, 0, 1):
        near |= np.roll(edges, shift, axis=2)
    assert (near & lung_border).sum() / lung_border.sum() > 0.3, "the lung outline is largely among the edges"


def test_condition_is_plus_minus_one_and_bad_input_is_named():
    cond = edges_to_condition(np.array([[[True, False]]]))
    assert cond.shape == (1, 1, 1, 2) and cond.dtype == torch.float32 and cond.tolist() == [[[[1.0, -1.0]]]]
    with pytest.raises(ValueError, match="NaN"):
        edge_maps(np.full((1, 8, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        edge_maps(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="quantile"):
        edge_maps(np.zeros((1, 8, 8), np.float32), low_quantile=0.9, high_quantile=0.5)
