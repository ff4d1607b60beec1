r"""The forward process, its posterior, and the three things a network can predict (ε, x₀, v).

Notation as in Ho et al. (2020), with 0-based code indices (``t = 0`` is the paper's step 1):

* one forward step: :math:`q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I)`
* closed form: :math:`q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I)`, i.e.
  :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon`
* posterior (eq. 6-7): :math:`q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)` with
  :math:`\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} x_0
  + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t`
  and :math:`\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t`
* velocity (Salimans & Ho 2022): :math:`v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0`

Every function takes ``t`` as an int or a (B,) integer tensor (one timestep per batch item), and
tensors ``(B, C, ...)``; coefficients broadcast over the non-batch axes.
"""

from __future__ import annotations

import torch

from .schedules import NoiseSchedule

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _coefficient(values: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` shaped to broadcast against ``like`` (B, C, ...): (B, 1, 1, ...) or a 0-d tensor."""
    values = values.to(device=like.device)
    if isinstance(t, torch.Tensor) and t.ndim > 0:
        t = t.to(device=like.device, dtype=torch.long).flatten()
        if t.shape[0] not in (1, like.shape[0]):
            raise ValueError(f"t has {t.shape[0]} timesteps but the batch has {like.shape[0]} items")
        out = values[t]
        return out.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)
    t = int(t)
    if not 0 <= t < values.shape[0]:
        raise ValueError(f"timestep t={t} is outside 0..{values.shape[0] - 1}")
    return values[t].to(like.dtype)


def _check_schedule(schedule) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(
            f"schedule must be a NoiseSchedule (NoiseSchedule.from_name('linear')), got {type(schedule).__name__}"
        )
    return schedule


# ---- forward process ----------------------------------------------------------------------------
def forward_step(schedule: NoiseSchedule, x_prev: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    r"""One forward step: :math:`x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\varepsilon`.

    Args:
        x_prev: :math:`x_{t-1}` (B, C, ...) (for ``t = 0`` this is the clean image).
        noise: :math:`\varepsilon \sim \mathcal N(0, I)`, shaped like ``x_prev``.
        t: 0-based timestep(s), int or (B,).
    """
    _check_schedule(schedule)
    beta_t = _coefficient(schedule.betas, t, x_prev)
    return (1 - beta_t).sqrt() * x_prev + beta_t.sqrt() * noise


def add_noise(schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    r"""Sample :math:`q(x_t\mid x_0)` in one go:
    :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon`.

    Args:
        schedule: the :class:`NoiseSchedule`.
        x0: clean images (B, C, H, W) (or any (B, ...)), float32, usually in [-1, 1].
        noise: :math:`\varepsilon \sim \mathcal N(0, I)`, the same shape as ``x0``.
        t: 0-based timestep(s): an int, or a (B,) integer tensor, one per image.

    Returns:
        :math:`x_t`, the same shape and dtype as ``x0``. Same numbers as diffusers' ``add_noise``.
    """
    _check_schedule(schedule)
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    sqrt_alpha_bar = _coefficient(schedule.alphas_cumprod, t, x0).sqrt()
    sqrt_one_minus_alpha_bar = (1 - _coefficient(schedule.alphas_cumprod, t, x0)).sqrt()
    return sqrt_alpha_bar * x0 + sqrt_one_minus_alpha_bar * noise


q_sample = add_noise  # the name used in the DDPM reference code


# ---- posterior q(x_{t-1} | x_t, x_0) --------------------------------------------------------------
def posterior_mean_coefficients(schedule: NoiseSchedule, t) -> tuple[float, float]:
    r"""The two weights of :math:`\tilde\mu_t` (Ho et al. eq. 7), as floats:
    ``posterior_mean_coef1`` :math:`=\frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}` (on x₀) and
    ``posterior_mean_coef2`` :math:`=\frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}` (on x_t)."""
    _check_schedule(schedule)
    t = int(t)
    alpha_bar_t = float(schedule.alphas_cumprod[t])
    alpha_bar_prev = float(schedule.alphas_cumprod_prev[t])
    beta_t, alpha_t = float(schedule.betas[t]), float(schedule.alphas[t])
    coef1 = alpha_bar_prev**0.5 * beta_t / (1 - alpha_bar_t)
    coef2 = alpha_t**0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    return coef1, coef2


def posterior_mean(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
    r""":math:`\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t}x_0
    + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}x_t`.

    Args:
        x0: clean (or predicted clean) images (B, C, ...).
        x_t: noisy images at step t, same shape.
        t: 0-based timestep(s), int or (B,).
    """
    _check_schedule(schedule)
    alpha_bar_t = _coefficient(schedule.alphas_cumprod, t, x_t)
    alpha_bar_prev = _coefficient(schedule.alphas_cumprod_prev, t, x_t)
    beta_t = _coefficient(schedule.betas, t, x_t)
    alpha_t = _coefficient(schedule.alphas, t, x_t)
    posterior_mean_coef1 = alpha_bar_prev.sqrt() * beta_t / (1 - alpha_bar_t)
    posterior_mean_coef2 = alpha_t.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    return posterior_mean_coef1 * x0 + posterior_mean_coef2 * x_t


def posterior_variance(schedule: NoiseSchedule, t=None) -> torch.Tensor:
    r""":math:`\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t` for all t (T,), or at ``t``.

    It is 0 at ``t = 0`` (the last reverse step adds no noise); never larger than :math:`\beta_t`.
    """
    _check_schedule(schedule)
    variance = (1 - schedule.alphas_cumprod_prev) / (1 - schedule.alphas_cumprod) * schedule.betas
    return variance if t is None else variance[t]


# ---- conversions between epsilon, x0 and v ---------------------------------------------------------
def predict_x0_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    r""":math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon)/\sqrt{\bar\alpha_t}`."""
    alpha_bar = _coefficient(schedule.alphas_cumprod, t, x_t)
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def predict_eps_from_x0(schedule: NoiseSchedule, x_t: torch.Tensor, x0: torch.Tensor, t) -> torch.Tensor:
    r""":math:`\hat\varepsilon = (x_t - \sqrt{\bar\alpha_t}\,\hat x_0)/\sqrt{1-\bar\alpha_t}`."""
    alpha_bar = _coefficient(schedule.alphas_cumprod, t, x_t)
    return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()


def get_velocity(schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    r"""The v-prediction target :math:`v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0`
    (as diffusers' ``get_velocity``)."""
    alpha_bar = _coefficient(schedule.alphas_cumprod, t, x0)
    return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0


def predict_x0_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
    r""":math:`\hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,\hat v`."""
    alpha_bar = _coefficient(schedule.alphas_cumprod, t, x_t)
    return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * v


def predict_eps_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
    r""":math:`\hat\varepsilon = \sqrt{\bar\alpha_t}\,\hat v + \sqrt{1-\bar\alpha_t}\,x_t`."""
    alpha_bar = _coefficient(schedule.alphas_cumprod, t, x_t)
    return alpha_bar.sqrt() * v + (1 - alpha_bar).sqrt() * x_t


def check_prediction_type(prediction_type: str) -> str:
    """Return ``prediction_type`` if valid, else raise a ValueError naming the valid ones."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {prediction_type!r}")
    return prediction_type


def model_output_to_x0_eps(
    schedule: NoiseSchedule, model_output: torch.Tensor, x_t: torch.Tensor, t, prediction_type: str = "epsilon"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a network's output (ε, x₀ or v, per ``prediction_type``) into the pair (x̂₀, ε̂)."""
    check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return predict_x0_from_eps(schedule, x_t, model_output, t), model_output
    if prediction_type == "sample":
        return model_output, predict_eps_from_x0(schedule, x_t, model_output, t)
    return predict_x0_from_v(schedule, x_t, model_output, t), predict_eps_from_v(schedule, x_t, model_output, t)


def x0_eps_to_model_output(
    schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """What a network with ``prediction_type`` should output when the truth is (x₀, ε): its training target."""
    check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "sample":
        return x0
    return get_velocity(schedule, x0, eps, t)
