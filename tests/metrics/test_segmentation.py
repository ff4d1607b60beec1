"""Tests for meddiff_lab/metrics/segmentation.py: Dice, HD95, sensitivity/specificity on known shapes."""

from __future__ import annotations

import pytest
import torch

from meddiff_lab.metrics import segmentation as S


def _square(top: int, left: int, side: int = 20, size: int = 48) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[top:top + side, left:left + side] = True
    return mask


@pytest.mark.parametrize("offset", [1, 3, 5])
def test_hd95_of_two_squares_offset_by_k_pixels_is_k(offset):
    assert S.hd95(_square(10, 10), _square(10, 10 + offset)) == pytest.approx(offset)
    assert S.hd95(_square(10, 10), _square(10, 10 + offset), percentile=100) == pytest.approx(offset)


def test_hd95_in_mm_scales_with_spacing():
    assert S.hd95(_square(10, 10), _square(10, 13), spacing=(0.5, 0.5)) == pytest.approx(1.5)


def test_hd95_ignores_a_lone_stray_pixel_that_the_maximum_sees():
    truth = _square(10, 10)
    pred = truth.clone()
    pred[45, 45] = True  # one false-positive pixel far away
    assert S.hd95(pred, truth) == pytest.approx(0.0)
    assert S.hd95(pred, truth, percentile=100) > 20


def test_hd95_empty_masks():
    empty = torch.zeros(48, 48, dtype=torch.bool)
    assert S.hd95(empty, empty) == 0.0
    assert S.hd95(empty, _square(10, 10)) == float("inf")


def test_dice_of_offset_squares_is_the_overlap_formula_and_agrees_with_monai():
    from monai.metrics import DiceMetric

    a, b = _square(10, 10), _square(10, 13)
    overlap = 20 * 17
    assert S.dice(a, b) == pytest.approx(2 * overlap / (400 + 400))
    stacked_a, stacked_b = torch.stack([a, a])[:, None].float(), torch.stack([b, a])[:, None].float()
    assert S.dice(stacked_a, stacked_b, reduction="none").tolist() == pytest.approx(
        DiceMetric(reduction="none")(stacked_a, stacked_b).flatten().tolist())


def test_dice_of_two_empty_masks_is_one_and_of_an_empty_prediction_zero():
    empty = torch.zeros(8, 8, dtype=torch.bool)
    assert S.dice(empty, empty) == 1.0
    assert S.dice(empty, _square(1, 1, side=4, size=8)) == 0.0


def test_sensitivity_and_specificity_count_pixels_and_agree_with_monai():
    from monai.metrics import ConfusionMatrixMetric

    a, b = _square(10, 10), _square(10, 13)  # 340 overlap of 400; 60 false positives in 48*48 - 400 negatives
    assert S.sensitivity(b, a) == pytest.approx(340 / 400)
    assert S.specificity(b, a) == pytest.approx((48 * 48 - 400 - 60) / (48 * 48 - 400))
    metric = ConfusionMatrixMetric(metric_name=["sensitivity", "specificity"])
    metric(b[None, None].float(), a[None, None].float())
    monai_sens, monai_spec = (float(x) for x in metric.aggregate())
    assert S.sensitivity(b, a) == pytest.approx(monai_sens, rel=1e-5)
    assert S.specificity(b, a) == pytest.approx(monai_spec, rel=1e-5)


def test_masks_must_be_binary_and_the_same_shape():
    with pytest.raises(ValueError, match="binary mask"):
        S.dice(torch.rand(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="same shape"):
        S.dice(torch.zeros(8, 8), torch.zeros(8, 9))


def test_postprocess_keeps_two_lungs_fills_holes_and_drops_islands():
    mask = _square(5, 4, side=14, size=40) | _square(5, 22, side=14, size=40)  # two "lungs"
    mask[10, 10] = False  # a hole
    mask[35, 2] = True  # a one-pixel island
    mask[36:39, 30:33] = True  # a 9-pixel island
    cleaned = S.postprocess_mask(mask, num_components=2, fill_holes=True)
    assert cleaned.shape == (1, 1, 40, 40) and cleaned.dtype == torch.bool
    assert cleaned.sum() == 2 * 14 * 14
    only_large = S.postprocess_mask(mask, min_size=5)
    assert not only_large[0, 0, 35, 2] and only_large[0, 0, 37, 31]
    opened = S.postprocess_mask(mask, opening_radius=1)
    assert not opened[0, 0, 35, 2]
