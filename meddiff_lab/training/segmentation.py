r"""Segmenting lungs and heart on chest radiographs with MONAI, to judge what diffusion models make.

Two notebooks use a segmentation network:

* **06_conditioning** uses one as a *measuring instrument*: segment the heart and the lung fields of
  a generated radiograph and compute its cardiothoracic ratio (CTR). Does a sample drawn for
  "Cardiomegaly" have CTR > 0.5?
* **07_segmentation_augmentation** trains it on a few labelled images, with and without synthetic
  (mask → image) pairs and classical augmentation, and compares Dice and HD95 on held-out images.

The network is MONAI's ``monai.networks.nets.UNet`` with one output channel per structure of
:data:`SEG_STRUCTURES` (sigmoid, multi-label), trained by default with MONAI's ``DiceCELoss``, the
Dice loss plus binary cross-entropy:

.. math:: \mathcal L = \Big(1 - \frac{2\sum_i p_i g_i + s}{\sum_i p_i + \sum_i g_i + s}\Big)
          - \frac{1}{N}\sum_i \big[g_i \log p_i + (1 - g_i)\log(1 - p_i)\big]

per image and structure, averaged. Plain ``DiceLoss`` (``loss="dice"``) works too but, in the short
runs of the course, sometimes never finds a structure for a given seed (measured here: the heart's
test Dice stuck near 0.45 for one of two seeds after 120 steps, against 0.8-0.9 with ``DiceCELoss``);
the cross-entropy term gives every pixel a gradient from the first step.

This module trains the network. What measures with it (the mask layouts :data:`SEG_STRUCTURES`,
:func:`stack_masks` and :func:`masks_to_condition`, :func:`predict_masks`, the Dice/HD95 scores
:func:`segmentation_scores` and :func:`measure_cardiothoracic_ratio`) lives in
:mod:`meddiff_lab.metrics.segmentation` and stays importable from here. Images are ``(N, 1, H, W)``
float32 in [-1, 1], masks ``(N, C, H, W)`` with values 0/1 in the order of :data:`SEG_STRUCTURES`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from meddiff_lab.data.phantom import CM_PER_UNIT
from meddiff_lab.metrics.segmentation import (
    SEG_STRUCTURES,
    SegmentationScores,
    masks_to_condition,
    measure_cardiothoracic_ratio,
    predict_masks,
    segmentation_scores,
    stack_masks,
)

__all__ = [
    "phantom_pixel_spacing_mm",
    "random_mask_variants",
    "make_segmentation_net",
    "classical_augmentation",
    "train_segmentation",
    "SegmentationRun",
    # measuring with the network: defined in meddiff_lab.metrics.segmentation, importable from here
    "SEG_STRUCTURES",
    "stack_masks",
    "masks_to_condition",
    "predict_masks",
    "segmentation_scores",
    "SegmentationScores",
    "measure_cardiothoracic_ratio",
]


# ------------------------------------------------------------------------------------------ masks
def phantom_pixel_spacing_mm(image_size: int) -> float:
    """Pixel size (mm) of a phantom radiograph of ``image_size`` pixels (its field of view is 40 cm)."""
    if int(image_size) < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size!r}")
    return 2 * CM_PER_UNIT * 10.0 / int(image_size)


def random_mask_variants(
    masks: torch.Tensor,
    per_image: int,
    seed: int = 0,
    rotate_degrees: float = 10.0,
    zoom: tuple[float, float] = (0.9, 1.1),
    translate_fraction: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """New, plausible masks from existing ones: a random rotation, zoom and shift of each (nearest neighbour).

    EMIT-Diff-style augmentation generates images for *new* masks, so the synthetic pairs add shapes
    the labelled set does not have. The deformation is mild (anatomy keeps its place and side).

    Args:
        masks: ``(N, C, H, W)`` 0/1.
        per_image: variants per mask.
        seed: seeds the deformations.

    Returns:
        ``(variants, source_index)``: ``(N * per_image, C, H, W)`` float32 0/1, and for each variant
        the index of the mask it came from.
    """
    from monai.transforms import RandAffine

    masks = torch.as_tensor(masks, dtype=torch.float32)
    if masks.ndim != 4:
        raise ValueError(f"masks must be (N, C, H, W), got shape {tuple(masks.shape)}")
    if int(per_image) < 0:
        raise ValueError(f"per_image must be >= 0, got {per_image!r}")
    side = masks.shape[-1]
    affine = RandAffine(
        prob=1.0,
        rotate_range=(math.radians(rotate_degrees),),
        scale_range=((zoom[0] - 1, zoom[1] - 1),) * 2,
        translate_range=(translate_fraction * side,) * 2,
        mode="nearest",
        padding_mode="zeros",
    )
    affine.set_random_state(seed=int(seed))
    source = torch.arange(len(masks)).repeat_interleave(int(per_image))
    variants = [torch.as_tensor(affine(masks[i])).float() for i in source.tolist()]
    if not variants:
        return masks.new_zeros((0, *masks.shape[1:])), source
    return torch.stack(variants).round().clamp(0, 1), source


# ---------------------------------------------------------------------------------------- network
def make_segmentation_net(
    out_channels: int = len(SEG_STRUCTURES), channels: Sequence[int] = (16, 32, 64, 128), num_res_units: int = 1
) -> torch.nn.Module:
    """MONAI's segmentation ``UNet`` (2D, one input channel, stride-2 levels) for ``out_channels`` structures.

    Image sides must be divisible by ``2 ** (len(channels) - 1)`` (8 with the default four levels).
    """
    from monai.networks.nets import UNet

    channels = tuple(int(c) for c in channels)
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=int(out_channels),
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=int(num_res_units),
    )


def classical_augmentation(
    seed: int | None = None,
    rotate_degrees: float = 15.0,
    zoom: tuple[float, float] = (0.9, 1.1),
    gamma: tuple[float, float] = (0.7, 1.5),
    noise_std: float = 0.05,
    prob: float = 0.5,
) -> Callable[[dict], dict]:
    """Classical augmentation of (image, mask) pairs with MONAI transforms: rotation, scale, contrast, noise.

    * ``RandAffined``: rotation within ±``rotate_degrees`` and isotropic-ish scale in ``zoom``, on the
      image (bilinear) and the mask (nearest neighbour) together;
    * ``RandAdjustContrastd``: random contrast, :math:`x \\mapsto x_{min} + r\\,((x - x_{min})/r)^\\gamma`;
    * ``RandGaussianNoised``: additive Gaussian noise of standard deviation ``noise_std`` (image units).

    Each is applied with probability ``prob``. No left-right flip: it would put the heart on the
    patient's right. :func:`train_segmentation` clips the image back to [-1, 1] afterwards.

    Args:
        seed: seeds the transforms' random state (``None``: MONAI's global state).

    Returns:
        a ``monai.transforms.Compose`` over the keys ``"image"`` ``(1, H, W)`` and ``"label"`` ``(C, H, W)``.
    """
    from monai import transforms as mt

    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    if rotate_degrees < 0 or noise_std < 0 or not 0 < zoom[0] <= zoom[1] or not 0 < gamma[0] <= gamma[1]:
        raise ValueError(
            f"augmentation strengths must be non-negative with (min, max) ranges, got rotate_degrees="
            f"{rotate_degrees}, zoom={zoom}, gamma={gamma}, noise_std={noise_std}"
        )
    pipeline = mt.Compose(
        [
            mt.RandAffined(
                keys=("image", "label"),
                prob=prob,
                rotate_range=(math.radians(rotate_degrees),),
                scale_range=((zoom[0] - 1.0, zoom[1] - 1.0),) * 2,
                mode=("bilinear", "nearest"),
                padding_mode=("border", "zeros"),
            ),
            mt.RandAdjustContrastd(keys="image", prob=prob, gamma=gamma),
            mt.RandGaussianNoised(keys="image", prob=prob, std=noise_std),
        ]
    )
    if seed is not None:
        pipeline.set_random_state(seed=int(seed))
    return pipeline


def _augment_batch(
    augmentation: Callable[[dict], dict], x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a dictionary transform pair by pair, without MONAI's metadata tracking (twice as fast)."""
    from monai.data import get_track_meta, set_track_meta

    tracking = get_track_meta()
    set_track_meta(False)
    try:
        pairs = [augmentation({"image": xi, "label": yi}) for xi, yi in zip(x, y)]
    finally:
        set_track_meta(tracking)
    x = torch.stack([torch.as_tensor(p["image"]) for p in pairs]).float().clamp(-1, 1)
    y = torch.stack([torch.as_tensor(p["label"]) for p in pairs]).float().round()
    return x, y


@dataclass
class SegmentationRun:
    """What :func:`train_segmentation` returns: the trained ``net`` (eval mode), per-step ``losses``,
    ``seconds`` of training and ``steps``."""

    net: torch.nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def _check_pairs(images, masks) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(images, dtype=torch.float32)
    masks = torch.as_tensor(masks, dtype=torch.float32)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W) float in [-1, 1], got shape {tuple(images.shape)}")
    if masks.ndim != 4 or masks.shape[0] != images.shape[0] or masks.shape[2:] != images.shape[2:]:
        raise ValueError(f"masks must be (N, C, H, W) matching images {tuple(images.shape)}, got {tuple(masks.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    return images, masks


def train_segmentation(
    images,
    masks,
    *,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 1e-2,
    augmentation: Callable[[dict], dict] | None = None,
    seed: int = 0,
    loss: str = "dice_ce",
    net: torch.nn.Module | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> SegmentationRun:
    """Train a segmentation network with MONAI's ``DiceCELoss`` (or ``DiceLoss``) and Adam.

    Every run gets exactly ``steps`` optimizer steps of ``batch_size`` images drawn at random from the
    training pairs, so runs with more or fewer training images are compared at equal compute.

    Args:
        images: ``(N, 1, H, W)`` float32 in [-1, 1].
        masks: ``(N, C, H, W)`` 0/1, ``C`` = the network's output channels.
        steps: optimizer steps.
        batch_size: pairs per step.
        learning_rate: Adam's learning rate, constant (1e-2 suits this small network in short runs; at
            2e-3, or decayed over a short run, the heart is still poorly found after 150 steps).
        augmentation: a MONAI dictionary transform applied to ``{"image": (1, H, W), "label": (C, H, W)}``
            for every drawn pair (e.g. :func:`classical_augmentation`); ``None``: none.
        seed: seeds the initial weights and the batches (the augmentation has its own seed).
        loss: ``"dice_ce"`` (MONAI ``DiceCELoss``, sigmoid) or ``"dice"`` (MONAI ``DiceLoss``, sigmoid).
        net: a network to train (default: :func:`make_segmentation_net` with ``C`` outputs).
        device: where to train (default: CPU); batches are augmented on the CPU and then moved.

    Returns:
        a :class:`SegmentationRun`.
    """
    from monai.losses import DiceCELoss, DiceLoss
    from tqdm.auto import tqdm

    images, masks = _check_pairs(images, masks)
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    losses_by_name = {"dice_ce": lambda: DiceCELoss(sigmoid=True), "dice": lambda: DiceLoss(sigmoid=True)}
    if loss not in losses_by_name:
        raise ValueError(f"loss must be one of {sorted(losses_by_name)}, got {loss!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = net if net is not None else make_segmentation_net(out_channels=masks.shape[1])
    device = torch.device(device) if device is not None else torch.device("cpu")
    net = net.to(device)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    loss_fn = losses_by_name[loss]()
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    losses: list[float] = []
    net.train()
    started = time.perf_counter()
    for _ in tqdm(range(int(steps)), desc="segmentation", unit="step", disable=not progress, leave=False):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        x, y = images[index], masks[index]
        if augmentation is not None:
            x, y = _augment_batch(augmentation, x, y)
        value = loss_fn(net(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        losses.append(value.item())
    net.eval()
    return SegmentationRun(net=net, losses=losses, seconds=time.perf_counter() - started, steps=int(steps))
