"""Notebook 05 runs in the ci profile: the loss falls, resume continues, the exercises' solutions pass."""

from __future__ import annotations

import pytest

from meddiff_lab.course import is_finite_number

NAME = "05_training_chestxray"


@pytest.mark.notebook
def test_05_training_chestxray_runs_and_learns(run_notebook):
    result = run_notebook(NAME)
    metrics = result.metrics
    for key in ("first_loss", "final_loss", "train_seconds", "train_images_per_sec", "bf16_over_fp32_forward_time",
                "accumulation_max_difference"):
        assert is_finite_number(metrics[key]), key
    assert metrics["loss_fell"] is True and metrics["final_loss"] < metrics["first_loss"]
    assert metrics["train_images_per_sec"] > 0
    assert metrics["accumulation_max_difference"] < 1e-4  # two half-batches give the whole batch's gradient
    assert metrics["resumed_to_step"] > metrics["train_steps"]
    assert isinstance(metrics["pretrained_available"], bool)
