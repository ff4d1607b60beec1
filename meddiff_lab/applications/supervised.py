r"""The supervised baseline: a small residual CNN trained on (degraded, clean) pairs.

DnCNN-style (Zhang et al., IEEE TIP 2017): the network predicts the *residual*,
:math:`\hat x = y + f_\theta(y)`, trained with the mean squared error :math:`\|\hat x - x\|^2` on pairs.
Its last layer starts at zero, so before training it returns its input exactly. For
super-resolution the input is the bicubic upsampling of the low-resolution image (SRCNN's setup,
Dong et al. 2014), so the same network serves both tasks.

::

    y ─ conv3x3(1→c) ─ ReLU ─ [conv3x3(c→c) ─ GroupNorm ─ ReLU] × (depth-2) ─ conv3x3(c→1) ─(+ y)─ x̂

This is the strong baseline a diffusion method has to beat: it sees the very degradation it is tested
on (same dose, same downsampling), which an unconditional diffusion model never does.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F


class RestorationCNN(nn.Module):
    """Residual CNN: ``forward(y)`` → ``y + f(y)``, (B, 1, H, W) → (B, 1, H, W).

    Args:
        channels: feature channels c.
        depth: convolution layers (at least 2).
    """

    def __init__(self, channels: int = 32, depth: int = 5) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2 layers, got {depth!r}")
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(min(8, channels), channels), nn.ReLU()]
        last = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.body(y)


def random_crops(
    inputs: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, crop: int | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs at ``index``, each cut to the same random ``crop × crop`` window (``None``: whole images)."""
    x, y = inputs[index], targets[index]
    if crop is None or crop >= min(x.shape[-2:]):
        return x, y
    rows = torch.randint(0, x.shape[-2] - crop + 1, (len(index),), generator=generator).tolist()
    cols = torch.randint(0, x.shape[-1] - crop + 1, (len(index),), generator=generator).tolist()
    cut = lambda t: torch.stack([t[k, :, r : r + crop, c : c + crop] for k, (r, c) in enumerate(zip(rows, cols))])  # noqa: E731
    return cut(x), cut(y)


def fit_pairs(
    net: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    crop: int | None = None,
    progress: bool = False,
    desc: str = "training",
) -> list[float]:
    """The training loop of the applications' networks: ``net(input)`` ≈ ``target`` under the mean
    squared error, Adam at ``lr`` with a cosine decay to 0 over ``steps``.

    Each step draws ``batch_size`` random pairs with ``generator`` (cut to one random ``crop × crop``
    window each, see :func:`random_crops`). For an autoencoder pass the images as both ``inputs`` and
    ``targets``.

    Args:
        inputs, targets: (N, C, H, W) float32, paired.

    Returns:
        The loss of every step. ``net`` is left in eval mode, with ``net.seconds`` the training time.
    """
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(1, steps))
    losses: list[float] = []
    iterator = range(int(steps))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=desc, leave=False)
    started = time.perf_counter()
    net.train()
    for _ in iterator:
        index = torch.randint(0, len(inputs), (batch_size,), generator=generator)
        x, y = random_crops(inputs, targets, index, crop, generator)
        loss = F.mse_loss(net(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
    net.eval()
    net.seconds = time.perf_counter() - started
    return losses


def train_restoration_net(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 16,
    crop: int | None = None,
    lr: float = 1e-3,
    channels: int = 32,
    depth: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> tuple[RestorationCNN, list[float]]:
    """Train a :class:`RestorationCNN` to map ``inputs`` to ``targets`` (MSE, Adam, cosine learning rate).

    Args:
        inputs, targets: (N, 1, H, W) float32, paired (e.g. low-dose and noiseless images in [-1, 1]).
        steps: optimiser steps; each draws ``batch_size`` random pairs.
        crop: train on random ``crop × crop`` windows (the network is convolutional, so it still applies to
            whole images): at the same cost, four times more steps at half the side.

    Returns:
        (the network in eval mode, the loss of every step).
    """
    if inputs.shape != targets.shape or inputs.ndim != 4:
        raise ValueError(
            f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must be the same "
            "(N, 1, H, W) shape: one degraded image per clean one"
        )
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = RestorationCNN(channels, depth)
    losses = fit_pairs(
        net,
        inputs,
        targets,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        generator=generator,
        crop=crop,
        progress=progress,
        desc="supervised",
    )
    return net, losses


@torch.no_grad()
def apply_net(net: nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Run ``net`` over ``inputs`` in batches without gradients."""
    return torch.cat([net(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])


__all__ = ["RestorationCNN", "random_crops", "fit_pairs", "train_restoration_net", "apply_net"]
