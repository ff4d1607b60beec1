"""Tests for meddiff_lab/training/segmentation.py: the MONAI segmentation U-Net, its training and augmentation.

What measures with the network (scores, CTR, mask layouts) is tested in tests/metrics/test_segmentation.py.
"""

import numpy as np
import pytest
import torch

from meddiff_lab.data import generate_phantoms
from meddiff_lab.metrics import segmentation as measuring
from meddiff_lab.training import segmentation as S
from meddiff_lab.training.segmentation import (
    classical_augmentation,
    make_segmentation_net,
    phantom_pixel_spacing_mm,
    predict_masks,
    random_mask_variants,
    stack_masks,
    train_segmentation,
)


@pytest.fixture(scope="module")
def phantoms():
    return generate_phantoms(12, image_size=32, seed=3)


def _images(batch) -> torch.Tensor:
    return torch.from_numpy(batch.images)[:, None] * 2 - 1


@pytest.mark.parametrize(
    "name",
    [
        "SEG_STRUCTURES",
        "stack_masks",
        "masks_to_condition",
        "predict_masks",
        "segmentation_scores",
        "SegmentationScores",
        "measure_cardiothoracic_ratio",
    ],
)
def test_the_measuring_names_stay_importable_from_here(name):
    assert getattr(S, name) is getattr(measuring, name)


def test_pixel_spacing_follows_the_40_cm_field_of_view():
    assert phantom_pixel_spacing_mm(32) == pytest.approx(12.5)
    assert phantom_pixel_spacing_mm(128) == pytest.approx(400 / 128)


def test_training_lowers_the_dice_loss_and_predicts_binary_masks(phantoms):
    images, masks = _images(phantoms), stack_masks(phantoms.masks)
    run = train_segmentation(images, masks, steps=12, batch_size=4, seed=0)
    assert len(run.losses) == 12 and run.steps == 12
    assert len(train_segmentation(images, masks, steps=2, batch_size=4, loss="dice").losses) == 2
    assert np.mean(run.losses[-3:]) < np.mean(run.losses[:3])
    pred = predict_masks(run.net, images)
    assert pred.shape == masks.shape and pred.dtype == torch.bool
    again = train_segmentation(images, masks, steps=12, batch_size=4, seed=0)
    assert again.losses == pytest.approx(run.losses)  # same seed, same run


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
    assert make_segmentation_net()(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)
