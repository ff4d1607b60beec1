"""Tests for meddiff_lab/training/instruments.py: the segmenter is trained on real phantoms, then calibrated."""

from __future__ import annotations

import numpy as np
import torch

from meddiff_lab.metrics.conditional_evaluation import TEST_SEED, Instruments
from meddiff_lab.metrics.segmentation import SEG_STRUCTURES
from meddiff_lab.training.instruments import build_instruments


def test_build_instruments_trains_a_segmenter_and_calibrates_on_the_real_test_set():
    torch.manual_seed(0)
    instruments = build_instruments(image_size=32, n_train=16, n_validation=24, n_test=20, segmenter_steps=2)
    assert isinstance(instruments, Instruments)
    assert not instruments.segmenter.training and not instruments.encoder.training
    out = instruments.segmenter(instruments.test_images[:2])
    assert out.shape == (2, len(SEG_STRUCTURES), 32, 32)
    assert instruments.test_images.shape == (20, 1, 32, 32) and instruments.test.images.shape == (20, 32, 32)
    assert instruments.thresholds.shape == instruments.auroc.shape == (instruments.test.labels.shape[1],)
    assert set(instruments.segmenter_dice) == set(SEG_STRUCTURES)
    assert all(0.0 <= d <= 1.0 for d in instruments.segmenter_dice.values())
    assert np.isfinite(instruments.thresholds).all()
    assert TEST_SEED != 0  # never a zoo model's training seed
