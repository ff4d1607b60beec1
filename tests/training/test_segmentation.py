"""Tests for meddiff_lab/training/segmentation.py: masks, the MONAI segmentation U-Net, scores, CTR measurement."""

import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric

from meddiff_lab.data import generate_phantoms
from meddiff_lab.data.phantom import cardiothoracic_ratio_from_masks
from meddiff_lab.training.segmentation import (SEG_STRUCTURES, classical_augmentation, make_segmentation_net,
                                               masks_to_condition, measure_cardiothoracic_ratio,
                                               phantom_pixel_spacing_mm, predict_masks, random_mask_variants,
                                               segmentation_scores, stack_masks, train_segmentation)


@pytest.fixture(scope="module")
def phantoms():
    return generate_phantoms(12, image_size=32, seed=3)


def _images(batch) -> torch.Tensor:
    return torch.from_numpy(batch.images)[:, None] * 2 - 1


class _OracleNet(torch.nn.Module):
    """Returns fixed logits (+/-10 from the true masks): a 'network' whose segmentation is perfect."""

    def __init__(self, masks: torch.Tensor):
        super().__init__()
        self.logits = masks * 20 - 10
        self.calls = 0

    def forward(self, images):
        out = self.logits[self.calls:self.calls + len(images)]
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


def test_pixel_spacing_follows_the_40_cm_field_of_view():
    assert phantom_pixel_spacing_mm(32) == pytest.approx(12.5)
    assert phantom_pixel_spacing_mm(128) == pytest.approx(400 / 128)


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
    empty[0, 2] = 0                       # the first heart is missed entirely
    missed = segmentation_scores(empty, target, spacing_mm=12.5)
    assert missed.empty_predictions == 1
    assert missed.hd95[0, 2] == pytest.approx(math.hypot(32, 32) * 12.5)
    assert missed.dice[0, 2] == 0.0
    assert set(missed.per_structure()) == set(SEG_STRUCTURES)


def test_training_lowers_the_dice_loss_and_predicts_binary_masks(phantoms):
    images, masks = _images(phantoms), stack_masks(phantoms.masks)
    run = train_segmentation(images, masks, steps=12, batch_size=4, seed=0)
    assert len(run.losses) == 12 and run.steps == 12
    assert len(train_segmentation(images, masks, steps=2, batch_size=4, loss="dice").losses) == 2
    assert np.mean(run.losses[-3:]) < np.mean(run.losses[:3])
    pred = predict_masks(run.net, images)
    assert pred.shape == masks.shape and pred.dtype == torch.bool
    again = train_segmentation(images, masks, steps=12, batch_size=4, seed=0)
    assert again.losses == pytest.approx(run.losses)          # same seed, same run


def test_training_with_classical_augmentation_runs(phantoms):
    images, masks = _images(phantoms), stack_masks(phantoms.masks)
    run = train_segmentation(images, masks, steps=3, batch_size=4, augmentation=classical_augmentation(seed=0))
    assert len(run.losses) == 3 and all(np.isfinite(run.losses))


def test_classical_augmentation_moves_image_and_mask_together(phantoms):
    item = {"image": _images(phantoms)[0], "label": stack_masks(phantoms.masks)[0]}
    out = classical_augmentation(seed=1, prob=1.0)(item)
    assert out["image"].shape == (1, 32, 32) and out["label"].shape == (3, 32, 32)
    assert set(torch.unique(torch.as_tensor(out["label"])).tolist()) <= {0.0, 1.0}
    assert not torch.equal(torch.as_tensor(out["label"]), item["label"])
    assert not torch.equal(torch.as_tensor(out["image"]), item["image"])
    # the heart stays on the patient's left (the viewer's right): no left-right flip
    heart_columns = torch.nonzero(torch.as_tensor(out["label"])[2].any(0)).float().mean()
    assert heart_columns > 32 / 2 - 4
    with pytest.raises(ValueError, match="prob"):
        classical_augmentation(prob=2.0)


def test_ctr_measured_on_a_perfect_segmentation_is_the_mask_ctr(phantoms):
    masks = stack_masks(phantoms.masks)
    measured = measure_cardiothoracic_ratio(_OracleNet(masks), _images(phantoms))
    expected = cardiothoracic_ratio_from_masks(phantoms.masks["heart"], phantoms.masks["right_lung"],
                                               phantoms.masks["left_lung"])
    np.testing.assert_allclose(measured, expected, rtol=1e-6)
    # and the mask CTR is close to the phantom's exact ratio (32 px: a pixel is ~3 % of the thorax)
    assert np.mean(np.abs(measured - phantoms.cardiothoracic_ratio)) < 0.04


def test_ctr_is_nan_without_a_heart(phantoms):
    masks = stack_masks(phantoms.masks)
    masks[:, 2] = 0
    assert np.isnan(measure_cardiothoracic_ratio(_OracleNet(masks), _images(phantoms))).all()


def test_random_mask_variants_are_new_binary_masks(phantoms):
    masks = stack_masks(phantoms.masks)[:4]
    variants, source = random_mask_variants(masks, per_image=2, seed=0)
    assert variants.shape == (8, 3, 32, 32) and source.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert set(torch.unique(variants).tolist()) <= {0.0, 1.0}
    assert not torch.equal(variants[0], masks[0])
    again, _ = random_mask_variants(masks, per_image=2, seed=0)
    assert torch.equal(variants, again)
    # mild: each variant still overlaps the mask it came from
    overlap = (variants * masks[source]).sum((2, 3)) / masks[source].sum((2, 3)).clamp(min=1)
    assert float(overlap.mean()) > 0.6


def test_errors_name_the_input(phantoms):
    with pytest.raises(ValueError, match="images must be"):
        train_segmentation(torch.zeros(2, 32, 32), torch.zeros(2, 3, 32, 32), steps=1)
    with pytest.raises(ValueError, match="masks must be"):
        train_segmentation(torch.zeros(2, 1, 32, 32), torch.zeros(3, 3, 32, 32), steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_segmentation(torch.zeros(2, 1, 32, 32), torch.zeros(2, 3, 32, 32), steps=0)
    with pytest.raises(ValueError, match="loss must be one of"):
        train_segmentation(torch.zeros(2, 1, 32, 32), torch.zeros(2, 3, 32, 32), steps=1, loss="focal")
    with pytest.raises(ValueError, match="structure names"):
        segmentation_scores(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))
    assert make_segmentation_net()(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)
