"""04_building_the_unet runs in the ci profile and its numbers support what the notebook says."""

import pytest

from meddiff_lab.course import is_finite_number

pytestmark = pytest.mark.notebook
NOTEBOOK = "04_building_the_unet"  # the conftest's `metrics` fixture runs it


def test_inline_pieces_give_the_package_and_library_numbers(metrics):
    assert metrics["timestep_embedding_max_abs_diff"] < 1e-5
    assert metrics["resblock_max_abs_diff"] < 1e-5
    assert metrics["attention_max_abs_diff"] < 1e-4


def test_parameter_counts(metrics):
    assert metrics["unet_parameters"] > 100_000
    assert 0.9 < metrics["parameter_ratio_vs_monai"] < 1.1
    # 3x3x3 kernels instead of 3x3: about three times the parameters
    assert 2.0 < metrics["unet3d_parameters"] / metrics["unet_parameters"] < 3.2
    assert is_finite_number(metrics["unet3d_activation_mb"]) and metrics["unet3d_activation_mb"] > 0


def test_measured_receptive_field_equals_the_computed_one(metrics):
    # three levels, one residual block per level: 133 px (the notebook's walk of the deepest path)
    assert metrics["receptive_field_px"] == 133


def test_speed_comparison_ran(metrics):
    for key in ("train_speed_ratio_vs_monai", "train_speed_ratio_vs_diffusers"):
        assert is_finite_number(metrics[key]) and metrics[key] > 0  # no timed assertion: numbers go in benchmarks/


def test_every_claim_is_supported_by_the_run(run_notebook):
    claims = run_notebook(NOTEBOOK).claims
    assert claims, "the notebook states its results as checked claims (meddiff_lab.course.claim)"
    assert [c["text"] for c in claims if not c["holds"]] == []
