"""Tests for meddiff_lab/data/io.py on the real files shipped in pydicom and nibabel, on series written
here with pydicom (shuffled names, InstanceNumbers that disagree with positions, oblique orientation),
and on files that are not what they claim to be."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from meddiff_lab.data.io import (
    LPS_TO_RAS,
    MedicalFileError,
    Volume,
    describe_file,
    dicom_series_to_nifti,
    load_dicom,
    load_dicom_series,
    load_nifti,
    load_png,
    save_nifti,
    write_dicom_series,
)

CT_SMALL = get_testdata_file("CT_small.dcm")
MR_SMALL = get_testdata_file("MR_small.dcm")
ANATOMICAL = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii")


# ------------------------------------------------------------------------------------ real files
def test_real_ct_slice_exact_hounsfield_units_and_geometry():
    ds = pydicom.dcmread(CT_SMALL)
    vol = load_dicom(CT_SMALL)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert vol.array.dtype == np.float32 and vol.shape == (128, 128)
    assert np.array_equal(vol.array, expected.astype(np.float32))
    assert vol.meta["units"] == "HU" and vol.meta["modality"] == "CT"
    assert vol.spacing == pytest.approx((0.661468, 0.661468))
    # pixel (row r, column c) sits at IPP + c * dc * X + r * dr * Y in LPS; RAS negates x and y
    x_dir, y_dir = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    r, c = 17, 101
    lps = np.array(ds.ImagePositionPatient, float) + c * 0.661468 * x_dir + r * 0.661468 * y_dir
    assert np.allclose(vol.world_coordinates((r, c)), lps * [-1, -1, 1])


def test_real_ct_slice_agrees_with_monai_pydicom_reader():
    from monai.data import PydicomReader

    reader = PydicomReader()
    data, meta = reader.get_data(reader.read(CT_SMALL))
    vol = load_dicom(CT_SMALL)
    # MONAI stores (columns, rows): transpose the array and swap the affine's first two columns
    assert np.array_equal(np.asarray(data).T, vol.array)
    assert np.allclose(np.asarray(meta["affine"])[:3, [1, 0, 3]], vol.affine[:3, [0, 1, 3]], atol=1e-5)


def test_real_mr_slice_keeps_stored_values():
    ds = pydicom.dcmread(MR_SMALL)
    vol = load_dicom(MR_SMALL)
    assert np.array_equal(vol.array, ds.pixel_array.astype(np.float32))
    assert vol.meta["modality"] == "MR" and vol.meta["units"] != "HU"
    assert vol.spacing == pytest.approx((0.3125, 0.3125))


def test_real_nifti_volume_and_spacing_unchanged():
    ref = nib.load(ANATOMICAL)
    vol = load_nifti(ANATOMICAL)
    assert vol.shape == (33, 41, 25)
    assert np.array_equal(vol.array, ref.get_fdata(dtype=np.float32))
    assert vol.spacing == tuple(float(z) for z in ref.header.get_zooms())
    assert np.array_equal(vol.affine, ref.affine)
    assert vol.orientation == "LAS"


def test_reorientation_keeps_every_voxel_in_place():
    vol = load_nifti(ANATOMICAL)
    ras = vol.reoriented("RAS")
    assert ras.orientation == "RAS" and ras.shape == (33, 41, 25)
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = tuple(int(rng.integers(0, s)) for s in vol.shape)
        world = vol.world_coordinates(idx)
        new_idx = np.rint(np.linalg.inv(ras.affine) @ np.append(world, 1))[:3].astype(int)
        assert ras.array[tuple(new_idx)] == vol.array[idx]
    spl = vol.reoriented("SPL")
    assert spl.shape == (25, 41, 33) and spl.spacing == (2.0, 2.0, 2.0)


# ------------------------------------------------------------------------------ a DICOM series
def oblique_directions(deg_a=20.0, deg_b=10.0):
    a, b = np.radians(deg_a), np.radians(deg_b)
    rot_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rot = rot_x @ rot_z
    return rot[:, 0], rot[:, 1]  # row direction X, column direction Y (orthonormal)


def write_test_series(
    folder: Path,
    n=7,
    spacing=2.5,
    rows=12,
    cols=10,
    pixel=(0.8, 0.7),
    oblique=True,
    seed=0,
    positions_k=None,
    series_uid=None,
    description="axial test",
    iop=None,
):
    """Write a series with pydicom only (independent of the code under test). Slice k holds value 100*k + pattern.

    File names are random and InstanceNumbers run in a shuffled order unrelated to position.
    Returns (x_dir, y_dir, origin, slice step vector).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    x_dir, y_dir = oblique_directions() if oblique else (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    if iop is not None:
        x_dir, y_dir = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(x_dir, y_dir)
    origin = np.array([-40.0, 25.0, 110.0])
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    ks = list(range(n)) if positions_k is None else list(positions_k)
    instance_numbers = rng.permutation(len(ks)) + 1
    pattern = np.arange(rows * cols, dtype=np.int16).reshape(rows, cols) % 50
    for j, k in enumerate(ks):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality, ds.SeriesDescription, ds.PatientName, ds.PatientID = "CT", description, "Test^Series", "T1"
        ds.InstanceNumber = int(instance_numbers[j])
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([x_dir, y_dir])]
        ds.ImagePositionPatient = [f"{v:.5f}" for v in origin + k * spacing * normal]
        ds.PixelSpacing = [str(pixel[0]), str(pixel[1])]
        ds.SliceThickness = "3.0"  # thicker than the spacing on purpose: spacing must come from positions
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.PixelData = (pattern + 100 * k + 1024).astype(np.int16).tobytes()
        name = f"{rng.integers(0, 10**9):09d}.dcm"
        ds.save_as(folder / name, enforce_file_format=True)
    return x_dir, y_dir, origin, spacing * normal


def test_shuffled_oblique_series_back_in_position_order_with_right_spacing(tmp_path):
    x_dir, y_dir, origin, step = write_test_series(tmp_path / "s", n=7, spacing=2.5)
    vol = load_dicom_series(tmp_path / "s")
    assert vol.shape == (7, 12, 10)
    # slice k holds 100 * k + pattern: the order is the position order
    assert np.array_equal(vol.array[:, 0, 0], 100.0 * np.arange(7) - 0.0)
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.7), abs=1e-4)
    assert vol.meta["instance_numbers_agree_with_positions"] is False
    assert not vol.meta["uneven_spacing"]
    # index (k, r, c) -> IPP_0 + k * step + r * dr * Y + c * dc * X (LPS), RAS negates x and y
    for k, r, c in [(0, 0, 0), (6, 11, 9), (3, 5, 2)]:
        lps = origin + k * step + r * 0.8 * y_dir + c * 0.7 * x_dir
        assert np.allclose(vol.world_coordinates((k, r, c)), lps * [-1, -1, 1], atol=1e-3)


def test_series_sorted_by_position_even_when_the_normal_points_down(tmp_path):
    # a sagittal-ish orientation whose normal is not +z: the projection, not z, orders the slices
    iop = [0, 1, 0, 0, 0, -1]
    write_test_series(tmp_path / "sag", n=5, spacing=4.0, iop=iop, seed=3)
    vol = load_dicom_series(tmp_path / "sag")
    assert np.array_equal(vol.array[:, 0, 0], 100.0 * np.arange(5))
    assert vol.spacing[0] == pytest.approx(4.0)
    # normal = X x Y = (0, 1, 0) x (0, 0, -1) = (-1, 0, 0) in LPS: toward the patient's right
    assert vol.orientation == "RIP"


def test_uneven_spacing_is_reported(tmp_path):
    write_test_series(tmp_path / "gap", positions_k=[0, 1, 2, 4, 5], spacing=2.0)
    with pytest.warns(UserWarning, match="uneven slice spacing"):
        vol = load_dicom_series(tmp_path / "gap")
    assert vol.meta["uneven_spacing"] and max(vol.meta["slice_gaps"]) == pytest.approx(4.0)
    with pytest.raises(MedicalFileError, match="uneven slice spacing"):
        load_dicom_series(tmp_path / "gap", on_uneven="raise")


def test_mixed_series_are_named_and_one_can_be_chosen(tmp_path):
    write_test_series(tmp_path / "mix", n=4, series_uid="1.2.3.4.1", description="first", seed=1)
    write_test_series(tmp_path / "mix", n=3, series_uid="1.2.3.4.2", description="second", seed=2)
    with pytest.raises(MedicalFileError, match=r"2 series.*1\.2\.3\.4\.1.*series_uid"):
        load_dicom_series(tmp_path / "mix")
    assert load_dicom_series(tmp_path / "mix", series_uid="1.2.3.4.2").shape[0] == 3


def test_mixed_orientation_and_duplicate_positions_raise(tmp_path):
    write_test_series(tmp_path / "o", n=4, series_uid="1.2.3.9", seed=1)
    write_test_series(tmp_path / "o", n=1, series_uid="1.2.3.9", oblique=False, seed=2)
    with pytest.raises(MedicalFileError, match="mixed orientations"):
        load_dicom_series(tmp_path / "o")
    write_test_series(tmp_path / "d", n=3, series_uid="1.2.3.10", seed=1)
    write_test_series(tmp_path / "d", n=3, series_uid="1.2.3.10", seed=2)
    with pytest.raises(MedicalFileError, match="same position"):
        load_dicom_series(tmp_path / "d")


def test_series_with_a_fake_dicom_file_names_it_and_skips_other_files(tmp_path):
    write_test_series(tmp_path / "s", n=3)
    (tmp_path / "s" / "README.txt").write_text("exported by some PACS\n")
    assert load_dicom_series(tmp_path / "s").meta["skipped_files"] == ["README.txt"]
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "s" / "extra.png", format="PNG")
    os.rename(tmp_path / "s" / "extra.png", tmp_path / "s" / "slice_999.dcm")
    with pytest.raises(MedicalFileError, match=r"slice_999\.dcm.*PNG"):
        load_dicom_series(tmp_path / "s")


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedicalFileError, match="no DICOM image files"):
        load_dicom_series(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dicom_series(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- DICOM -> NIfTI
@pytest.mark.parametrize("reorient", ["RAS", None])
def test_dicom_to_nifti_keeps_every_voxel_at_its_patient_position(tmp_path, reorient):
    write_test_series(tmp_path / "s", n=6, spacing=3.0)
    series = load_dicom_series(tmp_path / "s")
    out = tmp_path / "out.nii.gz"
    written = dicom_series_to_nifti(tmp_path / "s", out, reorient=reorient)
    image = nib.load(out)
    assert image.header["qform_code"] == 1 and image.header["sform_code"] == 1
    assert image.header.get_xyzt_units()[0] == "mm"
    nifti = load_nifti(out)
    assert np.allclose(nifti.affine, written.affine, atol=1e-5)
    if reorient:
        assert nifti.orientation == "RAS"
    inverse = np.linalg.inv(nifti.affine)
    rng = np.random.default_rng(1)
    for _ in range(25):
        idx = tuple(int(rng.integers(0, s)) for s in series.shape)
        j = np.rint(inverse @ np.append(series.world_coordinates(idx), 1))[:3].astype(int)
        assert nifti.array[tuple(j)] == series.array[idx]
    assert sorted(nifti.spacing) == pytest.approx(sorted(series.spacing), abs=1e-4)


def test_write_dicom_series_round_trip_with_shuffled_names(tmp_path):
    ref = load_nifti(ANATOMICAL).reoriented("SPL")
    paths = write_dicom_series(ref, tmp_path / "w", modality="MR", shuffle=True, seed=4)
    assert len(paths) == ref.shape[0]
    back = load_dicom_series(tmp_path / "w")
    assert np.array_equal(back.array, ref.array)
    assert back.spacing == pytest.approx(ref.spacing)
    assert np.allclose(back.affine, ref.affine, atol=1e-3)
    assert back.meta["instance_numbers_agree_with_positions"] is False
    ct = Volume(
        np.rint(np.random.default_rng(0).uniform(-1000, 2000, (4, 6, 5))),
        (5.0, 0.7, 0.7),
        np.diag([0.7, 0.7, 5.0, 1.0])[[2, 1, 0, 3]][:, [0, 1, 2, 3]],
        {},
    )
    write_dicom_series(ct, tmp_path / "ct", modality="CT")
    back_ct = load_dicom_series(tmp_path / "ct")
    assert np.array_equal(back_ct.array, ct.array) and back_ct.meta["units"] == "HU"


# ------------------------------------------------------------------------ files that lie about themselves
@pytest.fixture()
def liars(tmp_path):
    png = tmp_path / "image.png"
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(png)
    noisy_png = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(noisy_png)
    dcm_bytes = Path(CT_SMALL).read_bytes()
    nii_gz = tmp_path / "good.nii.gz"
    nib.save(nib.load(ANATOMICAL), nii_gz)
    files = {
        "png_named_dcm": ("scan.dcm", png.read_bytes()),
        "text_named_dcm": ("notes.dcm", b"Patient seen on Tuesday, all fine.\n"),
        "empty_dcm": ("empty.dcm", b""),
        "truncated_dcm": ("half.dcm", dcm_bytes[: len(dcm_bytes) // 2]),
        "header_only_dcm": ("header.dcm", dcm_bytes[:600]),
        "truncated_nii_gz": ("half.nii.gz", nii_gz.read_bytes()[: nii_gz.stat().st_size // 2]),
        "truncated_nii": ("half.nii", Path(ANATOMICAL).read_bytes()[:30000]),
        "text_named_nii_gz": ("brain.nii.gz", b"not a volume\n" * 10),
        "png_named_nii": ("brain.nii", png.read_bytes()),
        "dicom_named_nii": ("ct.nii", dcm_bytes),
        "dicom_named_png": ("xray.png", dcm_bytes),
        "text_named_png": ("xray2.png", b"hello"),
        "truncated_png": ("cut.png", noisy_png.read_bytes()[: noisy_png.stat().st_size // 2]),
    }
    paths = {}
    for key, (name, data) in files.items():
        paths[key] = tmp_path / name
        paths[key].write_bytes(data)
    return paths


@pytest.mark.parametrize(
    "key, loader, words",
    [
        ("png_named_dcm", load_dicom, ["scan.dcm", "not a DICOM file", "PNG"]),
        ("text_named_dcm", load_dicom, ["notes.dcm", "not a DICOM file", "text file"]),
        ("empty_dcm", load_dicom, ["empty.dcm", "empty file"]),
        ("truncated_dcm", load_dicom, ["half.dcm", "could not be decoded", "truncated"]),
        ("header_only_dcm", load_dicom, ["header.dcm", "without pixel data", "truncated"]),
        ("truncated_nii_gz", load_nifti, ["half.nii.gz", "NIfTI", "does not decompress", "truncated"]),
        ("truncated_nii", load_nifti, ["half.nii", "NIfTI", "bytes"]),
        ("text_named_nii_gz", load_nifti, ["brain.nii.gz", "NIfTI", "text file"]),
        ("png_named_nii", load_nifti, ["brain.nii", "NIfTI", "PNG"]),
        ("dicom_named_nii", load_nifti, ["ct.nii", "NIfTI", "DICOM"]),
        ("dicom_named_png", load_png, ["xray.png", "not a PNG", "DICOM", "load_dicom"]),
        ("text_named_png", load_png, ["xray2.png", "not a PNG", "text file"]),
        ("truncated_png", load_png, ["cut.png", "truncated"]),
    ],
)
def test_files_that_are_not_what_they_claim_raise_naming_the_file(liars, key, loader, words):
    with pytest.raises(MedicalFileError) as info:
        loader(liars[key])
    message = str(info.value)
    assert str(liars[key]) in message
    for word in words:
        assert word in message, (word, message)


def test_missing_paths_and_folders_given_as_files(tmp_path):
    for loader in (load_dicom, load_nifti, load_png):
        with pytest.raises(FileNotFoundError, match="nothing_here"):
            loader(tmp_path / "nothing_here")
    with pytest.raises(MedicalFileError, match="load_dicom_series"):
        load_dicom(tmp_path)


def test_describe_file_recognises_formats(liars):
    assert describe_file(liars["png_named_dcm"]) == "a PNG image"
    assert describe_file(liars["dicom_named_nii"]) == "a DICOM file"
    assert describe_file(ANATOMICAL) == "a NIfTI-1 volume"
    assert "does not decompress" in describe_file(liars["truncated_nii_gz"])
    assert "NIfTI-1 volume inside" in describe_file(liars["truncated_nii_gz"])
    assert describe_file(liars["truncated_png"]).startswith("a truncated PNG")


# ------------------------------------------------------------------------------------------ PNG
def test_png_8_bit_16_bit_and_rgba(tmp_path):
    grey = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png", dpi=(254, 254))
    vol = load_png(tmp_path / "g.png")
    assert np.array_equal(vol.array, grey.astype(np.float32)) and vol.meta["max_value"] == 255
    assert vol.spacing == pytest.approx((0.1, 0.1), rel=1e-3) and vol.meta["spacing_known"]
    deep = (np.arange(48).reshape(6, 8) * 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    vol16 = load_png(tmp_path / "d.png", spacing=(0.143, 0.143))
    assert np.array_equal(vol16.array, deep.astype(np.float32)) and vol16.meta["max_value"] == 65535
    assert vol16.spacing == (0.143, 0.143)
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c.png")
    vol_c = load_png(tmp_path / "c.png")
    assert vol_c.meta["converted_from"] == "RGBA" and np.allclose(vol_c.array, grey, atol=1)
    assert not vol_c.meta["spacing_known"]
    assert vol_c.orientation == "unknown", "a PNG has no patient frame"


def test_volume_checks_its_geometry(tmp_path):
    with pytest.raises(ValueError, match="one value per array axis"):
        Volume(np.zeros((3, 4, 5)), (1.0, 1.0), np.eye(4))
    with pytest.raises(ValueError, match="positive"):
        Volume(np.zeros((3, 4)), (1.0, 0.0), np.eye(4))
    vol = Volume(np.ones((3, 4)), (0.5, 0.5), np.diag([0.5, 0.5, 1, 1]))
    save_nifti(vol, tmp_path / "two_d.nii")
    assert load_nifti(tmp_path / "two_d.nii").shape == (3, 4, 1)
    with pytest.raises(ValueError, match=r"\.nii"):
        save_nifti(vol, tmp_path / "x.png")
    assert np.allclose(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))


def test_one_dicom_image_header_for_the_series_and_radiograph_writers():
    import numpy as np
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    from meddiff_lab.data.io import _new_dicom_image

    signed = _new_dicom_image(SecondaryCaptureImageStorage, np.array([[-5, 7]], dtype=np.int16))
    assert (signed.Rows, signed.Columns) == (1, 2)
    assert (signed.PixelRepresentation, signed.BitsStored, signed.HighBit) == (1, 16, 15)
    assert signed.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert signed.SOPInstanceUID == signed.file_meta.MediaStorageSOPInstanceUID
    unsigned = _new_dicom_image(
        SecondaryCaptureImageStorage, np.zeros((3, 4), np.uint16), photometric="MONOCHROME1", bits_stored=12
    )
    assert (unsigned.PixelRepresentation, unsigned.BitsStored, unsigned.HighBit) == (0, 12, 11)
    assert unsigned.PhotometricInterpretation == "MONOCHROME1" and len(unsigned.PixelData) == 3 * 4 * 2
