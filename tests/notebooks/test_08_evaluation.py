"""08_evaluation runs in the ci profile; its metrics are finite, in range, and back the notebook's claims."""

import math

import pytest

pytestmark = pytest.mark.notebook


def finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def recorded(run_notebook):
    return run_notebook("08_evaluation").metrics


def test_every_set_metric_is_recorded_beside_its_floor(recorded):
    for name in ("fid", "kid", "precision", "recall", "ms_ssim"):
        assert finite_number(recorded[f"{name}_model"]) and finite_number(recorded[f"{name}_floor"]), name
    assert recorded["fid_model"] >= 0 and recorded["fid_floor"] >= 0
    for name in ("precision", "recall", "ms_ssim"):
        assert 0 <= recorded[f"{name}_model"] <= 1 and 0 <= recorded[f"{name}_floor"] <= 1


def test_the_domain_features_see_noise_blur_and_mirroring(recorded):
    sensitivity = recorded["fid_sensitivity"]
    floor = sensitivity["none (floor)"]
    for damage in ("noise σ=0.1", "blur σ=1 px", "mirrored"):
        assert sensitivity[damage] > floor, damage


def test_memorisation_check_finds_planted_copies_and_spares_unseen_images(recorded):
    assert recorded["planted_copies_found"] == 4
    assert recorded["memorised_fresh_flagged"] <= 1
    assert recorded["memorised_flagged"] >= 0
    assert 0.5 < recorded["pixel_ncc_fresh_median"] <= 1.0


def test_steps_sweep_and_restoration_are_recorded(recorded):
    assert recorded["kid_by_steps"] and all(finite_number(v) for v in recorded["kid_by_steps"].values())
    for level in recorded["restoration"].values():
        # every denoiser improves on the noisy image it was given
        for method in ("non-local means", "diffusion, 1 step"):
            assert level[method]["psnr"] > level["noisy"]["psnr"], method
        assert all(finite_number(m["ssim"]) and m["ssim"] <= 1 for m in level.values())


def test_island_removal_improves_the_boundary_metric_and_keeps_dice(recorded):
    raw, cleaned = recorded["segmentation"]["raw prediction"], recorded["segmentation"]["islands removed, holes filled"]
    assert cleaned["HD95 (px)"] < raw["HD95 (px)"]
    assert cleaned["Dice"] >= raw["Dice"]
    assert all(0 <= v <= 1 for row in recorded["segmentation"].values() for k, v in row.items() if k != "HD95 (px)")


def test_quiz_scores_automatic_readers(recorded):
    assert recorded["quiz_always_real_accuracy"] == 0.5
    assert 0 <= recorded["quiz_feature_reader_accuracy"] <= 1
    assert not math.isnan(recorded["notebook_seconds"])
