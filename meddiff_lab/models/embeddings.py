"""Embeddings that tell the U-Net *when* it is (the timestep) and *what* it should draw (class, metadata).

The timestep embedding is the sinusoidal position encoding of "Attention is all you need", used by
DDPM (Ho et al., 2020) for the noise level:

.. math::

    \\omega_k = \\text{max\\_period}^{-k / (d/2 - s)}, \\qquad
    \\text{emb}(t) = [\\cos(t\\,\\omega_0), \\dots, \\cos(t\\,\\omega_{d/2-1}),
                      \\sin(t\\,\\omega_0), \\dots, \\sin(t\\,\\omega_{d/2-1})]

with ``s = downscale_freq_shift``. The defaults (cosine first, ``s = 0``) give the same numbers as
MONAI's ``get_timestep_embedding`` and as diffusers' ``get_timestep_embedding(...,
flip_sin_to_cos=True, downscale_freq_shift=0)``, the settings of diffusers' ``UNet2DModel``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(
    timesteps: torch.Tensor | int | float,
    dim: int,
    max_period: float = 10000.0,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
) -> torch.Tensor:
    """Sinusoidal embedding of diffusion timesteps.

    Args:
        timesteps: an int, a 0-d tensor or a ``(B,)`` tensor of (possibly fractional) timesteps.
        dim: embedding size (odd sizes are zero-padded by one column).
        max_period: the slowest wavelength, in timesteps.
        flip_sin_to_cos: ``True`` puts the cosines first (MONAI, diffusers' UNet2DModel).
        downscale_freq_shift: ``s`` in the frequency formula (diffusers' default 1, UNet2DModel's 0).

    Returns:
        ``(B, dim)`` float32 in [-1, 1] (``B = 1`` for a scalar timestep).
    """
    if dim < 2:
        raise ValueError(f"timestep_embedding: dim must be >= 2, got {dim}")
    timesteps = torch.as_tensor(timesteps)
    if timesteps.ndim == 0:
        timesteps = timesteps[None]
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must be a scalar or a (B,) tensor, got shape {tuple(timesteps.shape)}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    frequencies = torch.exp(exponent / (half - downscale_freq_shift))
    angles = timesteps.float()[:, None] * frequencies[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    embedding = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    if dim % 2 == 1:
        embedding = nn.functional.pad(embedding, (0, 1))
    return embedding


class TimestepEmbedding(nn.Module):
    """Sinusoidal features followed by a two-layer MLP: ``t -> (B, embedding_dim)``.

    Args:
        sinusoid_dim: size of the sinusoidal features (the U-Net uses its first channel count).
        embedding_dim: size of the output (the U-Net uses ``4 * channels[0]``, as MONAI and diffusers).
    """

    def __init__(self, sinusoid_dim: int, embedding_dim: int) -> None:
        super().__init__()
        self.sinusoid_dim = sinusoid_dim
        self.mlp = nn.Sequential(
            nn.Linear(sinusoid_dim, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim)
        )

    def forward(self, timesteps: torch.Tensor | int | float) -> torch.Tensor:
        """``timesteps``: int, 0-d or ``(B,)`` tensor. Returns ``(B, embedding_dim)``."""
        features = timestep_embedding(timesteps, self.sinusoid_dim)
        weight = self.mlp[0].weight
        return self.mlp(features.to(device=weight.device, dtype=weight.dtype))


class ClassEmbedding(nn.Module):
    """A learned vector per class, plus one *null* class for classifier-free guidance.

    Class indices run over ``0 .. num_classes - 1``; index ``num_classes`` (also ``self.null_class``) is
    the "no label" class. Training with a fraction of labels replaced by ``null_class`` teaches the same
    network the unconditional model, which classifier-free guidance (Ho & Salimans, 2022) needs:
    ``eps = eps(x, t, null) + w * (eps(x, t, y) - eps(x, t, null))``.

    Args:
        num_classes: number of real classes.
        embedding_dim: size of each vector (the U-Net's time-embedding size; the two are summed).
    """

    def __init__(self, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.null_class = num_classes
        self.embedding = nn.Embedding(num_classes + 1, embedding_dim)

    def forward(self, class_labels: torch.Tensor | int) -> torch.Tensor:
        """``class_labels``: int or ``(B,)`` int64 in ``[0, num_classes]``. Returns ``(B, embedding_dim)``."""
        labels = torch.as_tensor(class_labels, device=self.embedding.weight.device)
        if labels.ndim == 0:
            labels = labels[None]
        if labels.dtype.is_floating_point or labels.ndim != 1:
            raise ValueError(
                f"class_labels must be integer class indices of shape (B,), got "
                f"dtype {labels.dtype} and shape {tuple(labels.shape)}"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > self.num_classes):
            raise ValueError(
                f"class_labels must lie in [0, {self.num_classes}] ({self.num_classes} = the null "
                f"class for classifier-free guidance), got values in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        return self.embedding(labels.long())


class ConditionEmbedding(nn.Module):
    """A two-layer MLP mapping a metadata vector (age, sex, view, a finding's size...) to the embedding.

    Summed with the time embedding, it reaches every residual block's adaptive group norm
    (scale and shift after normalisation), so the metadata modulates every layer.

    Args:
        cond_dim: size of the metadata vector.
        embedding_dim: size of the output.
    """

    def __init__(self, cond_dim: int, embedding_dim: int) -> None:
        super().__init__()
        if cond_dim < 1:
            raise ValueError(f"cond_dim must be >= 1, got {cond_dim}")
        self.cond_dim = cond_dim
        self.mlp = nn.Sequential(nn.Linear(cond_dim, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """``cond``: ``(B, cond_dim)`` float. Returns ``(B, embedding_dim)``."""
        if cond.ndim != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(f"cond must have shape (B, {self.cond_dim}), got {tuple(cond.shape)}")
        weight = self.mlp[0].weight
        return self.mlp(cond.to(device=weight.device, dtype=weight.dtype))
