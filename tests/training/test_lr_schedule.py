"""meddiff_lab/training/lr_schedule.py: the one warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import pytest

from meddiff_lab.training.lr_schedule import warmup_cosine


def test_warmup_is_linear_then_cosine_ends_at_the_floor():
    factors = [warmup_cosine(s, warmup_steps=4, max_steps=24, min_lr_ratio=0.05) for s in range(25)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[14] == pytest.approx(0.05 + 0.95 * 0.5)
    assert factors[24] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))


def test_no_warmup_starts_at_one_and_steps_past_the_end_stay_at_the_floor():
    assert warmup_cosine(0, warmup_steps=0, max_steps=10) == 1.0
    assert warmup_cosine(50, warmup_steps=0, max_steps=10, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_the_trainer_and_the_encoder_training_share_it():
    from meddiff_lab.training import encoder, trainer

    assert trainer.warmup_cosine is warmup_cosine
    assert encoder.warmup_cosine is warmup_cosine
    assert encoder.MIN_LR_RATIO == 0.05
