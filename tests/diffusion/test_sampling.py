"""meddiff_lab/diffusion/sampling.py: the loop is right (exact Gaussian denoiser) with every scheduler."""

from __future__ import annotations

import diffusers
import pytest
import torch
from monai.networks import schedulers as monai_schedulers

from meddiff_lab.diffusion import (
    DDIMScheduler,
    DDPMScheduler,
    GaussianDenoiser,
    NoiseSchedule,
    Trajectory,
    ddim_invert,
    sample,
)

MEAN, STD = 0.3, 0.5
SHAPE = (512, 1, 2, 2)  # 2048 independent values: the standard error of the mean is 0.011


def _moments(scheduler, num_inference_steps=None, prediction_type="epsilon", **kw):
    model = GaussianDenoiser(MEAN, STD, scheduler, prediction_type=prediction_type)
    x = sample(
        model,
        scheduler,
        SHAPE,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=num_inference_steps,
        progress=False,
        **kw,
    )
    assert x.shape == SHAPE and x.dtype == torch.float32
    return x.mean().item(), x.std().item()


@pytest.mark.parametrize(
    "make, steps",
    [
        (lambda: DDPMScheduler(clip_sample=False), None),
        (lambda: DDPMScheduler(clip_sample=False, variance_type="fixed_large", beta_schedule="cosine"), None),
        (lambda: DDIMScheduler(clip_sample=False), 100),
        (lambda: DDIMScheduler(clip_sample=False, beta_schedule="cosine", prediction_type="v_prediction"), 100),
        (lambda: DDIMScheduler(clip_sample=False, prediction_type="sample"), 100),
    ],
    ids=["ddpm-1000", "ddpm-cosine-fixed_large", "ddim-100", "ddim-100-v", "ddim-100-x0"],
)
def test_kit_samplers_give_the_right_mean_and_std(make, steps):
    scheduler = make()
    mean, std = _moments(scheduler, steps, scheduler.config.prediction_type)
    assert mean == pytest.approx(MEAN, abs=0.05)
    assert std == pytest.approx(STD, abs=0.05)


@pytest.mark.parametrize(
    "make, steps",
    [
        (lambda: diffusers.DDPMScheduler(clip_sample=False), None),
        (lambda: diffusers.DDIMScheduler(clip_sample=False), 100),
        (lambda: monai_schedulers.DDPMScheduler(clip_sample=False), None),
        (lambda: monai_schedulers.DDIMScheduler(clip_sample=False), 100),
    ],
    ids=["diffusers-ddpm", "diffusers-ddim", "monai-ddpm", "monai-ddim"],
)
def test_sample_drives_diffusers_and_monai_schedulers(make, steps):
    mean, std = _moments(make(), steps)
    assert mean == pytest.approx(MEAN, abs=0.05)
    assert std == pytest.approx(STD, abs=0.05)


def test_same_numbers_as_diffusers_ddim_through_sample():
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    ours, theirs = DDIMScheduler(clip_sample=False), diffusers.DDIMScheduler(clip_sample=False)
    model = GaussianDenoiser(MEAN, STD, NoiseSchedule.from_name("linear"))
    a = sample(model, ours, (4, 1, 4, 4), generator=g(), num_inference_steps=20, progress=False)
    b = sample(model, theirs, (4, 1, 4, 4), generator=g(), num_inference_steps=20, progress=False)
    assert torch.allclose(a, b, atol=1e-4)


def test_few_ddim_steps_shrink_the_variance():
    _, std_few = _moments(DDIMScheduler(clip_sample=False), 5)
    _, std_many = _moments(DDIMScheduler(clip_sample=False), 100)
    assert std_few < std_many - 0.05


def test_trajectory_records_every_step_and_ends_at_the_sample():
    scheduler = DDIMScheduler(clip_sample=False)
    model = GaussianDenoiser(MEAN, STD, scheduler)
    x, traj = sample(
        model,
        scheduler,
        (3, 1, 4, 4),
        num_inference_steps=10,
        progress=False,
        return_trajectory=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert isinstance(traj, Trajectory) and len(traj) == 10
    assert traj.x_t.shape == (10, 3, 1, 4, 4) and traj.predicted_x0.shape == (10, 3, 1, 4, 4)
    assert torch.equal(traj.final, x) and traj.timesteps.tolist() == scheduler.timesteps.tolist()
    # the prediction of x0 improves along the run: closer to the final image at the end
    first, last = ((traj.predicted_x0[0] - x).abs().mean(), (traj.predicted_x0[-1] - x).abs().mean())
    assert last < first
    short = traj.subsample(4)
    assert len(short) == 4 and short.timesteps[0] == traj.timesteps[0] and short.timesteps[-1] == traj.timesteps[-1]


class _RecordingModel(torch.nn.Module):
    """Returns an object with .sample (like diffusers' UNet2DModel) and remembers the labels it saw."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, x, t, class_labels=None):
        self.seen.append(None if class_labels is None else class_labels.clone())
        offset = 0 if class_labels is None else class_labels.float().reshape(-1, 1, 1, 1)
        return type("Out", (), {"sample": x * 0 + offset})()


def test_guidance_calls_the_null_class_and_mixes_predictions():
    model = _RecordingModel()
    labels = torch.tensor([0, 2])
    scheduler = DDIMScheduler(clip_sample=False)
    sample(
        model, scheduler, (2, 1, 4, 4), class_labels=labels, guidance_scale=2.0, num_inference_steps=2, progress=False
    )
    seen = model.seen[0]
    assert seen.tolist() == [0, 2, 3, 3], "conditional labels then the null class (num_classes)"
    # the mixed eps is eps_u + w (eps_c - eps_u) = 3 + 2 (label - 3): check on one step directly
    x = torch.zeros(2, 1, 4, 4)
    scheduler.set_timesteps(1)
    guided = sample(model, scheduler, (2, 1, 4, 4), class_labels=labels, guidance_scale=2.0, noise=x, progress=False)
    expected_eps = torch.tensor([-3.0, 1.0]).reshape(2, 1, 1, 1).expand(2, 1, 4, 4)
    expected = scheduler.step(expected_eps.contiguous(), int(scheduler.timesteps[0]), x).prev_sample
    assert torch.allclose(guided, expected)


def test_guidance_needs_labels_and_a_null_class():
    model = GaussianDenoiser(0.0, 1.0, NoiseSchedule.from_name("linear"))
    with pytest.raises(ValueError, match="class_labels"):
        sample(model, DDIMScheduler(), (1, 1, 2, 2), guidance_scale=3.0, num_inference_steps=2, progress=False)
    with pytest.raises(ValueError, match="null_class"):
        sample(
            model,
            DDIMScheduler(),
            (1, 1, 2, 2),
            class_labels=[0],
            guidance_scale=3.0,
            num_inference_steps=2,
            progress=False,
        )


def test_ddim_inversion_recovers_the_image():
    scheduler = DDIMScheduler(clip_sample=False)
    model = GaussianDenoiser(MEAN, STD, scheduler)
    x0 = MEAN + STD * torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    latent = ddim_invert(model, scheduler, x0, num_inference_steps=100)
    assert 0.8 < latent.std().item() < 1.2, "the inverted latent looks like unit noise"
    plain = (sample(model, scheduler, x0.shape, noise=latent, progress=False) - x0).abs().max()
    assert plain < 0.15, "plain inversion is off by about one step's change"
    latent = ddim_invert(model, scheduler, x0, num_inference_steps=100, fixed_point_iterations=3)
    exact = (sample(model, scheduler, x0.shape, noise=latent, progress=False) - x0).abs().max()
    assert exact < 1e-3 and exact < plain / 10


def test_trajectory_every_keeps_the_last_step():
    scheduler = DDIMScheduler(clip_sample=False)
    model = GaussianDenoiser(MEAN, STD, scheduler)
    x, traj = sample(
        model,
        scheduler,
        (2, 1, 2, 2),
        num_inference_steps=10,
        progress=False,
        return_trajectory=True,
        trajectory_every=4,
    )
    assert traj.timesteps.tolist() == [scheduler.timesteps[i].item() for i in (0, 4, 8, 9)]
    assert traj.x_t.shape[0] == 4 and torch.equal(traj.final, x)


def test_generate_samples_is_reproducible_and_restores_the_model_mode():
    from meddiff_lab.diffusion.sampling import generate_samples
    from meddiff_lab.models import UNet

    model = UNet(channels=(8, 16), attention_levels=(False, False), num_head_channels=8, norm_num_groups=8).train()
    scheduler = DDIMScheduler(prediction_type="v_prediction")
    first = generate_samples(model, scheduler, 2, 16, steps=3, seed=5)
    assert first.shape == (2, 1, 16, 16) and first.dtype == torch.float32
    assert float(first.min()) >= -1 and float(first.max()) <= 1
    assert model.training, "the model goes back to training mode"
    assert torch.equal(first, generate_samples(model, scheduler, 2, 16, steps=3, seed=5))
    assert not torch.equal(first, generate_samples(model, scheduler, 2, 16, steps=3, seed=6))


def test_generate_samples_is_still_importable_from_the_trainer():
    from meddiff_lab.diffusion.sampling import generate_samples
    from meddiff_lab.training.trainer import generate_samples as old

    assert old is generate_samples
