"""01_preprocessing runs in the ci profile, and the claims it makes hold in the numbers it records."""

import pytest

from meddiff_lab.course import is_finite_number

pytestmark = pytest.mark.notebook
NOTEBOOK = "01_preprocessing"  # the conftest's `metrics` fixture runs it


def test_readers_are_right_on_real_files(metrics):
    assert metrics["ct_hu_exact"] is True
    assert metrics["ct_hu_min"] == -896.0 and metrics["ct_hu_max"] == 1167.0  # CT_small.dcm: pixel - 1024
    assert metrics["series_order_correct"] is True
    assert metrics["series_slice_spacing_mm"] == pytest.approx(5.0)
    assert metrics["nifti_spacing_unchanged"] is True
    assert (
        metrics["radiograph_mediastinum_minus_lungs_stored"] < 0 < metrics["radiograph_mediastinum_minus_lungs_shown"]
    )
    assert metrics["dicom_to_nifti_voxel_matches"] is True


def test_intensity_and_widgets(metrics):
    assert metrics["window_widget_updates"] is True
    assert metrics["mri_normalisation_max_difference_vs_monai"] < 1e-4


def test_non_local_means_beats_gaussian_on_psnr_and_edges(metrics):
    for key in ("noisy", "gaussian", "nlm"):
        assert is_finite_number(metrics[f"denoise_psnr_{key}"]) and 0 < metrics[f"denoise_edge_kept_{key}"] < 2
    assert metrics["denoise_psnr_nlm"] > metrics["denoise_psnr_noisy"]
    assert metrics["denoise_psnr_nlm"] > metrics["denoise_psnr_gaussian"]
    assert metrics["denoise_edge_kept_nlm"] > metrics["denoise_edge_kept_gaussian"] + 0.2


def test_space(metrics):
    assert metrics["orientation_matches_monai"] is True
    diameters = metrics["nodule_diameters_isotropic_mm"]
    assert len(diameters) == 3 and all(abs(d - 24.0) <= 4.0 for d in diameters)
    assert 0 <= metrics["registration_rotation_error_deg"] < 1.0
    assert 0 <= metrics["registration_shift_error_mm"] < 1.0  # half a 2 mm voxel


def test_augmentation_split_deid_and_viewer(metrics):
    assert metrics["flip_moves_heart_to_patient_right"] is True
    assert metrics["leakage_patient_split_test_images"] == 0.0
    assert metrics["nih_like_leakage_patient_split"] == 0.0
    assert metrics["nih_like_leakage_image_split"] > 0.5
    assert metrics["leakage_image_split_test_images"] > metrics["leakage_patient_split_test_images"]
    assert metrics["deid_phi_left"] == 0
    assert metrics["deid_pixels_identical"] is True and metrics["deid_series_identical"] is True
    assert metrics["viewer_backend"] == "matplotlib"  # headless: itkwidgets cannot render
    assert is_finite_number(metrics["notebook_seconds"])


def test_every_claim_is_supported_by_the_run(run_notebook):
    claims = run_notebook(NOTEBOOK).claims
    assert claims, "the notebook states its results as checked claims (meddiff_lab.course.claim)"
    assert [c["text"] for c in claims if not c["holds"]] == []
