"""meddiff_lab/applications/supervised.py: the residual CNN starts as the identity and learns from pairs."""

from __future__ import annotations

import pytest
import torch

from meddiff_lab.applications import RestorationCNN, apply_net, random_crops, train_restoration_net


def test_untrained_network_returns_its_input_exactly():
    x = torch.randn(3, 1, 16, 16)
    assert torch.equal(apply_net(RestorationCNN(8, 3), x), x)


def test_training_on_pairs_lowers_the_error_and_repeats_with_the_seed():
    g = torch.Generator().manual_seed(0)
    clean = 0.3 * torch.randn(32, 1, 1, 1, generator=g).expand(32, 1, 16, 16).contiguous()  # flat images
    noisy = clean + 0.2 * torch.randn(clean.shape, generator=g)
    net, losses = train_restoration_net(noisy, clean, steps=60, batch_size=8, channels=8, depth=3, seed=1)
    assert len(losses) == 60 and not net.training
    before = float(((noisy - clean) ** 2).mean())
    assert float(((apply_net(net, noisy) - clean) ** 2).mean()) < 0.5 * before
    again, losses_again = train_restoration_net(noisy, clean, steps=60, batch_size=8, channels=8, depth=3, seed=1)
    assert losses == losses_again


def test_bad_pairs_and_depth_are_refused():
    with pytest.raises(ValueError, match="same"):
        train_restoration_net(torch.zeros(4, 1, 8, 8), torch.zeros(3, 1, 8, 8), steps=1)
    with pytest.raises(ValueError, match="depth"):
        RestorationCNN(8, 1)


def test_random_crops_cut_the_same_window_from_input_and_target():
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    a, b = random_crops(x, x + 1000, torch.tensor([1, 0, 1]), 4, torch.Generator().manual_seed(0))
    assert a.shape == (3, 1, 4, 4) and torch.equal(b, a + 1000)
    for crop in a:  # each crop is a contiguous window of its image
        assert torch.equal(crop[0, :, 1:] - crop[0, :, :-1], torch.ones(4, 3))
    whole, _ = random_crops(x, x, torch.tensor([0]), None, torch.Generator())
    assert torch.equal(whole, x[:1])


def test_training_on_crops_still_restores_whole_images():
    g = torch.Generator().manual_seed(0)
    clean = 0.3 * torch.randn(32, 1, 1, 1, generator=g).expand(32, 1, 16, 16).contiguous()
    noisy = clean + 0.2 * torch.randn(clean.shape, generator=g)
    net, _ = train_restoration_net(noisy, clean, steps=80, batch_size=8, crop=8, channels=8, depth=3, seed=1)
    assert float(((apply_net(net, noisy) - clean) ** 2).mean()) < 0.5 * float(((noisy - clean) ** 2).mean())


def test_one_loop_trains_the_restoration_net_and_the_anomaly_autoencoder():
    from meddiff_lab.applications import ConvAutoencoder, fit_pairs, train_autoencoder

    g = torch.Generator().manual_seed(0)
    images = torch.rand(12, 1, 16, 16, generator=g) * 2 - 1
    ae, losses = train_autoencoder(images, steps=4, batch_size=4, channels=4, seed=3)
    torch.manual_seed(3)
    same = ConvAutoencoder(4, 4)
    same_losses = fit_pairs(
        same, images, images, steps=4, batch_size=4, lr=2e-3, generator=torch.Generator().manual_seed(3)
    )
    assert losses == same_losses and not same.training and same.seconds >= 0
    torch.testing.assert_close(ae(images), same(images), rtol=0, atol=0)
