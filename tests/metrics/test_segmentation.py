"""Tests for meddiff_lab/metrics/segmentation.py: Dice, HD95, sensitivity/specificity on known shapes; the
mask layouts, a segmenter's scores and the cardiothoracic ratio measured on its masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric

from meddiff_lab.data import generate_phantoms
from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.metrics import segmentation as S
from meddiff_lab.metrics.segmentation import (
    SEG_STRUCTURES,
    cardiothoracic_ratio_from_masks,
    dice_per_structure,
    masks_to_condition,
    measure_cardiothoracic_ratio,
    predict_masks,
    segmentation_scores,
    stack_masks,
)


def _square(top: int, left: int, side: int = 20, size: int = 48) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[top : top + side, left : left + side] = True
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
        DiceMetric(reduction="none")(stacked_a, stacked_b).flatten().tolist()
    )


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


# ------------------------------------------------------------------- a segmenter's masks and measurements
@pytest.fixture(scope="module")
def phantoms():
    return generate_phantoms(12, image_size=32, seed=3)


def _images(batch) -> torch.Tensor:
    return to_model_batch(batch.images)


class _OracleNet(torch.nn.Module):
    """Returns fixed logits (+/-10 from the true masks): a 'network' whose segmentation is perfect."""

    def __init__(self, masks: torch.Tensor):
        super().__init__()
        self.logits = masks * 20 - 10
        self.calls = 0

    def forward(self, images):
        out = self.logits[self.calls : self.calls + len(images)]
        self.calls += len(images)
        return out


def test_stack_masks_order_and_missing_structure(phantoms):
    stacked = stack_masks(phantoms.masks)
    assert stacked.shape == (12, 3, 32, 32) and stacked.dtype == torch.float32
    for i, name in enumerate(SEG_STRUCTURES):
        assert torch.equal(stacked[:, i].bool(), torch.from_numpy(phantoms.masks[name]))
    with pytest.raises(KeyError, match="heart"):
        stack_masks({"left_lung": phantoms.masks["left_lung"], "right_lung": phantoms.masks["right_lung"]})


def test_masks_to_condition_is_a_label_map_in_minus_one_one(phantoms):
    condition = masks_to_condition(phantoms.masks)
    assert condition.shape == (12, 1, 32, 32)
    heart = torch.from_numpy(phantoms.masks["heart"])
    lungs = torch.from_numpy(phantoms.masks["left_lung"] | phantoms.masks["right_lung"])
    assert bool((condition[:, 0][heart] == 1).all())
    assert bool((condition[:, 0][lungs & ~heart] == 0).all())
    assert bool((condition[:, 0][~lungs & ~heart] == -1).all())
    torch.testing.assert_close(masks_to_condition(stack_masks(phantoms.masks)), condition)
    with pytest.raises(ValueError, match="stacked"):
        masks_to_condition(torch.zeros(2, 2, 8, 8))


def test_scores_perfect_empty_and_against_monai(phantoms):
    target = stack_masks(phantoms.masks)
    perfect = segmentation_scores(target, target)
    assert perfect.mean_dice == pytest.approx(1.0) and perfect.mean_hd95 == pytest.approx(0.0)
    shifted = torch.roll(target, shifts=2, dims=3)
    scores = segmentation_scores(shifted, target, spacing_mm=12.5)
    expected = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(shifted, target)
    np.testing.assert_allclose(scores.dice, expected.numpy(), rtol=1e-6)
    assert scores.unit == "mm" and np.all(scores.hd95 > 0)
    empty = target.clone()
    empty[0, 2] = 0  # the first heart is missed entirely
    missed = segmentation_scores(empty, target, spacing_mm=12.5)
    assert missed.empty_predictions == 1
    assert missed.hd95[0, 2] == pytest.approx(math.hypot(32, 32) * 12.5)
    assert missed.dice[0, 2] == 0.0
    assert set(missed.per_structure()) == set(SEG_STRUCTURES)


def test_ctr_measured_on_a_perfect_segmentation_is_the_mask_ctr(phantoms):
    masks = stack_masks(phantoms.masks)
    measured = measure_cardiothoracic_ratio(_OracleNet(masks), _images(phantoms))
    expected = cardiothoracic_ratio_from_masks(
        phantoms.masks["heart"], phantoms.masks["right_lung"], phantoms.masks["left_lung"]
    )
    np.testing.assert_allclose(measured, expected, rtol=1e-6)
    # and the mask CTR is close to the phantom's exact ratio (32 px: a pixel is ~3 % of the thorax)
    assert np.mean(np.abs(measured - phantoms.cardiothoracic_ratio)) < 0.04


def test_ctr_is_nan_without_a_heart(phantoms):
    masks = stack_masks(phantoms.masks)
    masks[:, 2] = 0
    assert np.isnan(measure_cardiothoracic_ratio(_OracleNet(masks), _images(phantoms))).all()


def test_predict_masks_thresholds_the_sigmoid_in_batches(phantoms):
    masks = stack_masks(phantoms.masks)
    pred = predict_masks(_OracleNet(masks), _images(phantoms), batch_size=5)
    assert pred.dtype == torch.bool and torch.equal(pred, masks.bool())
    with pytest.raises(ValueError, match="images must be"):
        predict_masks(_OracleNet(masks), torch.zeros(2, 32, 32))


def test_dice_per_structure_is_the_dice_of_each_channel(phantoms):
    target = stack_masks(phantoms.masks)
    shifted = torch.roll(target, shifts=2, dims=3)
    per = dice_per_structure(shifted, target)
    assert per.shape == (12, 3)
    np.testing.assert_allclose(per[:, 2], S.dice(shifted[:, 2:3], target[:, 2:3], reduction="none").numpy())
    np.testing.assert_allclose(per, segmentation_scores(shifted, target).dice)


def test_score_errors_name_the_input():
    with pytest.raises(ValueError, match="structure names"):
        segmentation_scores(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        dice_per_structure(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
