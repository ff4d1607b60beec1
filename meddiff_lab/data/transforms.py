"""MONAI pipelines that turn loaded images into training tensors, and the augmentation gallery.

Both pipelines take a channel-first image, ``(C, H, W)`` (or ``(C, D, H, W)`` with
``spatial_dims=3``) float in ``value_range`` (default [-1, 1], what the dataset readers return),
and return a plain ``torch.Tensor`` ``(C, image_size, image_size)`` float32 clipped to
``value_range``. With ``keys=("image",)`` (and optionally ``label_keys=("mask",)``) they are MONAI
dictionary transforms that move image and mask together (masks with nearest-neighbour
interpolation), for dataset items that are dicts.

    >>> pipeline = train_transforms(64)
    >>> x = pipeline(image)            # image: (1, H, W) in [-1, 1] -> (1, 64, 64) in [-1, 1]

The training pipeline applies one random affine (rotation within +/- ``rotate_degrees``, zoom,
small translation; one resampling, so one blur), optionally an elastic deformation, Gaussian noise
and a gamma/intensity change. It never flips left-right: a mirrored chest radiograph shows the heart
on the patient's right (dextrocardia), a finding rather than a variant.
:func:`augmentation_gallery` shows each augmentation on its own, the flip included and marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai import transforms as mt

__all__ = ["train_transforms", "eval_transforms", "augmentation_gallery", "GalleryRow", "ANATOMICALLY_WRONG"]

#: augmentations that change what a chest radiograph shows, with the reason
ANATOMICALLY_WRONG = {
    "left-right flip": "puts the heart on the patient's right (dextrocardia): a diagnosis, not a variant",
}


def _check_common(image_size, spatial_dims, value_range, keys, label_keys):
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if image_size is not None:
        sizes = (image_size,) * spatial_dims if isinstance(image_size, (int, np.integer)) else tuple(image_size)
        if len(sizes) != spatial_dims or any(int(s) < 1 for s in sizes):
            raise ValueError(f"image_size must be a positive int or {spatial_dims} positive ints, got {image_size!r}")
        image_size = tuple(int(s) for s in sizes)
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    if keys is None and label_keys:
        raise ValueError("label_keys need dictionary transforms: pass keys=('image',) as well")
    keys = None if keys is None else ((keys,) if isinstance(keys, str) else tuple(keys))
    label_keys = (label_keys,) if isinstance(label_keys, str) else tuple(label_keys)
    return image_size, (lo, hi), keys, label_keys


def _head(image_size, keys, label_keys) -> list:
    """Type conversion and resizing shared by both pipelines."""
    if keys is None:
        steps = [mt.EnsureType(data_type="tensor", dtype=torch.float32)]
        if image_size is not None:
            steps.append(mt.Resize(image_size, mode="bilinear", anti_aliasing=True))
        return steps
    all_keys = keys + label_keys
    steps = [mt.EnsureTyped(keys=all_keys, data_type="tensor", dtype=torch.float32)]
    if image_size is not None:
        steps.append(mt.Resized(keys=keys, spatial_size=image_size, mode="bilinear", anti_aliasing=True))
        if label_keys:
            steps.append(mt.Resized(keys=label_keys, spatial_size=image_size, mode="nearest"))
    return steps


def _tail(value_range, keys, label_keys) -> list:
    """Clip to the value range and drop MONAI's metadata (plain tensors for the diffusion code)."""
    lo, hi = value_range
    if keys is None:
        return [
            mt.ScaleIntensityRange(a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True),
            mt.EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    return [
        mt.ScaleIntensityRanged(keys=keys, a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True),
        mt.EnsureTyped(keys=keys + label_keys, data_type="tensor", dtype=torch.float32, track_meta=False),
    ]


def eval_transforms(
    image_size: int | Sequence[int] | None = None,
    *,
    spatial_dims: int = 2,
    keys: Sequence[str] | str | None = None,
    label_keys: Sequence[str] | str = (),
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> mt.Compose:
    """The deterministic pipeline for validation, test and sampling references: type, resize, clip.

    Args:
        image_size: output side length (or one per spatial axis); ``None`` keeps the input size.
        spatial_dims: 2 for radiographs ``(C, H, W)``, 3 for volumes ``(C, D, H, W)``.
        keys: ``None`` for array transforms; image keys (e.g. ``("image",)``) for dict transforms.
        label_keys: mask keys resized with nearest-neighbour interpolation (dict transforms only).
        value_range: the range the input is in; the output is clipped to it.

    Returns:
        A ``monai.transforms.Compose`` giving ``(C, *image_size)`` float32 tensors in ``value_range``.
    """
    image_size, value_range, keys, label_keys = _check_common(image_size, spatial_dims, value_range, keys, label_keys)
    return mt.Compose(_head(image_size, keys, label_keys) + _tail(value_range, keys, label_keys))


def train_transforms(
    image_size: int | Sequence[int] | None = None,
    *,
    spatial_dims: int = 2,
    keys: Sequence[str] | str | None = None,
    label_keys: Sequence[str] | str = (),
    rotate_degrees: float = 15.0,
    zoom: tuple[float, float] = (0.9, 1.1),
    translate_fraction: float = 0.04,
    elastic: bool = False,
    noise_std: float = 0.03,
    gamma: tuple[float, float] = (0.8, 1.25),
    intensity_scale: float = 0.1,
    prob: float = 0.5,
    value_range: tuple[float, float] = (-1.0, 1.0),
    seed: int | None = None,
) -> mt.Compose:
    """The randomised training pipeline: anatomically plausible augmentation only (no flips).

    Args:
        image_size, spatial_dims, keys, label_keys, value_range: as in :func:`eval_transforms`.
        rotate_degrees: rotation drawn uniformly from +/- this many degrees (about each axis in 3D).
        zoom: (min, max) isotropic scale factor.
        translate_fraction: shift up to this fraction of the side length.
        elastic: add a smooth elastic deformation (slower; a few pixels of displacement).
        noise_std: Gaussian noise with a standard deviation drawn from [0, noise_std] (in image units).
        gamma: (min, max) gamma of MONAI's contrast adjustment.
        intensity_scale: multiply intensities by 1 + u, u uniform in +/- this.
        prob: probability of applying each random transform to an image.
        seed: seeds the pipeline's random state (``None``: MONAI's global state).

    Returns:
        A ``monai.transforms.Compose``; same output contract as :func:`eval_transforms`.
    """
    image_size, value_range, keys, label_keys = _check_common(image_size, spatial_dims, value_range, keys, label_keys)
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    if rotate_degrees < 0 or not 0 < zoom[0] <= zoom[1] or noise_std < 0 or translate_fraction < 0:
        raise ValueError(
            f"augmentation strengths must be non-negative and zoom (min, max) positive with min <= max; "
            f"got rotate_degrees={rotate_degrees}, zoom={zoom}, noise_std={noise_std}, "
            f"translate_fraction={translate_fraction}"
        )
    rotate = float(np.deg2rad(rotate_degrees))
    side = image_size[0] if image_size is not None else 64
    affine_args = dict(
        prob=prob,
        rotate_range=(rotate,) if spatial_dims == 2 else (rotate,) * 3,
        scale_range=((zoom[0] - 1.0, zoom[1] - 1.0),) * spatial_dims,
        translate_range=(translate_fraction * side,) * spatial_dims,
        padding_mode="zeros",
    )
    elastic_args = dict(prob=prob, magnitude_range=(0.5, 1.5), padding_mode="zeros")
    if spatial_dims == 2:
        elastic_args["spacing"] = (max(side // 4, 4),) * 2
    else:
        elastic_args["sigma_range"] = (4.0, 6.0)
    elastic_cls, elastic_dict_cls = (
        (mt.Rand2DElastic, mt.Rand2DElasticd) if spatial_dims == 2 else (mt.Rand3DElastic, mt.Rand3DElasticd)
    )
    noise_args = dict(prob=prob, std=noise_std)
    contrast_args = dict(prob=prob, gamma=gamma)
    scale_args = dict(prob=prob, factors=intensity_scale)
    # Geometric steps pad what moves into view with zeros. Shifting the image so that the bottom of
    # the value range (air) is 0 first makes that padding air, not a mid-grey band or copied edge
    # columns (which a generative model would learn as anatomy).
    lo = float(value_range[0])
    if keys is None:
        random_steps = [mt.ShiftIntensity(-lo), mt.RandAffine(mode="bilinear", **affine_args)]
        if elastic:
            random_steps.append(elastic_cls(mode="bilinear", **elastic_args))
        random_steps += [
            mt.ShiftIntensity(lo),
            mt.RandAdjustContrast(**contrast_args),
            mt.RandScaleIntensity(**scale_args),
            mt.RandGaussianNoise(**noise_args),
        ]
    else:
        spatial_keys = keys + label_keys
        modes = ("bilinear",) * len(keys) + ("nearest",) * len(label_keys)
        random_steps = [
            mt.ShiftIntensityd(keys=keys, offset=-lo),
            mt.RandAffined(keys=spatial_keys, mode=modes, **affine_args),
        ]
        if elastic:
            random_steps.append(elastic_dict_cls(keys=spatial_keys, mode=modes, **elastic_args))
        random_steps += [
            mt.ShiftIntensityd(keys=keys, offset=lo),
            mt.RandAdjustContrastd(keys=keys, **contrast_args),
            mt.RandScaleIntensityd(keys=keys, **scale_args),
            mt.RandGaussianNoised(keys=keys, **noise_args),
        ]
    pipeline = mt.Compose(_head(image_size, keys, label_keys) + random_steps + _tail(value_range, keys, label_keys))
    if seed is not None:
        pipeline.set_random_state(seed=int(seed))
    return pipeline


@dataclass
class GalleryRow:
    """One augmentation shown several times on the same image.

    Attributes:
        name: what was applied, e.g. ``"rotation +/-15 deg"``.
        images: ``(n, H, W)`` float32 numpy, same range as the input.
        anatomically_plausible: ``False`` when the result is not a chest radiograph that could exist.
        note: why (for the implausible ones) or what to look at.
    """

    name: str
    images: np.ndarray
    anatomically_plausible: bool
    note: str = ""


def augmentation_gallery(
    image, n_variants: int = 4, seed: int = 0, value_range: tuple[float, float] = (-1.0, 1.0)
) -> list[GalleryRow]:
    """Apply each augmentation on its own, ``n_variants`` times, to one radiograph.

    Args:
        image: ``(H, W)`` or ``(1, H, W)`` array or tensor in ``value_range``.
        n_variants: random draws per augmentation.
        seed: seeds every random transform (same seed, same gallery).

    Returns:
        A list of :class:`GalleryRow`: the original, rotation +/-15 deg, zoom, elastic, Gaussian noise,
        contrast (gamma), intensity scale, and the left-right flip marked anatomically wrong.
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"image must be one radiograph (H, W) or (1, H, W), got shape {arr.shape}")
    if n_variants < 1:
        raise ValueError(f"n_variants must be >= 1, got {n_variants!r}")
    side = min(arr.shape)
    lo, hi = value_range
    clip = mt.ScaleIntensityRange(a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True)

    def padded_with_air(transform):  # pad with the bottom of the value range (air), as training does
        return mt.Compose([mt.ShiftIntensity(-lo), transform, mt.ShiftIntensity(lo)])

    plausible = [
        (
            "rotation ±15°",
            padded_with_air(mt.RandRotate(range_x=np.deg2rad(15), prob=1.0, padding_mode="zeros")),
            "patients are never perfectly straight",
        ),
        (
            "zoom 0.85–1.15",
            mt.RandZoom(prob=1.0, min_zoom=0.85, max_zoom=1.15, mode="bilinear", padding_mode="minimum"),
            "distance and habitus vary",
        ),
        (
            "elastic",
            padded_with_air(
                mt.Rand2DElastic(
                    spacing=(max(side // 4, 4),) * 2, magnitude_range=(1.0, 2.0), prob=1.0, padding_mode="zeros"
                )
            ),
            "small smooth shape changes",
        ),
        ("Gaussian noise", mt.RandGaussianNoise(prob=1.0, std=0.08, sample_std=False), "lower dose, other detector"),
        ("contrast (gamma)", mt.RandAdjustContrast(prob=1.0, gamma=(0.6, 1.6)), "other scanner or processing"),
        ("intensity scale", mt.RandScaleIntensity(factors=0.2, prob=1.0), "other exposure"),
    ]
    rows = [GalleryRow("original", np.repeat(arr[None], n_variants, axis=0), True, "the input")]
    for i, (name, transform, note) in enumerate(plausible):
        transform.set_random_state(seed=seed + i)
        outs = [np.asarray(clip(transform(torch.from_numpy(arr[None].copy()))))[0] for _ in range(n_variants)]
        rows.append(GalleryRow(name, np.stack(outs).astype(np.float32), True, note))
    flipped = np.asarray(mt.Flip(spatial_axis=1)(torch.from_numpy(arr[None].copy())))[0]
    rows.append(
        GalleryRow(
            "left-right flip",
            np.repeat(flipped[None], n_variants, axis=0).astype(np.float32),
            False,
            ANATOMICALLY_WRONG["left-right flip"],
        )
    )
    return rows
