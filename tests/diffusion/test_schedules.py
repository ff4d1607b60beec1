"""meddiff_lab/diffusion/schedules.py: the four schedules, and the same numbers as diffusers and MONAI."""

from __future__ import annotations

import math

import pytest
import torch

from meddiff_lab.diffusion import NoiseSchedule

DIFFUSERS_NAMES = {
    "linear": "linear",
    "scaled_linear": "scaled_linear",
    "cosine": "squaredcos_cap_v2",
    "sigmoid": "sigmoid",
}
MONAI_NAMES = {
    "linear": "linear_beta",
    "scaled_linear": "scaled_linear_beta",
    "cosine": "cosine",
    "sigmoid": "sigmoid_beta",
}


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine", "sigmoid"])
def test_alphas_cumprod_equal_diffusers(name):
    from diffusers import DDPMScheduler

    ours = NoiseSchedule.from_name(name)
    theirs = DDPMScheduler(beta_schedule=DIFFUSERS_NAMES[name])
    assert (ours.alphas_cumprod - theirs.alphas_cumprod).abs().max() <= 1e-6
    assert (ours.betas - theirs.betas).abs().max() <= 1e-6


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine", "sigmoid"])
def test_alphas_cumprod_equal_monai(name):
    from monai.networks.schedulers import DDPMScheduler

    ours = NoiseSchedule.from_name(name)
    theirs = DDPMScheduler(schedule=MONAI_NAMES[name])
    assert (ours.alphas_cumprod - theirs.alphas_cumprod).abs().max() <= 1e-6


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine", "sigmoid"])
def test_derived_quantities_are_consistent(name):
    s = NoiseSchedule.from_name(name, num_train_timesteps=200)
    for tensor in (s.betas, s.alphas, s.alphas_cumprod, s.snr):
        assert tensor.dtype == torch.float32 and tensor.shape == (200,)
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(s.alphas.double(), 0).float(), rtol=1e-5)
    ab = s.alphas_cumprod.double()  # snr is computed in float64: 1 - ab loses digits in float32 near t = 0
    assert torch.allclose(s.snr.double(), ab / (1 - ab), rtol=1e-3)
    assert torch.all(s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]), "signal must decay monotonically"
    assert s.num_train_timesteps == 200 and s.alphas_cumprod_prev[0] == 1.0


def test_linear_endpoints_and_cosine_formula():
    lin = NoiseSchedule.from_name("linear", 1000, 1e-4, 0.02)
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    cos = NoiseSchedule.from_name("cosine", 1000)
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert cos.alphas_cumprod[499].item() == pytest.approx(f(0.5) / f(0.0), rel=1e-5)
    assert cos.betas.max().item() <= 0.999 + 1e-7


def test_shift_snr_multiplies_snr():
    s = NoiseSchedule.from_name("cosine", 100)
    shifted = s.shift_snr(0.25)
    assert torch.allclose(shifted.snr, 0.25 * s.snr, rtol=1e-4)
    assert torch.all(shifted.alphas_cumprod < s.alphas_cumprod)


def test_from_betas_roundtrip_and_timestep_lookup():
    s = NoiseSchedule.from_name("linear", 1000)
    again = NoiseSchedule.from_betas(s.betas)
    assert torch.allclose(again.alphas_cumprod, s.alphas_cumprod)
    t = s.timestep_where_snr_below(1.0)
    assert 0 < t < 1000 and s.snr[t] < 1.0 <= s.snr[t - 1]
    assert NoiseSchedule.from_name("linear", 50).timestep_where_snr_below(1e-6) == 50  # never below


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "quadratic"}, "unknown noise schedule"),
        ({"name": "linear", "num_train_timesteps": 0}, "num_train_timesteps"),
        ({"name": "linear", "beta_start": 0.1, "beta_end": 0.01}, "beta_start"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NoiseSchedule.from_name(**kwargs)
