"""meddiff_lab/diffusion/oracle.py: the exact denoisers are exact, and the dataset one memorises."""

from __future__ import annotations

import pytest
import torch

from meddiff_lab.diffusion import (
    DatasetDenoiser,
    DDIMScheduler,
    DDPMScheduler,
    GaussianDenoiser,
    NoiseSchedule,
    add_noise,
    get_velocity,
    sample,
)


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.from_name("linear")


def test_gaussian_denoiser_is_the_regression_optimum(schedule):
    """Its eps has lower MSE than small perturbations of it, and the predicted x0 is unbiased."""
    g = torch.Generator().manual_seed(0)
    x0 = 0.2 + 0.4 * torch.randn(20000, 1, 1, 1, generator=g)
    eps = torch.randn(x0.shape, generator=g)
    t = 600
    xt = add_noise(schedule, x0, eps, t)
    model = GaussianDenoiser(0.2, 0.4, schedule)
    pred = model(xt, t)
    best = (pred - eps).pow(2).mean()
    for scale in (0.9, 1.1):
        assert (pred * scale - eps).pow(2).mean() > best
    x0_model = GaussianDenoiser(0.2, 0.4, schedule, prediction_type="sample")
    assert x0_model(xt, t).mean().item() == pytest.approx(0.2, abs=0.01)
    v_model = GaussianDenoiser(0.2, 0.4, schedule, prediction_type="v_prediction")
    v_best = (v_model(xt, t) - get_velocity(schedule, x0, eps, t)).pow(2).mean()
    assert (v_model(xt, t) * 1.1 - get_velocity(schedule, x0, eps, t)).pow(2).mean() > v_best


def test_dataset_denoiser_weights_pick_the_right_image(schedule):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(5, 1, 6, 6, generator=g) * 2 - 1
    model = DatasetDenoiser(images, schedule, prediction_type="sample")
    x_t = add_noise(schedule, images[[3]], torch.randn(1, 1, 6, 6, generator=g), 50)
    w = model.weights(x_t, 50)
    assert w.shape == (1, 5) and torch.allclose(w.sum(1), torch.ones(1, dtype=w.dtype))
    assert w.argmax().item() == 3 and w.max() > 0.99
    assert torch.allclose(model(x_t, 50), images[[3]], atol=1e-3)
    # at the end of the forward process every image is (almost) equally likely: the mean image
    pure_noise = torch.randn(1, 1, 6, 6, generator=g)
    assert torch.allclose(model(pure_noise, 999), images.mean(0, keepdim=True), atol=0.05)


@pytest.mark.parametrize(
    "make, steps", [(lambda: DDIMScheduler(clip_sample=False), 50), (lambda: DDPMScheduler(clip_sample=False), 200)]
)
def test_sampling_with_the_dataset_denoiser_regenerates_training_images(make, steps):
    g = torch.Generator().manual_seed(2)
    images = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    scheduler = make()
    model = DatasetDenoiser(images, scheduler)
    x = sample(model, scheduler, (6, 1, 8, 8), generator=g, num_inference_steps=steps, progress=False)
    index, distance = model.nearest(x)
    assert distance.max() < 0.01, "every sample is a copy of a training image"
    assert torch.allclose(x, images[index], atol=0.05)


def test_bad_inputs_raise_clear_errors(schedule):
    with pytest.raises(ValueError, match="std"):
        GaussianDenoiser(0.0, 0.0, schedule)
    with pytest.raises(ValueError, match="per-image shape"):
        DatasetDenoiser(torch.zeros(3, 1, 4, 4), schedule)(torch.zeros(1, 1, 5, 5), 10)
    with pytest.raises(TypeError, match="alphas_cumprod"):
        GaussianDenoiser(0.0, 1.0, "linear")
