"""Train the instruments that judge a conditional zoo model (``meddiff-lab metrics evaluate-conditional``).

The checks of :mod:`meddiff_lab.metrics.conditional_evaluation` measure samples with instruments
trained and validated on real phantoms only: a segmenter for the lung fields and heart, and the
finding detector and view/sex readers of the shipped domain encoder. The encoder is trained once and
shipped (:mod:`meddiff_lab.training.encoder`); the segmenter is trained here, in a few minutes on a
CPU, on real phantoms of seed ``SEGMENTER_SEED`` (none is a zoo model's training seed). The
measuring side (detector thresholds, the real test set, the segmenter's own Dice) is
:func:`~meddiff_lab.metrics.conditional_evaluation.calibrate_instruments`.
"""

from __future__ import annotations

from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.data.phantom import generate_phantoms
from meddiff_lab.metrics.conditional_evaluation import SEGMENTER_SEED, Instruments, calibrate_instruments
from meddiff_lab.metrics.segmentation import SEG_STRUCTURES, stack_masks
from meddiff_lab.training.segmentation import train_segmentation

__all__ = ["build_instruments"]


def build_instruments(
    image_size: int = 64,
    n_train: int = 2000,
    n_validation: int = 2000,
    n_test: int = 2000,
    segmenter_steps: int = 800,
    seed: int = 0,
    progress: bool = False,
) -> Instruments:
    """Train the segmenter, calibrate the detector and make the real test set (a few minutes on a CPU).

    Args:
        image_size: side of the images (the zoo's 64).
        n_train: real phantoms the segmenter trains on (seed ``SEGMENTER_SEED``).
        n_validation: real phantoms that choose the detector thresholds (seed ``VALIDATION_SEED``).
        n_test: real phantoms of the test set (seed ``TEST_SEED``): AUROC, floors, and the conditions.
        segmenter_steps: optimizer steps of the segmenter (batch 16, MONAI ``DiceCELoss``).
        seed: the segmenter's training seed.

    Returns:
        the :class:`~meddiff_lab.metrics.conditional_evaluation.Instruments` the checks take.
    """
    train = generate_phantoms(n_train, image_size, SEGMENTER_SEED, masks=SEG_STRUCTURES)
    segmenter = train_segmentation(
        to_model_batch(train.images), stack_masks(train.masks), steps=segmenter_steps, seed=seed, progress=progress
    ).net
    return calibrate_instruments(segmenter, image_size, n_validation, n_test)
