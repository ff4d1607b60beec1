"""How well one edge map reproduces another: boundary precision, recall and F1 with a pixel tolerance.

An edge-controlled generator should draw its edges where the control map has them, give or take a
pixel. Counting exact pixel matches would punish a one-pixel shift as hard as a missing organ, so,
as in the BSDS boundary benchmark, an edge pixel counts as matched when the other map has an edge
within ``tolerance`` pixels (Chebyshev distance, i.e. a (2·tolerance+1)² neighbourhood):

* precision = matched predicted edge pixels / predicted edge pixels,
* recall    = matched target edge pixels / target edge pixels,
* F1        = 2 · precision · recall / (precision + recall).

Its floor for a ControlNet is the F1 between the control's edges and the edges of the *real* image
the control came from, re-extracted in the same way (1.0 by construction if nothing is redrawn), and
its chance level is the F1 against another image's edges.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["edge_f1"]


def _as_bool_stack(edges, name: str) -> np.ndarray:
    array = edges.detach().cpu().numpy() if isinstance(edges, torch.Tensor) else np.asarray(edges)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W) or (H, W) edge maps, got shape {array.shape}")
    if array.dtype != bool:
        raise ValueError(
            f"{name} must be boolean edge maps (e.g. from meddiff_lab.data.edges.edge_maps), got dtype {array.dtype}"
        )
    return array


def edge_f1(predicted, target, tolerance: int = 1) -> dict[str, np.ndarray]:
    """Per-image boundary precision, recall and F1 of ``predicted`` against ``target`` edges.

    Args:
        predicted, target: ``(N, H, W)`` bool edge maps of the same shape.
        tolerance: pixels an edge may be off and still count as matched (0: exact pixels).

    Returns:
        ``{"precision": (N,), "recall": (N,), "f1": (N,)}`` float arrays; an image with no edges in
        either map scores 1.0, one with edges in only one map scores 0.0.
    """
    from scipy.ndimage import binary_dilation

    pred, targ = _as_bool_stack(predicted, "predicted"), _as_bool_stack(target, "target")
    if pred.shape != targ.shape:
        raise ValueError(f"predicted {pred.shape} and target {targ.shape} edge maps must have the same shape")
    if not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative integer (pixels), got {tolerance!r}")
    footprint = np.ones((1, 2 * tolerance + 1, 2 * tolerance + 1), bool)
    near_target = binary_dilation(targ, footprint) if tolerance else targ
    near_pred = binary_dilation(pred, footprint) if tolerance else pred
    n_pred, n_targ = pred.sum((1, 2)), targ.sum((1, 2))
    precision = np.where(n_pred > 0, (pred & near_target).sum((1, 2)) / np.maximum(n_pred, 1), (n_targ == 0) * 1.0)
    recall = np.where(n_targ > 0, (targ & near_pred).sum((1, 2)) / np.maximum(n_targ, 1), (n_pred == 0) * 1.0)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    both_empty = (n_pred == 0) & (n_targ == 0)
    f1 = np.where(both_empty, 1.0, f1)
    return {"precision": precision.astype(float), "recall": recall.astype(float), "f1": f1.astype(float)}
