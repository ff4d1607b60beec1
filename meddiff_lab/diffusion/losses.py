r"""Training losses for diffusion models: ε/x₀/v targets, min-SNR weighting, a hybrid SSIM loss.

The standard objective (Ho et al. 2020, "L_simple") draws :math:`t`, :math:`\varepsilon`, forms
:math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon` and regresses the network's
output onto the target of its ``prediction_type``:

============== ==================================================== ==================================
prediction     target                                               equivalent loss on x₀ weighted by
============== ==================================================== ==================================
epsilon        :math:`\varepsilon`                                  SNR(t)
sample         :math:`x_0`                                          1
v_prediction   :math:`v=\sqrt{\bar\alpha_t}\varepsilon-\sqrt{1-\bar\alpha_t}x_0` SNR(t) + 1
============== ==================================================== ==================================

**Min-SNR-γ weighting** (Hang et al. 2023) caps the implied x₀ weight at γ so that the many easy,
low-noise timesteps do not dominate: the per-sample weight is :math:`\min(\mathrm{SNR},\gamma)/\mathrm{SNR}`
for ε, :math:`\min(\mathrm{SNR},\gamma)` for x₀ and :math:`\min(\mathrm{SNR},\gamma)/(\mathrm{SNR}+1)` for v.

**Hybrid loss** ``(1 - w)·MSE + w·(1 − SSIM(x̂₀, x₀))`` with ``w = 0.3`` by default: the MSE on the
prediction target plus MONAI's SSIM between the predicted clean image (clipped to [-1, 1]) and the
real one, which rewards structure (edges, texture) that a plain MSE averages away.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .process import check_prediction_type, model_output_to_x0_eps, x0_eps_to_model_output
from .schedules import NoiseSchedule

WEIGHTINGS = (None, "min_snr")


def diffusion_target(
    schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, timesteps, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """The regression target for ``prediction_type``: ε, x₀ or v. Shaped like ``x0``."""
    return x0_eps_to_model_output(schedule, x0, noise, timesteps, prediction_type)


def min_snr_weights(
    schedule: NoiseSchedule, timesteps: torch.Tensor, gamma: float = 5.0, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """Per-sample min-SNR-γ loss weights, (B,) float32 (see the module docstring)."""
    check_prediction_type(prediction_type)
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma!r}")
    t = torch.as_tensor(timesteps).long().flatten()
    snr = schedule.snr.to(t.device)[t]
    clipped = torch.clamp(snr, max=gamma)
    if prediction_type == "epsilon":
        return clipped / snr
    if prediction_type == "sample":
        return clipped
    return clipped / (snr + 1)


def _default_win_size(spatial: tuple[int, ...]) -> int:
    """MONAI's SSIM needs a window no larger than the image: 11 when it fits, else the largest odd size."""
    smallest = min(spatial)
    win = min(11, smallest if smallest % 2 == 1 else smallest - 1)
    return max(win, 1)


def ssim_loss(
    pred: torch.Tensor, target: torch.Tensor, data_range: float = 2.0, win_size: int | None = None
) -> torch.Tensor:
    """Per-image ``1 - SSIM(pred, target)`` with MONAI's SSIM (Gaussian window, σ = 1.5), (B,).

    Args:
        pred, target: (B, C, H, W) or (B, C, D, H, W) images in [-1, 1] (``data_range`` = 2).
        win_size: the SSIM window (default: 11, or smaller for tiny images).
    """
    from monai.losses import SSIMLoss

    spatial = tuple(pred.shape[2:])
    if len(spatial) not in (2, 3):
        raise ValueError(f"ssim_loss needs (B, C, H, W) or (B, C, D, H, W) images, got shape {tuple(pred.shape)}")
    win = win_size or _default_win_size(spatial)
    loss_fn = SSIMLoss(spatial_dims=len(spatial), data_range=data_range, win_size=win, reduction="none")
    return loss_fn(pred, target).reshape(pred.shape[0], -1).mean(dim=1)


def diffusion_loss(
    model_output: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    prediction_type: str = "epsilon",
    weighting: str | None = None,
    snr_gamma: float = 5.0,
    ssim_weight: float = 0.0,
    ssim_win_size: int | None = None,
    x_t: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """The diffusion training loss for one batch.

    Args:
        model_output: the network's output at (x_t, timesteps), (B, C, ...).
        x0: the clean images (B, C, ...) in [-1, 1].
        noise: the ε used to make x_t, same shape.
        timesteps: (B,) int timesteps.
        schedule: the :class:`NoiseSchedule` used to make x_t.
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.
        weighting: ``None`` (plain MSE, "L_simple") or ``"min_snr"`` (min-SNR-γ with ``snr_gamma``).
        ssim_weight: ``w`` of the hybrid ``(1-w)·MSE + w·(1-SSIM(x̂₀, x₀))``; 0 (default) is plain MSE,
            0.3 gives the course's hybrid 0.7·MSE + 0.3·(1−SSIM).
        x_t: the noisy input (recomputed from x0, noise and t when not given; needed only for SSIM).
        reduction: ``"mean"`` (a scalar) or ``"none"`` (per-sample losses, (B,)).

    Returns:
        The loss (a scalar, or (B,) with ``reduction="none"``).
    """
    check_prediction_type(prediction_type)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if not 0.0 <= ssim_weight <= 1.0:
        raise ValueError(f"ssim_weight must be in [0, 1], got {ssim_weight!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if model_output.shape != x0.shape:
        raise ValueError(f"model_output has shape {tuple(model_output.shape)} but x0 has {tuple(x0.shape)}")
    timesteps = torch.as_tensor(timesteps, device=x0.device).long().flatten()
    target = diffusion_target(schedule, x0, noise, timesteps, prediction_type)
    per_sample = F.mse_loss(model_output.float(), target.float(), reduction="none").flatten(1).mean(dim=1)
    if weighting == "min_snr":
        per_sample = per_sample * min_snr_weights(schedule, timesteps, snr_gamma, prediction_type).to(per_sample)
    if ssim_weight > 0:
        from .process import add_noise

        x_t = add_noise(schedule, x0, noise, timesteps) if x_t is None else x_t
        pred_x0, _ = model_output_to_x0_eps(schedule, model_output.float(), x_t.float(), timesteps, prediction_type)
        structural = ssim_loss(pred_x0.clamp(-1, 1), x0.float(), data_range=2.0, win_size=ssim_win_size)
        per_sample = (1 - ssim_weight) * per_sample + ssim_weight * structural
    return per_sample.mean() if reduction == "mean" else per_sample


def hybrid_loss(
    model_output: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    prediction_type: str = "epsilon",
    mse_weight: float = 0.7,
    ssim_weight: float = 0.3,
    **kwargs,
) -> torch.Tensor:
    """``mse_weight·MSE + ssim_weight·(1 − SSIM(x̂₀, x₀))``, default 0.7/0.3 (weights must sum to 1)."""
    if abs(mse_weight + ssim_weight - 1.0) > 1e-6:
        raise ValueError(f"mse_weight + ssim_weight must be 1, got {mse_weight} + {ssim_weight}")
    return diffusion_loss(
        model_output, x0, noise, timesteps, schedule, prediction_type=prediction_type, ssim_weight=ssim_weight, **kwargs
    )
