"""06_conditioning runs in the ci profile and records the numbers its conclusions are built on."""

import pytest

from meddiff_lab.course import is_finite_number
from meddiff_lab.runtime import get_profile

pytestmark = pytest.mark.notebook
NOTEBOOK = "06_conditioning"  # the conftest's `metrics` fixture runs it


def test_data_and_instrument(metrics):
    assert 0.05 < metrics["cond_cardiomegaly_share"] < 0.6  # cardiomegaly is the minority class
    assert is_finite_number(metrics["ctr_instrument_mae"]) and 0 <= metrics["ctr_instrument_mae"] < 1
    assert 0.0 <= metrics["ctr_instrument_agreement"] <= 1.0
    assert is_finite_number(metrics["cond_class_train_seconds"]) and metrics["cond_class_train_seconds"] > 0


def test_guidance_sweep_is_recorded_for_every_scale(metrics):
    scales = list(get_profile("ci").cond_guidance_scales)
    assert metrics["cfg_guidance_scales"] == scales
    for key in ("cfg_share_ctr_above_half_cardiomegaly", "cfg_share_ctr_above_half_no_cardiomegaly"):
        assert len(metrics[key]) == len(scales) and all(0.0 <= v <= 1.0 for v in metrics[key])
    for key in ("cfg_mean_ctr_cardiomegaly", "cfg_mean_ctr_no_cardiomegaly"):
        assert all(is_finite_number(v) and 0.0 < v <= 1.0 for v in metrics[key])
    assert len(metrics["cfg_paired_ctr_difference"]) == len(scales)
    # w = 0 is the unconditional model: the label cannot matter, both classes are the same samples
    at_zero = scales.index(0.0)
    assert metrics["cfg_paired_ctr_difference"][at_zero] == 0.0
    assert (
        metrics["cfg_share_ctr_above_half_cardiomegaly"][at_zero]
        == metrics["cfg_share_ctr_above_half_no_cardiomegaly"][at_zero]
    )
    assert -1.0 <= metrics["cfg_best_gap"] <= 1.0


def test_metadata_effects_are_measured(metrics):
    assert is_finite_number(metrics["metadata_sex_effect_real"])
    assert is_finite_number(metrics["metadata_sex_effect_generated"])


def test_mask_conditioning_is_scored_and_controlnet_starts_as_the_base(metrics):
    assert metrics["controlnet_starts_as_base"] is True
    for key in ("mask_concat_dice", "mask_controlnet_dice", "mask_real_dice"):
        assert 0.0 <= metrics[key] <= 1.0
    for key in ("mask_concat_ctr_error", "mask_controlnet_ctr_error"):
        assert is_finite_number(metrics[key]) and metrics[key] >= 0


def test_every_claim_is_supported_by_the_run(run_notebook):
    claims = run_notebook(NOTEBOOK).claims
    assert claims, "the notebook states its results as checked claims (meddiff_lab.course.claim)"
    assert [c["text"] for c in claims if not c["holds"]] == []


def test_mask_dice_has_its_floor_and_guidance_its_diversity(metrics):
    assert 0 <= metrics["mask_floor_dice"] <= 1 and metrics["mask_floor_ctr_error"] >= 0
    for values in metrics["cfg_diversity"].values():
        assert values["pairwise RMS"] > 0 and values["contrast"] > 0
    assert metrics["real_pairwise_rms"] > 0


def test_zoo_models_are_checked_with_the_same_instruments(metrics):
    from meddiff_lab.models.pretrained import is_available, pretrained_dir

    names = ("phantom64-cond", "phantom64-controlnet-mask")
    assert metrics["zoo_models_loaded"] == sorted(n for n in names if is_available(n))
    assert metrics["zoo_cards_found"] == sorted(
        n for n in names if (pretrained_dir() / f"{n}_evaluation.json").is_file()
    )
    assert is_finite_number(metrics["zoo_instrument_mae"]) and metrics["zoo_instrument_mae"] >= 0
    assert is_finite_number(metrics["zoo_sex_effect_real"])
    if "phantom64-cond" in metrics["zoo_models_loaded"]:
        scales = list(get_profile("ci").zoo_guidance_scales)
        assert metrics["zoo_cfg_guidance_scales"] == scales
        shares = metrics["zoo_cfg_share_ctr_above_half"]
        assert sorted(shares) == ["Cardiomegaly", "No Finding"]
        assert all(len(v) == len(scales) and all(0.0 <= x <= 1.0 for x in v) for v in shares.values())
        at_zero = scales.index(0.0)  # w = 0 ignores the condition: one batch serves both arms
        assert shares["Cardiomegaly"][at_zero] == shares["No Finding"][at_zero]
        assert metrics["zoo_cfg_paired_ctr_difference"][at_zero] == 0.0
        assert is_finite_number(metrics["zoo_sex_effect_generated"])
    if "phantom64-controlnet-mask" in metrics["zoo_models_loaded"]:
        assert 0.0 <= metrics["zoo_mask_dice"] <= 1.0 and 0.0 <= metrics["zoo_mask_real_dice"] <= 1.0
        assert is_finite_number(metrics["zoo_mask_ctr_error"]) and metrics["zoo_mask_ctr_error"] >= 0
