"""Rectified flow (meddiff_lab/diffusion/flow.py) against MONAI's RFlowScheduler and diffusers'
FlowMatchEulerDiscreteScheduler on the same inputs; diffusers' DPM-Solver through the course's ``sample``."""

from __future__ import annotations

import diffusers
import pytest
import torch
from monai.networks.schedulers import RFlowScheduler

from meddiff_lab.diffusion import (
    DDIMScheduler,
    GaussianDenoiser,
    RectifiedFlowScheduler,
    euler_sample,
    flow_interpolate,
    flow_matching_loss,
    flow_velocity,
    sample,
    sample_flow_timesteps,
)

T = 1000


def toy_velocity(x: torch.Tensor, t) -> torch.Tensor:
    """A made-up velocity field that depends on x and t (enough to tell two samplers apart)."""
    s = torch.as_tensor(t, dtype=torch.float32).reshape(-1, *([1] * (x.ndim - 1))) / T
    return 0.7 * x - 0.3 * s * x.roll(1, dims=-1) + 0.1 * s


class GaussianVelocity:
    """The exact velocity E[eps - x0 | x_s] for data x0 ~ N(mean, std^2) per pixel, x_s = (1-s) x0 + s eps."""

    def __init__(self, mean: float, std: float):
        self.mean, self.std = mean, std

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        s = torch.as_tensor(t, dtype=torch.float64).reshape(-1, *([1] * (x.ndim - 1))) / T
        xd = x.double()
        centred = xd - (1 - s) * self.mean
        variance = (1 - s) ** 2 * self.std**2 + s**2
        x0 = self.mean + (1 - s) * self.std**2 * centred / variance
        eps = s * centred / variance
        return (eps - x0).to(x.dtype)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 2, 8, 8, generator=g), torch.randn(4, 2, 8, 8, generator=g)


def test_interpolation_matches_monai_and_diffusers(batch):
    x0, noise = batch
    t = torch.tensor([1, 250, 600, 999])
    ours = flow_interpolate(x0, noise, t)
    monai = RFlowScheduler(num_train_timesteps=T, use_discrete_timesteps=True).add_noise(x0, noise, t)
    torch.testing.assert_close(ours, monai, rtol=0, atol=1e-6)
    flow = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T)
    flow.set_timesteps(sigmas=(t.float() / T).tolist())
    for i in range(4):
        theirs = flow.scale_noise(x0[i : i + 1], flow.timesteps[i : i + 1], noise[i : i + 1])
        torch.testing.assert_close(ours[i : i + 1], theirs, rtol=0, atol=1e-6)
    # the ends of the path: data at s = 0, noise at s = 1; the velocity is d x_s / d s
    torch.testing.assert_close(flow_interpolate(x0, noise, 0), x0)
    torch.testing.assert_close(flow_interpolate(x0, noise, T), noise)
    derivative = (flow_interpolate(x0, noise, 501) - flow_interpolate(x0, noise, 500)) * T
    torch.testing.assert_close(derivative, flow_velocity(x0, noise), rtol=0, atol=1e-3)


@pytest.mark.parametrize("steps", [1, 7, 10, 50])
def test_timesteps_match_monai(steps):
    ours = RectifiedFlowScheduler(T)
    ours.set_timesteps(steps)
    monai = RFlowScheduler(num_train_timesteps=T, use_discrete_timesteps=True)
    monai.set_timesteps(steps)
    assert ours.timesteps.tolist() == monai.timesteps.tolist()
    assert ours.sigmas[0] == 1.0 and ours.sigmas[-1] == 0.0 and len(ours.sigmas) == steps + 1


@pytest.mark.parametrize("steps", [5, 20])
def test_euler_run_matches_monai_and_diffusers(steps):
    noise = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    ours = RectifiedFlowScheduler(T)
    ours.set_timesteps(steps)
    x_ours = sample(toy_velocity, ours, noise.shape, noise=noise.clone(), progress=False)

    monai = RFlowScheduler(num_train_timesteps=T, use_discrete_timesteps=True)
    monai.set_timesteps(steps)
    x = noise.clone()
    next_ts = torch.cat([monai.timesteps[1:], torch.tensor([0])])
    for t, t_next in zip(monai.timesteps, next_ts):
        # MONAI's velocity is x0 - noise: the opposite sign of ours and diffusers'
        x, _ = monai.step(-toy_velocity(x, t), t, x, t_next)
    torch.testing.assert_close(x_ours, x, rtol=0, atol=1e-5)

    flow = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T)
    flow.set_timesteps(sigmas=ours.sigmas[:-1].tolist())
    x = noise.clone()
    for t in flow.timesteps:  # diffusers' step takes its own (fractional) timesteps, never an int
        x = flow.step(toy_velocity(x, t), t, x).prev_sample
    torch.testing.assert_close(x_ours, x, rtol=0, atol=1e-5)
    torch.testing.assert_close(x_ours, euler_sample(toy_velocity, noise, steps), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shift, steps", [(1.0, 20), (3.0, 7)])
def test_sample_drives_diffusers_flow_match_scheduler(shift, steps):
    """diffusers' FlowMatchEulerDiscreteScheduler through the course's sample(), on diffusers' own grid of
    fractional timesteps: step and the model get the scheduler's timesteps unrounded, and the run equals
    the hand-written Euler sampler on the same times s."""
    noise = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    flow = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=shift)
    seen = []

    def recording_velocity(x, t):
        seen.append(t.clone())
        return toy_velocity(x, t)

    x_diffusers = sample(
        recording_velocity, flow, noise.shape, noise=noise.clone(), num_inference_steps=steps, progress=False
    )
    assert flow.timesteps.is_floating_point() and bool((flow.timesteps != flow.timesteps.round()).any())
    assert all(t.dtype == torch.float32 and t.shape == (3,) for t in seen)
    torch.testing.assert_close(torch.stack([t[0] for t in seen]), flow.timesteps, rtol=0, atol=0)
    x_course = euler_sample(toy_velocity, noise, sigmas=flow.sigmas[:-1])
    torch.testing.assert_close(x_diffusers, x_course, rtol=0, atol=1e-5)
    assert float((x_diffusers - noise).abs().max()) > 0.1  # the run went somewhere


@pytest.mark.parametrize("steps", [5, 20])
def test_sample_with_diffusers_flow_match_equals_the_course_scheduler(steps):
    """On the course's whole-number grid, sample() gives the same images with diffusers' scheduler as with
    RectifiedFlowScheduler (same velocity model, same noise)."""
    noise = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    ours = RectifiedFlowScheduler(T)
    ours.set_timesteps(steps)
    x_ours = sample(toy_velocity, ours, noise.shape, noise=noise.clone(), progress=False)
    flow = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T)
    flow.set_timesteps(sigmas=ours.sigmas[:-1].tolist())
    x_diffusers = sample(toy_velocity, flow, noise.shape, noise=noise.clone(), progress=False)
    torch.testing.assert_close(x_diffusers, x_ours, rtol=0, atol=1e-5)
    torch.testing.assert_close(x_diffusers, euler_sample(toy_velocity, noise, steps), rtol=0, atol=1e-5)


def test_diffusers_flow_match_through_sample_draws_the_data_distribution():
    mean, std = 0.3, 0.5
    flow = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T)
    x = sample(
        GaussianVelocity(mean, std),
        flow,
        (2048, 1, 4, 4),
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=50,
        progress=False,
    )
    assert abs(float(x.mean()) - mean) < 0.02
    assert abs(float(x.std()) - std) < 0.02


def test_euler_sample_checks_its_grid():
    noise = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="either num_steps"):
        euler_sample(toy_velocity, noise)
    with pytest.raises(ValueError, match="either num_steps"):
        euler_sample(toy_velocity, noise, 5, sigmas=[1.0, 0.5])
    with pytest.raises(ValueError, match="decrease"):
        euler_sample(toy_velocity, noise, sigmas=[0.5, 1.0])


def test_shift_matches_diffusers():
    ours = RectifiedFlowScheduler(T, shift=3.0)
    ours.set_timesteps(10)
    s = 1 - torch.arange(10, dtype=torch.float64) / 10
    expected = torch.round(3 * s / (1 + 2 * s) * T).long()  # diffusers' shift formula on the same grid
    assert ours.timesteps.tolist() == expected.tolist()


def test_step_predicts_x0_and_one_exact_step_lands_on_data(batch):
    x0, noise = batch
    scheduler = RectifiedFlowScheduler(T)
    scheduler.set_timesteps(1)
    x1 = flow_interpolate(x0, noise, T)
    out = scheduler.step(flow_velocity(x0, noise), int(scheduler.timesteps[0]), x1)
    torch.testing.assert_close(out.prev_sample, x0, rtol=0, atol=1e-5)  # a straight path: one step suffices
    torch.testing.assert_close(out.pred_original_sample, x0, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="not one of"):
        scheduler.step(x0, 123, x0)


def test_gaussian_data_sampled_with_right_mean_and_std():
    mean, std = 0.3, 0.5
    scheduler = RectifiedFlowScheduler(T)
    scheduler.set_timesteps(50)
    x = sample(
        GaussianVelocity(mean, std),
        scheduler,
        (2048, 1, 4, 4),
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert abs(float(x.mean()) - mean) < 0.02
    assert abs(float(x.std()) - std) < 0.02


def test_flow_matching_loss_is_the_velocity_regression(batch):
    x0, noise = batch
    t = torch.tensor([10.0, 300.0, 700.0, 990.0])
    loss = flow_matching_loss(toy_velocity, x0, noise, t)
    expected = torch.mean((toy_velocity(flow_interpolate(x0, noise, t), t) - (noise - x0)) ** 2)
    torch.testing.assert_close(loss, expected)
    exact = GaussianVelocity(0.0, 1.0)
    g = torch.Generator().manual_seed(3)
    data = torch.randn(512, 1, 4, 4, generator=g)
    # the exact conditional expectation beats a wrong field on the same draws
    assert flow_matching_loss(exact, data, generator=torch.Generator().manual_seed(4)) < flow_matching_loss(
        lambda x, t: torch.zeros_like(x), data, generator=torch.Generator().manual_seed(4)
    )


def test_timestep_sampling():
    g = torch.Generator().manual_seed(0)
    uniform = sample_flow_timesteps(4000, T, "uniform", g)
    logit = sample_flow_timesteps(4000, T, "logit-normal", g)
    assert 0 <= float(uniform.min()) and float(uniform.max()) <= T and abs(float(uniform.mean()) - 500) < 20
    assert float(((logit > 250) & (logit < 750)).float().mean()) > float(
        ((uniform > 250) & (uniform < 750)).float().mean()
    )
    with pytest.raises(ValueError, match="not one of"):
        sample_flow_timesteps(2, T, "cosine")
    with pytest.raises(ValueError, match="velocity"):
        RectifiedFlowScheduler(prediction_type="epsilon")


def test_dpm_solver_through_sample_solves_the_ode_better_than_ddim():
    """diffusers' DPMSolverMultistepScheduler (DPM-Solver++ 2M) driven by the course's sample(). For Gaussian
    data and its exact denoiser the probability-flow ODE has a closed-form end point (the standardised value
    (x_t - a_t mu) / sqrt(a_t^2 s^2 + b_t^2) stays constant along it): 20 DPM-Solver steps land on it
    far more closely than 20 DDIM steps (the same ODE, first order)."""
    mean, std = 0.2, 0.6
    ddim = DDIMScheduler(beta_schedule="linear", clip_sample=False, timestep_spacing="trailing")
    model = GaussianDenoiser(mean, std, ddim)
    noise = torch.randn(256, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    alphas_cumprod = torch.as_tensor(ddim.alphas_cumprod, dtype=torch.float64)

    def ode_end_point(first_timestep: int) -> torch.Tensor:
        a, b = alphas_cumprod[first_timestep].sqrt(), (1 - alphas_cumprod[first_timestep]).sqrt()
        return (mean + std * (noise.double() - a * mean) / (a**2 * std**2 + b**2).sqrt()).float()

    dpm = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type="epsilon",
    )
    x_dpm = sample(model, dpm, noise.shape, noise=noise.clone(), num_inference_steps=20, progress=False)
    x_ddim = sample(model, ddim, noise.shape, noise=noise.clone(), num_inference_steps=20, progress=False)
    assert int(dpm.timesteps[0]) == int(ddim.timesteps[0]) == 999
    error_dpm = float((x_dpm - ode_end_point(999)).abs().mean())
    error_ddim = float((x_ddim - ode_end_point(999)).abs().mean())
    assert error_dpm < 0.03 and error_dpm < error_ddim / 3
    assert abs(float(x_dpm.mean()) - mean) < 0.03 and abs(float(x_dpm.std()) - std) < 0.03


def test_exercise_checks_of_notebook_10():
    from meddiff_lab import exercises

    package = lambda x0, noise, s: flow_interpolate(x0, noise, s * T)  # noqa: E731
    assert exercises.check_flow_interpolate(package)
    assert not exercises.check_flow_interpolate(lambda x0, noise, s: s.reshape(-1, 1, 1, 1) * x0 + noise)
    assert exercises.check_euler_step(lambda x, velocity, s, s_next: x + (s_next - s) * velocity)
    assert not exercises.check_euler_step(lambda x, velocity, s, s_next: x - (s_next - s) * velocity)
