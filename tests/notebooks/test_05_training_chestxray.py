"""Notebook 05 runs in the ci profile: the loss falls, resume continues, the exercises' solutions pass."""

from __future__ import annotations

import pytest

from meddiff_lab.course import is_finite_number

NAME = "05_training_chestxray"


@pytest.mark.notebook
def test_05_training_chestxray_runs_and_learns(run_notebook):
    result = run_notebook(NAME)
    metrics = result.metrics
    for key in (
        "first_loss",
        "final_loss",
        "train_seconds",
        "train_images_per_sec",
        "bf16_over_fp32_forward_time",
        "accumulation_max_difference",
    ):
        assert is_finite_number(metrics[key]), key
    assert metrics["loss_fell"] is True and metrics["final_loss"] < metrics["first_loss"]
    assert metrics["train_images_per_sec"] > 0
    assert metrics["accumulation_max_difference"] < 1e-4  # two half-batches give the whole batch's gradient
    assert metrics["resumed_to_step"] > metrics["train_steps"]
    assert isinstance(metrics["pretrained_available"], bool)


@pytest.mark.notebook
def test_every_claim_is_supported_by_the_run(run_notebook):
    claims = run_notebook(NAME).claims
    assert claims, "the notebook states its results as checked claims (meddiff_lab.course.claim)"
    assert [c["text"] for c in claims if not c["holds"]] == []


@pytest.mark.notebook
def test_the_loss_has_its_floor_and_the_student_meets_the_shipped_model(run_notebook):
    metrics = run_notebook(NAME).metrics
    fixed = metrics["loss_fixed_draws"]
    assert 0 <= metrics["loss_floor_training"] == fixed["exact_training"] < fixed["yours_training"]
    assert set(fixed) == {"yours_training", "yours_unseen", "exact_training", "exact_unseen"}
    told = metrics["told_apart"]
    assert "yours" in told and all(
        0 <= r["interval"][0] <= r["accuracy"] <= r["interval"][1] <= 1 for r in told.values()
    )
