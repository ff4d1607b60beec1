"""meddiff_lab/diffusion/losses.py: targets, min-SNR weights, and the hybrid SSIM loss."""

from __future__ import annotations

import pytest
import torch
from monai.losses import SSIMLoss

from meddiff_lab.diffusion import NoiseSchedule, add_noise, get_velocity
from meddiff_lab.diffusion.losses import diffusion_loss, diffusion_target, hybrid_loss, min_snr_weights, ssim_loss


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    schedule = NoiseSchedule.from_name("cosine")
    x0 = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([5, 200, 600, 990])
    return schedule, x0, noise, t


def test_targets(batch):
    schedule, x0, noise, t = batch
    assert torch.equal(diffusion_target(schedule, x0, noise, t, "epsilon"), noise)
    assert torch.equal(diffusion_target(schedule, x0, noise, t, "sample"), x0)
    assert torch.allclose(
        diffusion_target(schedule, x0, noise, t, "v_prediction"), get_velocity(schedule, x0, noise, t)
    )


def test_perfect_prediction_has_zero_loss_and_mse_is_plain(batch):
    schedule, x0, noise, t = batch
    for kind in ("epsilon", "sample", "v_prediction"):
        target = diffusion_target(schedule, x0, noise, t, kind)
        assert diffusion_loss(target, x0, noise, t, schedule, prediction_type=kind).item() == pytest.approx(
            0, abs=1e-10
        )
        assert hybrid_loss(target, x0, noise, t, schedule, prediction_type=kind).item() == pytest.approx(0, abs=1e-4)
    wrong = noise + 0.5
    assert diffusion_loss(wrong, x0, noise, t, schedule).item() == pytest.approx(0.25, rel=1e-5)


def test_min_snr_weights_follow_the_paper(batch):
    schedule, _, _, t = batch
    snr = schedule.snr[t]
    w_eps = min_snr_weights(schedule, t, gamma=5.0, prediction_type="epsilon")
    assert torch.allclose(w_eps, torch.clamp(snr, max=5.0) / snr)
    assert w_eps[0] < 1 and w_eps[-1] == pytest.approx(1.0)  # low noise is down-weighted, high noise is not
    assert torch.allclose(min_snr_weights(schedule, t, 5.0, "sample"), torch.clamp(snr, max=5.0))
    assert torch.allclose(min_snr_weights(schedule, t, 5.0, "v_prediction"), torch.clamp(snr, max=5.0) / (snr + 1))
    schedule_, x0, noise, _ = batch
    per = diffusion_loss(noise + 1, x0, noise, t, schedule_, reduction="none")
    weighted = diffusion_loss(noise + 1, x0, noise, t, schedule_, weighting="min_snr", reduction="none")
    assert torch.allclose(weighted, per * w_eps)


def test_hybrid_is_07_mse_plus_03_monai_ssim(batch):
    schedule, x0, noise, t = batch
    eps_pred = noise + 0.3 * torch.randn(noise.shape, generator=torch.Generator().manual_seed(1))
    x_t = add_noise(schedule, x0, noise, t)
    pred_x0 = (
        (x_t - (1 - schedule.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1) * eps_pred)
        / schedule.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    ).clamp(-1, 1)
    mse = (eps_pred - noise).pow(2).mean()
    structural = SSIMLoss(spatial_dims=2, data_range=2.0, win_size=11)(pred_x0, x0)
    expected = 0.7 * mse + 0.3 * structural
    assert hybrid_loss(eps_pred, x0, noise, t, schedule).item() == pytest.approx(expected.item(), rel=1e-4)
    assert ssim_loss(x0, x0).abs().max() < 1e-5 and ssim_loss(torch.zeros_like(x0), x0).min() > 0.9


def test_ssim_works_on_tiny_images_and_the_loss_backpropagates():
    schedule = NoiseSchedule.from_name("linear")
    x0, noise = torch.zeros(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    out = torch.zeros(2, 1, 2, 2, requires_grad=True)
    loss = hybrid_loss(out, x0, noise, torch.tensor([3, 500]), schedule)
    loss.backward()
    assert torch.isfinite(loss) and out.grad is not None and out.grad.abs().sum() > 0


def test_bad_arguments_raise_clear_errors(batch):
    schedule, x0, noise, t = batch
    with pytest.raises(ValueError, match="weighting"):
        diffusion_loss(noise, x0, noise, t, schedule, weighting="p2")
    with pytest.raises(ValueError, match="shape"):
        diffusion_loss(noise[:, :, :8], x0, noise, t, schedule)
    with pytest.raises(ValueError, match="must be 1"):
        hybrid_loss(noise, x0, noise, t, schedule, mse_weight=0.5, ssim_weight=0.3)
