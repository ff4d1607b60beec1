"""meddiff_lab/metrics/detection.py: pixel AUROC/AUPRC, Dice of a thresholded map, image AUROC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from meddiff_lab.metrics.detection import best_dice, dice_at_threshold, image_auroc, pixel_auprc, pixel_auroc


def _mann_whitney(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return greater + 0.5 * ties


def test_auroc_is_the_mann_whitney_probability_with_ties():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 1, 8, 8)) < 0.2
    scores = np.round(rng.random((4, 1, 8, 8)) + 0.4 * masks, 1)  # rounded: many ties
    expected = _mann_whitney(scores.ravel(), masks.ravel())
    assert pixel_auroc(scores, masks) == pytest.approx(expected, abs=1e-9)


def test_perfect_reversed_and_constant_maps():
    masks = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    masks[:, :, 1:3, 1:3] = True
    perfect = masks.float()
    assert pixel_auroc(perfect, masks) == 1.0 and pixel_auprc(perfect, masks) == 1.0
    assert pixel_auroc(-perfect, masks) == 0.0
    assert pixel_auroc(torch.zeros_like(perfect), masks) == 0.5
    assert pixel_auprc(torch.zeros_like(perfect), masks) == pytest.approx(float(masks.float().mean()))
    assert best_dice(perfect, masks)[0] == 1.0
    assert dice_at_threshold(perfect, masks, 0.5) == 1.0


def test_average_precision_by_hand():
    # scores 4,3,2,1 with labels 1,0,1,0: precision at the two hits 1/1 and 2/3, recall steps of 1/2
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    labels = np.array([True, False, True, False])
    assert pixel_auprc(scores, labels) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_region_leaves_pixels_out():
    masks = np.array([True, False, False, False])
    scores = np.array([0.5, 0.9, 0.1, 0.2])
    assert pixel_auroc(scores, masks) == pytest.approx(2 / 3)
    assert pixel_auroc(scores, masks, region=np.array([True, False, True, True])) == 1.0


def test_one_class_gives_nan_and_shapes_are_checked():
    assert math.isnan(pixel_auroc(np.ones(4), np.zeros(4, bool)))
    assert math.isnan(image_auroc([1, 2], [True, True]))
    with pytest.raises(ValueError, match="same shape"):
        pixel_auroc(np.ones((2, 4)), np.zeros((2, 5), bool))


def test_image_auroc():
    assert image_auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
