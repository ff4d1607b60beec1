r"""Segmentation metrics and morphological post-processing for binary masks.

* Dice :math:`= 2|P\cap T| / (|P| + |T|)` — overlap (MONAI ``DiceMetric``). Two empty masks agree
  perfectly (Dice 1).
* HD95 — the 95th percentile of the distances between the two masks' boundaries, taken both ways
  and the larger kept (MONAI ``HausdorffDistanceMetric(percentile=95)``), in pixels or, with
  ``spacing``, in mm. Dice misses a stray blob far from the organ; the Hausdorff distance sees it;
  the 95th percentile keeps one stray pixel from deciding everything.
* sensitivity :math:`= TP/(TP+FN)` (share of the structure found) and specificity
  :math:`= TN/(TN+FP)` (share of the background left alone).
* :func:`postprocess_mask` — keep the N largest connected components (two lungs, one heart), fill
  holes, drop small islands, morphological opening: the clean-up that anatomy justifies.

Masks: bool or 0/1, ``(B, 1, H, W)``, ``(N, H, W)`` (a batch of 2D masks) or ``(H, W)``;
``(B, 1, D, H, W)`` for volumes.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from meddiff_lab.metrics._inputs import mask_batch, reduce, same_shape


def _pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    pred_b, target_b = mask_batch(pred, "pred"), mask_batch(target, "target")
    same_shape(pred_b, target_b, "pred", "target")
    return pred_b, target_b


def dice(pred, target, reduction: str = "mean") -> float | torch.Tensor:
    r"""Dice coefficient :math:`2|P\cap T|/(|P|+|T|)` per mask (MONAI ``DiceMetric``), in [0, 1].

    Two empty masks score 1 (nothing to find, nothing found); an empty prediction of a non-empty
    target scores 0.

    Args:
        pred, target: binary masks of one shape (see the module docstring).
        reduction: ``"mean"`` (float) or ``"none"`` (``(B,)`` tensor).
    """
    from monai.metrics import DiceMetric

    pred_b, target_b = _pair(pred, target)
    values = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(pred_b, target_b)
    return reduce(values, reduction)


def hd95(pred, target, spacing: float | Sequence[float] | None = None, percentile: float = 95.0,
         reduction: str = "mean") -> float | torch.Tensor:
    """95th-percentile symmetric Hausdorff distance between mask boundaries (MONAI ``HausdorffDistanceMetric``).

    Args:
        pred, target: binary masks of one shape.
        spacing: pixel size (mm) per spatial axis, or one number for all; ``None``: distances in pixels.
        percentile: 95 for HD95; 100 gives the classical (maximum) Hausdorff distance.
        reduction: ``"mean"`` or ``"none"``.
    Returns:
        the distance per mask (pixels or mm): 0 when both masks are empty, ``inf`` when exactly one is
        (no boundary to measure against: the worst possible result, never silently dropped).
    """
    from monai.metrics import HausdorffDistanceMetric

    pred_b, target_b = _pair(pred, target)
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    metric = HausdorffDistanceMetric(include_background=True, percentile=None if percentile == 100 else percentile,
                                     reduction="none")
    pred_empty = pred_b.flatten(1).sum(1) == 0
    target_empty = target_b.flatten(1).sum(1) == 0
    values = torch.zeros(len(pred_b), dtype=torch.float64)
    values[pred_empty != target_empty] = float("inf")
    both = ~(pred_empty | target_empty)
    if bool(both.any()):
        kwargs = {} if spacing is None else {"spacing": spacing}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values[both] = metric(pred_b[both], target_b[both], **kwargs).reshape(-1).double()
    return reduce(values, reduction)


def _confusion(pred_b: torch.Tensor, target_b: torch.Tensor) -> dict[str, torch.Tensor]:
    p, t = pred_b.flatten(1).bool(), target_b.flatten(1).bool()
    return {"tp": (p & t).sum(1).double(), "fp": (p & ~t).sum(1).double(),
            "tn": (~p & ~t).sum(1).double(), "fn": (~p & t).sum(1).double()}


def sensitivity(pred, target, reduction: str = "mean") -> float | torch.Tensor:
    """Sensitivity (recall, true-positive rate) ``TP / (TP + FN)`` per mask; NaN when the target is empty."""
    c = _confusion(*_pair(pred, target))
    return reduce(c["tp"] / (c["tp"] + c["fn"]), reduction)


def specificity(pred, target, reduction: str = "mean") -> float | torch.Tensor:
    """Specificity (true-negative rate) ``TN / (TN + FP)`` per mask; NaN when the target fills the image."""
    c = _confusion(*_pair(pred, target))
    return reduce(c["tn"] / (c["tn"] + c["fp"]), reduction)


def postprocess_mask(mask, num_components: int | None = None, fill_holes: bool = False, min_size: int = 0,
                     opening_radius: int = 0) -> torch.Tensor:
    """Morphological clean-up of binary masks, in this order: opening, small islands, holes, components.

    Args:
        mask: binary masks (see the module docstring); each 2D mask is processed on its own.
        num_components: keep only this many largest connected components (2 for the lungs, 1 for the
            heart); ``None`` keeps all. (MONAI ``KeepLargestConnectedComponent``.)
        fill_holes: fill enclosed holes (MONAI ``FillHoles``).
        min_size: remove connected components under this many pixels (scikit-image
            ``remove_small_objects``, what MONAI's ``RemoveSmallObjects`` wraps).
        opening_radius: binary opening with a disk of this radius (scikit-image), which removes
            thin spurs and one-pixel noise before the rest.
    Returns:
        the cleaned masks, bool, shaped ``(B, 1, H, W)``.
    """
    from monai.transforms import FillHoles, KeepLargestConnectedComponent
    from skimage.morphology import disk, opening, remove_small_objects

    masks = mask_batch(mask, "mask")
    if masks.ndim != 4:
        raise ValueError(f"postprocess_mask works on 2D masks, got shape {tuple(masks.shape)}")
    if num_components is not None and num_components < 1:
        raise ValueError(f"num_components must be >= 1 or None, got {num_components}")
    cleaned = []
    for single in masks.bool():
        m = single  # (1, H, W)
        if opening_radius > 0:
            m = torch.from_numpy(opening(m[0].numpy(), disk(opening_radius)))[None]
        if min_size > 0:  # objects of fewer than min_size pixels go (max_size is inclusive)
            m = torch.from_numpy(remove_small_objects(m[0].numpy(), max_size=min_size - 1))[None]
        if fill_holes:
            m = _plain(FillHoles()(m.to(torch.uint8)))
        if num_components is not None and bool(m.any()):
            m = _plain(KeepLargestConnectedComponent(num_components=num_components)(m.to(torch.uint8)))
        cleaned.append(m.bool())
    return torch.stack(cleaned)


def _plain(value) -> torch.Tensor:
    """A plain bool tensor from a MONAI MetaTensor, tensor or array."""
    if hasattr(value, "as_tensor"):
        value = value.as_tensor()
    return torch.as_tensor(value).bool()


__all__ = ["dice", "hd95", "sensitivity", "specificity", "postprocess_mask"]
