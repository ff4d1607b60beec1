r"""Scoring an anomaly map against lesion masks: pixel AUROC/AUPRC, Dice of the thresholded map, image AUROC.

An *anomaly map* gives every pixel a score (higher: more anomalous); the phantom's lesion masks say
which pixels are abnormal. The area under the ROC curve is the probability that a random abnormal
pixel scores higher than a random normal one (Mann-Whitney):

.. math:: \mathrm{AUROC} = P(s_{\text{lesion}} > s_{\text{normal}}) + \tfrac12 P(s_{\text{lesion}} = s_{\text{normal}})

so 0.5 is chance whatever the lesion fraction. The average precision (AUPRC) is
:math:`\sum_k (R_k - R_{k-1}) P_k` over thresholds (scikit-learn's definition); chance is the lesion
fraction, which for small lesions is near 0, so AUPRC is the harder number. Both come from MONAI
(``compute_roc_auc``, ``compute_average_precision``). The *best* Dice over thresholds chosen on the same
images is an upper bound of what a threshold fixed in advance would give (say so when reporting it).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.metrics import compute_average_precision, compute_roc_auc


def _flat(scores, masks, region=None) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64) if not isinstance(scores, torch.Tensor) else scores)
    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks).bool()
    s = s.reshape(m.shape) if s.numel() == m.numel() else s
    if s.shape != m.shape:
        raise ValueError(
            f"scores {tuple(s.shape)} and masks {tuple(m.shape)} must have the same shape "
            "(one score per pixel, e.g. (N, 1, H, W) beside (N, 1, H, W))"
        )
    if region is not None:
        r = torch.as_tensor(np.asarray(region) if not isinstance(region, torch.Tensor) else region).bool()
        r = r.reshape(m.shape) if r.numel() == m.numel() else r
        if r.shape != m.shape:
            raise ValueError(f"region {tuple(r.shape)} must have the shape of the masks {tuple(m.shape)}")
        s, m = s[r], m[r]
    return s.reshape(-1).double(), m.reshape(-1).double()


def _both_classes(target: torch.Tensor) -> bool:
    positives = int(target.sum())
    return 0 < positives < target.numel()


def pixel_auroc(scores, masks, region=None) -> float:
    """Area under the ROC curve of per-pixel ``scores`` against boolean ``masks`` (MONAI's ``compute_roc_auc``).

    Args:
        scores: anomaly map, any shape (e.g. (N, 1, H, W)), higher = more anomalous.
        masks: bool, same shape: True on abnormal pixels.
        region: optional bool, same shape: score only these pixels (e.g. the body, leaving out air).

    Returns:
        AUROC in [0, 1]; NaN when the pixels scored are all abnormal or all normal.
    """
    s, m = _flat(scores, masks, region)
    if not _both_classes(m):
        return math.nan
    return float(compute_roc_auc(s, m))


def pixel_auprc(scores, masks, region=None) -> float:
    """Average precision of per-pixel ``scores`` against ``masks`` (MONAI's ``compute_average_precision``).

    Same arguments as :func:`pixel_auroc`. Chance level is the fraction of abnormal pixels.
    """
    s, m = _flat(scores, masks, region)
    if not _both_classes(m):
        return math.nan
    return float(compute_average_precision(s, m))


def dice_at_threshold(scores, masks, threshold: float, region=None) -> float:
    """Dice of ``scores > threshold`` against ``masks``, pooled over all pixels (1.0 when both are empty)."""
    s, m = _flat(scores, masks, region)
    pred = s > float(threshold)
    target = m.bool()
    denominator = int(pred.sum()) + int(target.sum())
    return 1.0 if denominator == 0 else 2.0 * int((pred & target).sum()) / denominator


def best_dice(scores, masks, region=None, num_thresholds: int = 64) -> tuple[float, float]:
    """The highest pooled Dice over ``num_thresholds`` thresholds (score quantiles), and that threshold.

    The threshold is chosen on the very images scored: an optimistic upper bound (the anomaly-detection
    literature's ⌈Dice⌉). Returns ``(dice, threshold)``.
    """
    s, m = _flat(scores, masks, region)
    if not bool(m.bool().any()):
        return math.nan, math.nan
    quantiles = torch.linspace(0.5, 0.999, int(num_thresholds), dtype=torch.float64)
    thresholds = torch.quantile(s if s.numel() <= 2**24 else s[:: s.numel() // 2**24 + 1], quantiles)
    best = (-1.0, math.nan)
    target = m.bool()
    for threshold in thresholds.unique():
        pred = s > threshold
        d = 2.0 * int((pred & target).sum()) / max(1, int(pred.sum()) + int(target.sum()))
        if d > best[0]:
            best = (d, float(threshold))
    return best


def image_auroc(image_scores, labels) -> float:
    """AUROC of one score per image against a bool label per image (True: abnormal); NaN if one class only."""
    s = torch.as_tensor(np.asarray(image_scores, dtype=np.float64)).reshape(-1)
    y = torch.as_tensor(np.asarray(labels)).reshape(-1).double()
    if s.shape != y.shape:
        raise ValueError(f"image_scores has {s.numel()} values but labels has {y.numel()}; one each per image")
    if not _both_classes(y):
        return math.nan
    return float(compute_roc_auc(s, y))


__all__ = ["pixel_auroc", "pixel_auprc", "dice_at_threshold", "best_dice", "image_auroc"]
