r"""Lesions after restoration: contrast-to-noise ratio, and lesions that vanish or appear (hallucinations).

Each connected component of a lesion mask is one lesion. Its *contrast* is the mean inside minus the
mean of a ring around it (``ring`` pixels wide, outside every lesion), and its contrast-to-noise ratio

.. math:: \mathrm{CNR} = \frac{|\bar I_{\text{lesion}} - \bar I_{\text{ring}}|}{\sigma_{\text{ring}}}

(the usual definition in radiography dose studies). Noise lowers CNR through :math:`\sigma_{\text{ring}}`;
blur lowers it through the contrast.

*Hallucination counting* against the truth image, whose lesions are all known:

* a lesion **vanishes** when its contrast in the restored image keeps less than ``keep`` (default half)
  of its true contrast, or flips sign;
* a lesion **appears** where the restored image differs from the truth by more than ``threshold`` over a
  blob of at least ``min_area`` pixels (after a light Gaussian smoothing that ignores single-pixel
  noise), away from every true lesion. ``threshold`` defaults to half the median true lesion contrast, so
  an appeared blob is as conspicuous as a typical real lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def _batch(images, name: str) -> np.ndarray:
    a = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=np.float64)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"{name} must have one channel, got shape {a.shape}")
        a = a[:, 0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W) or (N, 1, H, W), got shape {a.shape}")
    return a


def _masks(masks, like: np.ndarray, name: str = "lesion_masks") -> np.ndarray:
    m = _batch(masks, name).astype(bool)
    if m.shape != like.shape:
        raise ValueError(f"{name} {m.shape} must match the images {like.shape}")
    return m


@dataclass
class Lesion:
    """One lesion: ``image`` index, its pixels ``inside`` and its background ``ring`` (both (H, W) bool)."""

    image: int
    inside: np.ndarray
    ring: np.ndarray


def find_lesions(lesion_masks, ring: int = 3, min_area: int = 1) -> list[Lesion]:
    """Every connected lesion (8-connectivity) with its background ring.

    Args:
        lesion_masks: (N, H, W) or (N, 1, H, W) bool.
        ring: ring width in pixels (dilation of the lesion, minus every lesion pixel of the image).
        min_area: skip lesions smaller than this.
    """
    masks = _batch(lesion_masks, "lesion_masks").astype(bool)
    found = []
    structure = np.ones((3, 3), bool)
    for i, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure)
        for k in range(1, count + 1):
            inside = labels == k
            if inside.sum() < min_area:
                continue
            around = ndimage.binary_dilation(inside, structure, iterations=int(ring)) & ~mask
            if around.sum() >= 2:
                found.append(Lesion(i, inside, around))
    return found


def lesion_contrast(images, lesions: list[Lesion]) -> np.ndarray:
    """(L,) signed contrast of each lesion: mean inside minus mean of its ring."""
    x = _batch(images, "images")
    return np.asarray(
        [x[lesion.image][lesion.inside].mean() - x[lesion.image][lesion.ring].mean() for lesion in lesions]
    )


def lesion_cnr(images, lesions: list[Lesion]) -> np.ndarray:
    """(L,) contrast-to-noise ratio of each lesion: |contrast| / std of the ring (inf for a flat ring)."""
    x = _batch(images, "images")
    out = []
    for lesion in lesions:
        image = x[lesion.image]
        contrast = abs(image[lesion.inside].mean() - image[lesion.ring].mean())
        spread = image[lesion.ring].std()
        flat = spread <= 1e-9 * (1.0 + abs(image[lesion.ring].mean()))  # a constant ring, up to rounding
        out.append(np.inf if flat else contrast / spread)
    return np.asarray(out)


@dataclass
class LesionChanges:
    """What :func:`lesion_changes` found.

    Attributes:
        lesions: number of true lesions checked.
        vanished: how many of them lost their contrast (see the module docstring).
        appeared: blobs as conspicuous as a lesion where the truth has none.
        threshold: the difference threshold used for ``appeared``.
        appeared_mask: (N, H, W) bool, the appeared blobs.
    """

    lesions: int
    vanished: int
    appeared: int
    threshold: float
    appeared_mask: np.ndarray


def default_threshold(truth, lesions: list[Lesion]) -> float:
    """Half the median |contrast| of the true lesions (the ``threshold`` of :func:`lesion_changes`)."""
    contrasts = np.abs(lesion_contrast(truth, lesions))
    return 0.5 * float(np.median(contrasts)) if len(contrasts) else 0.1


def lesion_changes(
    restored,
    truth,
    lesion_masks,
    *,
    lesions: list[Lesion] | None = None,
    keep: float = 0.5,
    threshold: float | None = None,
    min_area: int = 4,
    smooth: float = 1.0,
    ring: int = 3,
    region=None,
) -> LesionChanges:
    """Count true lesions that vanish and lesion-like blobs that appear in ``restored``.

    Args:
        restored, truth: (N, H, W) or (N, 1, H, W), same value range.
        lesion_masks: the truth's lesion masks, same shape, bool.
        lesions: the lesions (:func:`find_lesions`); found from ``lesion_masks`` when ``None``.
        keep: a lesion vanishes when its restored contrast is below ``keep`` × its true contrast.
        threshold: |restored - truth| above this (after smoothing) counts towards an appeared blob;
            default :func:`default_threshold` (computed from the truth, so equal for every method).
        min_area: smallest appeared blob, pixels.
        smooth: Gaussian sigma (pixels) applied to the difference first (0: none).
        ring: pixels around every true lesion where nothing counts as appeared.
        region: optional (N, H, W) bool, where blobs may count (e.g. the body).
    """
    x, t = _batch(restored, "restored"), _batch(truth, "truth")
    if x.shape != t.shape:
        raise ValueError(f"restored {x.shape} and truth {t.shape} must have the same shape")
    masks = _masks(lesion_masks, t)
    lesions = find_lesions(masks, ring) if lesions is None else lesions
    true_c, new_c = lesion_contrast(t, lesions), lesion_contrast(x, lesions)
    vanished = int(np.sum(new_c * np.sign(true_c) < keep * np.abs(true_c)))
    threshold = default_threshold(t, lesions) if threshold is None else float(threshold)
    difference = x - t
    if smooth > 0:
        difference = ndimage.gaussian_filter(difference, (0, smooth, smooth))
    near_lesion = ndimage.binary_dilation(masks, np.ones((1, 3, 3), bool), iterations=int(ring))
    candidate = (np.abs(difference) > threshold) & ~near_lesion
    if region is not None:
        candidate &= _masks(region, t, "region")
    appeared_mask = np.zeros_like(candidate)
    appeared = 0
    for i in range(len(candidate)):
        labels, count = ndimage.label(candidate[i], np.ones((3, 3), bool))
        if count:
            sizes = ndimage.sum(candidate[i], labels, range(1, count + 1))
            big = np.nonzero(sizes >= min_area)[0] + 1
            appeared += len(big)
            appeared_mask[i] = np.isin(labels, big)
    return LesionChanges(len(lesions), vanished, appeared, threshold, appeared_mask)


__all__ = [
    "Lesion",
    "find_lesions",
    "lesion_contrast",
    "lesion_cnr",
    "LesionChanges",
    "lesion_changes",
    "default_threshold",
]
