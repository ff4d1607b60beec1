r"""Anomaly detection by reconstruction: what a model of normal images cannot rebuild is anomalous.

A model that knows normal anatomy maps an image :math:`x` to a *pseudo-healthy* version :math:`\hat x`;
the anomaly map is the reconstruction error

.. math:: a(x) = |x - \hat x| \quad(\text{optionally smoothed by a Gaussian of } \sigma \text{ pixels}).

Two reconstructions are compared:

* **diffusion** (AnoDDPM, Wyatt et al., CVPRW 2022; Pinaya et al., MICCAI 2022): noise :math:`x` to a
  level :math:`t^*` that drowns a lesion but not the anatomy, and denoise (SDEdit,
  :func:`meddiff_lab.diffusion.restoration.sdedit`, deterministic DDIM after the noising);
* **autoencoder** (the classical baseline): a convolutional autoencoder with an 8 × 8 bottleneck,
  trained on normal images, whose reconstruction drops what it did not learn.

A map of reconstruction errors can only point at findings with a local footprint; a finding that
changes *global* shape (cardiomegaly: a larger heart is still a heart) has no lesion to point at, and
whether an image-level score still catches it is measured, finding by finding, in notebook 09.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from meddiff_lab.applications.supervised import fit_pairs
from meddiff_lab.diffusion.restoration import sdedit


def anomaly_map(images: torch.Tensor, reconstructions: torch.Tensor, smooth: float = 0.0) -> torch.Tensor:
    """|images - reconstructions|, (N, 1, H, W), optionally Gaussian-smoothed (``smooth`` pixels)."""
    if images.shape != reconstructions.shape:
        raise ValueError(
            f"images {tuple(images.shape)} and reconstructions {tuple(reconstructions.shape)} must have the same shape"
        )
    diff = (images - reconstructions).abs().float()
    if smooth > 0:
        diff = torch.from_numpy(ndimage.gaussian_filter(diff.numpy(), (0, 0, smooth, smooth))).float()
    return diff


def image_anomaly_scores(maps: torch.Tensor, region=None, quantile: float = 0.99) -> np.ndarray:
    """One score per image: the ``quantile`` of its anomaly map (inside ``region`` (N, H, W) when given)."""
    m = maps.reshape(len(maps), -1).double()
    if region is not None:
        r = torch.as_tensor(np.asarray(region)).reshape(len(maps), -1).bool()
        return np.asarray(
            [float(torch.quantile(row[keep], quantile)) if keep.any() else 0.0 for row, keep in zip(m, r)]
        )
    return torch.quantile(m, quantile, dim=1).numpy()


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder, (B, 1, H, W) in [-1, 1] → same; H, W multiples of 8.

    ::

        1 → c (stride 2) → 2c (stride 2) → 4c (stride 2) → latent (1x1) → 4c → 2c → c → 1 (tanh)
    """

    def __init__(self, channels: int = 16, latent_channels: int = 4) -> None:
        super().__init__()
        c = channels
        act = nn.SiLU
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 4, 2, 1),
            act(),
            nn.Conv2d(c, 2 * c, 4, 2, 1),
            act(),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1),
            act(),
            nn.Conv2d(4 * c, latent_channels, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 4 * c, 1),
            act(),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1),
            act(),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1),
            act(),
            nn.ConvTranspose2d(c, 1, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"image side {tuple(x.shape[-2:])} must be a multiple of 8 for the autoencoder")
        return self.decoder(self.encoder(x))


def train_autoencoder(
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 2e-3,
    channels: int = 16,
    latent_channels: int = 4,
    seed: int = 0,
) -> tuple[ConvAutoencoder, list[float]]:
    """Train a :class:`ConvAutoencoder` on ``images`` (N, 1, H, W) in [-1, 1] (normal images only); MSE, Adam
    with a cosine learning rate (:func:`~meddiff_lab.applications.supervised.fit_pairs`).

    Returns:
        (the autoencoder in eval mode, the loss of every step).
    """
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ae = ConvAutoencoder(channels, latent_channels)
    losses = fit_pairs(ae, images, images, steps=steps, batch_size=batch_size, lr=lr, generator=generator)
    return ae, losses


def pseudo_healthy(
    model,
    scheduler,
    images: torch.Tensor,
    start_timestep: int,
    num_inference_steps: int,
    *,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Diffusion reconstruction: SDEdit from ``start_timestep`` with deterministic DDIM steps, in batches.

    Args:
        model, scheduler: a diffusion model of (ideally) normal images and its scheduler.
        images: (N, 1, H, W) in [-1, 1].
        start_timestep: the noise level t* (0-based); larger forgets larger anomalies, and more anatomy.
    """
    out = [
        sdedit(model, scheduler, images[i : i + batch_size], start_timestep, num_inference_steps, generator=generator)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).cpu()


__all__ = ["anomaly_map", "image_anomaly_scores", "ConvAutoencoder", "train_autoencoder", "pseudo_healthy"]
