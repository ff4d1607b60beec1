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

A segmentation network used as a *measuring instrument* (notebooks 06 and 07, the conditional model
checks) outlines the lung fields and the heart, one channel per structure of :data:`SEG_STRUCTURES`.
Its measurements live here too (how it is trained lives in :mod:`meddiff_lab.training.segmentation`):

* :func:`stack_masks` / :func:`masks_to_condition` — a phantom's mask dict as ``(N, C, H, W)`` 0/1 in
  :data:`SEG_STRUCTURES` order, or as the one-channel label map the mask-conditioned models take;
* :func:`predict_masks` — the network's masks for a batch of images (sigmoid > 0.5);
* :func:`segmentation_scores` — Dice and HD95 per image and structure (:class:`SegmentationScores`);
* :func:`measure_cardiothoracic_ratio` — the cardiothoracic ratio (CTR) of each radiograph from the
  network's masks, by :func:`cardiothoracic_ratio_from_masks`: widest heart width / widest thoracic
  width. (That function stays defined with the phantom, whose exact ratio it checks, and is
  importable from here.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from meddiff_lab.data.phantom import cardiothoracic_ratio_from_masks
from meddiff_lab.metrics._inputs import mask_batch, reduce, same_shape

#: The structures the segmentation network outlines, one output channel each, in this order.
SEG_STRUCTURES: tuple[str, ...] = ("right_lung", "left_lung", "heart")


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


def hd95(
    pred, target, spacing: float | Sequence[float] | None = None, percentile: float = 95.0, reduction: str = "mean"
) -> float | torch.Tensor:
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
    metric = HausdorffDistanceMetric(
        include_background=True, percentile=None if percentile == 100 else percentile, reduction="none"
    )
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
    return {
        "tp": (p & t).sum(1).double(),
        "fp": (p & ~t).sum(1).double(),
        "tn": (~p & ~t).sum(1).double(),
        "fn": (~p & t).sum(1).double(),
    }


def sensitivity(pred, target, reduction: str = "mean") -> float | torch.Tensor:
    """Sensitivity (recall, true-positive rate) ``TP / (TP + FN)`` per mask; NaN when the target is empty."""
    c = _confusion(*_pair(pred, target))
    return reduce(c["tp"] / (c["tp"] + c["fn"]), reduction)


def specificity(pred, target, reduction: str = "mean") -> float | torch.Tensor:
    """Specificity (true-negative rate) ``TN / (TN + FP)`` per mask; NaN when the target fills the image."""
    c = _confusion(*_pair(pred, target))
    return reduce(c["tn"] / (c["tn"] + c["fp"]), reduction)


def postprocess_mask(
    mask, num_components: int | None = None, fill_holes: bool = False, min_size: int = 0, opening_radius: int = 0
) -> torch.Tensor:
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


# ------------------------------------------------------------------------------------- mask layouts
def stack_masks(masks: Mapping[str, np.ndarray], structures: Sequence[str] = SEG_STRUCTURES) -> torch.Tensor:
    """A dict of ``(N, H, W)`` bool masks (e.g. ``PhantomBatch.masks``) → ``(N, C, H, W)`` float32 0/1.

    Raises:
        KeyError: when a structure is missing from ``masks``, naming the ones present.
    """
    missing = [s for s in structures if s not in masks]
    if missing:
        raise KeyError(f"masks has no {missing}; it holds {sorted(masks)}")
    return torch.from_numpy(np.stack([np.asarray(masks[s], dtype=np.float32) for s in structures], axis=1))


def masks_to_condition(masks) -> torch.Tensor:
    """Lung and heart masks → one conditioning channel ``(N, 1, H, W)`` float32: -1 background, 0 lung, +1 heart.

    The diffusion models of 06 and 07 take this single channel beside the noisy image: a label map
    scaled into the images' range [-1, 1]. The two lungs share one value (their position tells them
    apart); where the heart overlaps a lung field, the heart wins.

    Args:
        masks: a dict with ``right_lung``, ``left_lung``, ``heart`` ``(N, H, W)`` bool arrays, or a
            ``(N, 3, H, W)`` tensor/array stacked in :data:`SEG_STRUCTURES` order.
    """
    stacked = stack_masks(masks) if isinstance(masks, Mapping) else torch.as_tensor(masks, dtype=torch.float32)
    if stacked.ndim != 4 or stacked.shape[1] != len(SEG_STRUCTURES):
        raise ValueError(
            f"masks must be a dict of (N, H, W) masks or (N, {len(SEG_STRUCTURES)}, H, W) stacked as "
            f"{SEG_STRUCTURES}, got shape {tuple(stacked.shape)}"
        )
    lungs = (stacked[:, 0] > 0.5) | (stacked[:, 1] > 0.5)
    heart = stacked[:, 2] > 0.5
    condition = torch.full(lungs.shape, -1.0)
    condition[lungs] = 0.0
    condition[heart] = 1.0
    return condition[:, None]


# ------------------------------------------------------------------------- a segmenter's measurements
@torch.no_grad()
def predict_masks(net: torch.nn.Module, images, batch_size: int = 64, threshold: float = 0.5) -> torch.Tensor:
    """Segment ``images`` ``(N, 1, H, W)`` in [-1, 1] → ``(N, C, H, W)`` bool on the CPU (sigmoid > ``threshold``).

    Runs on the network's device.
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W) float in [-1, 1], got shape {tuple(images.shape)}")
    was_training = net.training
    net.eval()
    device = next(iter(net.parameters()), torch.empty(0)).device
    out = [
        (torch.sigmoid(net(images[i : i + batch_size].to(device))) > threshold).cpu()
        for i in range(0, len(images), batch_size)
    ]
    net.train(was_training)
    return torch.cat(out)


@dataclass
class SegmentationScores:
    """Per-image, per-structure scores.

    Attributes:
        dice: ``(N, C)`` Dice in [0, 1].
        hd95: ``(N, C)`` 95th-percentile Hausdorff distance in ``unit``; an empty prediction of a present
            structure (no boundary to measure) counts as the image diagonal, the worst possible value.
        structures: the ``C`` structure names.
        unit: ``"mm"`` or ``"px"``.
        empty_predictions: how many (image, structure) predictions were empty where the truth was not.
    """

    dice: np.ndarray
    hd95: np.ndarray
    structures: tuple[str, ...]
    unit: str
    empty_predictions: int = 0

    @property
    def mean_dice(self) -> float:
        """Dice averaged over images and structures."""
        return float(np.mean(self.dice))

    @property
    def mean_hd95(self) -> float:
        """HD95 averaged over images and structures (in ``unit``)."""
        return float(np.mean(self.hd95))

    def per_structure(self) -> dict[str, dict[str, float]]:
        """``{structure: {"dice": mean, "hd95": mean}}``."""
        return {
            s: {"dice": float(self.dice[:, i].mean()), "hd95": float(self.hd95[:, i].mean())}
            for i, s in enumerate(self.structures)
        }


def _channels(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    pred, target = torch.as_tensor(pred).float(), torch.as_tensor(target).float()
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"pred and target must both be (N, C, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    return pred, target


def dice_per_structure(pred, target) -> np.ndarray:
    """Dice per image and structure ``(N, C)`` float64 (:func:`dice` on each channel), without the distances.

    Args:
        pred, target: ``(N, C, H, W)`` 0/1 (bool or float).
    """
    pred, target = _channels(pred, target)
    return np.stack(
        [
            torch.as_tensor(dice(pred[:, c : c + 1], target[:, c : c + 1], reduction="none")).double().numpy()
            for c in range(pred.shape[1])
        ],
        axis=1,
    )


def segmentation_scores(
    pred, target, structures: Sequence[str] = SEG_STRUCTURES, spacing_mm: float | None = None
) -> SegmentationScores:
    """Dice and HD95 of predicted masks against the truth, per image and structure.

    Args:
        pred, target: ``(N, C, H, W)`` 0/1 (bool or float).
        structures: the names of the ``C`` channels.
        spacing_mm: pixel size in mm (HD95 in mm); ``None``: HD95 in pixels.
    """
    pred, target = _channels(pred, target)
    if pred.shape[1] != len(structures):
        raise ValueError(f"{pred.shape[1]} channels but {len(structures)} structure names {tuple(structures)}")
    scale = 1.0 if spacing_mm is None else float(spacing_mm)
    diagonal = math.hypot(*pred.shape[2:]) * scale
    distances, empty = [], 0
    for c in range(pred.shape[1]):
        d = (
            torch.as_tensor(hd95(pred[:, c : c + 1], target[:, c : c + 1], spacing=spacing_mm, reduction="none"))
            .double()
            .numpy()
        )
        empty += int(np.isinf(d).sum())
        distances.append(np.where(np.isinf(d), diagonal, d))
    return SegmentationScores(
        dice=dice_per_structure(pred, target),
        hd95=np.stack(distances, 1),
        structures=tuple(structures),
        unit="px" if spacing_mm is None else "mm",
        empty_predictions=empty,
    )


def measure_cardiothoracic_ratio(net: torch.nn.Module, images, clean: bool = True) -> np.ndarray:
    """The cardiothoracic ratio of each radiograph, measured on the network's segmentation.

    Segments heart and lung fields (:data:`SEG_STRUCTURES`), keeps the largest connected component of
    the heart and the largest of each lung field when ``clean`` (so a stray pixel cannot widen a
    structure), and applies :func:`cardiothoracic_ratio_from_masks`: widest heart width / widest
    thoracic width.

    Args:
        net: a network trained on :data:`SEG_STRUCTURES` (see
            :func:`meddiff_lab.training.segmentation.train_segmentation`).
        images: ``(N, 1, H, W)`` float32 in [-1, 1].

    Returns:
        ``(N,)`` float32; NaN where no heart or no lung was found.
    """
    pred = predict_masks(net, images)
    if clean:
        pred = torch.stack(
            [postprocess_mask(pred[:, c : c + 1], num_components=1)[:, 0] for c in range(pred.shape[1])], dim=1
        )
    pred = pred.numpy()
    right, left, heart = (pred[:, SEG_STRUCTURES.index(s)] for s in ("right_lung", "left_lung", "heart"))
    return cardiothoracic_ratio_from_masks(heart, right, left)


__all__ = [
    "dice",
    "hd95",
    "sensitivity",
    "specificity",
    "postprocess_mask",
    "SEG_STRUCTURES",
    "stack_masks",
    "masks_to_condition",
    "predict_masks",
    "SegmentationScores",
    "dice_per_structure",
    "segmentation_scores",
    "measure_cardiothoracic_ratio",
    "cardiothoracic_ratio_from_masks",
]
