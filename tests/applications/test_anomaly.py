"""meddiff_lab/applications/anomaly.py: anomaly maps and scores, the autoencoder, the diffusion reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meddiff_lab.applications import (
    ConvAutoencoder,
    anomaly_map,
    image_anomaly_scores,
    pseudo_healthy,
    train_autoencoder,
)
from meddiff_lab.diffusion import DDIMScheduler, GaussianDenoiser


def test_an_image_equal_to_its_reconstruction_scores_zero():
    x = torch.randn(3, 1, 8, 8)
    maps = anomaly_map(x, x.clone(), smooth=1.0)
    assert torch.equal(maps, torch.zeros_like(x))
    assert np.array_equal(image_anomaly_scores(maps), np.zeros(3))


def test_anomaly_map_is_the_absolute_error_and_scores_follow_it():
    x = torch.zeros(2, 1, 4, 4)
    rec = x.clone()
    rec[1, 0, 1, 1] = -0.5
    maps = anomaly_map(x, rec)
    assert float(maps[1, 0, 1, 1]) == 0.5 and float(maps.sum()) == 0.5
    scores = image_anomaly_scores(maps, quantile=1.0)
    assert scores.tolist() == [0.0, 0.5]
    region = np.zeros((2, 4, 4), bool)
    region[:, 0, 0] = True
    assert image_anomaly_scores(maps, region=region, quantile=1.0).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="same shape"):
        anomaly_map(x, rec[:1])


def test_autoencoder_shapes_and_training_lowers_the_loss():
    ae = ConvAutoencoder(4, 2)
    assert ae(torch.zeros(2, 1, 16, 16)).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="multiple of 8"):
        ae(torch.zeros(1, 1, 12, 12))
    row = torch.linspace(-0.5, 0.5, 16)
    images = (row[None, None, None, :] * torch.linspace(0.5, 1, 16)[:, None, None, None]).expand(16, 1, 16, 16)
    _, losses = train_autoencoder(images, steps=80, batch_size=8, channels=4, latent_channels=2)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


def test_pseudo_healthy_from_timestep_zero_keeps_the_image():
    scheduler = DDIMScheduler()
    model = GaussianDenoiser(0.0, 0.5, scheduler)
    x = 0.5 * torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)).clamp(-2, 2) / 2
    out = pseudo_healthy(model, scheduler, x, 0, 1, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert float((out - x).abs().max()) < 0.05
    far = pseudo_healthy(model, scheduler, x, 600, 10, generator=torch.Generator().manual_seed(0))
    assert float((far - x).abs().mean()) > float((out - x).abs().mean())
