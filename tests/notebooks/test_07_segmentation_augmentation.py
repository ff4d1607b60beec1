"""07_segmentation_augmentation runs in the ci profile and records a complete, sane results table."""

import pytest

from meddiff_lab.course import is_finite_number
from meddiff_lab.runtime import get_profile

pytestmark = pytest.mark.notebook
NOTEBOOK = "07_segmentation_augmentation"  # the conftest's `metrics` fixture runs it

ARMS = {"+ classical", "+ synthetic", "more real labels"}


def test_every_size_arm_and_seed_was_run(metrics):
    profile = get_profile("ci")
    sizes = [str(n) for n in profile.seg_labelled_sizes]
    arms = ARMS | ({"+ synthetic + classical"} if profile.seg_combined_arm else set())
    assert set(metrics["seg_dice_gain"]) == arms          # every arm, compared with "labelled only"
    assert metrics["seg_runs"] == len(sizes) * len(profile.seg_seeds) * (len(arms) + 1)
    for arm in arms:
        assert set(metrics["seg_dice_gain"][arm]) == set(sizes)
        assert all(is_finite_number(v) and -1 <= v <= 1 for v in metrics["seg_dice_gain"][arm].values())
    assert set(metrics["seg_dice_labelled_only"]) == set(sizes)
    assert set(metrics["seg_synthetic_fidelity_dice"]) == set(sizes)


def test_scores_are_in_range(metrics):
    assert 0.0 < metrics["seg_reference_dice"] <= 1.0
    assert all(0.0 <= v <= 1.0 for v in metrics["seg_dice_labelled_only"].values())
    assert all(is_finite_number(v) and v >= 0 for v in metrics["seg_hd95_labelled_only_mm"].values())
    assert all(0.0 <= v <= 1.0 for v in metrics["seg_synthetic_fidelity_dice"].values())
    assert is_finite_number(metrics["seg_seconds_total"]) and metrics["seg_seconds_total"] > 0


def test_every_claim_is_supported_by_the_run(run_notebook):
    claims = run_notebook(NOTEBOOK).claims
    assert claims, "the notebook states its results as checked claims (meddiff_lab.course.claim)"
    assert [c["text"] for c in claims if not c["holds"]] == []
