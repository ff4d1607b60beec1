"""meddiff_lab/applications/inpainting.py: hole placement and the cardiothoracic ratio after filling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meddiff_lab.applications import ctr_after_fill, heart_border_holes, hole_around, lesion_holes
from meddiff_lab.data import generate_phantoms
from meddiff_lab.data.phantom import cardiothoracic_ratio_from_masks


def test_hole_is_a_square_inside_the_image():
    hole = hole_around(1, 30, 8, 32)
    assert hole.sum() == 64 and hole[0, 31] and hole[7, 24] and not hole[8, 24]
    with pytest.raises(ValueError, match="side"):
        hole_around(5, 5, 0, 32)


@pytest.fixture(scope="module")
def phantoms():
    return generate_phantoms(6, 64, 7, quantum_noise=False)


def test_heart_border_hole_covers_the_heart_edge_and_lung(phantoms):
    holes = heart_border_holes(phantoms.masks["heart"], 16)
    lungs = phantoms.masks["left_lung"] | phantoms.masks["right_lung"]
    for hole, heart, lung in zip(holes, phantoms.masks["heart"], lungs):
        assert hole.sum() == 256 and (hole & heart).any() and (hole & lung).any()


def test_lesion_holes_cover_lesions(phantoms):
    index, holes = lesion_holes(phantoms.masks["lesion"], 16)
    assert len(index) == len(holes)
    for i, hole in zip(index, holes):
        assert (hole & phantoms.masks["lesion"][i]).any()


def test_ctr_of_a_fill_that_keeps_the_heart_mask_is_the_true_ctr(phantoms):
    m = phantoms.masks
    holes = heart_border_holes(m["heart"], 16)
    truth = torch.from_numpy(phantoms.images)[:, None] * 2 - 1
    ideal = torch.where(torch.from_numpy(m["heart"])[:, None], torch.tensor(1.0), torch.tensor(-1.0))
    true_ctr = cardiothoracic_ratio_from_masks(m["heart"], m["right_lung"], m["left_lung"])
    # an image that is bright exactly on the heart: the re-measured heart is the true one
    got = ctr_after_fill(ideal, truth, m["heart"], m["right_lung"], m["left_lung"], holes)
    assert np.allclose(got, true_ctr)
    # a fill that paints the whole hole dark loses the heart inside the hole: the ratio can only shrink
    dark = truth.masked_fill(torch.from_numpy(holes)[:, None], -1.0)
    assert np.all(ctr_after_fill(dark, truth, m["heart"], m["right_lung"], m["left_lung"], holes) <= true_ctr + 1e-6)
