"""meddiff_lab/applications/classical.py: the classical baselines on exact cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from meddiff_lab.applications import (
    bicubic_upsample,
    biharmonic_inpaint,
    bm3d_available,
    bm3d_denoise,
    gaussian_denoise,
    nlm_denoise,
    tune_gaussian_sigma,
)


def _ramp(side=16):
    row = torch.linspace(-0.5, 0.5, side)
    return (row[None, :] + 0.5 * row[:, None])[None, None].repeat(2, 1, 1, 1)


def test_gaussian_zero_sigma_is_identity_and_constants_stay_constant():
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(gaussian_denoise(x, 0.0), x)
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(gaussian_denoise(flat, 1.5), flat, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        gaussian_denoise(torch.zeros(8, 8), 1.0)


def test_tuning_picks_no_blur_for_a_clean_image_and_blur_for_a_noisy_flat_one():
    flat = torch.full((4, 1, 16, 16), 0.1)
    noisy = flat + 0.2 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(0))
    assert tune_gaussian_sigma(flat + 0 * noisy, flat) == 0.0
    assert tune_gaussian_sigma(noisy, flat) == 2.0


def test_nlm_removes_noise_from_a_flat_image():
    flat = torch.full((2, 1, 24, 24), 0.1)
    noisy = flat + 0.1 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(1))
    out = nlm_denoise(noisy, 0.1)
    assert out.shape == noisy.shape
    assert float(((out - flat) ** 2).mean()) < 0.3 * float(((noisy - flat) ** 2).mean())


def test_bicubic_reproduces_constants_and_nearly_a_ramp():
    flat = torch.full((1, 1, 8, 8), -0.2)
    assert torch.allclose(bicubic_upsample(flat, 2), torch.full((1, 1, 16, 16), -0.2), atol=1e-6)
    ramp = _ramp(16)
    low = F.avg_pool2d(ramp, 2)
    up = bicubic_upsample(low, 2)
    assert up.shape == ramp.shape
    # PyTorch's kernel (Keys, a = -0.75) reproduces constants exactly, linear ramps only nearly (a = -0.5 would)
    assert float((up - ramp)[..., 2:-2, 2:-2].abs().max()) < 0.02


def test_biharmonic_fills_a_hole_in_a_linear_ramp_exactly():
    ramp = _ramp(16)
    known = torch.ones_like(ramp, dtype=torch.bool)
    known[..., 5:11, 4:9] = False
    damaged = ramp.masked_fill(~known, 0.9)
    out = biharmonic_inpaint(damaged, known)
    assert torch.allclose(out, ramp, atol=1e-4)


def test_bm3d_removes_noise_from_a_flat_image_or_says_it_is_missing():
    """bm3d is optional (free for non-commercial use only, so not a dependency): where it is installed it
    must denoise, where it is not the call must say how to install it. Both branches assert; no skip."""
    flat = torch.full((1, 1, 32, 32), 0.1)
    noisy = flat + 0.1 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(2))
    if not bm3d_available():
        with pytest.raises(ImportError, match="pip install bm3d"):
            bm3d_denoise(noisy, 0.1)
        return
    out = bm3d_denoise(noisy, 0.1)
    assert float(((out - flat) ** 2).mean()) < 0.2 * float(((noisy - flat) ** 2).mean())


def test_bm3d_missing_says_how_to_install(monkeypatch):
    import meddiff_lab.applications.classical as classical

    monkeypatch.setattr(classical, "bm3d_available", lambda: False)
    with pytest.raises(ImportError, match="pip install bm3d"):
        classical.bm3d_denoise(torch.zeros(1, 1, 8, 8), 0.1)
