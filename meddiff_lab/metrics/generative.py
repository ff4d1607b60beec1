r"""Metrics for a *set* of generated images: fidelity, coverage, diversity and copying.

Every function here compares two sets, so every number means something only beside its *floor*:
the same metric between two disjoint sets of real images of the same size. A FID of 3.1 says
nothing; "3.1, where two real sets of 128 images score 2.4" says the model is close to the data.

* :func:`fid` — Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017),
  :math:`\lVert\mu_r-\mu_g\rVert^2+\operatorname{tr}\big(\Sigma_r+\Sigma_g-2(\Sigma_r^{1/2}\Sigma_g\Sigma_r^{1/2})^{1/2}\big)`.
* :func:`kid` — kernel inception distance (Bińkowski et al. 2018): the unbiased squared MMD with the
  cubic polynomial kernel :math:`k(x,y)=(x^\top y/F+1)^3`, averaged over random subsets. Unbiased,
  so it is about 0 (and can be slightly negative) for one distribution at any sample size.
* :func:`precision_recall` — improved precision and recall (Kynkäänniemi et al. 2019): the share of
  generated images inside the real images' k-nearest-neighbour manifold (fidelity), and the share
  of real images inside the generated manifold (coverage).
* :func:`ms_ssim_diversity` — mean MS-SSIM between random pairs of images (MONAI's MS-SSIM, sized
  for small images). Lower means more diverse; compare it with the same number for real images.
* :func:`nearest_training_images` and :func:`memorisation_threshold` — for every generated image,
  the most similar training image, and the similarity above which an image is flagged as a copy;
  :func:`near_copies` plants copies to check that the check finds them.

Feature matrices are ``(N, F)`` (one row per image); images are ``(N, 1, H, W)`` or ``(N, H, W)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from meddiff_lab.metrics._inputs import feature_matrix, image_batch, same_width

# MS-SSIM's standard per-scale weights (Wang et al. 2003), from the finest scale to the coarsest.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# -------------------------------------------------------------------------------------------- FID
def frechet_distance(mu_a, sigma_a, mu_b, sigma_b) -> float:
    r"""Closed-form Fréchet (2-Wasserstein) distance between :math:`\mathcal N(\mu_a,\Sigma_a)` and
    :math:`\mathcal N(\mu_b,\Sigma_b)`:

    .. math:: d^2 = \lVert\mu_a-\mu_b\rVert^2 + \operatorname{tr}\Sigma_a + \operatorname{tr}\Sigma_b
              - 2\operatorname{tr}\big(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2}\big)^{1/2}

    The last trace is computed from the eigenvalues of the symmetric matrix
    :math:`\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2}` (the same eigenvalues as :math:`\Sigma_a\Sigma_b`),
    which stays real and stable when a covariance is rank-deficient (fewer images than features),
    where a general matrix square root returns complex noise.

    Args:
        mu_a, mu_b: means ``(F,)``.
        sigma_a, sigma_b: covariances ``(F, F)``, symmetric positive semi-definite.
    Returns:
        the squared distance :math:`d^2` (what is called FID), a float >= 0.
    """
    mu_a, mu_b = (torch.as_tensor(np.asarray(m), dtype=torch.float64) for m in (mu_a, mu_b))
    sigma_a, sigma_b = (torch.as_tensor(np.asarray(s), dtype=torch.float64) for s in (sigma_a, sigma_b))
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != (mu_a.numel(),) * 2:
        raise ValueError(
            f"means must be (F,) and covariances (F, F) with one F, got {tuple(mu_a.shape)}, "
            f"{tuple(mu_b.shape)}, {tuple(sigma_a.shape)}, {tuple(sigma_b.shape)}"
        )
    sqrt_a = _psd_sqrt(sigma_a)
    middle = sqrt_a @ sigma_b @ sqrt_a
    eigenvalues = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0)
    trace_sqrt = eigenvalues.sqrt().sum()
    diff = mu_a - mu_b
    value = diff @ diff + torch.trace(sigma_a) + torch.trace(sigma_b) - 2 * trace_sqrt
    return float(value.clamp_min(0))


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def fid(real_features, generated_features) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets ("FID" on any features).

    .. math:: \mathrm{FID} = \lVert\mu_r-\mu_g\rVert^2 + \operatorname{tr}\big(\Sigma_r+\Sigma_g
              - 2(\Sigma_r^{1/2}\Sigma_g\Sigma_r^{1/2})^{1/2}\big)

    Gives the same numbers as MONAI's ``FIDMetric`` (tested) but stays real and stable when there are
    fewer images than features. FID is biased upward at small N (the estimated covariances are
    noisy), so report it beside the real-vs-real floor at the same N, never alone.

    Args:
        real_features: ``(N, F)`` features of real images.
        generated_features: ``(M, F)`` features of generated images (same extractor).
    Returns:
        FID, a float >= 0 (0 only for identical mean and covariance).
    """
    real = feature_matrix(real_features, "real_features")
    generated = feature_matrix(generated_features, "generated_features")
    same_width(real, generated, "real_features", "generated_features")
    if min(len(real), len(generated)) <= real.shape[1]:
        warnings.warn(
            f"FID on {len(real)} and {len(generated)} images with {real.shape[1]} features: the "
            f"covariances are rank-deficient and FID is strongly biased upward; compare it only "
            f"with a floor computed at the same sample size",
            stacklevel=2,
        )
    return frechet_distance(real.mean(0), torch.cov(real.T), generated.mean(0), torch.cov(generated.T))


# -------------------------------------------------------------------------------------------- KID
def polynomial_kernel(a: torch.Tensor, b: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    r"""KID's kernel :math:`k(x,y)=(x^\top y/F + c_0)^{d}` between rows of ``a`` (N, F) and ``b`` (M, F)."""
    return (a @ b.T / a.shape[1] + coef0) ** degree


def mmd2_unbiased(k_aa: torch.Tensor, k_bb: torch.Tensor, k_ab: torch.Tensor) -> float:
    r"""Unbiased squared MMD from kernel matrices (Gretton et al. 2012, eq. 3):

    .. math:: \widehat{\mathrm{MMD}}^2 = \frac{\sum_{i\ne j}k(a_i,a_j)}{m(m-1)}
              + \frac{\sum_{i\ne j}k(b_i,b_j)}{n(n-1)} - \frac{2}{mn}\sum_{i,j}k(a_i,b_j)
    """
    m, n = k_aa.shape[0], k_bb.shape[0]
    term_aa = (k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1))
    term_bb = (k_bb.sum() - k_bb.diagonal().sum()) / (n * (n - 1))
    return float(term_aa + term_bb - 2 * k_ab.mean())


def kid(
    real_features,
    generated_features,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
    return_std: bool = False,
) -> float | tuple[float, float]:
    r"""Kernel inception distance: unbiased MMD² with the cubic polynomial kernel, averaged over subsets.

    Each of ``num_subsets`` rounds draws ``min(subset_size, N, M)`` rows from each set (without
    replacement) and computes :func:`mmd2_unbiased` with :func:`polynomial_kernel`. Unlike FID, the
    estimate is unbiased: about 0 for two samples of one distribution, whatever their size (it can
    be slightly negative), so small sets can be compared.

    Args:
        real_features: ``(N, F)``; generated_features: ``(M, F)``; same extractor.
        num_subsets: rounds to average; subset_size: rows per set per round (at least 2).
        degree: polynomial degree (3 in the paper); seed: seeds the subset draws.
        return_std: also return the standard deviation over the subsets.
    Returns:
        KID (float), or ``(KID, std)`` when ``return_std``.
    """
    real = feature_matrix(real_features, "real_features")
    generated = feature_matrix(generated_features, "generated_features")
    same_width(real, generated, "real_features", "generated_features")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f"num_subsets must be >= 1 and subset_size >= 2, got {num_subsets} and {subset_size}")
    size = min(subset_size, len(real), len(generated))
    generator = torch.Generator().manual_seed(seed)
    if size == len(real) == len(generated):
        num_subsets = 1  # every subset would be the whole of both sets
    values = []
    for _ in range(num_subsets):
        a = real[torch.randperm(len(real), generator=generator)[:size]]
        b = generated[torch.randperm(len(generated), generator=generator)[:size]]
        values.append(
            mmd2_unbiased(
                polynomial_kernel(a, a, degree), polynomial_kernel(b, b, degree), polynomial_kernel(a, b, degree)
            )
        )
    mean = float(np.mean(values))
    return (mean, float(np.std(values))) if return_std else mean


# ------------------------------------------------------------------------------ precision / recall
def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest *other* row: the radii of the k-NN manifold ``(N,)``."""
    if not 1 <= k < len(features):
        raise ValueError(f"k must be between 1 and the number of images - 1 ({len(features) - 1}), got {k}")
    distances = torch.cdist(features, features)
    # the 0-th smallest is the point itself (distance 0); the k-th smallest is its k-th neighbour
    return distances.kthvalue(k + 1, dim=1).values


def manifold_coverage(
    reference: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """For each query row: is it inside at least one reference ball ``|q - r_i| <= radii_i``? ``(M,)`` bool."""
    inside = []
    for start in range(0, len(queries), batch_size):
        distances = torch.cdist(queries[start : start + batch_size], reference)
        inside.append((distances <= radii[None]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real_features, generated_features, k: int = 3) -> tuple[float, float]:
    r"""Improved precision and recall (Kynkäänniemi et al. 2019) on k-NN manifolds.

    The real manifold is the union of balls around each real feature vector, each with the radius of
    its k-th nearest real neighbour; likewise for the generated set. Then

    .. math:: \text{precision} = \frac1M\sum_j \mathbb 1[g_j \in \text{manifold(real)}],\qquad
              \text{recall} = \frac1N\sum_i \mathbb 1[r_i \in \text{manifold(generated)}]

    Precision is fidelity (are samples realistic?), recall is coverage (is every kind of real image
    produced?). A model that copies a few training images scores high precision, low recall.

    Args:
        real_features: ``(N, F)``; generated_features: ``(M, F)``; same extractor.
        k: neighbours defining each ball (3 in the paper).
    Returns:
        ``(precision, recall)``, both in [0, 1].
    """
    real = feature_matrix(real_features, "real_features", min_rows=k + 1)
    generated = feature_matrix(generated_features, "generated_features", min_rows=k + 1)
    same_width(real, generated, "real_features", "generated_features")
    precision = manifold_coverage(real, knn_radii(real, k), generated).double().mean()
    recall = manifold_coverage(generated, knn_radii(generated, k), real).double().mean()
    return float(precision), float(recall)


# ------------------------------------------------------------------------------------- diversity
def ms_ssim_settings(image_size: int, kernel_size: int = 7, max_scales: int = 5) -> tuple[int, tuple[float, ...]]:
    """Choose MS-SSIM's kernel and scales for small images: ``(kernel_size, weights)``.

    MONAI's ``MultiScaleSSIMMetric`` halves the image once per scale and needs
    ``image_size // (scales - 1)**2 > kernel_size - 1``; with the standard 5 scales and an 11-pixel
    window that means images over 160 pixels. Here the window is 7 pixels (Gaussian sigma 1.5) and
    the number of scales drops until the check passes (64 px: 4 scales, 32 px: 3), keeping the
    first standard weights, renormalised to sum to 1.
    """
    for scales in range(max_scales, 0, -1):
        if image_size // max(1, scales - 1) ** 2 > kernel_size - 1:
            weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
            return kernel_size, tuple(float(w) for w in weights / weights.sum())
    raise ValueError(
        f"images of {image_size} pixels are too small for MS-SSIM with a {kernel_size}-pixel "
        f"window; use kernel_size < {image_size + 1}"
    )


def ms_ssim_diversity(
    images, value_range: Sequence[float] = (-1.0, 1.0), num_pairs: int = 500, kernel_size: int = 7, seed: int = 0
) -> float:
    r"""Mean MS-SSIM between random pairs of images: lower means a more diverse set.

    A model that collapses onto a few images has pairs that look alike (MS-SSIM near 1). Real images
    of one anatomy are alike too, so compare with the same number on real images (the floor):
    a generated set should be about as diverse as the real one, neither more nor less.

    Args:
        images: ``(N, 1, H, W)`` or ``(N, H, W)``, N >= 2, values in ``value_range``.
        value_range: the images' (min, max); they are mapped to [0, 1] before MS-SSIM.
        num_pairs: how many distinct pairs (i < j) to average; all pairs when there are fewer.
        kernel_size: Gaussian window (sigma 1.5); scales are chosen by :func:`ms_ssim_settings`.
        seed: seeds the choice of pairs.
    Returns:
        mean pairwise MS-SSIM in [0, 1].
    """
    from monai.metrics.regression import compute_ms_ssim

    batch = image_batch(images, "images")
    if batch.ndim != 4 or len(batch) < 2:
        raise ValueError(f"images must be at least two 2D images (N, 1, H, W), got shape {tuple(batch.shape)}")
    low, high = float(value_range[0]), float(value_range[1])
    batch = ((batch - low) / (high - low)).clamp(0, 1)
    kernel, weights = ms_ssim_settings(min(batch.shape[-2:]), kernel_size)
    pairs = _random_pairs(len(batch), num_pairs, seed)
    scores = []
    for start in range(0, len(pairs), 128):
        i, j = pairs[start : start + 128].T
        scores.append(
            compute_ms_ssim(
                batch[i], batch[j], spatial_dims=2, data_range=1.0, kernel_size=kernel, weights=weights
            ).reshape(-1)
        )
    return float(torch.cat(scores).mean())


def _random_pairs(n: int, num_pairs: int, seed: int) -> torch.Tensor:
    """``(P, 2)`` distinct index pairs i < j: all of them, or ``num_pairs`` drawn without replacement."""
    i, j = torch.triu_indices(n, n, offset=1)
    pairs = torch.stack([i, j], dim=1)
    if len(pairs) > num_pairs:
        pairs = pairs[torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:num_pairs]]
    return pairs


# ---------------------------------------------------------------------------------- memorisation
class NearestTraining(NamedTuple):
    """For each generated image: ``similarity`` (N,) to its nearest training image, and its ``index`` (N,)."""

    similarity: torch.Tensor
    index: torch.Tensor


def _rows(value: Any, name: str) -> torch.Tensor:
    """Images -> zero-mean pixel vectors, one per image (so a dot product of unit rows is a
    correlation); feature matrices -> their rows, float64."""
    tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value.detach())
    if tensor.ndim == 2:
        return feature_matrix(tensor, name, min_rows=1)
    rows = image_batch(tensor, name).reshape(len(tensor), -1).double()
    return rows - rows.mean(dim=1, keepdim=True)


def _unit(rows: torch.Tensor, name: str) -> torch.Tensor:
    norms = rows.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError(
            f"{name} has {int((norms == 0).sum())} constant image(s) or zero feature vector(s), "
            f"whose similarity is undefined"
        )
    return rows / norms


def nearest_training_images(generated, train, batch_size: int = 512) -> NearestTraining:
    r"""Find, for every generated image, the most similar training image (a memorisation check).

    Diffusion models can reproduce training images: Carlini et al. (2023) extracted training images
    from Stable Diffusion and Imagen, Somepalli et al. (2023) found replicated content, and copying
    is worst with small training sets, which medical data usually are (Akbar et al. 2023; Dar et al.
    2024, on brain MRI and chest radiographs). A synthetic set shared "instead of patient data" must
    therefore be checked image by image.

    Similarity is the normalised cross-correlation (Pearson correlation of pixel values),

    .. math:: s(g, x) = \frac{(g-\bar g)^\top(x-\bar x)}{\lVert g-\bar g\rVert\,\lVert x-\bar x\rVert}\in[-1,1],

    insensitive to brightness and contrast changes; 1 means a copy up to brightness/contrast.
    Feature matrices ``(N, F)`` may be passed instead of images (e.g. from the domain encoder, which
    was trained to tell individual radiographs apart under small shifts, as copy detectors are;
    Dar et al. used such a contrastive embedding): then it is the cosine similarity of the features
    after centring both sets on the training set's mean feature (features share a large common
    component that would make every pair look alike).

    Args:
        generated: ``(N, 1, H, W)`` / ``(N, H, W)`` images or ``(N, F)`` features.
        train: the training images ``(T, 1, H, W)`` / ``(T, H, W)`` (or features), same size.
        batch_size: generated images compared at a time (memory: batch_size x T).
    Returns:
        ``NearestTraining(similarity, index)``: float32 ``(N,)`` and int64 ``(N,)`` indices into ``train``.
        Flag images above :func:`memorisation_threshold`.
    """
    gen_rows, train_rows = _rows(generated, "generated"), _rows(train, "train")
    if gen_rows.shape[1] != train_rows.shape[1]:
        raise ValueError(
            f"generated and train must have the same image size (or feature width), got "
            f"{gen_rows.shape[1]} and {train_rows.shape[1]} values per image"
        )
    if torch.as_tensor(np.asarray(train) if not isinstance(train, torch.Tensor) else train).ndim == 2:
        # features share a large common component: centre both sets on the training mean first
        centre = train_rows.mean(dim=0, keepdim=True)
        gen_rows, train_rows = gen_rows - centre, train_rows - centre
    gen_rows, train_rows = _unit(gen_rows, "generated"), _unit(train_rows, "train")
    best_sim, best_idx = [], []
    for start in range(0, len(gen_rows), batch_size):
        sim, idx = (gen_rows[start : start + batch_size] @ train_rows.T).max(dim=1)
        best_sim.append(sim)
        best_idx.append(idx)
    return NearestTraining(torch.cat(best_sim).float(), torch.cat(best_idx))


def memorisation_threshold(heldout, train, quantile: float = 1.0, margin: float = 0.25) -> float:
    r"""The similarity above which a generated image is flagged as a probable copy of a training image.

    The threshold is calibrated, not guessed: fresh real images that were never trained on (a held-out
    set from the same distribution) show how similar an image can be to its nearest training image
    *without* being a copy. Anatomy makes all chest radiographs alike, so that floor is high and
    dataset-dependent (no fixed number such as 0.95 fits every dataset). The threshold is

    .. math:: \tau = q + m\,(1 - q),\qquad q = \text{quantile}_{p}\{\max_x s(h, x) : h \in \text{held-out}\}

    i.e. a share ``margin`` of the way from the most similar fresh image (``quantile=1``: the maximum)
    to an exact copy (similarity 1). A flagged image is closer to a training image than any fresh
    real image was, by a margin: it is for a human to look at, side by side with its neighbour.
    The margin guards against chance: with H held-out images, a fresh image beats their maximum with
    probability 1/(H+1). On the phantoms with the domain encoder's copy embedding, ``margin=0.25``
    flagged none of 256 fresh images and 99 % of near-copies shifted by a pixel with noise added
    (``margin=0.5``: 96 %).

    Args:
        heldout: real images (or features) not used for training, ``(H, 1, H, W)`` / ``(H, H, W)``.
        train: the training images (or features).
        quantile: which quantile of the held-out similarities is the floor (1.0 = the maximum).
        margin: the share of the gap to 1 added on top (0 = the floor itself).
    Returns:
        the threshold, a float in [-1, 1].
    """
    if not 0.0 <= quantile <= 1.0 or not 0.0 <= margin < 1.0:
        raise ValueError(f"quantile must be in [0, 1] and margin in [0, 1), got {quantile} and {margin}")
    similarity = nearest_training_images(heldout, train).similarity.double()
    floor = float(torch.quantile(similarity, quantile))
    return floor + margin * (1.0 - floor)


def near_copies(
    images: torch.Tensor, generator: torch.Generator, shift: int = 1, contrast: float = 0.95, noise_std: float = 0.02
) -> torch.Tensor:
    """Planted near-copies of ``(B, 1, H, W)`` [-1, 1] images, to check that the memorisation check finds them.

    Each image is shifted ``shift`` pixels right (its first column repeated), its contrast scaled by
    ``contrast`` and Gaussian noise of standard deviation ``noise_std`` added, clipped to [-1, 1]:
    what a memorising model's output looks like.
    """
    shifted = (
        torch.cat([images[..., :1].repeat_interleave(shift, dim=-1), images[..., :-shift]], dim=-1) if shift else images
    )
    return (shifted * contrast + noise_std * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


__all__ = [
    "fid",
    "kid",
    "precision_recall",
    "ms_ssim_diversity",
    "nearest_training_images",
    "memorisation_threshold",
    "near_copies",
    "frechet_distance",
    "polynomial_kernel",
    "mmd2_unbiased",
    "knn_radii",
    "ms_ssim_settings",
    "NearestTraining",
    "MS_SSIM_WEIGHTS",
]
