"""07_segmentation_augmentation runs in the ci profile: its live grid runs every arm, and its reading of the
committed full grid is generated from that grid's numbers, every claim supported."""

import json
from pathlib import Path

import pytest

from meddiff_lab.course import is_finite_number
from meddiff_lab.experiments import segmentation_augmentation as sa
from meddiff_lab.runtime import get_profile

pytestmark = pytest.mark.notebook
NOTEBOOK = "07_segmentation_augmentation"  # the conftest's `metrics` fixture runs it
COMMITTED = Path(__file__).resolve().parents[2] / "data" / "experiments" / "seg-augmentation" / "results.json"


def test_the_live_grid_runs_every_arm_of_its_profile(metrics):
    grid = sa.get_seg_augmentation_profile(get_profile("ci").seg_grid)
    assert set(metrics["seg_live_dice"]) == set(sa.SEG_AUGMENTATION_ARMS)
    assert metrics["seg_live_runs"] == grid.runs
    assert all(0.0 <= v <= 1.0 for v in metrics["seg_live_dice"].values())
    assert all(0.0 <= v <= 1.0 for v in metrics["seg_live_fidelity"].values())
    assert is_finite_number(metrics["seg_seconds_total"]) and metrics["seg_seconds_total"] > 0


def test_the_committed_grid_is_read_as_committed(metrics):
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert metrics["seg_committed_groups"] == committed["groups_done"] >= committed["profile"]["draws"]
    assert set(metrics["seg_more_labels_gain"]) == {str(n) for n in committed["profile"]["labelled_sizes"]}
    for n, gain in metrics["seg_more_labels_gain"].items():
        assert gain == pytest.approx(
            sa.arm_difference(committed, int(n), "more real labels (4n)", "labelled only")["mean"]
        )
    assert isinstance(metrics["seg_generator_beats_classical_small_n"], bool)


def test_every_claim_is_supported_by_the_run(run_notebook):
    claims = run_notebook(NOTEBOOK).claims
    assert claims, "the notebook states its results as checked claims (meddiff_lab.course.claim)"
    assert [c["text"] for c in claims if not c["holds"]] == []
