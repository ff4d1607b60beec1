"""Tests for meddiff_lab/data/transforms.py: the MONAI train/eval pipelines and the augmentation gallery."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from meddiff_lab.data.transforms import ANATOMICALLY_WRONG, augmentation_gallery, eval_transforms, train_transforms


def chest_like(size: int = 48) -> torch.Tensor:
    """(1, size, size) in [-1, 1]: dark background, a bright blob (the 'heart') on the image's right half."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = -0.8 + 1.4 * np.exp(-(((xx - 0.68) / 0.12) ** 2 + ((yy - 0.6) / 0.15) ** 2))
    return torch.from_numpy(img[None].astype(np.float32))


def test_eval_pipeline_resizes_clips_and_returns_plain_tensors():
    x = torch.rand(1, 50, 70) * 3 - 1.5  # out of range on purpose
    y = eval_transforms(32)(x)
    assert type(y) is torch.Tensor and not isinstance(y, MetaTensor)
    assert y.shape == (1, 32, 32) and y.dtype == torch.float32
    assert y.min() >= -1 and y.max() <= 1
    same = chest_like(32)
    assert torch.allclose(eval_transforms(32)(same), same), "at the target size eval only clips"
    assert torch.equal(eval_transforms(32)(x), eval_transforms(32)(x))


def test_train_pipeline_is_random_seeded_and_in_range():
    x = chest_like()
    a = train_transforms(32, prob=1.0, seed=3)(x)
    b = train_transforms(32, prob=1.0, seed=3)(x)
    c = train_transforms(32, prob=1.0, seed=4)(x)
    assert a.shape == (1, 32, 32) and type(a) is torch.Tensor
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, eval_transforms(32)(x), atol=1e-3)
    assert a.min() >= -1 and a.max() <= 1


def test_train_pipeline_never_flips_the_heart_to_the_other_side():
    x = chest_like()
    pipeline = train_transforms(48, prob=1.0, elastic=True, seed=0)
    cols = np.arange(48)
    for _ in range(20):
        blob = np.clip(pipeline(x)[0].numpy() + 0.5, 0.0, None)  # the blob only, not background or padding
        centre_col = (blob.sum(0) * cols).sum() / blob.sum()
        assert centre_col > 24, "the bright blob stays on the image's right half"


def test_rotation_stays_within_plus_minus_15_degrees():
    size = 64
    bar = -np.ones((size, size), np.float32)
    bar[30:34, 8:56] = 1.0  # horizontal bar
    pipeline = train_transforms(
        size,
        prob=1.0,
        zoom=(1.0, 1.0),
        translate_fraction=0.0,
        noise_std=0.0,
        gamma=(1.0, 1.0),
        intensity_scale=0.0,
        seed=1,
    )
    angles = []
    for _ in range(40):
        w = np.clip(pipeline(torch.from_numpy(bar[None]))[0].numpy(), 0, None)
        yy, xx = np.nonzero(w > 0.3)
        cov = np.cov(np.stack([xx, yy]))
        angles.append(np.degrees(0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])))
    angles = np.abs(angles)
    assert angles.max() <= 16.0
    assert angles.max() > 5.0, "rotation is actually applied"


def test_dictionary_pipeline_moves_image_and_mask_together():
    x = chest_like(48)
    mask = (x > 0).float()
    pipeline = train_transforms(32, keys="image", label_keys="mask", prob=1.0, elastic=True, noise_std=0.0, seed=2)
    out = pipeline({"image": x, "mask": mask})
    assert out["image"].shape == out["mask"].shape == (1, 32, 32)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}, "masks keep hard labels (nearest interpolation)"
    # the mask still sits on the bright blob after the shared random deformation
    image, m = out["image"][0].numpy(), out["mask"][0].numpy()
    bright = image > image.mean() + image.std()
    assert (m * bright).sum() / m.sum() > 0.9
    yy, xx = np.mgrid[0:32, 0:32]
    mask_centre = np.array([(m * yy).sum(), (m * xx).sum()]) / m.sum()
    blob_centre = np.array([(bright * yy).sum(), (bright * xx).sum()]) / bright.sum()
    assert np.abs(mask_centre - blob_centre).max() < 1.5


def test_three_d_pipeline_shapes():
    y = train_transforms(16, spatial_dims=3, prob=1.0, elastic=True, seed=0)(torch.rand(1, 20, 18, 22) * 2 - 1)
    assert y.shape == (1, 16, 16, 16)
    assert eval_transforms((8, 16, 16), spatial_dims=3)(torch.zeros(1, 4, 32, 32)).shape == (1, 8, 16, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(spatial_dims=4), "spatial_dims"),
        (dict(label_keys="mask"), "keys="),
        (dict(value_range=(1, -1)), "value_range"),
        (dict(image_size=0), "image_size"),
    ],
)
def test_bad_arguments_say_what_was_expected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_transforms(**kwargs)


def test_gallery_marks_the_left_right_flip_as_anatomically_wrong():
    x = chest_like(40)
    rows = augmentation_gallery(x, n_variants=3, seed=0)
    names = [r.name for r in rows]
    assert names[0] == "original" and "left-right flip" in names
    assert {"rotation ±15°", "elastic", "Gaussian noise", "contrast (gamma)"} <= set(names)
    flip = rows[names.index("left-right flip")]
    assert not flip.anatomically_plausible and flip.note == ANATOMICALLY_WRONG["left-right flip"]
    assert np.array_equal(flip.images[0], x[0].numpy()[:, ::-1])
    for row in rows[1:]:
        assert row.images.shape == (3, 40, 40)
        assert row.images.min() >= -1 and row.images.max() <= 1
        assert not np.allclose(row.images[0], x[0].numpy(), atol=1e-3), row.name
    assert [r.anatomically_plausible for r in rows].count(False) == 1
    again = augmentation_gallery(x, n_variants=3, seed=0)
    assert all(np.array_equal(a.images, b.images) for a, b in zip(rows, again))


def test_gallery_rejects_a_batch():
    with pytest.raises(ValueError, match="one radiograph"):
        augmentation_gallery(np.zeros((2, 8, 8)))


def test_geometric_augmentation_pads_with_air_not_copied_edges():
    """What moves into view is the bottom of the value range (air), never a copy of the edge columns."""
    x = torch.full((1, 48, 48), 0.5)
    x[:, :, 0] = 0.9  # a bright edge column that border padding would smear
    pipeline = train_transforms(
        48,
        prob=1.0,
        rotate_degrees=15,
        translate_fraction=0.1,
        noise_std=0.0,
        intensity_scale=0.0,
        gamma=(1.0, 1.0),
        seed=0,
    )
    padded = [pipeline(x)[0] for _ in range(5)]
    assert all(float(y.min()) == -1.0 for y in padded), "padding is air (-1)"
    assert all(float((y > 0.7).float().mean()) < 0.05 for y in padded), "edge column not copied into a band"
    gallery = augmentation_gallery(np.full((48, 48), 0.5, np.float32))
    rotated = next(row for row in gallery if row.name.startswith("rotation"))
    assert rotated.images.min() == -1.0


def test_geometric_augmentation_pads_images_with_air_and_masks_with_zero():
    pipeline = train_transforms(
        48,
        keys=["image"],
        label_keys=["mask"],
        prob=1.0,
        elastic=True,
        noise_std=0.0,
        intensity_scale=0.0,
        gamma=(1.0, 1.0),
        seed=1,
    )
    out = pipeline({"image": torch.full((1, 48, 48), 0.5), "mask": torch.ones(1, 48, 48)})
    padded_image = out["image"][0] < -0.99
    assert padded_image.any()
    agree = (padded_image == (out["mask"][0] < 0.5)).float().mean()
    assert agree > 0.9, "image and mask are padded in the same places"
