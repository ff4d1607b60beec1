"""Tests for meddiff_lab/metrics/image.py: PSNR, SSIM, NMSE against MONAI, scikit-image and the formulas."""

from __future__ import annotations

import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from meddiff_lab.metrics import image as M


def _pair(seed: int = 0, size: int = 32):
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(3, 1, size, size, generator=generator)
    pred = (target + 0.1 * torch.randn(3, 1, size, size, generator=generator)).clamp(0, 1)
    return pred, target


def test_psnr_is_the_textbook_formula_and_agrees_with_monai_and_skimage():
    from monai.metrics import PSNRMetric

    pred, target = _pair()
    per_image = M.psnr(pred, target, data_range=1.0, reduction="none")
    mse = ((pred - target) ** 2).flatten(1).mean(1)
    assert per_image.tolist() == pytest.approx((10 * torch.log10(1.0 / mse)).tolist(), rel=1e-5)
    assert per_image.tolist() == pytest.approx(
        PSNRMetric(max_val=1.0, reduction="none")(pred, target).flatten().tolist()
    )
    sk = [peak_signal_noise_ratio(target[i, 0].numpy(), pred[i, 0].numpy(), data_range=1.0) for i in range(3)]
    assert per_image.tolist() == pytest.approx(sk, rel=1e-5)
    assert M.psnr(pred, target, 1.0) == pytest.approx(sum(sk) / 3, rel=1e-5)


def test_psnr_data_range_two_adds_six_db_for_the_same_error():
    pred, target = _pair(1)
    assert M.psnr(pred, target, 2.0) - M.psnr(pred, target, 1.0) == pytest.approx(20 * math.log10(2), rel=1e-5)


def test_ssim_agrees_with_monai_and_skimage_gaussian_ssim():
    from monai.metrics import SSIMMetric

    pred, target = _pair(2)
    ours = M.ssim(pred, target, data_range=1.0, reduction="none")
    monai = SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")(pred, target).flatten()
    sk = [
        structural_similarity(
            pred[i, 0].numpy(),
            target[i, 0].numpy(),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for i in range(3)
    ]
    assert ours.tolist() == pytest.approx(monai.tolist(), rel=1e-6)
    assert ours.tolist() == pytest.approx(sk, abs=1e-4)


def test_ssim_is_one_for_identical_images_and_accepts_2d_arrays():
    image = torch.rand(24, 24, generator=torch.Generator().manual_seed(3))
    assert M.ssim(image.numpy(), image.numpy(), data_range=1.0) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        M.ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), data_range=1.0)


def test_nmse_is_error_energy_over_target_energy():
    target = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    pred = torch.tensor([[1.0, 2.0], [3.0, 2.0]])
    assert M.nmse(pred, target) == pytest.approx(4.0 / 30.0)
    assert M.nmse(torch.zeros(2, 2), target) == pytest.approx(1.0)


def test_image_metrics_name_the_bad_input():
    with pytest.raises(ValueError, match="pred and target must have the same shape"):
        M.psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9), 1.0)
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="target contains NaN"):
        M.nmse(torch.rand(1, 1, 4, 4), torch.full((1, 1, 4, 4), float("nan")))


def test_gaussian_blur_keeps_flat_images_and_zero_sigma_changes_nothing():
    images = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(M.gaussian_blur(images, torch.zeros(3)), images, atol=1e-6)
    flat = torch.full((2, 1, 8, 8), 0.3)
    assert torch.allclose(M.gaussian_blur(flat, torch.tensor([1.0, 2.0])), flat, atol=1e-6)
    blurred = M.gaussian_blur(images, torch.tensor([0.0, 1.0, 2.0]))
    assert blurred[2].std() < blurred[1].std() < images[1].std() + 1e-6


def test_gaussian_blur_kernel_sums_to_one_and_has_the_gaussian_shape():
    impulse = torch.zeros(1, 1, 11, 11)
    impulse[0, 0, 5, 5] = 1.0
    response = M.gaussian_blur(impulse, torch.tensor([1.0]))[0, 0]
    assert float(response.sum()) == pytest.approx(1.0, abs=1e-5)
    row = response[5, 4:7] / response[5, 5]
    assert row.tolist() == pytest.approx([math.exp(-0.5), 1.0, math.exp(-0.5)], rel=1e-4)
