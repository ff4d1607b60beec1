"""meddiff_lab/diffusion/schedulers.py: one step equals diffusers' step; timesteps; options."""

from __future__ import annotations

import diffusers
import pytest
import torch

from meddiff_lab.diffusion import DDIMScheduler, DDPMScheduler, NoiseSchedule

CASES = [
    (kind, sched, clip)
    for kind in ("epsilon", "sample", "v_prediction")
    for sched in ("linear", "squaredcos_cap_v2")
    for clip in (True, False)
]


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)


def _same_alphas(ours, theirs):
    """Give our scheduler diffusers' float32 alphas_cumprod bit for bit (ours are computed in float64)."""
    schedule = NoiseSchedule.from_alphas_cumprod(theirs.alphas_cumprod)
    assert torch.equal(schedule.alphas_cumprod, theirs.alphas_cumprod)
    return schedule


@pytest.mark.parametrize("prediction_type, beta_schedule, clip", CASES)
def test_ddim_step_equals_diffusers(prediction_type, beta_schedule, clip):
    sample, model_output = _inputs()
    theirs = diffusers.DDIMScheduler(beta_schedule=beta_schedule, prediction_type=prediction_type, clip_sample=clip)
    ours = DDIMScheduler(beta_schedule=beta_schedule, prediction_type=prediction_type, clip_sample=clip)
    exact = DDIMScheduler(prediction_type=prediction_type, clip_sample=clip, schedule=_same_alphas(ours, theirs))
    for s in (theirs, ours, exact):
        s.set_timesteps(50)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    for t in (980, 500, 20, 0):
        for eta in (0.0, 0.6):
            ref = theirs.step(model_output, t, sample, eta=eta, generator=torch.Generator().manual_seed(1))
            a = ours.step(model_output, t, sample, eta=eta, generator=torch.Generator().manual_seed(1))
            b = exact.step(model_output, t, sample, eta=eta, generator=torch.Generator().manual_seed(1))
            assert torch.allclose(b.prev_sample, ref.prev_sample, rtol=1e-6, atol=1e-6)
            assert torch.allclose(b.pred_original_sample, ref.pred_original_sample, rtol=1e-6, atol=1e-6)
            scale = ref.prev_sample.abs().max()
            assert (a.prev_sample - ref.prev_sample).abs().max() <= 2e-5 * scale


@pytest.mark.parametrize("prediction_type, beta_schedule, clip", CASES)
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_step_equals_diffusers(prediction_type, beta_schedule, clip, variance_type):
    sample, model_output = _inputs(1)
    kw = dict(prediction_type=prediction_type, clip_sample=clip, variance_type=variance_type)
    theirs = diffusers.DDPMScheduler(beta_schedule=beta_schedule, **kw)
    ours = DDPMScheduler(beta_schedule=beta_schedule, **kw)
    exact = DDPMScheduler(schedule=_same_alphas(ours, theirs), **kw)
    for steps in (None, 50):
        if steps:
            for s in (theirs, ours, exact):
                s.set_timesteps(steps)
            assert torch.equal(ours.timesteps, theirs.timesteps)
        for t in (980, 500, 20, 0):
            ref = theirs.step(model_output, t, sample, generator=torch.Generator().manual_seed(2))
            a = ours.step(model_output, t, sample, generator=torch.Generator().manual_seed(2))
            b = exact.step(model_output, t, sample, generator=torch.Generator().manual_seed(2))
            assert torch.allclose(b.prev_sample, ref.prev_sample, rtol=1e-6, atol=1e-6)
            assert (a.prev_sample - ref.prev_sample).abs().max() <= 2e-5 * ref.prev_sample.abs().max()


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 50, 1000])
def test_timesteps_equal_diffusers(spacing, steps):
    ours, theirs = DDIMScheduler(timestep_spacing=spacing), diffusers.DDIMScheduler(timestep_spacing=spacing)
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)


def test_leading_default_and_full_chain():
    s = DDPMScheduler()
    assert s.timesteps[0] == 999 and s.timesteps[-1] == 0 and len(s.timesteps) == 1000
    s = DDIMScheduler()
    s.set_timesteps(50)
    assert s.timesteps[:3].tolist() == [980, 960, 940] and s.timesteps[-1] == 0


def test_output_unpacks_like_monai_and_last_ddpm_step_adds_no_noise():
    sample, model_output = _inputs(3)
    s = DDPMScheduler(clip_sample=False)
    prev, x0 = s.step(model_output, 0, sample)
    again = s.step(model_output, 0, sample, generator=torch.Generator().manual_seed(9)).prev_sample
    assert torch.equal(prev, again) and torch.equal(prev, x0 * 0 + prev)
    assert torch.equal(s.step(model_output, 0, sample, return_dict=False)[0], prev)


def test_clip_sample_clips_the_predicted_x0():
    sample, model_output = _inputs(4)
    out = DDIMScheduler(clip_sample=True, clip_sample_range=0.5).step(model_output * 5, 999, sample)
    assert out.pred_original_sample.abs().max() <= 0.5
    out = DDIMScheduler(clip_sample=False).step(model_output * 5, 999, sample)
    assert out.pred_original_sample.abs().max() > 1


def test_ddim_eta_one_has_the_ddpm_variance():
    """DDIM with eta = 1 on all timesteps is DDPM's fixed_small step (same mean, same noise)."""
    sample, model_output = _inputs(5)
    ddim, ddpm = DDIMScheduler(clip_sample=False), DDPMScheduler(clip_sample=False)
    ddim.set_timesteps(1000)
    a = ddim.step(model_output, 500, sample, eta=1.0, generator=torch.Generator().manual_seed(0)).prev_sample
    b = ddpm.step(model_output, 500, sample, generator=torch.Generator().manual_seed(0)).prev_sample
    assert torch.allclose(a, b, atol=1e-5)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="prediction_type"):
        DDPMScheduler(prediction_type="noise")
    with pytest.raises(ValueError, match="variance_type"):
        DDPMScheduler(variance_type="learned")
    with pytest.raises(ValueError, match="num_inference_steps"):
        DDIMScheduler().set_timesteps(2000)
    with pytest.raises(ValueError, match="shape"):
        DDIMScheduler().step(torch.zeros(1, 1, 4, 4), 10, torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="eta"):
        DDIMScheduler(eta=-1)


def test_scheduler_from_config_reads_a_training_config_or_a_model_file_section():
    from meddiff_lab.diffusion.schedulers import scheduler_from_config
    from meddiff_lab.training import TrainConfig

    section = {
        "schedule": "cosine",
        "num_train_timesteps": 500,
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "prediction_type": "v_prediction",
    }
    ddim = scheduler_from_config(section)
    assert isinstance(ddim, DDIMScheduler) and ddim.config.num_train_timesteps == 500
    assert ddim.config.beta_schedule == "cosine" and ddim.config.prediction_type == "v_prediction"
    assert isinstance(scheduler_from_config(section, "ddpm"), DDPMScheduler)
    from_object = scheduler_from_config(TrainConfig(schedule="linear", num_train_timesteps=100))
    assert from_object.config.num_train_timesteps == 100 and from_object.config.beta_schedule == "linear"
    with pytest.raises(ValueError, match="kind"):
        scheduler_from_config(section, "euler")
    with pytest.raises(ValueError, match="prediction_type"):
        scheduler_from_config({k: v for k, v in section.items() if k != "prediction_type"})
