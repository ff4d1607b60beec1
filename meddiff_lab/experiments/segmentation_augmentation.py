r"""Segmentation with few labels, augmented the EMIT-Diff way: the harness behind notebook 07.

A hospital has thousands of unlabelled radiographs and a few outlined ones. EMIT-Diff (DiffBoost,
IEEE TMI 2024) draws new training pairs from a generator that has learnt from the *unlabelled*
images, conditioned on dense structure of each labelled image (its edges plus the mask boundary)
and on warped versions of both. This module measures whether that helps a MONAI segmentation
U-Net, fairly, against the baselines that need no generator.

Data (phantoms, so every mask is true by construction; seeds as in the model cards):

========================  ====  ==========================================================================
split                     seed  use
========================  ====  ==========================================================================
unlabelled pool           0     the generator's own training phantoms (``masks=()``: never their masks);
                                the pseudo-label arm labels some of them with a segmenter
labelled pool             1     each *draw* picks n of them at random (and 2n, 4n for "more real labels")
validation                2     other patients: the validation Dice of every run, the "other phantom"
                                fidelity floor and the real-image diversity floor; choose settings here
test                      3     other patients: Dice, heart Dice, HD95 of every run
reference                 4     plenty of labels for the *reference segmenter*, a measuring instrument
                                for mask fidelity (it is trained longer than the arms and is no arm)
========================  ====  ==========================================================================

Generator: the zoo's ``phantom64-controlnet-edge`` (a ControlNet on Canny edge maps, trained on
16,000 unlabelled seed-0 phantoms). For each labelled pair :math:`(x, m)` it draws ``k`` synthetic
images; each control is

.. math:: c = \mathrm{edges}(W x) \;\cup\; \partial(W m), \qquad \tilde m = W m,

with :math:`W` a random mild affine warp (as :func:`~meddiff_lab.training.segmentation.random_mask_variants`:
±10°, zoom 0.9–1.1, shift 5 %) applied to image and mask together, :math:`\partial` the mask
boundaries, and the synthetic image's mask is the warped mask :math:`\tilde m`.

Arms (:data:`SEG_AUGMENTATION_ARMS`), every one trained for exactly the same number of segmenter steps:
labelled only; + classical augmentation; + synthetic pairs; + synthetic + classical; pretrain on
the synthetic pairs, then fine-tune on the real ones (the steps split by ``pretrain_fraction``);
+ pseudo-labels on as many unlabelled-pool images as there are synthetic pairs (the teacher is the
"labelled only" network of the same draw and seed); more real labels, 2n and 4n (the yardstick: if
it shows no gain, the harness cannot see gains). Left out for cost: a generator trained on the n
labelled pairs only (today's notebook 07 arm; see :data:`LEFT_OUT`).

Extra arms (:data:`EXTRA_ARMS`) run on request after the grid, on the grid's own (n, draw, seed)
groups and seeds, so they pair with every arm of it: "+ unwarped synthetic + classical" draws the
synthetic images for the labelled masks themselves (:math:`W = I`: the control is the labelled image's
own edges and mask boundaries, the synthetic image's mask is the source mask), which tests whether
the warp's label noise is what costs the warped arms their gain.

Statistics: every arm is run for the same (draw, seed) pairs, so its difference from "labelled only"
(and from "+ classical") is *paired*; the 95 % interval is Student's t over those
:math:`m = \text{draws} \times \text{seeds}` differences,
:math:`\bar d \pm t_{0.975,\,m-1}\, s_d / \sqrt m` (none when :math:`m = 1`).

Synthetic pairs are judged beside floors: mask fidelity = Dice of the reference segmenter on the
synthetic image against its intended mask, beside the same segmentation scored against a random
other phantom's mask and against the unwarped source mask (an image that ignored the warp scores
as well against the source as against the intended mask); diversity = mean pairwise MS-SSIM of the
synthetic images beside real images (lower is more diverse), and their MS-SSIM to the warped source
image (near 1: a copy of the labelled image).

Profiles (:data:`SEG_AUGMENTATION_PROFILES`): ``ci`` runs in about a minute on one CPU thread
(n = 4, one draw and seed, 20 steps: a smoke test, its numbers mean nothing); ``classroom`` is
notebook 07's live grid (n = 4, one draw and seed, 100 steps: a few minutes, no intervals);
``notebook-full`` the notebook's full profile (n ∈ {4, 8}, 2 × 2, 500 steps); ``full`` is the
committed grid (n ∈ {4, 8, 16, 32}, 3 draws × 3 seeds = 288 segmenter runs of 1,000 steps plus a
2,000-step reference, 1,440 synthetic images of 25 DDIM steps): **hours on a CPU** (about 8-16 h on
one thread at 0.1-0.2 s per step), much less on a GPU. Check on the validation scores
(``--segmenter-steps``) that "more real labels" gains before the committed run.

Example:
    >>> results = run_seg_augmentation(get_seg_augmentation_profile("ci"))
    >>> write_seg_augmentation_results(results, "runs/seg-augmentation-ci")   # results.json, results.md
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from meddiff_lab.data import generate_phantoms, to_model_batch
from meddiff_lab.data.edges import edge_maps, edges_to_condition
from meddiff_lab.diffusion.sampling import generate_samples
from meddiff_lab.experiments._results import claim_folder, write_results
from meddiff_lab.metrics import dice
from meddiff_lab.metrics.differences import paired_t_interval
from meddiff_lab.metrics.generative import ms_ssim_diversity, ms_ssim_settings
from meddiff_lab.models.controlnet import BoundCondition
from meddiff_lab.runtime import hardware_description
from meddiff_lab.training.segmentation import (
    SEG_STRUCTURES,
    classical_augmentation,
    phantom_pixel_spacing_mm,
    predict_masks,
    segmentation_scores,
    stack_masks,
    train_segmentation,
)

__all__ = [
    "SegAugmentationProfile",
    "SEG_AUGMENTATION_PROFILES",
    "SEG_AUGMENTATION_ARMS",
    "GENERATOR_ARMS",
    "EXTRA_ARMS",
    "TABLE_ARMS",
    "BASELINES",
    "LEFT_OUT",
    "get_seg_augmentation_profile",
    "Split",
    "ExperimentData",
    "make_splits",
    "labelled_draw",
    "mask_boundaries",
    "edge_and_mask_control",
    "warp_pairs",
    "SyntheticPairs",
    "generate_synthetic_pairs",
    "synthetic_pair_quality",
    "train_arm",
    "score_network",
    "grid_cells",
    "GroupStore",
    "arm_difference",
    "arms_at",
    "run_seg_augmentation",
    "run_extra_arm",
    "results_markdown",
    "summary_table",
    "write_seg_augmentation_results",
]

#: The arms, in the order they are trained and shown ("labelled only" first: it is the pseudo-label teacher).
SEG_AUGMENTATION_ARMS: tuple[str, ...] = (
    "labelled only",
    "+ classical",
    "+ synthetic",
    "+ synthetic + classical",
    "synthetic pretrain, real fine-tune",
    "+ pseudo-labels",
    "more real labels (2n)",
    "more real labels (4n)",
)
#: The arms that use the pretrained generator's synthetic pairs.
GENERATOR_ARMS: tuple[str, ...] = ("+ synthetic", "+ synthetic + classical", "synthetic pretrain, real fine-tune")
#: Arms run on request after the grid (``--extra-arm``), on its (n, draw, seed) groups; what each tests.
EXTRA_ARMS: dict[str, str] = {
    "+ unwarped synthetic + classical": (
        "synthetic images drawn for the labelled masks themselves (no warp: each synthetic image's mask is its "
        "source mask), with classical augmentation: does removing the warp's label noise bring a gain?"
    ),
}
#: Every arm in the order of the tables: the grid's, then the extra ones.
TABLE_ARMS: tuple[str, ...] = SEG_AUGMENTATION_ARMS + tuple(EXTRA_ARMS)
#: The arms every other arm is compared with, pair by pair.
BASELINES: tuple[str, ...] = ("labelled only", "+ classical")
#: Arms of issue 13 that this harness does not run, and why.
LEFT_OUT: dict[str, str] = {
    "+ synthetic from a generator trained on the n pairs only": (
        "left out for cost: it trains one mask-conditioned generator per (n, draw), 12 of them in the full grid "
        "(notebook 07's classroom run trains them for 120 steps and measured no gain)"
    ),
}

UNLABELLED_SEED, LABELLED_SEED, VALIDATION_SEED, TEST_SEED, REFERENCE_SEED = 0, 1, 2, 3, 4
METRICS: tuple[str, ...] = ("dice", "heart_dice", "hd95_mm")


# ------------------------------------------------------------------------------------------ profiles
@dataclass(frozen=True)
class SegAugmentationProfile:
    """Every size of one run of the grid.

    Attributes:
        name: ``"ci"`` or ``"full"`` (or your own).
        labelled_sizes: the labelled-set sizes n.
        draws: how many random choices of which n images are labelled.
        seeds: network seeds per draw (initial weights, batches, classical augmentation).
        segmenter_steps: optimizer steps of *every* arm.
        batch_size: pairs per segmenter step.
        synthetic_per_image: k, synthetic pairs per labelled image (also the pseudo-labelled images per
            labelled image).
        sampling_steps: DDIM steps of the generator.
        pretrain_fraction: share of the steps spent on synthetic pairs in "synthetic pretrain, real fine-tune".
        labelled_pool_images, unlabelled_images, validation_images, test_images, reference_images: split sizes.
        reference_steps: steps of the reference segmenter (the fidelity instrument, not an arm).
        learning_rate: Adam's learning rate of every segmenter.
        generator: the zoo model drawing the synthetic images.
        image_size: pixels (the generator's size).
    """

    name: str
    labelled_sizes: tuple[int, ...]
    draws: int
    seeds: int
    segmenter_steps: int
    batch_size: int
    synthetic_per_image: int
    sampling_steps: int
    pretrain_fraction: float
    labelled_pool_images: int
    unlabelled_images: int
    validation_images: int
    test_images: int
    reference_images: int
    reference_steps: int
    learning_rate: float = 1e-2
    generator: str = "phantom64-controlnet-edge"
    image_size: int = 64

    def __post_init__(self) -> None:
        positive = (
            "draws",
            "seeds",
            "segmenter_steps",
            "batch_size",
            "synthetic_per_image",
            "sampling_steps",
            "reference_steps",
            "reference_images",
            "test_images",
        )
        for field_name in positive:
            value = getattr(self, field_name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"profile {self.name!r}: {field_name} must be a positive integer, got {value!r}")
        if not self.labelled_sizes or min(self.labelled_sizes) < 2:
            raise ValueError(f"profile {self.name!r}: labelled_sizes must be integers >= 2, got {self.labelled_sizes}")
        if self.segmenter_steps < 2:
            raise ValueError(
                f"profile {self.name!r}: segmenter_steps must be >= 2 (the pretrain arm splits them), "
                f"got {self.segmenter_steps}"
            )
        if not 0.0 < self.pretrain_fraction < 1.0:
            raise ValueError(
                f"profile {self.name!r}: pretrain_fraction must be in (0, 1), got {self.pretrain_fraction}"
            )
        most = max(self.labelled_sizes)
        needs = {
            "labelled_pool_images": 4 * most,
            "unlabelled_images": most * self.synthetic_per_image,
            "validation_images": 2,
        }
        for field_name, least in needs.items():
            if getattr(self, field_name) < least:
                raise ValueError(
                    f"profile {self.name!r}: {field_name} must be >= {least} for n up to {most} and "
                    f"k = {self.synthetic_per_image}, got {getattr(self, field_name)}"
                )

    @property
    def runs(self) -> int:
        """Segmenter runs in the grid (the reference segmenter not counted)."""
        return len(self.labelled_sizes) * self.draws * self.seeds * len(SEG_AUGMENTATION_ARMS)


SEG_AUGMENTATION_PROFILES: dict[str, SegAugmentationProfile] = {
    "ci": SegAugmentationProfile(
        name="ci",
        labelled_sizes=(4,),
        draws=1,
        seeds=1,
        segmenter_steps=20,
        batch_size=8,
        synthetic_per_image=1,
        sampling_steps=5,
        pretrain_fraction=0.5,
        labelled_pool_images=16,
        unlabelled_images=8,
        validation_images=8,
        test_images=8,
        reference_images=16,
        reference_steps=20,
    ),
    "classroom": SegAugmentationProfile(
        name="classroom",
        labelled_sizes=(4,),
        draws=1,
        seeds=1,
        segmenter_steps=100,
        batch_size=16,
        synthetic_per_image=4,
        sampling_steps=10,
        pretrain_fraction=0.5,
        labelled_pool_images=16,
        unlabelled_images=16,
        validation_images=16,
        test_images=32,
        reference_images=128,
        reference_steps=100,
    ),
    "notebook-full": SegAugmentationProfile(
        name="notebook-full",
        labelled_sizes=(4, 8),
        draws=2,
        seeds=2,
        segmenter_steps=500,
        batch_size=16,
        synthetic_per_image=8,
        sampling_steps=25,
        pretrain_fraction=0.5,
        labelled_pool_images=64,
        unlabelled_images=128,
        validation_images=32,
        test_images=128,
        reference_images=512,
        reference_steps=1000,
    ),
    "full": SegAugmentationProfile(
        name="full",
        labelled_sizes=(4, 8, 16, 32),
        draws=3,
        seeds=3,
        segmenter_steps=1000,
        batch_size=16,
        synthetic_per_image=8,
        sampling_steps=25,
        pretrain_fraction=0.5,
        labelled_pool_images=512,
        unlabelled_images=2048,
        validation_images=64,
        test_images=256,
        reference_images=1024,
        reference_steps=2000,
    ),
}


def get_seg_augmentation_profile(name: str) -> SegAugmentationProfile:
    """The named profile of :data:`SEG_AUGMENTATION_PROFILES`.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in SEG_AUGMENTATION_PROFILES:
        raise ValueError(
            f"unknown seg-augmentation profile {name!r}; expected one of {', '.join(SEG_AUGMENTATION_PROFILES)}"
        )
    return SEG_AUGMENTATION_PROFILES[name]


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Split:
    """Images ``(N, 1, H, W)`` float32 in [-1, 1] and masks ``(N, C, H, W)`` float32 0/1 (``None``: unlabelled)."""

    images: torch.Tensor
    masks: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> Split:
        index = torch.as_tensor(index, dtype=torch.long)
        return Split(self.images[index], None if self.masks is None else self.masks[index])


@dataclass
class ExperimentData:
    """The five splits of the module docstring's table."""

    unlabelled: Split
    labelled_pool: Split
    validation: Split
    test: Split
    reference: Split


def _phantom_split(n: int, image_size: int, seed: int, labelled: bool = True) -> Split:
    batch = generate_phantoms(n, image_size, seed=seed, masks=SEG_STRUCTURES if labelled else ())
    images = to_model_batch(batch.images)
    return Split(images, stack_masks(batch.masks) if labelled else None)


def make_splits(profile: SegAugmentationProfile) -> ExperimentData:
    """Generate the phantoms of every split (seeds in the module docstring); the unlabelled pool has no masks."""
    size = profile.image_size
    return ExperimentData(
        unlabelled=_phantom_split(profile.unlabelled_images, size, UNLABELLED_SEED, labelled=False),
        labelled_pool=_phantom_split(profile.labelled_pool_images, size, LABELLED_SEED),
        validation=_phantom_split(profile.validation_images, size, VALIDATION_SEED),
        test=_phantom_split(profile.test_images, size, TEST_SEED),
        reference=_phantom_split(profile.reference_images, size, REFERENCE_SEED),
    )


def labelled_draw(pool_size: int, count: int, draw: int) -> np.ndarray:
    """Which pool images draw ``draw`` labels: the first ``count`` of a permutation seeded by the draw.

    Nested on purpose: the first n of a draw are also among its first 2n and 4n, so "more real
    labels" adds images to the same labelled set.
    """
    if count > pool_size:
        raise ValueError(f"a draw of {count} labelled images needs a pool of at least {count}, got {pool_size}")
    return np.random.default_rng(int(draw)).permutation(pool_size)[:count]


# ----------------------------------------------------------------------------------------- generator
def mask_boundaries(masks) -> np.ndarray:
    """The one-pixel inner boundary of every structure, united: ``(N, C, H, W)`` 0/1 → ``(N, H, W)`` bool."""
    masks = torch.as_tensor(masks).bool().numpy()
    if masks.ndim != 4:
        raise ValueError(f"masks must be (N, C, H, W), got shape {masks.shape}")
    eroded = np.stack([[ndimage.binary_erosion(m) for m in image] for image in masks]) if masks.size else masks
    return (masks & ~eroded).any(axis=1)


def edge_and_mask_control(images, masks) -> torch.Tensor:
    """The generator's control: Canny edges of ``images`` united with the boundaries of ``masks``.

    Args:
        images: ``(N, 1, H, W)`` float32 in [-1, 1].
        masks: ``(N, C, H, W)`` 0/1.

    Returns:
        ``(N, 1, H, W)`` float32 in {-1, 1}: +1 on an edge (the ControlNet's ``mask`` input).
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    edges = edge_maps((images[:, 0] + 1) / 2)
    return edges_to_condition(edges | mask_boundaries(masks))


def warp_pairs(
    images,
    masks,
    per_image: int,
    seed: int,
    rotate_degrees: float = 10.0,
    zoom: tuple[float, float] = (0.9, 1.1),
    translate_fraction: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``per_image`` random mild affine warps of each (image, mask) pair, the same warp for both.

    The ranges are those of :func:`~meddiff_lab.training.segmentation.random_mask_variants`; the
    image is resampled bilinearly (border padding), the mask by nearest neighbour (zero padding).

    Args:
        images: ``(N, 1, H, W)`` float32 in [-1, 1].
        masks: ``(N, C, H, W)`` 0/1.
        per_image: warps per pair.
        seed: seeds the warps.

    Returns:
        ``(images (N*k, 1, H, W), masks (N*k, C, H, W) 0/1, source (N*k,))``, ``source`` the index of
        the pair each warp came from.
    """
    from monai import transforms as mt
    from monai.data import get_track_meta, set_track_meta

    images, masks = torch.as_tensor(images, dtype=torch.float32), torch.as_tensor(masks, dtype=torch.float32)
    if images.ndim != 4 or masks.ndim != 4 or len(images) != len(masks) or images.shape[2:] != masks.shape[2:]:
        raise ValueError(
            f"images (N, 1, H, W) and masks (N, C, H, W) must match, got {tuple(images.shape)} and {tuple(masks.shape)}"
        )
    side = images.shape[-1]
    warp = mt.RandAffined(
        keys=("image", "label"),
        prob=1.0,
        rotate_range=(math.radians(rotate_degrees),),
        scale_range=((zoom[0] - 1, zoom[1] - 1),) * 2,
        translate_range=(translate_fraction * side,) * 2,
        mode=("bilinear", "nearest"),
        padding_mode=("border", "zeros"),
    )
    warp.set_random_state(seed=int(seed))
    source = torch.arange(len(images)).repeat_interleave(int(per_image))
    tracking = get_track_meta()
    set_track_meta(False)
    try:
        pairs = [warp({"image": images[i], "label": masks[i]}) for i in source.tolist()]
    finally:
        set_track_meta(tracking)
    if not pairs:
        return images[:0], masks[:0], source
    warped_images = torch.stack([torch.as_tensor(p["image"]) for p in pairs]).float().clamp(-1, 1)
    warped_masks = torch.stack([torch.as_tensor(p["label"]) for p in pairs]).float().round().clamp(0, 1)
    return warped_images, warped_masks, source


@dataclass
class SyntheticPairs:
    """What :func:`generate_synthetic_pairs` returns (M = N * k pairs).

    Attributes:
        images: ``(M, 1, H, W)`` float32 in [-1, 1], the generated images.
        masks: ``(M, C, H, W)`` 0/1, their masks (the warped source masks).
        source_index: ``(M,)`` the labelled pair each came from.
        source_masks: ``(M, C, H, W)`` the unwarped source masks (a fidelity floor).
        warped_sources: ``(M, 1, H, W)`` the warped real images whose edges were in the control.
        controls: ``(M, 1, H, W)`` ±1, the controls.
    """

    images: torch.Tensor
    masks: torch.Tensor
    source_index: torch.Tensor
    source_masks: torch.Tensor
    warped_sources: torch.Tensor
    controls: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)


def generate_synthetic_pairs(
    generator,
    images,
    masks,
    per_image: int,
    sampling_steps: int,
    seed: int,
    batch_size: int = 64,
    warp: bool = True,
) -> SyntheticPairs:
    """Draw ``per_image`` synthetic (image, mask) pairs for every labelled pair.

    Args:
        generator: a loaded edge ControlNet (``load_pretrained("phantom64-controlnet-edge")``: ``.model``
            taking ``mask=`` (B, 1, H, W) ±1, ``.scheduler``).
        images: ``(N, 1, H, W)`` float32 in [-1, 1], the labelled images.
        masks: ``(N, C, H, W)`` 0/1, their masks.
        per_image: k.
        sampling_steps: DDIM steps.
        seed: seeds the warps and the sampler's noise.
        batch_size: images sampled at once.
        warp: ``False`` draws the synthetic images for the labelled pairs as they are (no warp: the
            control is the image's own edges plus its mask boundaries, the mask is the source mask).
    """
    if warp:
        warped_images, warped_masks, source = warp_pairs(images, masks, per_image, seed)
    else:
        source = torch.arange(len(images)).repeat_interleave(int(per_image))
        warped_images = torch.as_tensor(images, dtype=torch.float32)[source]
        warped_masks = torch.as_tensor(masks, dtype=torch.float32)[source]
    controls = edge_and_mask_control(warped_images, warped_masks)
    device = next(generator.model.parameters()).device
    chunks = []
    for start in range(0, len(controls), batch_size):
        control = controls[start : start + batch_size].to(device)
        bound = BoundCondition(generator.model, mask=control)
        chunks.append(
            generate_samples(
                bound, generator.scheduler, len(control), control.shape[-1], sampling_steps, seed=int(seed) + start
            ).cpu()
        )
    generated = torch.cat(chunks) if chunks else warped_images[:0]
    return SyntheticPairs(
        images=generated,
        masks=warped_masks,
        source_index=source,
        source_masks=torch.as_tensor(masks, dtype=torch.float32)[source],
        warped_sources=warped_images,
        controls=controls,
    )


# ------------------------------------------------------------------------------- synthetic quality
def mean_dice(pred, target) -> float:
    """Dice averaged over images and structures; ``pred``, ``target``: ``(N, C, H, W)`` 0/1."""
    pred, target = torch.as_tensor(pred).float(), torch.as_tensor(target).float()
    side = pred.shape[-2:]
    return float(dice(pred.reshape(-1, 1, *side), target.reshape(-1, 1, *side)))


def paired_ms_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean MS-SSIM between ``a[i]`` and ``b[i]``, both ``(N, 1, H, W)`` in [-1, 1] (1: identical)."""
    from monai.metrics.regression import compute_ms_ssim

    kernel, weights = ms_ssim_settings(a.shape[-1])
    values = compute_ms_ssim(
        (a + 1) / 2, (b + 1) / 2, spatial_dims=2, data_range=1.0, kernel_size=kernel, weights=weights
    )
    return float(values.mean())


def _same_source_ms_ssim(pairs: SyntheticPairs) -> float | None:
    """Mean MS-SSIM between synthetic images of the same labelled image (``None`` when k = 1)."""
    groups = [torch.nonzero(pairs.source_index == s).flatten() for s in pairs.source_index.unique()]
    index = [(g[i], g[j]) for g in groups for i in range(len(g)) for j in range(i + 1, len(g))]
    if not index:
        return None
    first, second = (torch.stack(side) for side in zip(*index))
    return paired_ms_ssim(pairs.images[first], pairs.images[second])


def fidelity_ceiling(reference_net: torch.nn.Module, real_images, masks) -> float:
    """Dice of the reference segmenter on real images against their (warped) masks: the fidelity ceiling.

    A warp moves anatomy to places the reference segmenter rarely saw, so it scores warped *real*
    images below unwarped ones; a synthetic image is judged against this, not against 1.

    Args:
        real_images: ``(M, 1, H, W)`` in [-1, 1], the real images the controls were made from.
        masks: ``(M, C, H, W)`` 0/1, their masks (warped as the images).
    """
    return mean_dice(predict_masks(reference_net, real_images), masks)


def synthetic_pair_quality(
    reference_net: torch.nn.Module, pairs: SyntheticPairs, other: Split, seed: int = 0
) -> dict[str, Any]:
    """Mask fidelity and diversity of synthetic pairs, each beside its floor.

    Args:
        reference_net: the reference segmenter (trained on plenty of real labels).
        pairs: from :func:`generate_synthetic_pairs`.
        other: real labelled images of other patients (the validation split): their masks are the
            "random other phantom" floor, their images the real-diversity floor.
        seed: seeds which other phantoms are drawn.

    Returns:
        a dict: ``fidelity_dice`` (reference segmentation of the synthetic image vs its intended
        mask), ``fidelity_ceiling`` (the same instrument on the real images the controls were made
        from, warped as the masks: what a synthetic image that followed its mask exactly would
        score), ``floor_other_phantom`` and ``floor_source_mask`` (the same segmentation vs a random other
        phantom's mask / the unwarped source mask), ``masks_other_phantom`` and ``masks_source`` (the
        intended mask itself vs those: what the floors would be for a perfect image and segmenter),
        ``diversity_synthetic`` and ``diversity_real`` (mean pairwise MS-SSIM, lower = more diverse),
        ``diversity_same_source`` (among the k images of one labelled image; ``None`` at k = 1) and
        ``ms_ssim_to_warped_source`` (1 would be a copy of the labelled image).
    """
    rng = np.random.default_rng(int(seed))
    other_masks = other.masks[torch.as_tensor(rng.integers(len(other), size=len(pairs)))]
    predicted = predict_masks(reference_net, pairs.images)
    real = other.images[: len(pairs)] if len(other) >= len(pairs) else other.images
    return {
        "pairs": len(pairs),
        "fidelity_dice": mean_dice(predicted, pairs.masks),
        "fidelity_ceiling": fidelity_ceiling(reference_net, pairs.warped_sources, pairs.masks),
        "floor_other_phantom": mean_dice(predicted, other_masks),
        "floor_source_mask": mean_dice(predicted, pairs.source_masks),
        "masks_other_phantom": mean_dice(pairs.masks, other_masks),
        "masks_source": mean_dice(pairs.masks, pairs.source_masks),
        "diversity_synthetic": ms_ssim_diversity(pairs.images) if len(pairs) >= 2 else None,
        "diversity_real": ms_ssim_diversity(real),
        "diversity_same_source": _same_source_ms_ssim(pairs),
        "ms_ssim_to_warped_source": paired_ms_ssim(pairs.images, pairs.warped_sources),
    }


# ---------------------------------------------------------------------------------------------- arms
def _union(*splits: Split) -> Split:
    return Split(torch.cat([s.images for s in splits]), torch.cat([s.masks for s in splits]))


def train_arm(
    arm: str,
    labelled: Split,
    *,
    synthetic: Split,
    pseudo: Split | None,
    more_labels: dict[int, Split],
    profile: SegAugmentationProfile,
    seed: int,
    device=None,
) -> tuple[torch.nn.Module, int, int]:
    """Train the segmenter of one arm for ``profile.segmenter_steps`` steps in all.

    Args:
        arm: one of :data:`TABLE_ARMS`.
        labelled: the n labelled real pairs.
        synthetic: the n * k synthetic pairs of this draw (for "+ unwarped synthetic + classical":
            the unwarped ones, ``generate_synthetic_pairs(..., warp=False)``).
        pseudo: n * k unlabelled-pool images with the teacher's masks (needed by "+ pseudo-labels").
        more_labels: ``{2: 2n pairs, 4: 4n pairs}`` of the same draw.
        seed: the network's seed (initial weights, batches, classical augmentation).

    Returns:
        ``(network, steps, training_pairs)``: the trained network (eval mode), its optimizer steps and
        how many distinct pairs it trained on.
    """
    options = dict(batch_size=profile.batch_size, learning_rate=profile.learning_rate, device=device)
    steps = profile.segmenter_steps
    if arm == "synthetic pretrain, real fine-tune":
        pretrain = min(steps - 1, max(1, round(profile.pretrain_fraction * steps)))
        first = train_segmentation(synthetic.images, synthetic.masks, steps=pretrain, seed=seed, **options)
        second = train_segmentation(
            labelled.images, labelled.masks, steps=steps - pretrain, seed=seed, net=first.net, **options
        )
        return second.net, first.steps + second.steps, len(synthetic) + len(labelled)
    sets = {
        "labelled only": labelled,
        "+ classical": labelled,
        "+ synthetic": _union(labelled, synthetic),
        "+ synthetic + classical": _union(labelled, synthetic),
        "+ unwarped synthetic + classical": _union(labelled, synthetic),
        "more real labels (2n)": more_labels.get(2),
        "more real labels (4n)": more_labels.get(4),
        "+ pseudo-labels": _union(labelled, pseudo) if pseudo is not None else None,
    }
    if arm not in sets:
        raise ValueError(f"unknown arm {arm!r}; expected one of {TABLE_ARMS}")
    if sets[arm] is None:
        raise ValueError(f"arm {arm!r} needs its training pairs (pseudo-labels or more labels), got None")
    augmentation = classical_augmentation(seed=seed) if "classical" in arm else None
    run = train_segmentation(
        sets[arm].images, sets[arm].masks, steps=steps, seed=seed, augmentation=augmentation, **options
    )
    return run.net, run.steps, len(sets[arm])


def score_network(net: torch.nn.Module, split: Split, spacing_mm: float) -> dict[str, float]:
    """Dice (mean of the structures), heart Dice and HD95 (mm, mean of the structures) on ``split``."""
    scores = segmentation_scores(predict_masks(net, split.images), split.masks, spacing_mm=spacing_mm)
    return {
        "dice": scores.mean_dice,
        "heart_dice": scores.per_structure()["heart"]["dice"],
        "hd95_mm": scores.mean_hd95,
    }


# ---------------------------------------------------------------------------------------- statistics
def arm_difference(
    results: dict[str, Any], n: int, arm: str, baseline: str, metric: str = "dice", confidence: float = 0.95
) -> dict[str, float | int | None]:
    """``arm`` minus ``baseline`` at labelled-set size ``n``, paired by (draw, seed), with its t interval
    (:func:`~meddiff_lab.metrics.differences.paired_t_interval`); any two arms of ``results["runs"]``, not
    only the :data:`BASELINES`."""
    score = {(r["arm"], r["draw"], r["seed"]): r[metric] for r in results["runs"] if r["n"] == n}
    keys = sorted((d, s) for a, d, s in score if a == arm and (baseline, d, s) in score)
    if not keys:
        raise ValueError(f"no (draw, seed) has both {arm!r} and {baseline!r} at n = {n}")
    return paired_t_interval([score[(arm, d, s)] - score[(baseline, d, s)] for d, s in keys], confidence)


def arms_at(results: dict[str, Any], n: int) -> list[str]:
    """The arms with runs at labelled-set size ``n`` in ``results``, in the order of :data:`TABLE_ARMS`."""
    present = {r["arm"] for r in results["runs"] if r["n"] == n}
    return [arm for arm in TABLE_ARMS if arm in present]


def interval_verdict(row: dict[str, float | int | None]) -> str:
    """``"gain"`` when the interval lies above zero, ``"loss"`` below, ``"no clear difference"`` when it
    holds zero, ``"one pair: no interval"`` without one."""
    if row["low"] is None:
        return "one pair: no interval"
    return "gain" if row["low"] > 0 else "loss" if row["high"] < 0 else "no clear difference"


def _summaries(rows: list[dict]) -> list[dict]:
    out = []
    for n in sorted({r["n"] for r in rows}):
        for arm in TABLE_ARMS:
            chosen = [r for r in rows if r["n"] == n and r["arm"] == arm]
            if chosen:
                means = {key: float(np.mean([r[key] for r in chosen])) for key in (*METRICS, "val_dice")}
                out.append(
                    {
                        "n": n,
                        "arm": arm,
                        "runs": len(chosen),
                        "steps": sorted({r["steps"] for r in chosen}),
                        "training_pairs": int(np.mean([r["training_pairs"] for r in chosen])),
                        **means,
                    }
                )
    return out


def _differences(rows: list[dict]) -> list[dict]:
    by_key = {(r["n"], r["arm"], r["draw"], r["seed"]): r for r in rows}
    out = []
    for n in sorted({r["n"] for r in rows}):
        for baseline in BASELINES:
            for arm in TABLE_ARMS:
                if arm == baseline:
                    continue
                pairs = [
                    (r, by_key[(n, baseline, r["draw"], r["seed"])])
                    for r in rows
                    if r["n"] == n and r["arm"] == arm and (n, baseline, r["draw"], r["seed"]) in by_key
                ]
                for metric in METRICS:
                    if pairs:
                        interval = paired_t_interval([a[metric] - b[metric] for a, b in pairs])
                        out.append({"n": n, "arm": arm, "baseline": baseline, "metric": metric, **interval})
    return out


# -------------------------------------------------------------------------------------------- runner
def _synthetic_seed(n: int, draw: int) -> int:
    """Seeds the warps and the sampler of one (n, draw): the warped and unwarped pairs share it."""
    return 10_000 * draw + n


def _cell_pairs(generator, profile: SegAugmentationProfile, labelled: Split, n: int, draw: int, warp: bool = True):
    """The synthetic pairs of one (n, draw) cell (k per labelled pair, warped unless ``warp=False``)."""
    return generate_synthetic_pairs(
        generator,
        labelled.images,
        labelled.masks,
        profile.synthetic_per_image,
        profile.sampling_steps,
        seed=_synthetic_seed(n, draw),
        warp=warp,
    )


def _labelled_sets(data: ExperimentData, n: int, draw: int) -> tuple[Split, dict[int, Split]]:
    """The n labelled pairs of one draw and their 2n/4n supersets."""
    order = labelled_draw(len(data.labelled_pool), 4 * n, draw)
    more = {factor: data.labelled_pool.subset(order[: factor * n]) for factor in (2, 4)}
    return data.labelled_pool.subset(order[:n]), more


def _draw_inputs(data: ExperimentData, generator, profile: SegAugmentationProfile, n: int, draw: int):
    """The labelled set, its 2n/4n supersets, the synthetic pairs and the unlabelled images of one (n, draw)."""
    labelled, more = _labelled_sets(data, n, draw)
    pairs = _cell_pairs(generator, profile, labelled, n, draw)
    count = n * profile.synthetic_per_image
    unlabelled = data.unlabelled.subset(np.random.default_rng(1000 + draw).permutation(len(data.unlabelled))[:count])
    return labelled, more, pairs, unlabelled


def grid_cells(profile: SegAugmentationProfile) -> list[tuple[int, int]]:
    """The (n, draw) cells of the grid, smallest n first (the cells the question is about come first)."""
    return [(n, draw) for n in profile.labelled_sizes for draw in range(profile.draws)]


class GroupStore:
    """Finished work of a grid run, one JSON line per (n, draw, seed) group, so a killed run resumes.

    Each worker appends to its own file ``parts/worker-<w>.jsonl`` in the output folder; a line is a
    ``{"kind": "group", "n", "draw", "seed", "rows": [8 rows]}`` (all arms of one seed: the pseudo-label
    arm needs the "labelled only" network of the same seed, so a group is the unit that resumes) or a
    ``{"kind": "synthetic", "n", "draw", ...quality}`` row. An extra arm (:func:`run_extra_arm`) writes
    ``worker-extra.jsonl``: ``{"kind": "arm", "n", "draw", "seed", "rows": [1 row]}`` lines, its pairs'
    ``{"kind": "synthetic", "variant": "unwarped", ...}`` rows and ``{"kind": "ceiling", "n", "draw",
    "fidelity_ceiling"}`` lines for grid cells whose synthetic row was written before the ceiling was
    measured. Lines are flushed and synced one by one.
    """

    def __init__(self, out, worker: int | str = 0) -> None:
        self.folder = Path(out) / "parts"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"worker-{worker}.jsonl"

    def append(self, record: dict) -> None:
        import os

        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def read(out) -> list[dict]:
        """Every complete line of every worker's file (a half-written last line of a killed worker is dropped)."""
        records = []
        for path in sorted((Path(out) / "parts").glob("worker-*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records


def _variant(record: dict) -> str:
    return record.get("variant", "warped")


def _done(records: list[dict]) -> tuple[set, set]:
    groups = {(r["n"], r["draw"], r["seed"]) for r in records if r.get("kind") == "group"}
    synthetic = {(r["n"], r["draw"]) for r in records if r.get("kind") == "synthetic" and _variant(r) == "warped"}
    return groups, synthetic


def _train_and_score(
    arm: str,
    labelled: Split,
    data: ExperimentData,
    profile: SegAugmentationProfile,
    group: tuple[int, int, int],
    device,
    *,
    synthetic: Split,
    pseudo: Split | None = None,
    more: dict[int, Split] | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Train one arm (:func:`train_arm`) for the ``(n, draw, seed)`` group; returns the net and its result row."""
    n, draw, seed = group
    started = time.perf_counter()
    net, steps, count = train_arm(
        arm,
        labelled,
        synthetic=synthetic,
        pseudo=pseudo,
        more_labels=more or {},
        profile=profile,
        seed=seed,
        device=device,
    )
    spacing = phantom_pixel_spacing_mm(profile.image_size)
    return net, {
        "n": n,
        "draw": draw,
        "seed": seed,
        "arm": arm,
        "steps": steps,
        "training_pairs": count,
        **score_network(net, data.test, spacing),
        "val_dice": score_network(net, data.validation, spacing)["dice"],
        "seconds": time.perf_counter() - started,
    }


def _run_cells(
    data: ExperimentData,
    generator,
    reference_net,
    profile: SegAugmentationProfile,
    cells: list[tuple[int, int]],
    *,
    device,
    store: GroupStore | None,
    done_groups: set,
    done_synthetic: set,
    deadline: float | None,
    progress_bar=None,
) -> tuple[list[dict], list[dict]]:
    """Train every arm of every (n, draw) cell for every seed not yet done; returns (rows, synthetic rows)."""
    rows, synthetic_rows = [], []
    for n, draw in cells:
        seeds = [seed for seed in range(profile.seeds) if (n, draw, seed) not in done_groups]
        if not seeds and (n, draw) in done_synthetic:
            continue
        if deadline is not None and time.perf_counter() > deadline:
            break
        labelled, more, pairs, unlabelled = _draw_inputs(data, generator, profile, n, draw)
        if (n, draw) not in done_synthetic:
            quality = {"n": n, "draw": draw, **synthetic_pair_quality(reference_net, pairs, data.validation, seed=draw)}
            synthetic_rows.append(quality)
            if store is not None:
                store.append({"kind": "synthetic", **quality})
        synthetic = Split(pairs.images, pairs.masks)
        for seed in seeds:
            if deadline is not None and time.perf_counter() > deadline:
                break
            group, pseudo = [], None
            for arm in SEG_AUGMENTATION_ARMS:
                net, row = _train_and_score(
                    arm, labelled, data, profile, (n, draw, seed), device, synthetic=synthetic, pseudo=pseudo, more=more
                )
                if arm == "labelled only":  # the teacher of the pseudo-label arm
                    pseudo = Split(unlabelled.images, predict_masks(net, unlabelled.images).float())
                group.append(row)
                if progress_bar is not None:
                    progress_bar.update(1)
            rows += group
            if store is not None:
                store.append(
                    {
                        "kind": "group",
                        "n": n,
                        "draw": draw,
                        "seed": seed,
                        "rows": group,
                        "hardware": hardware_description(),
                        "device": str(device or "cpu"),
                    }
                )
    return rows, synthetic_rows


def _save_shared(out: Path, data: ExperimentData, reference_net) -> None:
    """Splits and the reference segmenter, for the workers (written atomically)."""
    from meddiff_lab.training.checkpoint import save_checkpoint

    splits = {
        name: {
            "images": getattr(data, name).images,
            "masks": None if getattr(data, name).masks is None else getattr(data, name).masks.bool(),
        }
        for name in ("unlabelled", "labelled_pool", "validation", "test", "reference")
    }
    save_checkpoint(
        out / "shared.pt",
        {
            "model": {k: v.cpu() for k, v in reference_net.state_dict().items()},
            "step": 0,
            "config": {"what": "seg-augmentation splits and reference"},
            "splits": splits,
        },
    )


def _load_shared(out: Path) -> tuple[ExperimentData, dict]:
    from meddiff_lab.training.checkpoint import load_checkpoint

    state = load_checkpoint(out / "shared.pt")
    splits = {
        name: Split(part["images"], None if part["masks"] is None else part["masks"].float())
        for name, part in state["splits"].items()
    }
    return ExperimentData(**splits), state["model"]


def _worker(
    worker: int,
    workers: int,
    profile: SegAugmentationProfile,
    out: str,
    device: str | None,
    threads: int,
    deadline_seconds: float | None,
    started_wall: float,
) -> None:
    """One worker process: every ``workers``-th cell of the grid, from the shared splits and reference."""
    from meddiff_lab.models import load_pretrained
    from meddiff_lab.training.segmentation import make_segmentation_net

    torch.set_num_threads(threads)
    out_path = Path(out)
    data, reference_state = _load_shared(out_path)
    reference_net = make_segmentation_net(out_channels=data.reference.masks.shape[1])
    reference_net.load_state_dict(reference_state)
    reference_net = reference_net.to(device or "cpu").eval()
    generator = load_pretrained(profile.generator)
    generator.model.to(device or "cpu")
    done_groups, done_synthetic = _done(GroupStore.read(out_path))
    cells = grid_cells(profile)[worker::workers]
    remaining = None if deadline_seconds is None else deadline_seconds - (time.time() - started_wall)
    deadline = None if remaining is None else time.perf_counter() + remaining
    _run_cells(
        data,
        generator,
        reference_net,
        profile,
        cells,
        device=device,
        store=GroupStore(out_path, worker),
        done_groups=done_groups,
        done_synthetic=done_synthetic,
        deadline=deadline,
    )


def run_seg_augmentation(
    profile: SegAugmentationProfile,
    *,
    generator=None,
    device=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    out=None,
    workers: int = 1,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Run the grid of ``profile`` (or what is left of it) and return everything measured (JSON-ready).

    Args:
        profile: from :func:`get_seg_augmentation_profile` (or ``dataclasses.replace`` of one).
        generator: a loaded edge ControlNet (default: ``load_pretrained(profile.generator)``).
        device: where the segmenters train and the generator samples (default: CPU; classical
            augmentation always runs on the CPU).
        progress: a progress bar over the segmenter runs (single process only).
        log: where progress lines go.
        out: a folder that keeps finished (n, draw, seed) groups (:class:`GroupStore`), the splits and
            the reference segmenter; a second call with the same ``out`` and profile resumes, skipping
            finished groups. ``None``: keep nothing.
        workers: processes sharing the grid's cells (each with one CPU thread; they share ``device``);
            more than one needs ``out``.
        max_seconds: start no new group after this wall time (the groups started finish); the results
            then say which groups are missing (``complete`` is False) and a later call resumes.

    Returns:
        a dict with ``profile``, ``runs`` (one row per (n, draw, seed, arm): test ``dice``,
        ``heart_dice``, ``hd95_mm``, validation ``val_dice``, ``steps``, ``training_pairs``,
        ``seconds``), ``summary`` (means per (n, arm)), ``differences`` (paired, per baseline and
        metric, with 95 % intervals), ``synthetic`` (one quality row per (n, draw)), ``reference``,
        ``groups_done``/``groups_total``/``complete``, ``left_out``, ``hardware``, ``threads``,
        ``workers`` and ``seconds`` (this call's wall time).
    """
    from tqdm.auto import tqdm

    from meddiff_lab.models import load_pretrained

    if workers < 1 or (workers > 1 and out is None):
        raise ValueError(
            f"workers must be >= 1, and more than one needs an out folder; got workers={workers}, out={out!r}"
        )
    started, started_wall = time.perf_counter(), time.time()
    deadline = None if max_seconds is None else started + float(max_seconds)
    out_path = None if out is None else Path(out)
    if out_path is not None:
        claim_folder(out_path, profile)
    generator = generator if generator is not None else load_pretrained(profile.generator)
    if int(generator.config["image_size"]) != profile.image_size:
        raise ValueError(
            f"generator {profile.generator!r} draws {generator.config['image_size']} px images but "
            f"profile {profile.name!r} has image_size {profile.image_size}"
        )
    if device is not None:
        generator.model.to(device)
    spacing = phantom_pixel_spacing_mm(profile.image_size)
    if out_path is not None and (out_path / "shared.pt").exists():
        data, reference_net = _load_reference(out_path, device)
        log(f"resuming from {out_path}: splits and reference segmenter loaded")
    else:
        data = make_splits(profile)
        reference_net = train_segmentation(
            data.reference.images,
            data.reference.masks,
            steps=profile.reference_steps,
            batch_size=profile.batch_size,
            learning_rate=profile.learning_rate,
            seed=0,
            device=device,
        ).net
        if out_path is not None:
            _save_shared(out_path, data, reference_net)
    log(
        f"splits: {len(data.unlabelled)} unlabelled, {len(data.labelled_pool)} labelled pool, "
        f"{len(data.validation)} validation, {len(data.test)} test, {len(data.reference)} reference"
    )
    reference_scores = score_network(reference_net, data.test, spacing)
    records = GroupStore.read(out_path) if out_path is not None else []
    done_groups, done_synthetic = _done(records)
    if done_groups:
        log(f"{len(done_groups)} of {len(grid_cells(profile)) * profile.seeds} groups already done")
    if workers == 1:
        bar = tqdm(
            total=profile.runs,
            initial=len(done_groups) * len(SEG_AUGMENTATION_ARMS),
            desc="segmenter runs",
            unit="run",
            disable=not progress,
        )
        rows, synthetic_rows = _run_cells(
            data,
            generator,
            reference_net,
            profile,
            grid_cells(profile),
            device=device,
            store=GroupStore(out_path) if out_path is not None else None,
            done_groups=done_groups,
            done_synthetic=done_synthetic,
            deadline=deadline,
            progress_bar=bar,
        )
        bar.close()
    else:
        import torch.multiprocessing as mp

        context = mp.get_context("spawn")
        processes = [
            context.Process(
                target=_worker,
                args=(
                    w,
                    workers,
                    profile,
                    str(out_path),
                    None if device is None else str(device),
                    1,
                    max_seconds,
                    started_wall,
                ),
            )
            for w in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [w for w, process in enumerate(processes) if process.exitcode != 0]
        if failed:
            log(f"workers {failed} stopped with an error; their finished groups are kept (rerun to resume)")
    if out_path is not None:  # everything finished in this folder, by this call or earlier ones
        return _results_from_folder(profile, out_path, reference_scores, device, workers, started, log)
    log(f"{len(rows)} segmenter runs in the results; this call took {time.perf_counter() - started:.0f} s")
    return _assemble(profile, rows, synthetic_rows, reference_scores, device, workers, time.perf_counter() - started)


def _load_reference(out: Path, device) -> tuple[ExperimentData, torch.nn.Module]:
    """The splits and the reference segmenter (eval mode, on ``device``) of a grid run in ``out``."""
    from meddiff_lab.training.segmentation import make_segmentation_net

    data, reference_state = _load_shared(out)
    reference_net = make_segmentation_net(out_channels=data.reference.masks.shape[1])
    reference_net.load_state_dict(reference_state)
    return data, reference_net.to(device or "cpu").eval()


def _results_from_folder(
    profile, out: Path, reference_scores: dict, device, workers: int, started: float, log
) -> dict[str, Any]:
    """Everything finished in ``out`` (by any call), assembled as :func:`run_seg_augmentation` returns it."""
    records = GroupStore.read(out)
    rows, synthetic_rows = _rows_from(records)
    groups_by_hardware: dict[str, int] = {}
    for record in records:
        if record.get("kind") == "group":
            where = record.get("hardware", "unrecorded")
            groups_by_hardware[where] = groups_by_hardware.get(where, 0) + 1
    log(f"{len(rows)} segmenter runs in the results; this call took {time.perf_counter() - started:.0f} s")
    return _assemble(
        profile,
        rows,
        synthetic_rows,
        reference_scores,
        device,
        workers,
        time.perf_counter() - started,
        groups_by_hardware,
    )


def run_extra_arm(
    profile: SegAugmentationProfile,
    arm: str,
    out,
    *,
    sizes: tuple[int, ...] | None = None,
    device=None,
    log: Callable[[str], None] = print,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Add an arm of :data:`EXTRA_ARMS` to the grid run in ``out``, on the grid's own (n, draw, seed) groups.

    Same labelled draws, seeds and steps as the grid, so the arm pairs with every arm of it. The
    splits and the reference segmenter are read from ``out`` (run the grid there first). Finished
    runs of the arm are skipped, so a stopped call resumes. It also writes the fidelity ceiling of
    every grid cell's warped pairs whose row was written without it (the warps alone, no sampling).

    Args:
        profile: the grid's profile (``out`` must hold it).
        arm: a key of :data:`EXTRA_ARMS`.
        out: the grid's output folder.
        sizes: labelled-set sizes to run (default: all of the profile's).
        device: where the segmenters train and the generator samples (default: CPU).
        log: where progress lines go.
        max_seconds: start no new (n, draw) cell or seed after this wall time.

    Returns:
        the whole folder's results, as :func:`run_seg_augmentation` returns them.
    """
    from meddiff_lab.models import load_pretrained

    if arm not in EXTRA_ARMS:
        raise ValueError(f"unknown extra arm {arm!r}; expected one of {list(EXTRA_ARMS)}")
    sizes = tuple(profile.labelled_sizes if sizes is None else sizes)
    if not set(sizes) <= set(profile.labelled_sizes):
        raise ValueError(
            f"sizes {sizes} must be among profile {profile.name!r}'s labelled_sizes {profile.labelled_sizes}"
        )
    out_path = Path(out)
    if not (out_path / "shared.pt").is_file():
        raise FileNotFoundError(
            f"{out_path} holds no grid run (no shared.pt): run the grid there first, then add {arm!r}"
        )
    claim_folder(out_path, profile)
    started = time.perf_counter()
    deadline = None if max_seconds is None else started + float(max_seconds)
    data, reference_net = _load_reference(out_path, device)
    generator = load_pretrained(profile.generator)
    generator.model.to(device or "cpu")
    spacing = phantom_pixel_spacing_mm(profile.image_size)
    records = GroupStore.read(out_path)
    done = {(r["n"], r["draw"], r["seed"]) for r in records if r.get("kind") == "arm" and r["rows"][0]["arm"] == arm}
    _, synthetic_rows = _rows_from(records)
    quality_done = {(r["n"], r["draw"], r["variant"]) for r in synthetic_rows}
    ceiling_done = {(r["n"], r["draw"]) for r in synthetic_rows if r.get("fidelity_ceiling") is not None}
    store = GroupStore(out_path, "extra")
    for n, draw in grid_cells(profile):
        if (n, draw, "warped") in quality_done and (n, draw) not in ceiling_done:
            labelled, _ = _labelled_sets(data, n, draw)
            warped = warp_pairs(labelled.images, labelled.masks, profile.synthetic_per_image, _synthetic_seed(n, draw))
            ceiling = fidelity_ceiling(reference_net, warped[0], warped[1])
            store.append({"kind": "ceiling", "n": n, "draw": draw, "fidelity_ceiling": ceiling})
    for n, draw in [cell for cell in grid_cells(profile) if cell[0] in sizes]:
        if deadline is not None and time.perf_counter() > deadline:
            break
        labelled, _ = _labelled_sets(data, n, draw)
        seeds = [seed for seed in range(profile.seeds) if (n, draw, seed) not in done]
        if not seeds and (n, draw, "unwarped") in quality_done:
            continue
        pairs = _cell_pairs(generator, profile, labelled, n, draw, warp=False)
        if (n, draw, "unwarped") not in quality_done:
            quality = synthetic_pair_quality(reference_net, pairs, data.validation, seed=draw)
            store.append({"kind": "synthetic", "variant": "unwarped", "n": n, "draw": draw, **quality})
        for seed in seeds:
            if deadline is not None and time.perf_counter() > deadline:
                break
            synthetic = Split(pairs.images, pairs.masks)
            _, row = _train_and_score(arm, labelled, data, profile, (n, draw, seed), device, synthetic=synthetic)
            where = {"hardware": hardware_description(), "device": str(device or "cpu")}
            store.append({"kind": "arm", "n": n, "draw": draw, "seed": seed, "rows": [row], **where})
            log(f"{arm}: n = {n}, draw {draw}, seed {seed}: Dice {row['dice']:.3f} ({row['seconds']:.0f} s)")
    reference_scores = score_network(reference_net, data.test, spacing)
    return _results_from_folder(profile, out_path, reference_scores, device, 1, started, log)


def _rows_from(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Segmenter rows and synthetic-quality rows of every finished record (first copy of each wins)."""
    rows: dict[tuple, dict] = {}
    synthetic: dict[tuple, dict] = {}
    ceilings = {(r["n"], r["draw"]): r["fidelity_ceiling"] for r in records if r.get("kind") == "ceiling"}
    for record in records:
        if record.get("kind") in ("group", "arm"):
            for row in record["rows"]:
                rows.setdefault((row["n"], row["draw"], row["seed"], row["arm"]), row)
        elif record.get("kind") == "synthetic":
            row = {"variant": "warped", **{k: v for k, v in record.items() if k != "kind"}}
            synthetic.setdefault((row["n"], row["draw"], row["variant"]), row)
    for (n, draw, variant), row in synthetic.items():
        if row.get("fidelity_ceiling") is None and variant == "warped" and (n, draw) in ceilings:
            row["fidelity_ceiling"] = ceilings[(n, draw)]
    order = {arm: i for i, arm in enumerate(TABLE_ARMS)}
    ordered = sorted(rows.values(), key=lambda r: (r["n"], r["draw"], r["seed"], order[r["arm"]]))
    variants = {"warped": 0, "unwarped": 1}
    synthetic_rows = sorted(synthetic.values(), key=lambda r: (variants[r["variant"]], r["n"], r["draw"]))
    return ordered, synthetic_rows


def _assemble(
    profile: SegAugmentationProfile,
    rows: list[dict],
    synthetic_rows: list[dict],
    reference_scores: dict,
    device,
    workers: int,
    seconds: float,
    groups_by_hardware: dict | None = None,
) -> dict[str, Any]:
    groups_total = len(grid_cells(profile)) * profile.seeds
    groups_done = len({(r["n"], r["draw"], r["seed"]) for r in rows if r["arm"] == SEG_AUGMENTATION_ARMS[0]})
    return {
        "experiment": "seg-augmentation",
        "profile": dataclasses.asdict(profile),
        "arms": list(SEG_AUGMENTATION_ARMS),
        "extra_arms": {arm: why for arm, why in EXTRA_ARMS.items() if any(r["arm"] == arm for r in rows)},
        "baselines": list(BASELINES),
        "runs": rows,
        "summary": _summaries(rows),
        "differences": _differences(rows),
        "synthetic": synthetic_rows,
        "reference": {"images": profile.reference_images, "steps": profile.reference_steps, "test": reference_scores},
        "groups_done": groups_done,
        "groups_total": groups_total,
        "complete": groups_done == groups_total,
        "groups_by_hardware": groups_by_hardware or {},
        "segmenter_seconds": float(sum(r["seconds"] for r in rows)),
        "left_out": dict(LEFT_OUT),
        "hardware": hardware_description(),
        "threads": torch.get_num_threads(),
        "workers": workers,
        "device": str(device or "cpu"),
        "seconds": seconds,
    }


# -------------------------------------------------------------------------------------------- output
def _number(value, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(row: dict | None, digits: int = 3) -> str:
    if row is None:
        return "—"
    if row["low"] is None:
        return f"{_number(row['mean'], digits, True)} (one pair: no interval)"
    return (
        f"{_number(row['mean'], digits, True)} [{_number(row['low'], digits, True)}, "
        f"{_number(row['high'], digits, True)}]"
    )


def _find(rows: list[dict], **keys) -> dict | None:
    return next((r for r in rows if all(r[k] == v for k, v in keys.items())), None)


def _dice_versus_baselines(results: dict[str, Any], summary_row: dict) -> list[str]:
    """The paired Dice differences of one (n, arm) summary row against each of :data:`BASELINES`, as text."""
    return [
        _interval(_find(results["differences"], n=summary_row["n"], arm=summary_row["arm"], baseline=b, metric="dice"))
        for b in BASELINES
    ]


def results_markdown(results: dict[str, Any]) -> str:
    """The results as markdown: what ran where, test scores, paired differences, synthetic pairs, notes."""
    p = results["profile"]
    lines = [
        f"# Segmentation with few labels: augmentation arms (profile `{p['name']}`)",
        "",
        f"Last call: {results['seconds']:.0f} s on {results['hardware']} (segmenters on {results['device']}). "
        f"Grid: n ∈ {{{', '.join(map(str, p['labelled_sizes']))}}}, {p['draws']} draw(s) × {p['seeds']} seed(s); "
        f"every arm {p['segmenter_steps']} segmenter steps of {p['batch_size']} pairs; k = {p['synthetic_per_image']} "
        f"synthetic pair(s) per labelled image from `{p['generator']}` (DDIM-{p['sampling_steps']}); "
        f"{p['test_images']} test and {p['validation_images']} validation images.",
        "",
        (
            f"All {results['groups_total']} (n, draw, seed) groups ran."
            if results.get("complete", True)
            else f"**Incomplete:** {results['groups_done']} of {results['groups_total']} (n, draw, seed) groups ran "
            "(the run stopped at its time limit or by hand before the rest; rerunning the same command "
            "with the same --out resumes); "
            "the 'runs' column says how many each mean has."
        ),
        "",
        *(
            [
                "Groups by hardware: "
                + "; ".join(f"{count} on {where}" for where, count in results["groups_by_hardware"].items())
                + ".",
                "",
            ]
            if results.get("groups_by_hardware")
            else []
        ),
        "## Test scores (means over draws × seeds) and paired Dice differences, 95 % t intervals",
        "",
        "| n | arm | steps | pairs | Dice | heart Dice | HD95 (mm) | val Dice | Δ Dice vs labelled only | "
        "Δ Dice vs + classical |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["summary"]:
        versus = _dice_versus_baselines(results, s)
        lines.append(
            f"| {s['n']} | {s['arm']} | {'/'.join(map(str, s['steps']))} | {s['training_pairs']} | "
            f"{_number(s['dice'])} | {_number(s['heart_dice'])} | {_number(s['hd95_mm'], 1)} | "
            f"{_number(s['val_dice'])} | {versus[0]} | {versus[1]} |"
        )
    lines += [
        "",
        "## Paired differences vs labelled only: heart Dice and HD95 (mm)",
        "",
        "| n | arm | Δ heart Dice | Δ HD95 (mm) |",
        "|---|---|---|---|",
    ]
    for s in results["summary"]:
        if s["arm"] != "labelled only":
            cells = [
                _interval(
                    _find(results["differences"], n=s["n"], arm=s["arm"], baseline="labelled only", metric=m),
                    3 if m != "hd95_mm" else 1,
                )
                for m in ("heart_dice", "hd95_mm")
            ]
            lines.append(f"| {s['n']} | {s['arm']} | {cells[0]} | {cells[1]} |")
    lines += _synthetic_table(results)
    ref = results["reference"]
    lines += [
        "",
        "## Notes",
        "",
        f"- Reference segmenter (the fidelity instrument, not an arm): {ref['images']} real labelled images, "
        f"{ref['steps']} steps; on the real test images Dice {_number(ref['test']['dice'])}, heart Dice "
        f"{_number(ref['test']['heart_dice'])}, HD95 {_number(ref['test']['hd95_mm'], 1)} mm (the fidelity "
        "ceiling).",
        "- Fidelity floors: an image that ignored its control scores about the 'other phantom' floor; one "
        "that ignored the warp scores as well against the source mask as against the intended one. The "
        "ceiling is the reference segmenter on the real images the controls were made from (warped like "
        "the masks): what an image that followed its mask exactly would score. Unwarped pairs have the "
        "source mask as their mask, so their two floors other than 'other phantom' coincide with fidelity.",
        "- Diversity is mean pairwise MS-SSIM (lower = more diverse); 'real' is the same number of real "
        "validation images.",
    ]
    lines += [f"- Extra arm, run after the grid: {arm}: {why}" for arm, why in results.get("extra_arms", {}).items()]
    lines += [f"- Left out: {arm}: {why}." for arm, why in results["left_out"].items()]
    return "\n".join(lines) + "\n"


def summary_table(results: dict[str, Any]) -> str:
    """The short table of the project README: per (n, arm) the groups, test Dice and the paired Dice
    differences against :data:`BASELINES`, with 95 % intervals (markdown, one row per line)."""
    lines = [
        "| n | arm | groups | Dice | Δ vs labelled only | Δ vs + classical |",
        "|---|---|---|---|---|---|",
    ]
    for s in results["summary"]:
        versus = _dice_versus_baselines(results, s)
        lines.append(f"| {s['n']} | {s['arm']} | {s['runs']} | {_number(s['dice'])} | {versus[0]} | {versus[1]} |")
    return "\n".join(lines) + "\n"


def _synthetic_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Synthetic pairs: mask fidelity and diversity beside their floors (means over draws)",
        "",
        "| pairs drawn | n | pairs | fidelity Dice | ceiling: real source images | floor: other phantom | "
        "floor: source mask | masks alone: other / source | MS-SSIM synthetic | MS-SSIM real | "
        "MS-SSIM same source | MS-SSIM to warped source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def mean(rows, key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    cells = sorted(
        {(r.get("variant", "warped"), r["n"]) for r in results["synthetic"]}, key=lambda c: (c[0] != "warped", c[1])
    )
    for variant, n in cells:
        rows = [r for r in results["synthetic"] if r["n"] == n and r.get("variant", "warped") == variant]
        lines.append(
            f"| {variant} | {n} | {rows[0]['pairs']} | {_number(mean(rows, 'fidelity_dice'))} | "
            f"{_number(mean(rows, 'fidelity_ceiling'))} | "
            f"{_number(mean(rows, 'floor_other_phantom'))} | {_number(mean(rows, 'floor_source_mask'))} | "
            f"{_number(mean(rows, 'masks_other_phantom'))} / {_number(mean(rows, 'masks_source'))} | "
            f"{_number(mean(rows, 'diversity_synthetic'))} | {_number(mean(rows, 'diversity_real'))} | "
            f"{_number(mean(rows, 'diversity_same_source'))} | "
            f"{_number(mean(rows, 'ms_ssim_to_warped_source'))} |"
        )
    return lines


def write_seg_augmentation_results(results: dict[str, Any], out) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into the folder ``out`` (created); returns their paths."""
    return write_results(results, out, results_markdown(results))
