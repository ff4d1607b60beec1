"""Notebook 09 runs in the ci profile: every task's table is filled, data consistency holds, claims are supported."""

from __future__ import annotations

import pytest

from meddiff_lab.course import is_finite_number

NOTEBOOK = "09_applications"


@pytest.mark.notebook
def test_09_denoising_table_and_gain_are_measured(metrics):
    table = metrics["denoise_table"]
    methods = {key.split(" · ")[1].split(" (")[0] for key in table if " · " in key}
    assert {
        "noisy input",
        "Gaussian",
        "non-local means",
        "supervised CNN",
        "SDEdit",
        "DDNM+",
        "posterior sample",
    } <= methods
    for row in table.values():
        assert isinstance(row["vanished"], int) and isinstance(row["appeared"], int)
    for key in (
        "diffusion_gain_db_at_10pct",
        "diffusion_minus_supervised_db_at_10pct",
        "posterior_spread_mean",
        "noise_std_dose_0.1",
    ):
        assert is_finite_number(metrics[key]), key


@pytest.mark.notebook
def test_09_super_resolution_is_data_consistent(metrics):
    table = metrics["sr_table"]
    assert set(table) == {"nearest", "bicubic", "supervised CNN", "DDNM"}
    assert metrics["sr_ddnm_consistency"] < 1e-4  # the 2 x 2 average of DDNM's output is the input
    assert all(is_finite_number(row["psnr"]) for row in table.values())


@pytest.mark.notebook
def test_09_inpainting_and_anomaly_tables(metrics):
    assert set(metrics["inpaint_table"]) == {"truth", "biharmonic", "DDNM", "RePaint"}
    overall = metrics["anomaly_overall"]
    for method in ("diffusion (SDEdit)", "autoencoder"):
        assert 0.0 <= overall[method]["pixel AUROC"] <= 1.0
    assert metrics["anomaly_per_finding"], "no finding type had two images"


@pytest.mark.notebook
def test_09_every_claim_is_supported(run_notebook):
    result = run_notebook(NOTEBOOK)
    assert result.claims, "the notebook states no result sentences through claim()"
    unsupported = [c["text"] for c in result.claims if not c["holds"]]
    assert not unsupported, unsupported
