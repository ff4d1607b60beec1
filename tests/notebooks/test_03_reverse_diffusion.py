"""03_reverse_diffusion runs in the ci profile and its numbers support what the notebook says."""

import pytest

from meddiff_lab.course import is_finite_number

pytestmark = pytest.mark.notebook
NOTEBOOK = "03_reverse_diffusion"  # the conftest's `metrics` fixture runs it


def test_posterior_mean_matches_simulation(metrics):
    assert metrics["posterior_mean_simulation_error"] < 0.01


def test_correct_ddpm_keeps_the_spread_and_the_blog_step_collapses_it(metrics):
    assert 0.85 < metrics["ddpm_z_std"] < 1.1
    assert metrics["blog_step_z_std"] < 0.01
    assert metrics["blog_step_oracle_spread"] < 1e-3, "the blog step gives every noise the same image"
    assert metrics["ddpm_inline_vs_package_max_diff"] < 1e-3


def test_exact_dataset_denoiser_memorises(metrics):
    assert metrics["oracle_memorised_fraction"] == 1.0
    assert 0 <= metrics["oracle_commit_t"] < 1000


def test_ddim_variance_shrinks_at_few_steps(metrics):
    sweep = metrics["ddim_z_std_by_steps"]
    for eta in ("0", "1"):
        values = [v for k, v in sweep.items() if k.startswith(f"eta{eta}_")]
        steps = [int(k.split("steps")[1]) for k in sweep if k.startswith(f"eta{eta}_")]
        ordered = [v for _, v in sorted(zip(steps, values))]
        assert all(is_finite_number(v) and 0 < v < 1.1 for v in ordered)
        assert ordered[0] < ordered[-1], f"eta={eta}: fewer steps should give a smaller spread"


def test_inversion_and_diffusers_agree(metrics):
    assert metrics["inversion_error_fixed_point"] < metrics["inversion_error_plain"]
    assert metrics["diffusers_ddim_max_diff"] < 1e-4


def test_every_claim_is_supported_by_the_run(run_notebook):
    claims = run_notebook(NOTEBOOK).claims
    assert claims, "the notebook states its results as checked claims (meddiff_lab.course.claim)"
    assert [c["text"] for c in claims if not c["holds"]] == []
