"""Notebook 10 runs in the ci profile: the misconception is measured, the autoencoders, the four equal-compute arms,
rectified flow (written out = package), the step sweeps and DPM-Solver all produce finite numbers; the exercises'
solutions pass."""

from __future__ import annotations

import pytest

from meddiff_lab.course import is_finite_number

NOTEBOOK = "10_latent_diffusion"


@pytest.mark.notebook
def test_10_misconception_and_autoencoders_are_measured(metrics):
    for key in ("FID", "KID", "precision", "recall"):
        assert is_finite_number(metrics["floor"][key]), key
    fids = metrics["plain_ae_fid"]
    assert {
        "noise image in",
        "N(0, 1) codes",
        "fitted-Gaussian codes",
        "midpoint of two codes",
        "reconstructions",
    } <= set(fids)
    assert all(is_finite_number(v) for v in fids.values())
    assert is_finite_number(metrics["plain_ae_psnr"])
    assert len(metrics["ae_quality_live"]) == 2  # two latent sizes, e.g. 4x32x32 and 4x16x16 at 128 px
    for quality in metrics["ae_quality_live"].values():
        assert all(is_finite_number(quality[k]) for k in ("PSNR dB", "SSIM", "FID"))
    assert metrics["latent_scale_factor"] > 0 and metrics["latent_raw_std"] > 0
    assert isinstance(metrics["uses_shipped_autoencoder"], bool)


@pytest.mark.notebook
def test_10_equal_compute_arms_flow_and_solvers(metrics):
    arms = metrics["arms"]
    assert set(arms) == {"latent ε", "latent v", "latent rectified flow", "pixel ε"}
    for arm in arms.values():
        for key in (
            "FID",
            "KID",
            "precision",
            "recall",
            "train_images_per_sec",
            "train_memory_mb",
            "seconds_per_sample",
        ):
            assert is_finite_number(arm[key]), key
        assert arm["images_seen"] > 0
    assert arms["pixel ε"]["train_memory_mb"] > arms["latent ε"]["train_memory_mb"]
    assert metrics["flow_max_difference"] < 1e-4  # the written-out Euler loop is the package's sampler
    for curve in metrics["kid_by_steps"].values():
        assert all(is_finite_number(v) for v in curve.values())
    for solver in ("DPM-Solver++", "DDIM"):
        assert all(is_finite_number(v) for v in metrics["solver_kid"][solver].values())
    assert metrics["dpm_steps_to_match_ddim"] is None or metrics["dpm_steps_to_match_ddim"] > 0
    assert is_finite_number(metrics["ddim_reference_kid"])
    assert isinstance(metrics["pretrained_available"], bool)
    assert all(is_finite_number(v) for v in metrics["misconception_fid"].values())


@pytest.mark.notebook
def test_10_reads_the_committed_full_comparison(metrics):
    import json
    from pathlib import Path

    committed = json.loads(
        (Path(__file__).resolve().parents[2] / "data" / "experiments" / "latent-comparison" / "results.json").read_text(
            encoding="utf-8"
        )
    )
    ref = str(committed["profile"]["reference_steps"])
    assert metrics["full_comparison_fid"] == {
        name: arm["by_steps"][ref]["fid"] for name, arm in committed["arms"].items()
    }
    assert metrics["full_steps_to_target"] == committed["steps_to_target"]
