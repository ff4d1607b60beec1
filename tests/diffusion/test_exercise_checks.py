"""The 02/03 exercise checks in meddiff_lab/exercises.py: right answers pass, wrong ones fail with a reason."""

from __future__ import annotations

import math

import pytest
import torch

from meddiff_lab import exercises
from meddiff_lab.diffusion import NoiseSchedule, add_noise, posterior_mean


def _forward(x0, noise, alphas_cumprod, t):
    return add_noise(NoiseSchedule.from_alphas_cumprod(alphas_cumprod), x0, noise, t)


def _forward_wrong(x0, noise, alphas_cumprod, t):  # forgot the square roots
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a * x0 + (1 - a) * noise


def _cosine(num_train_timesteps):
    T = num_train_timesteps
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return torch.tensor([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)])


def _posterior(x0, x_t, t, betas):  # as the notebook's solution: in float64, from the float64 betas
    ab = torch.cumprod(1 - betas, 0)
    prev = ab[t - 1] if t > 0 else torch.tensor(1.0, dtype=betas.dtype)
    return (prev.sqrt() * betas[t] / (1 - ab[t])) * x0 + ((1 - betas[t]).sqrt() * (1 - prev) / (1 - ab[t])) * x_t


def test_package_posterior_mean_passes_the_check_away_from_t0():
    """The package works in float32: it agrees with the float64 reference wherever 1 - ᾱ is not tiny."""
    g = torch.Generator().manual_seed(0)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    x0, x_t = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1, torch.randn(2, 1, 8, 8, generator=g)
    for t in (50, 300, 999):
        ours = posterior_mean(NoiseSchedule.from_betas(betas), x0, x_t, t)
        assert (
            exercises.compare(
                "mean", ours, exercises._reference_posterior_mean(x0, x_t, t, betas), rtol=1e-4, atol=1e-5
            )
            is None
        )


def _posterior_wrong(x0, x_t, t, betas):  # a classic slip: alpha_bar_t where alpha_bar_{t-1} belongs
    ab = torch.cumprod(1 - betas, 0)
    return (ab[t].sqrt() * betas[t] / (1 - ab[t])) * x0 + ((1 - betas[t]).sqrt() * (1 - ab[t]) / (1 - ab[t])) * x_t


def _ddim(x_t, eps, alpha_bar_t, alpha_bar_prev):
    x0 = (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5
    return alpha_bar_prev**0.5 * x0 + (1 - alpha_bar_prev) ** 0.5 * eps


def _todo(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize(
    "check, right, wrong",
    [
        (exercises.check_forward_sample, _forward, _forward_wrong),
        (exercises.check_alphas_cumprod, lambda betas: torch.cumprod(1 - betas, 0), lambda betas: 1 - betas.cumsum(0)),
        (
            exercises.check_cosine_betas,
            _cosine,
            lambda num_train_timesteps: torch.linspace(1e-4, 0.02, num_train_timesteps),
        ),
        (exercises.check_posterior_mean, _posterior, _posterior_wrong),
        (
            exercises.check_predict_x0,
            lambda x_t, eps, alpha_bar_t: (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5,
            lambda x_t, eps, alpha_bar_t: x_t - (1 - alpha_bar_t) ** 0.5 * eps,
        ),
        (exercises.check_ddim_step, _ddim, lambda x_t, eps, alpha_bar_t, alpha_bar_prev: x_t - eps * 0.01),
    ],
)
def test_checks_pass_right_fail_wrong_and_report_todo(check, right, wrong):
    assert check(right)
    result = check(wrong)
    assert not result and result.attempted and "differ" in result.message
    todo = check(_todo)
    assert not todo and not todo.attempted
