"""Input checks shared by the metric modules: turn arrays/tensors into the shapes MONAI expects.

Every function names the argument it checks, so a user who passes the wrong thing reads which
input was wrong and what was expected instead of a traceback from deep inside a library.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_tensor(value: Any, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of ``dtype`` from a tensor, NumPy array or nested list; raises on non-numeric input."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a tensor or an array of numbers, got {type(value).__name__}") from exc
    if tensor.dtype == torch.bool and dtype != torch.bool:
        tensor = tensor.to(torch.uint8)
    return tensor.to(dtype)


def feature_matrix(value: Any, name: str, min_rows: int = 2) -> torch.Tensor:
    """Check a feature matrix ``(N, F)``: 2-D, at least ``min_rows`` rows, finite. Returns float64."""
    features = as_tensor(value, name, torch.float64)
    if features.ndim != 2:
        raise ValueError(
            f"{name} must be a feature matrix (N, F) with one row per image, got shape "
            f"{tuple(features.shape)}; extract features first (e.g. with PhantomEncoder.features)"
        )
    if features.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows (images), got {features.shape[0]}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return features


def same_width(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of features, got "
            f"{a.shape[1]} and {b.shape[1]} (were they made by the same feature extractor?)"
        )


def image_batch(value: Any, name: str) -> torch.Tensor:
    """Images as ``(B, C, H, W)`` (or ``(B, C, D, H, W)``) float32.

    Accepted: ``(H, W)`` one image, ``(N, H, W)`` a batch of one-channel 2D images, ``(B, C, H, W)``,
    ``(B, C, D, H, W)``. Raises on NaN/inf.
    """
    images = as_tensor(value, name)
    if images.ndim == 2:
        images = images[None, None]
    elif images.ndim == 3:
        images = images[:, None]
    if images.ndim not in (4, 5):
        raise ValueError(
            f"{name} must be (H, W), (N, H, W), (B, C, H, W) or (B, C, D, H, W), got shape {tuple(images.shape)}"
        )
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return images


def mask_batch(value: Any, name: str) -> torch.Tensor:
    """Binary masks as ``(B, 1, H, W)`` (or ``(B, 1, D, H, W)``) float32 holding 0 and 1 only.

    Accepted: bool or {0, 1} values shaped like :func:`image_batch`'s input. A 3-D array is read as a
    batch of 2D masks ``(N, H, W)``; pass ``(B, 1, D, H, W)`` for volumes.
    """
    masks = image_batch(value, name)
    if masks.shape[1] != 1:
        raise ValueError(f"{name} must hold one binary mask per image (one channel), got shape {tuple(masks.shape)}")
    values = torch.unique(masks)
    if not bool(((values == 0) | (values == 1)).all()):
        raise ValueError(
            f"{name} must be a binary mask (bool or 0/1 values), found values such as "
            f"{values[(values != 0) & (values != 1)][:3].tolist()}; threshold it first, "
            f"e.g. (probabilities > 0.5)"
        )
    return masks


def same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def reduce(values: torch.Tensor, reduction: str, name: str = "reduction") -> float | torch.Tensor:
    """``"mean"`` -> a float (NaN entries ignored), ``"none"`` -> the per-image tensor."""
    values = values.reshape(-1)
    if reduction == "none":
        return values
    if reduction == "mean":
        finite = values[~torch.isnan(values)]
        return float(finite.mean()) if finite.numel() else float("nan")
    raise ValueError(f"{name} must be 'mean' or 'none', got {reduction!r}")
