"""meddiff_lab/diffusion/process.py: forward process, posterior, and ε/x₀/v conversions."""

from __future__ import annotations

import pytest
import torch

from meddiff_lab.diffusion import NoiseSchedule, add_noise, process


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.from_name("linear", 1000)


def test_add_noise_matches_diffusers(schedule):
    from diffusers import DDPMScheduler

    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1, torch.randn(6, 1, 8, 8, generator=g)
    t = torch.tensor([0, 10, 200, 500, 800, 999])
    ours = add_noise(schedule, x0, noise, t)
    theirs = DDPMScheduler().add_noise(x0, noise, t)
    assert torch.allclose(ours, theirs, atol=2e-6)
    assert torch.allclose(add_noise(schedule, x0, noise, 999), add_noise(schedule, x0, noise, torch.full((6,), 999)))


def test_one_step_chain_has_the_closed_form_distribution(schedule):
    """Running q(x_t|x_{t-1}) t times gives the mean sqrt(ab)·x0 and variance 1-ab of the closed form."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((20000, 1), 0.8)
    x = x0.clone()
    for t in range(300):
        x = process.forward_step(schedule, x, torch.randn(x.shape, generator=g), t)
    ab = schedule.alphas_cumprod[299].item()
    assert x.mean().item() == pytest.approx(ab**0.5 * 0.8, abs=0.02)
    assert x.var().item() == pytest.approx(1 - ab, abs=0.03)


def test_posterior_mean_and_variance_match_the_paper(schedule):
    g = torch.Generator().manual_seed(2)
    x0, xt = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    t = 400
    ab, abp = schedule.alphas_cumprod.double()[t], schedule.alphas_cumprod.double()[t - 1]
    beta, alpha = schedule.betas.double()[t], schedule.alphas.double()[t]
    expected = (abp.sqrt() * beta / (1 - ab)) * x0 + (alpha.sqrt() * (1 - abp) / (1 - ab)) * xt
    assert torch.allclose(process.posterior_mean(schedule, x0, xt, t), expected.float(), atol=1e-5)
    c1, c2 = process.posterior_mean_coefficients(schedule, t)
    assert c1 == pytest.approx(float(abp.sqrt() * beta / (1 - ab)), rel=1e-5)
    assert c2 == pytest.approx(float(alpha.sqrt() * (1 - abp) / (1 - ab)), rel=1e-5)
    var = process.posterior_variance(schedule)
    assert var[0] == 0 and torch.all(var <= schedule.betas + 1e-9)
    assert var[t].item() == pytest.approx(float((1 - abp) / (1 - ab) * beta), rel=1e-5)


def test_posterior_mean_equals_monte_carlo_conditional_mean(schedule):
    """E[x_{t-1} | x_t, x0] estimated by sampling x_{t-1} ~ q(.|x0) then x_t ~ q(.|x_{t-1}), binned on x_t."""
    g = torch.Generator().manual_seed(3)
    t, x0 = 50, 0.5
    x_prev = add_noise(schedule, torch.full((200000, 1), x0), torch.randn(200000, 1, generator=g), t - 1)
    x_t = process.forward_step(schedule, x_prev, torch.randn(200000, 1, generator=g), t)
    near = (x_t - 0.4).abs() < 0.01
    predicted = process.posterior_mean(schedule, torch.tensor([[x0]]), torch.tensor([[0.4]]), t).item()
    assert x_prev[near].mean().item() == pytest.approx(predicted, abs=0.01)


@pytest.mark.parametrize("t", [0, 250, 999])
def test_conversions_between_eps_x0_and_v_round_trip(schedule, t):
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    xt = add_noise(schedule, x0, eps, t)
    v = process.get_velocity(schedule, x0, eps, t)
    tol = dict(atol=2e-3 if t == 999 else 1e-4)
    assert torch.allclose(process.predict_x0_from_eps(schedule, xt, eps, t), x0, **tol)
    assert torch.allclose(process.predict_eps_from_x0(schedule, xt, x0, t), eps, atol=1e-3)
    assert torch.allclose(process.predict_x0_from_v(schedule, xt, v, t), x0, atol=1e-4)
    assert torch.allclose(process.predict_eps_from_v(schedule, xt, v, t), eps, atol=1e-4)
    for kind, output in (("epsilon", eps), ("sample", x0), ("v_prediction", v)):
        assert torch.allclose(process.x0_eps_to_model_output(schedule, x0, eps, t, kind), output)


def test_errors_name_the_input(schedule):
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="noise must have the shape"):
        add_noise(schedule, x, torch.zeros(2, 1, 4, 5), 3)
    with pytest.raises(ValueError, match="outside"):
        add_noise(schedule, x, x, 1000)
    with pytest.raises(TypeError, match="NoiseSchedule"):
        add_noise("linear", x, x, 3)
    with pytest.raises(ValueError, match="prediction_type"):
        process.check_prediction_type("noise")
