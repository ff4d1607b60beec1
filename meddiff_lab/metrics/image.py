r"""Restoration metrics: how close is a restored image to its ground truth? PSNR, SSIM, NMSE.

These compare an image with *its own* reference (denoising, super-resolution, reconstruction),
unlike :mod:`meddiff_lab.metrics.generative`, which compares sets. PSNR and SSIM are MONAI's
(``PSNRMetric``, ``SSIMMetric``: Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03), so numbers
here match a MONAI pipeline and scikit-image's ``structural_similarity(gaussian_weights=True,
use_sample_covariance=False)`` (tested).

* PSNR :math:`= 10\log_{10}\big(R^2/\mathrm{MSE}\big)` dB, with :math:`R` the data range
  (1 for [0, 1] images, 2 for [-1, 1]).
* SSIM :math:`= \frac{(2\mu_x\mu_y+C_1)(2\sigma_{xy}+C_2)}{(\mu_x^2+\mu_y^2+C_1)(\sigma_x^2+\sigma_y^2+C_2)}`
  averaged over local Gaussian windows, :math:`C_i=(K_iR)^2`. SSIM's luminance term depends on the
  values themselves, not only their differences: compute it on one convention (the course uses [0, 1]).
* NMSE :math:`=\lVert\hat x-x\rVert^2/\lVert x\rVert^2` (the fastMRI convention).

:func:`gaussian_blur` is the degradation the metrics are probed with: how much does a FID or an
SSIM move when images lose a pixel of sharpness (notebook 08), and what blur level the domain
encoder learns to read (:mod:`meddiff_lab.training.encoder`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from meddiff_lab.metrics._inputs import image_batch, reduce, same_shape


def _pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    pred_b, target_b = image_batch(pred, "pred"), image_batch(target, "target")
    same_shape(pred_b, target_b, "pred", "target")
    return pred_b, target_b


def _check_range(data_range: float) -> float:
    if not isinstance(data_range, (int, float)) or not data_range > 0:
        raise ValueError(
            f"data_range must be a positive number (1.0 for [0, 1] images, 2.0 for [-1, 1]), got {data_range!r}"
        )
    return float(data_range)


def psnr(pred, target, data_range: float, reduction: str = "mean") -> float | torch.Tensor:
    r"""Peak signal-to-noise ratio in dB, :math:`10\log_{10}(R^2/\mathrm{MSE})`, per image (MONAI ``PSNRMetric``).

    Args:
        pred, target: ``(B, C, H, W)``, ``(B, C, D, H, W)``, ``(N, H, W)`` or ``(H, W)``, same shape.
        data_range: :math:`R`, the span of valid values (1.0 for [0, 1], 2.0 for [-1, 1]).
        reduction: ``"mean"`` (a float, averaged over images) or ``"none"`` (a ``(B,)`` tensor).
    Returns:
        PSNR in dB (``inf`` for a perfect match).
    """
    from monai.metrics import PSNRMetric

    pred_b, target_b = _pair(pred, target)
    values = PSNRMetric(max_val=_check_range(data_range), reduction="none")(pred_b, target_b)
    return reduce(values, reduction)


def ssim(pred, target, data_range: float, win_size: int = 11, reduction: str = "mean") -> float | torch.Tensor:
    r"""Structural similarity (Wang et al. 2004), Gaussian window, per image (MONAI ``SSIMMetric``).

    Args:
        pred, target: as for :func:`psnr`; each side must be at least ``win_size`` pixels.
        data_range: :math:`R` (1.0 for [0, 1], 2.0 for [-1, 1]).
        win_size: Gaussian window size (sigma 1.5); 11 is the standard, use 7 for images under 16 px.
        reduction: ``"mean"`` or ``"none"``.
    Returns:
        SSIM, at most 1 (1 = identical).
    """
    from monai.metrics import SSIMMetric

    pred_b, target_b = _pair(pred, target)
    if min(pred_b.shape[2:]) < win_size:
        raise ValueError(
            f"images of shape {tuple(pred_b.shape[2:])} are smaller than the SSIM window "
            f"({win_size} px); pass a smaller win_size"
        )
    metric = SSIMMetric(
        spatial_dims=pred_b.ndim - 2, data_range=_check_range(data_range), win_size=win_size, reduction="none"
    )
    return reduce(metric(pred_b, target_b), reduction)


def nmse(pred, target, reduction: str = "mean") -> float | torch.Tensor:
    r"""Normalised mean squared error :math:`\lVert\hat x - x\rVert^2 / \lVert x\rVert^2`, per image.

    Independent of the intensity scale of ``target`` (0 = perfect, 1 = as bad as predicting zeros).
    Note it depends on where zero is: compute it on the convention where background is 0 ([0, 1]).
    """
    pred_b, target_b = _pair(pred, target)
    flat_pred, flat_target = pred_b.reshape(len(pred_b), -1).double(), target_b.reshape(len(target_b), -1).double()
    energy = (flat_target**2).sum(dim=1)
    if bool((energy == 0).any()):
        raise ValueError("target has an all-zero image, for which NMSE is undefined")
    return reduce(((flat_pred - flat_target) ** 2).sum(dim=1) / energy, reduction)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int = 4) -> torch.Tensor:
    r"""Blur each image ``(B, 1, H, W)`` with its own Gaussian ``sigma`` ``(B,)`` in pixels (0 = unchanged).

    A separable kernel :math:`k_i \propto \exp(-i^2 / 2\sigma^2)`, :math:`i = -r..r`, normalised to sum
    to 1, applied along rows then columns with the edges repeated (so a flat image stays flat).

    Args:
        images: ``(B, 1, H, W)`` float.
        sigma: ``(B,)`` standard deviation of each image's kernel in pixels; 0 leaves the image as it is.
        radius: :math:`r`, half the kernel width (4 suits sigma up to about 2 pixels).
    Returns:
        the blurred images, same shape and dtype.
    """
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernels = torch.exp(-0.5 * (offsets[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (B, K); sigma -> 0 gives a delta
    b, _, h, w = images.shape
    x = F.pad(images.reshape(1, b, h, w), (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernels[:, None, None, :], groups=b)
    x = F.conv2d(x, kernels[:, None, :, None], groups=b)
    return x.reshape(b, 1, h, w)


__all__ = ["psnr", "ssim", "nmse", "gaussian_blur"]
