"""meddiff_lab/diffusion/restoration.py: operators, data consistency and closed forms with an exact denoiser."""

from __future__ import annotations

import diffusers
import pytest
import torch

from meddiff_lab.diffusion import DDIMScheduler, GaussianDenoiser
from meddiff_lab.diffusion.restoration import (
    AveragePoolOperator,
    IdentityOperator,
    MaskOperator,
    ddnm_sample,
    matched_timestep,
    repaint,
    restoration_timesteps,
    sdedit,
)

MEAN, STD = 0.2, 0.3


def _setup(prediction_type="epsilon"):
    scheduler = DDIMScheduler(prediction_type=prediction_type)
    return GaussianDenoiser(MEAN, STD, scheduler, prediction_type=prediction_type), scheduler


def _images(n=3, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (MEAN + STD * torch.randn(n, 1, side, side, generator=g)).clamp(-1, 1)


def _hole(n=3, side=8):
    known = torch.ones(n, 1, side, side, dtype=torch.bool)
    known[:, :, 2:6, 3:7] = False
    return known


@pytest.mark.parametrize(
    "operator, shape",
    [
        (IdentityOperator(), (2, 1, 8, 8)),
        (AveragePoolOperator(2), (2, 1, 4, 4)),
        (MaskOperator(_hole(2)), (2, 1, 8, 8)),
    ],
)
def test_operator_pinv_is_a_right_inverse_on_measurements(operator, shape):
    y = operator(operator.pinv(torch.randn(shape)))  # a measurement: something A can produce
    assert torch.allclose(operator(operator.pinv(y)), y, atol=1e-6)
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(operator(operator.pinv(operator(x))), operator(x), atol=1e-6)  # A A⁺ A = A


def test_average_pool_pinv_is_the_moore_penrose_inverse():
    op = AveragePoolOperator(2)
    basis = torch.eye(64).reshape(64, 1, 8, 8)
    A = op(basis).reshape(64, 16).T  # (16, 64) matrix of the operator
    pinv = op.pinv(torch.eye(16).reshape(16, 1, 4, 4)).reshape(16, 64).T
    assert torch.allclose(pinv, torch.linalg.pinv(A), atol=1e-5)


def test_operator_errors_name_the_input():
    with pytest.raises(ValueError, match="factor"):
        AveragePoolOperator(0)
    with pytest.raises(ValueError, match="multiple of factor"):
        AveragePoolOperator(3)(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="known"):
        MaskOperator(torch.ones(8, 8))


def test_restoration_timesteps_descend_from_start_to_zero():
    steps = restoration_timesteps(1000, 10, start=200)
    assert steps[0] == 200 and steps[-1] == 0 and steps == sorted(steps, reverse=True)
    assert restoration_timesteps(1000, 5)[0] == 999
    assert restoration_timesteps(1000, 50, start=3) == [3, 2, 1, 0]
    with pytest.raises(ValueError, match="outside"):
        restoration_timesteps(1000, 5, start=1000)


def test_matched_timestep_is_the_first_level_at_least_the_noise():
    scheduler = DDIMScheduler()
    ab = scheduler.alphas_cumprod.double()
    for sigma in (0.02, 0.1, 0.5):
        t = matched_timestep(scheduler, sigma)
        assert (1 - ab[t]) / ab[t] >= sigma**2
        assert t == 0 or (1 - ab[t - 1]) / ab[t - 1] < sigma**2
    assert matched_timestep(scheduler, 0.0) == 0


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_one_sdedit_step_from_the_matched_level_is_the_wiener_filter(prediction_type):
    # x_t = sqrt(ab) y with ab sigma_y^2 = 1 - ab: the exact denoiser's x0 is the Gaussian posterior mean
    model, scheduler = _setup(prediction_type)
    t = 60
    ab = float(scheduler.alphas_cumprod[t])
    sigma_y = ((1 - ab) / ab) ** 0.5
    y = _images(seed=1) * 0.5
    out = sdedit(model, scheduler, y, t, 1, sigma_y=sigma_y)
    wiener = MEAN + STD**2 * (y - MEAN) / (STD**2 + sigma_y**2)
    assert torch.allclose(out, wiener, atol=1e-5)


def test_sdedit_from_timestep_zero_barely_changes_the_image():
    model, scheduler = _setup()
    y = _images()
    out = sdedit(model, scheduler, y, 0, 1, generator=torch.Generator().manual_seed(0))
    assert (out - y).abs().max() < 0.05  # the noise of t = 0 (std 0.01) and its removal


def test_ddnm_super_resolution_is_exactly_consistent():
    model, scheduler = _setup()
    op = AveragePoolOperator(2)
    y = op(_images(side=16))
    out = ddnm_sample(model, scheduler, y, op, 10, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 16, 16)
    assert torch.allclose(op(out), y, atol=1e-5)  # downsampling the output returns the input


def test_ddnm_inpainting_keeps_measured_pixels_exactly():
    model, scheduler = _setup()
    known = _hole()
    y = _images(seed=2)
    out = ddnm_sample(model, scheduler, y, MaskOperator(known), 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[known], y[known])
    assert not torch.allclose(out[~known], y[~known])  # the hole is filled by the model


def test_ddnm_samples_differ_by_generator_and_repeat_with_the_same_one():
    model, scheduler = _setup()
    op = AveragePoolOperator(2)
    y = op(_images(side=16))
    run = lambda seed: ddnm_sample(model, scheduler, y, op, 8, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(0), run(0))
    assert not torch.allclose(run(0), run(1))


def test_ddnm_plus_with_noise_free_identity_returns_the_measurement():
    model, scheduler = _setup()
    y = _images(seed=3)
    out = ddnm_sample(model, scheduler, y, IdentityOperator(), 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, y, atol=1e-6)


def test_ddnm_plus_denoising_lies_between_the_input_and_the_wiener_filter():
    # Gaussian prior, white noise: DDNM+ removes part of the noise, the Wiener filter is the best possible
    model, scheduler = _setup()
    g = torch.Generator().manual_seed(4)
    truth = MEAN + STD * torch.randn(64, 1, 8, 8, generator=g)
    sigma_y = 0.3
    y = truth + sigma_y * torch.randn(truth.shape, generator=g)
    start = min(999, 2 * matched_timestep(scheduler, sigma_y))
    out = ddnm_sample(model, scheduler, y, IdentityOperator(), 20, sigma_y=sigma_y, start_timestep=start, generator=g)
    wiener = MEAN + STD**2 * (y - MEAN) / (STD**2 + sigma_y**2)
    mse = lambda a: float(((a - truth) ** 2).mean())  # noqa: E731
    assert mse(wiener) < mse(out) < 0.9 * mse(y)


def test_ancestral_sdedit_from_the_matched_level_samples_near_the_gaussian_posterior():
    # x_t* = sqrt(ab) y is a draw of q(x_t* | x_0): reverse steps from it sample p(x_0 | y); with a Gaussian
    # prior the posterior is N(Wiener, s^2 sigma^2 / (s^2 + sigma^2)) per pixel
    model, scheduler = _setup()
    sigma_y = 0.3
    y = torch.full((1, 1, 4, 4), 0.6).expand(512, 1, 4, 4).contiguous()
    t = matched_timestep(scheduler, sigma_y)
    out = sdedit(model, scheduler, y, t, 50, sigma_y=sigma_y, eta=1.0, generator=torch.Generator().manual_seed(0))
    post_mean = MEAN + STD**2 * (0.6 - MEAN) / (STD**2 + sigma_y**2)
    post_std = (STD**2 * sigma_y**2 / (STD**2 + sigma_y**2)) ** 0.5
    assert float(out.mean()) == pytest.approx(post_mean, abs=0.02)
    assert 0.6 * post_std < float(out.std()) < 1.1 * post_std


def test_repaint_keeps_known_pixels_and_works_with_diffusers_schedulers():
    for scheduler in (DDIMScheduler(), diffusers.DDIMScheduler()):
        model = GaussianDenoiser(MEAN, STD, scheduler)
        known = _hole()
        y = _images(seed=5)
        out = repaint(model, scheduler, y, known, 10, resample=2, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[known], y[known])
        hole = out[~known]
        assert abs(float(hole.mean()) - MEAN) < 0.15  # the hole is drawn from the prior


def test_measurement_errors_are_clear():
    model, scheduler = _setup()
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        sdedit(model, scheduler, torch.zeros(8, 8), 10, 2)
    with pytest.raises(ValueError, match="NaN"):
        ddnm_sample(model, scheduler, torch.full((1, 1, 4, 4), float("nan")), IdentityOperator(), 2)
    with pytest.raises(ValueError, match="resample"):
        repaint(model, scheduler, torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool), 2, resample=0)
