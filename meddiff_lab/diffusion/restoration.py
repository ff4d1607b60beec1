r"""Restoring a measured image with an unconditional diffusion model: SDEdit, DDNM(+) and RePaint.

A *measurement* is :math:`y = A x_0 + \sigma_y n` with a known linear operator :math:`A` and
:math:`n \sim \mathcal N(0, I)`. The three tasks of notebook 09 are three operators:

=================  ==============================  ======================================
task               :math:`A`                       :math:`A^\dagger` (pseudo-inverse)
=================  ==============================  ======================================
denoising          identity (:math:`\sigma_y>0`)    identity
super-resolution   ``f×f`` average pooling          nearest-neighbour upsampling
inpainting         keep the known pixels (mask)     the same mask
=================  ==============================  ======================================

Every operator satisfies :math:`A A^\dagger A = A`, so :math:`A(A^\dagger y) = y` for any
measurement ``y``.

The samplers, with the paper's names
------------------------------------
* **SDEdit** (Meng et al., ICLR 2022): noise the measurement to a level :math:`t^*`,
  :math:`x_{t^*} = \sqrt{\bar\alpha_{t^*}}\,y + \sqrt{1-\bar\alpha_{t^*}-\bar\alpha_{t^*}\sigma_y^2}\;\varepsilon`,
  and run the reverse process from there. The top-up term accounts for the noise ``y`` already
  carries: at the *matched* level :math:`\bar\alpha\,\sigma_y^2 = 1-\bar\alpha` nothing is added, and
  :math:`x_{t^*}` is distributed exactly like :math:`q(x_{t^*}\mid x_0)` (when the noise is white).
  With :math:`\sigma_y = 0` it is plain SDEdit (also the pseudo-healthy reconstruction of anomaly
  detection, AnoDDPM, Wyatt et al. 2022).
* **DDNM** (Wang, Yu & Zhang, "Zero-shot image restoration using denoising diffusion null-space
  model", ICLR 2023), eq. 13: at every step replace the range-space part of the model's clean estimate
  by the measurement, :math:`\hat x_{0|t} = A^\dagger y + (I - A^\dagger A)\,x_{0|t}`, then take the
  ancestral DDPM step with :math:`\hat x_{0|t}`. For a noisy measurement DDNM+ (their eq. 17-19)
  corrects only by :math:`\lambda_t`: :math:`\hat x_{0|t} = x_{0|t} - \lambda_t A^\dagger(A x_{0|t} - y)`
  with :math:`\lambda_t = 1` when :math:`\sigma_t \ge a_t\sigma_y` and :math:`\sigma_t/(a_t\sigma_y)`
  otherwise, and lowers the step's noise to :math:`\sigma_t^2 - (a_t\lambda_t\sigma_y)^2` so the noise
  ``y`` brings in is not added twice. Here :math:`a_t = \sqrt{\bar\alpha_{t'}}\beta_t/(1-\bar\alpha_t)` is
  the posterior mean's coefficient of :math:`x_0` and :math:`\sigma_t^2 = \tilde\beta_t` the posterior
  variance (:mod:`meddiff_lab.diffusion.process`). Each run is one (approximate) posterior sample:
  runs with different generators give the spread. DDNM+ is an approximation for noisy measurements:
  with a Gaussian prior its output lies between the measurement and the exact posterior mean (tested).
* **RePaint** (Lugmayr et al., CVPR 2022), eq. 8-9: at every step the known pixels come from the
  forward process applied to ``y`` and the unknown pixels from the model's reverse step,
  :math:`x_{t'} = m \odot q(x_{t'}\mid y) + (1-m) \odot p_\theta(x_{t'}\mid x_t)`, and each step is
  *resampled* ``resample`` times (go back to :math:`t` with the forward process, step again) so the
  two parts agree.

Index convention: timesteps are 0-based (``t = 0`` is the paper's step 1); a step goes from ``t`` to the
next timestep ``t'`` of the list, and from the last one to "clean" (:math:`\bar\alpha_{t'} = 1`). The
samplers take any scheduler with ``alphas_cumprod`` and ``config.prediction_type`` (ours, diffusers').
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .process import model_output_to_x0_eps
from .sampling import _call_model, _model_device
from .schedules import NoiseSchedule


# ------------------------------------------------------------------------------------------ operators
class IdentityOperator:
    r""":math:`A = I` (denoising). ``A(x) = x``, ``pinv(y) = y``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y


class AveragePoolOperator:
    r""":math:`A` = ``factor × factor`` average pooling (super-resolution by ``factor``).

    ``A(x)``: (B, C, H, W) → (B, C, H/f, W/f). ``pinv(y)``: nearest-neighbour upsampling, the exact
    Moore-Penrose pseudo-inverse of average pooling (:math:`A A^\top = I/f^2`, so
    :math:`A^\dagger = f^2 A^\top`).
    """

    def __init__(self, factor: int) -> None:
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be a positive integer (2 for 32 -> 64 px), got {factor!r}")
        self.factor = factor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"image side {tuple(x.shape[-2:])} is not a multiple of factor {self.factor}")
        return F.avg_pool2d(x, self.factor)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y.repeat_interleave(self.factor, -2).repeat_interleave(self.factor, -1)


class MaskOperator:
    r""":math:`A` = keep the known pixels (inpainting). ``known``: (B or 1, 1, H, W) bool, True where measured.

    ``A(x) = known ⊙ x`` (the image with the hole set to 0), ``pinv(y) = known ⊙ y``.
    """

    def __init__(self, known: torch.Tensor) -> None:
        known = torch.as_tensor(known)
        if known.ndim != 4:
            raise ValueError(f"known must be a (B, 1, H, W) mask (True where measured), got shape {tuple(known.shape)}")
        self.known = known.bool()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.known.to(x.device, x.dtype)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.known.to(y.device, y.dtype)


# ---------------------------------------------------------------------------------------- helpers
def restoration_timesteps(num_train_timesteps: int, num_inference_steps: int, start: int | None = None) -> list[int]:
    """Descending 0-based timesteps from ``start`` (default T-1, pure noise) to 0, evenly spread.

    Raises:
        ValueError: for ``start`` outside 0..T-1 or fewer than one step.
    """
    T = int(num_train_timesteps)
    start = T - 1 if start is None else int(start)
    if not 0 <= start < T:
        raise ValueError(f"start timestep {start} is outside 0..{T - 1}")
    if int(num_inference_steps) < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps!r}")
    steps = np.unique(np.linspace(start, 0, int(num_inference_steps)).round().astype(int))[::-1]
    return [int(t) for t in steps]


def matched_timestep(scheduler, sigma_y: float) -> int:
    r"""The timestep whose noise level matches noise of std ``sigma_y`` on the clean image.

    The smallest ``t`` with :math:`(1-\bar\alpha_t)/\bar\alpha_t \ge \sigma_y^2`: at that level
    :math:`\sqrt{\bar\alpha_t}\,y` already carries (at least) the noise a clean image would get.
    ``sigma_y`` is in the model's units ([-1, 1] images: twice the std measured on [0, 1] images).
    """
    if not sigma_y >= 0:
        raise ValueError(f"sigma_y must be >= 0, got {sigma_y!r}")
    ab = _alphas_cumprod(scheduler)
    ratio = (1 - ab) / ab
    above = torch.nonzero(ratio >= float(sigma_y) ** 2)
    return int(above[0]) if len(above) else len(ab) - 1


def _alphas_cumprod(scheduler) -> torch.Tensor:
    ab = getattr(scheduler, "alphas_cumprod", None)
    if ab is None:
        raise TypeError(f"the scheduler {type(scheduler).__name__} has no alphas_cumprod; pass ours or diffusers'")
    return torch.as_tensor(ab, dtype=torch.float64).cpu()


def _schedule_of(scheduler) -> NoiseSchedule:
    schedule = getattr(scheduler, "schedule", None)
    if isinstance(schedule, NoiseSchedule):
        return schedule
    return NoiseSchedule.from_betas(torch.as_tensor(scheduler.betas, dtype=torch.float64))


def _prediction_type(scheduler) -> str:
    config = getattr(scheduler, "config", None)
    return getattr(config, "prediction_type", None) or "epsilon"


def _randn(shape, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


class _Denoiser:
    """The model turned into (x̂₀, ε̂) at timestep ``t``, x̂₀ clipped to [-1, 1] as the schedulers do."""

    def __init__(self, model, scheduler, clip: bool = True) -> None:
        self.model, self.schedule = model, _schedule_of(scheduler)
        self.prediction_type = _prediction_type(scheduler)
        self.alphas_cumprod = _alphas_cumprod(scheduler)
        self.clip = clip

    def __call__(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        timesteps = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
        with torch.no_grad():
            out = _call_model(self.model, x, timesteps)
        x0, _ = model_output_to_x0_eps(self.schedule, out.to(x.dtype), x, int(t), self.prediction_type)
        if self.clip:
            x0 = x0.clamp(-1, 1)
        ab = float(self.alphas_cumprod[t])
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)  # ε̂ consistent with the clipped x̂₀ (as DDIM)
        return x0, eps

    def alpha_bar(self, t: int) -> float:
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])


def _posterior_terms(ab_t: float, ab_prev: float) -> tuple[float, float, float]:
    """(a_t, b_t, σ_t²): :math:`\\tilde\\mu = a_t x_0 + b_t x_t` and :math:`\\tilde\\beta_t` between t and t'."""
    alpha = ab_t / ab_prev
    beta = 1 - alpha
    a = math.sqrt(ab_prev) * beta / (1 - ab_t)
    b = math.sqrt(alpha) * (1 - ab_prev) / (1 - ab_t)
    var = (1 - ab_prev) / (1 - ab_t) * beta
    return a, b, var


def _progress(iterable, progress: bool, desc: str):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


def _check_measurement(y: torch.Tensor, name: str = "y") -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.ndim != 4:
        raise ValueError(
            f"{name} must be a (B, C, H, W) tensor in the model's range [-1, 1], got "
            f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}"
        )
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return y.float()


# ---------------------------------------------------------------------------------------- samplers
def sdedit(
    model,
    scheduler,
    y: torch.Tensor,
    start_timestep: int,
    num_inference_steps: int,
    *,
    sigma_y: float = 0.0,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""SDEdit (Meng et al. 2022): noise ``y`` to ``start_timestep``, then DDIM back to a clean image.

    Args:
        model: ``model(x, t)`` → the scheduler's prediction type.
        scheduler: gives ``alphas_cumprod`` and ``config.prediction_type``.
        y: (B, C, H, W) float32 in [-1, 1], the image to edit (a noisy or an anomalous one).
        start_timestep: :math:`t^*` (0-based). Larger: more of ``y`` is forgotten.
        num_inference_steps: DDIM steps from :math:`t^*` to 0.
        sigma_y: noise std ``y`` already carries (model units); the added noise is topped up to the
            level of :math:`t^*` only (see the module docstring). Use :func:`matched_timestep` to pick
            :math:`t^*` so that nothing is added.
        eta: DDIM's η (0: deterministic after the noising; 1: ancestral).
        generator: for the noise.

    Returns:
        (B, C, H, W) float32, the edited image (clipped to [-1, 1] by the model's x̂₀ clipping).
    """
    y = _check_measurement(y)
    model_device = _model_device(model)
    y = y.to(model_device)
    denoise = _Denoiser(model, scheduler)
    ab = denoise.alpha_bar(int(start_timestep))
    top_up = max(0.0, 1 - ab - ab * float(sigma_y) ** 2)
    x = math.sqrt(ab) * y + math.sqrt(top_up) * _randn(y.shape, generator, y)
    timesteps = restoration_timesteps(len(denoise.alphas_cumprod), num_inference_steps, start_timestep)
    for i, t in enumerate(_progress(timesteps, progress, "SDEdit")):
        x0, eps = denoise(x, t)
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        ab_t, ab_prev = denoise.alpha_bar(t), denoise.alpha_bar(t_prev)
        _, _, var = _posterior_terms(ab_t, ab_prev)
        sigma = float(eta) * math.sqrt(var)
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - sigma**2)) * eps
        if sigma > 0:
            x = x + sigma * _randn(x.shape, generator, x)
    return x


def ddnm_sample(
    model,
    scheduler,
    y: torch.Tensor,
    operator,
    num_inference_steps: int,
    *,
    sigma_y: float = 0.0,
    start_timestep: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""One posterior sample by DDNM (``sigma_y = 0``) or DDNM+ (``sigma_y > 0``), Wang et al. 2023.

    Args:
        model, scheduler: as for :func:`sdedit`.
        y: the measurement :math:`A x_0 + \sigma_y n`, float32 in [-1, 1], shaped as ``operator`` outputs
            ((B, 1, H, W) for denoising and inpainting, (B, 1, H/f, W/f) for super-resolution).
        operator: :class:`IdentityOperator`, :class:`AveragePoolOperator`, :class:`MaskOperator` or any
            object with ``__call__`` (A) and ``pinv`` (A⁺).
        num_inference_steps: ancestral steps from ``start_timestep`` to 0.
        sigma_y: measurement noise std in model units (0: noise-free measurement).
        start_timestep: default T-1 (start from pure noise). A smaller start begins from
            :math:`\sqrt{\bar\alpha}A^\dagger y` plus noise (useful for denoising, where every step
            above the matched level just returns ``y``).
        generator: for the noise (different generators: different posterior samples).

    Returns:
        (B, C, H, W) float32. With ``sigma_y = 0`` the result is exactly consistent:
        ``operator(result) == y`` up to float rounding (the last step's clean estimate is projected).
    """
    y = _check_measurement(y).to(_model_device(model))
    if not sigma_y >= 0:
        raise ValueError(f"sigma_y must be >= 0, got {sigma_y!r}")
    denoise = _Denoiser(model, scheduler)
    timesteps = restoration_timesteps(len(denoise.alphas_cumprod), num_inference_steps, start_timestep)
    pinv_y = operator.pinv(y)
    ab0 = denoise.alpha_bar(timesteps[0])
    x = math.sqrt(ab0) * pinv_y + math.sqrt(1 - ab0) * _randn(pinv_y.shape, generator, pinv_y)
    for i, t in enumerate(_progress(timesteps, progress, "DDNM")):
        x0, _ = denoise(x, t)
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        a, b, var = _posterior_terms(denoise.alpha_bar(t), denoise.alpha_bar(t_prev))
        sigma_t = math.sqrt(var)
        if sigma_y > 0:
            lam = 1.0 if sigma_t >= a * sigma_y else sigma_t / (a * sigma_y)
        else:
            lam = 1.0
        x0_hat = x0 - lam * operator.pinv(operator(x0) - y)
        noise_var = max(0.0, var - (a * lam * float(sigma_y)) ** 2)
        x = a * x0_hat + b * x
        if t_prev >= 0 and noise_var > 0:
            x = x + math.sqrt(noise_var) * _randn(x.shape, generator, x)
    return x


def repaint(
    model,
    scheduler,
    y: torch.Tensor,
    known: torch.Tensor,
    num_inference_steps: int,
    *,
    resample: int = 2,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""RePaint inpainting (Lugmayr et al. 2022): known pixels from ``y`` noised, the hole from the model.

    Args:
        model, scheduler: as for :func:`sdedit`.
        y: (B, 1, H, W) float32 in [-1, 1], the image (values inside the hole are ignored).
        known: (B or 1, 1, H, W) bool, True where ``y`` is measured.
        num_inference_steps: ancestral steps from T-1 to 0.
        resample: U of the paper: each step is taken ``resample`` times, going back to ``t`` with the
            forward process in between (1: no resampling).
        generator: for the noise.

    Returns:
        (B, 1, H, W) float32; known pixels equal ``y`` exactly.
    """
    y = _check_measurement(y).to(_model_device(model))
    if int(resample) < 1:
        raise ValueError(f"resample must be at least 1, got {resample!r}")
    m = torch.as_tensor(known).bool().to(y.device).to(y.dtype)
    if m.ndim != 4:
        raise ValueError(f"known must be a (B, 1, H, W) mask, got shape {tuple(m.shape)}")
    denoise = _Denoiser(model, scheduler)
    timesteps = restoration_timesteps(len(denoise.alphas_cumprod), num_inference_steps)
    x = _randn(y.shape, generator, y)
    for i, t in enumerate(_progress(timesteps, progress, "RePaint")):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        ab_t, ab_prev = denoise.alpha_bar(t), denoise.alpha_bar(t_prev)
        a, b, var = _posterior_terms(ab_t, ab_prev)
        for u in range(int(resample)):
            x0, _ = denoise(x, t)
            unknown = a * x0 + b * x
            if t_prev >= 0:
                unknown = unknown + math.sqrt(var) * _randn(x.shape, generator, x)
            known_part = (
                math.sqrt(ab_prev) * y + math.sqrt(1 - ab_prev) * _randn(y.shape, generator, y) if t_prev >= 0 else y
            )
            x_prev = m * known_part + (1 - m) * unknown
            if u + 1 < int(resample) and t_prev >= 0:  # back to t: q(x_t | x_t') with ᾱ_t/ᾱ_t'
                alpha = ab_t / ab_prev
                x = math.sqrt(alpha) * x_prev + math.sqrt(1 - alpha) * _randn(x.shape, generator, x)
            else:
                break
        x = x_prev
    return x


#: the samplers of this module by name (for loops in the notebook)
SAMPLERS: dict[str, Callable] = {"sdedit": sdedit, "ddnm": ddnm_sample, "repaint": repaint}

__all__ = [
    "IdentityOperator",
    "AveragePoolOperator",
    "MaskOperator",
    "restoration_timesteps",
    "matched_timestep",
    "sdedit",
    "ddnm_sample",
    "repaint",
    "SAMPLERS",
]
