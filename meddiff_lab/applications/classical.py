r"""Classical (non-learned) restoration baselines: Gaussian, non-local means, BM3D, bicubic, biharmonic.

Every function takes and returns (N, 1, H, W) float32 tensors in the model range [-1, 1], so they sit
beside the diffusion samplers in one table.

* Gaussian filter: :math:`\hat x = G_\sigma * y`; its one parameter is tuned on calibration pairs.
* Non-local means (Buades, Coll & Morel, CVPR 2005), scikit-image's ``denoise_nl_means``: each pixel
  becomes a weighted mean of pixels whose surrounding patches look alike, weights
  :math:`\exp(-\max(d^2 - 2\sigma^2, 0)/h^2)`; ``h = 0.8 σ`` as scikit-image suggests.
* BM3D (Dabov et al., IEEE TIP 2007), the classical state of the art, from the ``bm3d`` package when it
  is installed (``pip install bm3d``; free for non-commercial use only, see its licence).
* Bicubic upsampling (Keys 1981), PyTorch's ``interpolate``.
* Biharmonic inpainting (scikit-image's ``inpaint_biharmonic``): the hole is filled with the smoothest
  surface (:math:`\Delta^2 u = 0`) that meets the known pixels; it reproduces any linear ramp exactly.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def _as_batch(images, name: str = "images") -> torch.Tensor:
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must be (N, 1, H, W) in [-1, 1], got shape {tuple(x.shape)}")
    return x


def gaussian_denoise(images, sigma: float) -> torch.Tensor:
    """Gaussian filter of std ``sigma`` pixels (reflecting edges); ``sigma = 0`` returns the input."""
    x = _as_batch(images)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 pixels, got {sigma!r}")
    if sigma == 0:
        return x.clone()
    return torch.from_numpy(ndimage.gaussian_filter(x.numpy(), (0, 0, sigma, sigma), mode="reflect")).float()


def tune_gaussian_sigma(noisy, truth, sigmas: Sequence[float] = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0)) -> float:
    """The ``sigma`` of ``sigmas`` whose Gaussian filter brings ``noisy`` closest to ``truth`` (MSE)."""
    truth = _as_batch(truth, "truth")
    errors = [float(((gaussian_denoise(noisy, s) - truth) ** 2).mean()) for s in sigmas]
    return float(sigmas[int(np.argmin(errors))])


def nlm_denoise(images, noise_std: float, h: float = 0.8, patch_size: int = 5, patch_distance: int = 6) -> torch.Tensor:
    """Non-local means (scikit-image) with the noise std known; filter strength ``h × noise_std``.

    Args:
        images: (N, 1, H, W) in [-1, 1].
        noise_std: the noise std in the same units.
    """
    from skimage.restoration import denoise_nl_means

    x = _as_batch(images).numpy()
    out = [
        denoise_nl_means(
            im[0],
            h=h * noise_std,
            sigma=noise_std,
            patch_size=patch_size,
            patch_distance=patch_distance,
            fast_mode=True,
        )
        for im in x.astype(np.float64)
    ]
    return torch.from_numpy(np.stack(out)[:, None]).float()


def bm3d_available() -> bool:
    """True when the ``bm3d`` package is installed (``pip install bm3d``)."""
    return importlib.util.find_spec("bm3d") is not None


def bm3d_denoise(images, noise_std: float) -> torch.Tensor:
    """BM3D (the ``bm3d`` package) with the noise std known, image by image.

    Raises:
        ImportError: when ``bm3d`` is not installed, saying how to install it.
    """
    if not bm3d_available():
        raise ImportError("BM3D needs the bm3d package: pip install bm3d (free for non-commercial use only)")
    import bm3d

    x = _as_batch(images).numpy().astype(np.float64)
    out = [bm3d.bm3d(im[0], float(noise_std)) for im in x]
    return torch.from_numpy(np.stack(out)[:, None]).float()


def bicubic_upsample(images, factor: int) -> torch.Tensor:
    """Bicubic upsampling by an integer ``factor`` (pixel centres as average pooling places them)."""
    x = _as_batch(images)
    return F.interpolate(x, scale_factor=int(factor), mode="bicubic", align_corners=False)


def biharmonic_inpaint(images, known) -> torch.Tensor:
    """Fill every pixel where ``known`` is False by biharmonic inpainting (scikit-image).

    Args:
        images: (N, 1, H, W) in [-1, 1].
        known: (N or 1, 1, H, W) bool, True where the pixel is measured.
    """
    from skimage.restoration import inpaint_biharmonic

    x = _as_batch(images).numpy().astype(np.float64)
    known = torch.as_tensor(known).bool().expand(x.shape).numpy()
    out = [inpaint_biharmonic(im[0], ~k[0]) for im, k in zip(x, known)]
    return torch.from_numpy(np.stack(out)[:, None]).float()


__all__ = [
    "gaussian_denoise",
    "tune_gaussian_sigma",
    "nlm_denoise",
    "bm3d_available",
    "bm3d_denoise",
    "bicubic_upsample",
    "biharmonic_inpaint",
]
