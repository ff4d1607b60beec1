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

Scores come from :mod:`meddiff_lab.metrics` (MONAI's ``DiceMetric`` and ``HausdorffDistanceMetric``
underneath). Images are ``(N, 1, H, W)`` float32 in
[-1, 1], masks ``(N, C, H, W)`` with values 0/1 in the order of :data:`SEG_STRUCTURES`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "SEG_STRUCTURES", "stack_masks", "masks_to_condition", "phantom_pixel_spacing_mm", "make_segmentation_net",
    "classical_augmentation", "train_segmentation", "SegmentationRun", "predict_masks", "segmentation_scores",
    "SegmentationScores", "measure_cardiothoracic_ratio", "random_mask_variants",
]

#: The structures the segmentation network outlines, one output channel each, in this order.
SEG_STRUCTURES: tuple[str, ...] = ("right_lung", "left_lung", "heart")


# ------------------------------------------------------------------------------------------ masks
def stack_masks(masks: Mapping[str, np.ndarray], structures: Sequence[str] = SEG_STRUCTURES) -> torch.Tensor:
    """A dict of ``(N, H, W)`` bool masks (e.g. ``PhantomBatch.masks``) → ``(N, C, H, W)`` float32 0/1.

    Raises:
        KeyError: when a structure is missing from ``masks``, naming the ones present.
    """
    missing = [s for s in structures if s not in masks]
    if missing:
        raise KeyError(f"masks has no {missing}; it holds {sorted(masks)}")
    return torch.from_numpy(np.stack([np.asarray(masks[s], dtype=np.float32) for s in structures], axis=1))


def masks_to_condition(masks) -> torch.Tensor:
    """Lung and heart masks → one conditioning channel ``(N, 1, H, W)`` float32: -1 background, 0 lung, +1 heart.

    The diffusion models of 06 and 07 take this single channel beside the noisy image: a label map
    scaled into the images' range [-1, 1]. The two lungs share one value (their position tells them
    apart); where the heart overlaps a lung field, the heart wins.

    Args:
        masks: a dict with ``right_lung``, ``left_lung``, ``heart`` ``(N, H, W)`` bool arrays, or a
            ``(N, 3, H, W)`` tensor/array stacked in :data:`SEG_STRUCTURES` order.
    """
    stacked = stack_masks(masks) if isinstance(masks, Mapping) else torch.as_tensor(masks, dtype=torch.float32)
    if stacked.ndim != 4 or stacked.shape[1] != len(SEG_STRUCTURES):
        raise ValueError(f"masks must be a dict of (N, H, W) masks or (N, {len(SEG_STRUCTURES)}, H, W) stacked as "
                         f"{SEG_STRUCTURES}, got shape {tuple(stacked.shape)}")
    lungs = (stacked[:, 0] > 0.5) | (stacked[:, 1] > 0.5)
    heart = stacked[:, 2] > 0.5
    condition = torch.full(lungs.shape, -1.0)
    condition[lungs] = 0.0
    condition[heart] = 1.0
    return condition[:, None]


def phantom_pixel_spacing_mm(image_size: int) -> float:
    """Pixel size (mm) of a phantom radiograph of ``image_size`` pixels (its field of view is 40 cm)."""
    from meddiff_lab.data.phantom import CM_PER_UNIT

    if int(image_size) < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size!r}")
    return 2 * CM_PER_UNIT * 10.0 / int(image_size)


def random_mask_variants(masks: torch.Tensor, per_image: int, seed: int = 0, rotate_degrees: float = 10.0,
                         zoom: tuple[float, float] = (0.9, 1.1),
                         translate_fraction: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
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
    affine = RandAffine(prob=1.0, rotate_range=(math.radians(rotate_degrees),),
                        scale_range=((zoom[0] - 1, zoom[1] - 1),) * 2,
                        translate_range=(translate_fraction * side,) * 2, mode="nearest", padding_mode="zeros")
    affine.set_random_state(seed=int(seed))
    source = torch.arange(len(masks)).repeat_interleave(int(per_image))
    variants = [torch.as_tensor(affine(masks[i])).float() for i in source.tolist()]
    if not variants:
        return masks.new_zeros((0, *masks.shape[1:])), source
    return torch.stack(variants).round().clamp(0, 1), source


# ---------------------------------------------------------------------------------------- network
def make_segmentation_net(out_channels: int = len(SEG_STRUCTURES), channels: Sequence[int] = (16, 32, 64, 128),
                          num_res_units: int = 1) -> torch.nn.Module:
    """MONAI's segmentation ``UNet`` (2D, one input channel, stride-2 levels) for ``out_channels`` structures.

    Image sides must be divisible by ``2 ** (len(channels) - 1)`` (8 with the default four levels).
    """
    from monai.networks.nets import UNet

    channels = tuple(int(c) for c in channels)
    return UNet(spatial_dims=2, in_channels=1, out_channels=int(out_channels), channels=channels,
                strides=(2,) * (len(channels) - 1), num_res_units=int(num_res_units))


def classical_augmentation(seed: int | None = None, rotate_degrees: float = 15.0,
                           zoom: tuple[float, float] = (0.9, 1.1), gamma: tuple[float, float] = (0.7, 1.5),
                           noise_std: float = 0.05, prob: float = 0.5) -> Callable[[dict], dict]:
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
        raise ValueError(f"augmentation strengths must be non-negative with (min, max) ranges, got rotate_degrees="
                         f"{rotate_degrees}, zoom={zoom}, gamma={gamma}, noise_std={noise_std}")
    pipeline = mt.Compose([
        mt.RandAffined(keys=("image", "label"), prob=prob, rotate_range=(math.radians(rotate_degrees),),
                       scale_range=((zoom[0] - 1.0, zoom[1] - 1.0),) * 2, mode=("bilinear", "nearest"),
                       padding_mode=("border", "zeros")),
        mt.RandAdjustContrastd(keys="image", prob=prob, gamma=gamma),
        mt.RandGaussianNoised(keys="image", prob=prob, std=noise_std),
    ])
    if seed is not None:
        pipeline.set_random_state(seed=int(seed))
    return pipeline


def _augment_batch(augmentation: Callable[[dict], dict], x: torch.Tensor,
                   y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def train_segmentation(images, masks, *, steps: int, batch_size: int = 16, learning_rate: float = 1e-2,
                       augmentation: Callable[[dict], dict] | None = None, seed: int = 0, loss: str = "dice_ce",
                       net: torch.nn.Module | None = None, device: torch.device | str | None = None,
                       progress: bool = False) -> SegmentationRun:
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


@torch.no_grad()
def predict_masks(net: torch.nn.Module, images, batch_size: int = 64, threshold: float = 0.5) -> torch.Tensor:
    """Segment ``images`` ``(N, 1, H, W)`` in [-1, 1] → ``(N, C, H, W)`` bool on the CPU (sigmoid > ``threshold``).

    Runs on the network's device.
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W) float in [-1, 1], got shape {tuple(images.shape)}")
    was_training = net.training
    net.eval()
    device = next(iter(net.parameters()), torch.empty(0)).device
    out = [(torch.sigmoid(net(images[i:i + batch_size].to(device))) > threshold).cpu()
           for i in range(0, len(images), batch_size)]
    net.train(was_training)
    return torch.cat(out)


# ---------------------------------------------------------------------------------------- scores
@dataclass
class SegmentationScores:
    """Per-image, per-structure scores.

    Attributes:
        dice: ``(N, C)`` Dice in [0, 1].
        hd95: ``(N, C)`` 95th-percentile Hausdorff distance in ``unit``; an empty prediction of a present
            structure (no boundary to measure) counts as the image diagonal, the worst possible value.
        structures: the ``C`` structure names.
        unit: ``"mm"`` or ``"px"``.
        empty_predictions: how many (image, structure) predictions were empty where the truth was not.
    """

    dice: np.ndarray
    hd95: np.ndarray
    structures: tuple[str, ...]
    unit: str
    empty_predictions: int = 0

    @property
    def mean_dice(self) -> float:
        """Dice averaged over images and structures."""
        return float(np.mean(self.dice))

    @property
    def mean_hd95(self) -> float:
        """HD95 averaged over images and structures (in ``unit``)."""
        return float(np.mean(self.hd95))

    def per_structure(self) -> dict[str, dict[str, float]]:
        """``{structure: {"dice": mean, "hd95": mean}}``."""
        return {s: {"dice": float(self.dice[:, i].mean()), "hd95": float(self.hd95[:, i].mean())}
                for i, s in enumerate(self.structures)}


def segmentation_scores(pred, target, structures: Sequence[str] = SEG_STRUCTURES,
                        spacing_mm: float | None = None) -> SegmentationScores:
    """Dice and HD95 of predicted masks against the truth, per image and structure.

    Args:
        pred, target: ``(N, C, H, W)`` 0/1 (bool or float).
        structures: the names of the ``C`` channels.
        spacing_mm: pixel size in mm (HD95 in mm); ``None``: HD95 in pixels.
    """
    from meddiff_lab.metrics import dice, hd95

    pred = torch.as_tensor(pred).float()
    target = torch.as_tensor(target).float()
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"pred and target must both be (N, C, H, W), got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if pred.shape[1] != len(structures):
        raise ValueError(f"{pred.shape[1]} channels but {len(structures)} structure names {tuple(structures)}")
    scale = 1.0 if spacing_mm is None else float(spacing_mm)
    diagonal = math.hypot(*pred.shape[2:]) * scale
    dices, distances, empty = [], [], 0
    for c in range(pred.shape[1]):
        p, t = pred[:, c:c + 1], target[:, c:c + 1]
        dices.append(torch.as_tensor(dice(p, t, reduction="none")).double().numpy())
        d = torch.as_tensor(hd95(p, t, spacing=spacing_mm, reduction="none")).double().numpy()
        empty += int(np.isinf(d).sum())
        distances.append(np.where(np.isinf(d), diagonal, d))
    return SegmentationScores(dice=np.stack(dices, 1), hd95=np.stack(distances, 1), structures=tuple(structures),
                              unit="px" if spacing_mm is None else "mm", empty_predictions=empty)


def measure_cardiothoracic_ratio(net: torch.nn.Module, images, clean: bool = True) -> np.ndarray:
    """The cardiothoracic ratio of each radiograph, measured on the network's segmentation.

    Segments heart and lung fields (:data:`SEG_STRUCTURES`), keeps the largest connected component of
    the heart and the largest of each lung field when ``clean`` (so a stray pixel cannot widen a
    structure), and applies :func:`meddiff_lab.data.phantom.cardiothoracic_ratio_from_masks`:
    widest heart width / widest thoracic width.

    Args:
        net: a network trained on :data:`SEG_STRUCTURES` (see :func:`train_segmentation`).
        images: ``(N, 1, H, W)`` float32 in [-1, 1].

    Returns:
        ``(N,)`` float32; NaN where no heart or no lung was found.
    """
    from meddiff_lab.data.phantom import cardiothoracic_ratio_from_masks
    from meddiff_lab.metrics.segmentation import postprocess_mask

    pred = predict_masks(net, images)
    if clean:
        pred = torch.stack([postprocess_mask(pred[:, c:c + 1], num_components=1)[:, 0]
                            for c in range(pred.shape[1])], dim=1)
    pred = pred.numpy()
    right, left, heart = (pred[:, SEG_STRUCTURES.index(s)] for s in ("right_lung", "left_lung", "heart"))
    return cardiothoracic_ratio_from_masks(heart, right, left)
