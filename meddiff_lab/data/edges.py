"""Edge maps extracted automatically from radiographs: the label-free condition of an edge ControlNet.

EMIT-Diff/DiffBoost conditions its generator on HED edges of a real image; HED is a learned edge
detector whose weights must be downloaded, so the course uses the classical Canny detector
(scikit-image): Gaussian smoothing, gradient magnitude, non-maximum suppression and hysteresis
thresholds. Like HED it needs no labels, so it can be run on thousands of unlabelled radiographs.

The thresholds are *quantiles* of each image's gradient magnitude rather than fixed numbers, so the
same settings give a comparable amount of edges on images of any contrast (a bright AP film, a dark
PA film, a model's sample).

Example:
    >>> edges = edge_maps(batch.images)                # (N, H, W) bool
    >>> control = edges_to_condition(edges)            # (N, 1, H, W) float32 in {-1, 1}
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["edge_maps", "edges_to_condition"]


def edge_maps(images, sigma: float = 1.0, low_quantile: float = 0.80, high_quantile: float = 0.92) -> np.ndarray:
    """Canny edges of each image.

    Args:
        images: ``(N, H, W)`` or ``(N, 1, H, W)`` array or tensor; any value range (each image is
            handled on its own).
        sigma: standard deviation (pixels) of the Gaussian smoothing before the gradient; larger
            keeps only coarse outlines (ribs and vessels vanish first).
        low_quantile, high_quantile: hysteresis thresholds as quantiles of the image's gradient
            magnitude (0 < low < high < 1).

    Returns:
        ``(N, H, W)`` bool edge maps.
    """
    from skimage.feature import canny

    array = (
        images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    )
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, 1, H, W), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("images contain NaN or infinite values; edge maps need finite pixels")
    if not 0.0 < low_quantile < high_quantile < 1.0:
        raise ValueError(f"need 0 < low_quantile < high_quantile < 1, got {low_quantile}, {high_quantile}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma!r}")
    return np.stack(
        [
            canny(image, sigma=sigma, low_threshold=low_quantile, high_threshold=high_quantile, use_quantiles=True)
            for image in array
        ]
    )


def edges_to_condition(edges) -> torch.Tensor:
    """``(N, H, W)`` bool edge maps → ``(N, 1, H, W)`` float32 in {-1, 1} (the ControlNet's ``mask`` input)."""
    tensor = torch.as_tensor(np.asarray(edges)).bool()
    if tensor.ndim == 4 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.ndim != 3:
        raise ValueError(f"edges must be (N, H, W) bool, got shape {tuple(tensor.shape)}")
    return tensor[:, None].float() * 2 - 1
