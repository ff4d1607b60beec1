"""02_forward_diffusion runs in the ci profile and its numbers support what the notebook says."""

import pytest

from meddiff_lab.course import is_finite_number

pytestmark = pytest.mark.notebook
NOTEBOOK = "02_forward_diffusion"  # the conftest's `metrics` fixture runs it


def test_one_step_and_closed_form_agree_in_distribution(metrics):
    se = metrics["forward_check_standard_error"]
    assert is_finite_number(se) and se > 0
    # max over 16 pixels of |mean error| and |std error|: within a few standard errors
    assert metrics["forward_check_mean_error"] < 5 * se
    assert metrics["forward_check_std_error"] < 5 * se


def test_package_and_libraries_give_the_same_numbers(metrics):
    assert metrics["add_noise_max_diff"] < 1e-5
    assert metrics["max_alphas_cumprod_diff_diffusers"] <= 1e-6
    assert metrics["max_alphas_cumprod_diff_monai"] <= 1e-6


def test_faint_lesion_drowns_before_the_heart_and_earlier_under_linear(metrics):
    assert 0 < metrics["lesion_contrast"] < 1
    assert metrics["lesion_lost_t_linear"] < metrics["lesion_lost_t_cosine"]
    assert metrics["lesion_lost_t_linear"] < metrics["heart_lost_t_linear"]


def test_pooling_by_two_multiplies_the_snr_by_about_four(metrics):
    assert 3.0 < metrics["snr_ratio_after_pooling"] < 5.3


def test_every_claim_is_supported_by_the_run(run_notebook):
    claims = run_notebook(NOTEBOOK).claims
    assert claims, "the notebook states its results as checked claims (meddiff_lab.course.claim)"
    assert [c["text"] for c in claims if not c["holds"]] == []
