"""Tests for meddiff_lab/metrics/generative.py: FID, KID, precision/recall, MS-SSIM diversity, memorisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meddiff_lab.metrics import generative as G


def _gaussian(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(cov)
    return mean + torch.randn(n, len(mean), generator=generator, dtype=torch.float64) @ chol.T


def _random_cov(dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)


# ------------------------------------------------------------------------------------------ FID
def test_fid_matches_closed_form_frechet_distance_of_the_gaussians():
    dim = 8
    mu_a, mu_b = torch.zeros(dim, dtype=torch.float64), torch.full((dim,), 0.5, dtype=torch.float64)
    cov_a, cov_b = _random_cov(dim, 1), _random_cov(dim, 2)
    exact = G.frechet_distance(mu_a, cov_a, mu_b, cov_b)
    estimated = G.fid(_gaussian(20000, mu_a, cov_a, 3), _gaussian(20000, mu_b, cov_b, 4))
    assert exact > 1.0
    assert abs(estimated - exact) / exact < 0.03


def test_frechet_distance_of_1d_gaussians_is_the_textbook_formula():
    # d^2 = (m1 - m2)^2 + (s1 - s2)^2 for 1-D normals
    value = G.frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[1.0]]))
    assert value == pytest.approx((1 - 3) ** 2 + (2 - 1) ** 2, rel=1e-9)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fid_agrees_with_monai_fidmetric():
    from monai.metrics import FIDMetric

    a = _gaussian(300, torch.zeros(6, dtype=torch.float64), _random_cov(6, 5), 6)
    b = _gaussian(300, torch.ones(6, dtype=torch.float64), _random_cov(6, 7), 8)
    assert G.fid(a, b) == pytest.approx(float(FIDMetric()(b, a)), rel=1e-6)


def test_fid_is_zero_for_identical_sets_and_stays_real_with_fewer_images_than_features():
    a = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    assert G.fid(a, a) == pytest.approx(0.0, abs=1e-8)
    small_a = torch.randn(10, 32, generator=torch.Generator().manual_seed(1))
    small_b = torch.randn(10, 32, generator=torch.Generator().manual_seed(2))
    with pytest.warns(UserWarning, match="rank-deficient"):
        value = G.fid(small_a, small_b)
    assert np.isfinite(value) and value > 0


def test_fid_rejects_mismatched_or_image_shaped_inputs():
    with pytest.raises(ValueError, match="same number of features"):
        G.fid(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(ValueError, match=r"feature matrix \(N, F\)"):
        G.fid(torch.randn(10, 1, 8, 8), torch.randn(10, 1, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        G.fid(torch.full((10, 3), float("nan")), torch.randn(10, 3))


# ------------------------------------------------------------------------------------------ KID
def test_kid_is_near_zero_for_one_distribution_and_clearly_positive_for_two():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 16, generator=generator), torch.randn(400, 16, generator=generator)
    shifted = torch.randn(400, 16, generator=generator) + 0.5
    same, same_std = G.kid(a, b, num_subsets=30, subset_size=200, return_std=True)
    different = G.kid(a, shifted, num_subsets=30, subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3
    assert different > 0.05
    assert different > 20 * abs(same)


def test_mmd2_unbiased_with_a_linear_kernel_matches_monai_mmd():
    from monai.metrics import MMDMetric

    generator = torch.Generator().manual_seed(1)
    a, b = (
        torch.randn(30, 5, generator=generator, dtype=torch.float64),
        torch.randn(30, 5, generator=generator, dtype=torch.float64) + 0.3,
    )
    ours = G.mmd2_unbiased(a @ a.T, b @ b.T, a @ b.T)
    assert ours == pytest.approx(float(MMDMetric()(a, b)), rel=1e-9)


def test_kid_polynomial_kernel_is_the_cubic_kernel():
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])
    assert float(G.polynomial_kernel(a, b)) == pytest.approx(((1 * 3 + 2 * -1) / 2 + 1) ** 3)


# ----------------------------------------------------------------------------- precision/recall
def test_precision_recall_near_one_for_one_distribution_and_zero_for_far_sets():
    generator = torch.Generator().manual_seed(0)
    real, fake = torch.randn(500, 3, generator=generator), torch.randn(500, 3, generator=generator)
    precision, recall = G.precision_recall(real, fake, k=3)
    assert precision > 0.9 and recall > 0.9
    far_precision, far_recall = G.precision_recall(real, fake + 20.0, k=3)
    assert far_precision == 0.0 and far_recall == 0.0


def test_precision_recall_separate_fidelity_from_coverage():
    # a generator that only makes half of the real distribution: realistic (high precision), low recall
    generator = torch.Generator().manual_seed(2)
    real = torch.randn(600, 2, generator=generator)
    half = torch.randn(600, 2, generator=generator)
    half[:, 0] = half[:, 0].abs()
    precision, recall = G.precision_recall(real, half, k=3)
    assert precision > 0.85
    assert recall < 0.7


def test_knn_radii_is_the_distance_to_the_kth_other_point():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    assert G.knn_radii(points, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert G.knn_radii(points, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="k must be"):
        G.knn_radii(points, 4)


# ------------------------------------------------------------------------------------ diversity
def _smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, size // 8, size // 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) * 2 - 1


def test_ms_ssim_settings_fit_monai_size_check_for_small_images():
    assert G.ms_ssim_settings(64) == (7, pytest.approx(np.asarray(G.MS_SSIM_WEIGHTS[:4]) / sum(G.MS_SSIM_WEIGHTS[:4])))
    assert len(G.ms_ssim_settings(32)[1]) == 3
    assert len(G.ms_ssim_settings(256)[1]) == 5


def test_ms_ssim_diversity_is_one_for_copies_and_lower_for_diverse_images():
    diverse = _smooth_images(12, 64, 0)
    collapsed = diverse[:1].repeat(12, 1, 1, 1)
    assert G.ms_ssim_diversity(collapsed) == pytest.approx(1.0, abs=1e-4)
    assert G.ms_ssim_diversity(diverse) < 0.8
    assert 0.0 <= G.ms_ssim_diversity(_smooth_images(6, 32, 1)) <= 1.0  # the ci size works too


def test_ms_ssim_diversity_matches_monai_on_one_pair():
    from monai.metrics import MultiScaleSSIMMetric

    images = _smooth_images(2, 64, 3)
    kernel, weights = G.ms_ssim_settings(64)
    expected = MultiScaleSSIMMetric(spatial_dims=2, data_range=1.0, kernel_size=kernel, weights=weights)(
        (images[:1] + 1) / 2, (images[1:] + 1) / 2
    )
    assert G.ms_ssim_diversity(images) == pytest.approx(float(expected), rel=1e-5)


# --------------------------------------------------------------------------------- memorisation
def test_planted_near_copies_are_found_and_fresh_images_are_not_flagged():
    train, heldout, fresh = _smooth_images(64, 32, 10), _smooth_images(64, 32, 11), _smooth_images(8, 32, 12)
    generator = torch.Generator().manual_seed(13)
    planted_from = torch.tensor([3, 17, 42, 60])
    # near-copies: shifted one pixel (edge column repeated), contrast changed, noise added
    shifted = torch.cat([train[planted_from][..., :1], train[planted_from][..., :-1]], dim=-1)
    near_copies = shifted * 0.9 + 0.03 * torch.randn(4, 1, 32, 32, generator=generator)
    generated = torch.cat([near_copies, fresh])
    similarity, index = G.nearest_training_images(generated, train)
    threshold = G.memorisation_threshold(heldout, train)
    flagged = similarity > threshold
    assert flagged[:4].all() and not flagged[4:].any()
    assert index[:4].tolist() == planted_from.tolist()


def test_near_copies_shift_right_by_one_pixel():
    images = torch.arange(16.0).reshape(1, 1, 4, 4) / 16
    copy = G.near_copies(images, torch.Generator().manual_seed(0), shift=1, contrast=1.0, noise_std=0.0)
    assert torch.equal(copy[..., 1:], images[..., :-1]) and torch.equal(copy[..., 0], images[..., 0])


def test_near_copies_are_flagged_by_the_memorisation_check():
    train, heldout = _smooth_images(64, 32, 20), _smooth_images(64, 32, 21)
    copies = G.near_copies(train[:4], torch.Generator().manual_seed(0))
    similarity, index = G.nearest_training_images(copies, train)
    assert (similarity > G.memorisation_threshold(heldout, train)).all()
    assert index.tolist() == [0, 1, 2, 3]


def test_nearest_training_images_exact_copy_has_similarity_one_and_right_index():
    train = _smooth_images(10, 16, 0)
    result = G.nearest_training_images(train[[7, 2]] * 3 + 1, train[:, 0])  # brightness/contrast changed, (N, H, W)
    assert result.similarity.tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert result.index.tolist() == [7, 2]


def test_nearest_training_images_on_features_uses_cosine_similarity_around_the_training_mean():
    train = torch.tensor([[11.0, 10.0], [10.0, 11.0]])  # mean (10.5, 10.5)
    result = G.nearest_training_images(torch.tensor([[12.5, 10.6]]), train)  # (2, 0.1) from the mean
    assert result.index.tolist() == [0]
    assert float(result.similarity[0]) == pytest.approx(
        (2 * 0.5 - 0.1 * 0.5) / (np.hypot(2, 0.1) * np.hypot(0.5, 0.5)), rel=1e-5
    )


def test_nearest_training_images_rejects_different_sizes_and_constant_images():
    with pytest.raises(ValueError, match="same image size"):
        G.nearest_training_images(torch.rand(2, 1, 8, 8), torch.rand(3, 1, 16, 16))
    with pytest.raises(ValueError, match="constant"):
        G.nearest_training_images(torch.zeros(1, 1, 8, 8), torch.rand(3, 1, 8, 8))


def test_memorisation_threshold_lies_between_the_heldout_maximum_and_one():
    train, heldout = _smooth_images(20, 16, 0), _smooth_images(10, 16, 1)
    floor = float(G.nearest_training_images(heldout, train).similarity.max())
    assert G.memorisation_threshold(heldout, train, margin=0.0) == pytest.approx(floor, abs=1e-6)
    assert G.memorisation_threshold(heldout, train) == pytest.approx(floor + 0.25 * (1 - floor), abs=1e-6)
    assert G.memorisation_threshold(heldout, train, margin=0.5) == pytest.approx(floor + 0.5 * (1 - floor), abs=1e-6)
