"""Tests for the radiograph side of meddiff_lab/data/io.py: MONOCHROME1, header VOI (window and LUT),
ImagerPixelSpacing, read as a PACS shows them."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence

from meddiff_lab.data.io import display_pixels, load_dicom, load_radiograph, pixel_spacing, write_dicom_radiograph


def chest(size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tiny film in display terms (1 = white): air outside, soft tissue, a bright spine; masks of air and bone."""
    image = np.full((size, size), 0.45)
    air = np.zeros((size, size), bool)
    air[:, : size // 8] = air[:, -size // 8 :] = True
    bone = np.zeros((size, size), bool)
    bone[:, size // 2 - 2 : size // 2 + 2] = True
    image[air], image[bone] = 0.02, 0.95
    image += np.linspace(0, 0.03, size)[None, :]  # a gentle gradient: no two columns equal
    return np.clip(image, 0, 1), air, bone


def test_monochrome1_reads_with_bone_bright_and_air_dark(tmp_path):
    image, air, bone = chest()
    path = write_dicom_radiograph(image, tmp_path / "cr.dcm", photometric="MONOCHROME1", modality="CR")
    stored = pydicom.dcmread(path).pixel_array
    assert stored[bone].mean() < stored[air].mean(), "as stored, MONOCHROME1 bone is the low value (the trap)"
    volume = load_dicom(path)
    assert volume.meta["monochrome1_inverted"] and volume.meta["photometric_interpretation"] == "MONOCHROME1"
    assert volume.array[bone].mean() > volume.array[air].mean()
    lo, hi = volume.meta["value_range"]
    assert (lo, hi) == (0.0, 4095.0) and np.array_equal(volume.array, 4095.0 - stored)
    raw = load_dicom(path, invert_monochrome1=False)
    assert np.array_equal(raw.array, stored) and not raw.meta["monochrome1_inverted"]
    shown = load_radiograph(path)
    assert shown.array.min() >= 0 and shown.array.max() <= 1
    assert shown.array[bone].mean() > 0.9 and shown.array[air].mean() < 0.1
    stretched = (image - image.min()) / (image.max() - image.min())  # no window in the header: min-max
    np.testing.assert_allclose(shown.array, stretched, atol=2 / 4095 / (image.max() - image.min()))


def test_monochrome1_and_monochrome2_of_one_film_show_the_same_picture(tmp_path):
    image, _, _ = chest()
    one = write_dicom_radiograph(image, tmp_path / "m1.dcm", photometric="MONOCHROME1", window=(1200, 2000))
    two = write_dicom_radiograph(image, tmp_path / "m2.dcm", photometric="MONOCHROME2", window=(4095 - 1200, 2000))
    a, b = load_radiograph(one), load_radiograph(two)
    assert np.abs(a.array - b.array).max() < 2e-3  # LINEAR's half-value offsets differ by 1 stored value
    # load_dicom's mirrored window shows the MONOCHROME1 file like the header's window on the stored values
    from meddiff_lab.data import window

    volume = load_dicom(one)
    assert volume.meta["header_window"] == (1200.0, 2000.0) and volume.meta["window"] == (4095 - 1200.0, 2000.0)
    np.testing.assert_allclose(
        window(volume.array, *volume.meta["window"]),
        1 - window(pydicom.dcmread(one).pixel_array.astype(np.float32), 1200, 2000),
        atol=1e-6,
    )


def test_presentation_lut_shape_inverse_inverts_monochrome2_only(tmp_path):
    image, air, bone = chest()
    two = pydicom.dcmread(write_dicom_radiograph(1 - image, tmp_path / "m2.dcm"))  # stored as a negative
    two.PresentationLUTShape = "INVERSE"
    assert display_pixels(two)[bone].mean() > 0.9 and display_pixels(two)[air].mean() < 0.1
    one = pydicom.dcmread(write_dicom_radiograph(image, tmp_path / "m1.dcm", photometric="MONOCHROME1"))
    one.PresentationLUTShape = "INVERSE"  # what the DX IOD requires with MONOCHROME1: one inversion, not two
    np.testing.assert_allclose(display_pixels(one), display_pixels(two), atol=1e-6)
    two.save_as(tmp_path / "m2.dcm", enforce_file_format=True)
    assert load_radiograph(tmp_path / "m2.dcm").meta["display_inverted"]


@pytest.mark.parametrize("function", [None, "LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_header_window_equals_pydicom_apply_voi_lut(tmp_path, function):
    image, _, _ = chest()
    path = write_dicom_radiograph(image, tmp_path / "dx.dcm", window=(1800, 1500))
    ds = pydicom.dcmread(path)
    if function:
        ds.VOILUTFunction = function
    ds.WindowCenter, ds.WindowWidth = ["1800", "900"], ["1500", "400"]  # two windows: index picks one
    modality = apply_modality_lut(ds.pixel_array, ds)
    for index in (0, 1):
        expected = apply_voi_lut(modality.astype(np.float64), ds, index=index, prefer_lut=False) / 4095.0
        got = display_pixels(ds, index=index)
        np.testing.assert_allclose(got, np.clip(expected, 0, 1), atol=1e-6)
    if function in (None, "LINEAR"):  # the DICOM LINEAR formula written out, independent of pydicom
        x, c, w = modality.astype(np.float64), 1800.0, 1500.0
        linear = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
        np.testing.assert_allclose(display_pixels(ds), linear, atol=1e-6)
        assert 0 < display_pixels(ds).mean() < 1


@pytest.mark.parametrize("bits", [8, 16])
def test_header_voi_lut_sequence_follows_the_table(tmp_path, bits):
    image, air, bone = chest()
    path = write_dicom_radiograph(image, tmp_path / "lut.dcm", photometric="MONOCHROME1", window=(1, 2))
    ds = pydicom.dcmread(path)
    lut = Dataset()
    first, entries, top = 100, 4000, 2**bits - 1
    table = np.rint(np.sqrt(np.linspace(0, 1, entries)) * top).astype(np.uint16)  # a gamma curve
    lut.add_new(0x00283002, "US", [entries, first, bits])  # LUTDescriptor
    if bits == 8:  # LUTData: a list of US values, or OW words as archives often store it
        lut.add_new(0x00283006, "US", table.tolist())
    else:
        lut.add_new(0x00283006, "OW", table.astype("<u2").tobytes())
    ds.VOILUTSequence = Sequence([lut])
    modality = apply_modality_lut(ds.pixel_array, ds)
    shown = display_pixels(ds)
    by_hand = table[np.clip(modality.astype(int) - first, 0, entries - 1)] / top
    np.testing.assert_allclose(shown, 1 - by_hand, atol=1e-6)  # the table, then MONOCHROME1 inverted
    if bits == 16:  # pydicom agrees; with an 8-bit LUT its indices wrap past 255 (pydicom 3.0), so not there
        pydicom_voi = apply_voi_lut(np.rint(modality).astype(np.int64), ds, prefer_lut=True)
        np.testing.assert_allclose(shown, 1 - pydicom_voi / top, atol=1e-6)
    assert shown[bone].mean() > 0.8 and shown[air].mean() < 0.1
    ds.save_as(path, enforce_file_format=True)  # LUTData goes to the file as OW or US and comes back
    again = load_radiograph(path)
    assert again.meta["voi_source"] == "VOI LUT Sequence from the header"
    np.testing.assert_allclose(again.array, shown, atol=1e-6)


def test_no_window_in_the_header_falls_back_to_min_max_and_explicit_windows(tmp_path):
    image, _, _ = chest()
    path = write_dicom_radiograph(image, tmp_path / "plain.dcm")
    shown = load_radiograph(path)
    assert shown.meta["voi_source"].startswith("min-max")
    assert shown.array.min() == 0.0 and shown.array.max() == 1.0
    given = load_radiograph(path, voi=(2048, 1024))
    assert given.meta["voi_source"] == "window 2048/1024 (given)"
    with pytest.raises(ValueError, match="voi must be"):
        load_radiograph(path, voi="bone")


@pytest.mark.parametrize(
    "pixel, imager, factor, expected, source",
    [
        (None, (0.15, 0.14), None, (0.15, 0.14), "ImagerPixelSpacing (at the detector)"),
        ((0.0, 0.0), (0.15, 0.14), None, (0.15, 0.14), "ImagerPixelSpacing (at the detector)"),
        (
            (0.0, 0.0),
            (0.15, 0.14),
            1.25,
            (0.12, 0.112),
            "ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor (1.25)",
        ),
        ((0.1, 0.1), (0.15, 0.14), 1.25, (0.1, 0.1), "PixelSpacing"),
        (None, None, None, (1.0, 1.0), "unknown"),
    ],
)
def test_imager_pixel_spacing_when_pixel_spacing_is_missing_or_zero(tmp_path, pixel, imager, factor, expected, source):
    image, _, _ = chest(16)
    path = write_dicom_radiograph(
        image, tmp_path / "s.dcm", pixel_spacing=pixel, imager_pixel_spacing=imager, magnification=factor, modality="CR"
    )
    ds = pydicom.dcmread(path)
    spacing, where = pixel_spacing(ds)
    assert np.allclose(spacing, expected) and where == source
    for volume in (load_dicom(path), load_radiograph(path)):
        assert np.allclose(volume.spacing, expected) and volume.meta["spacing_source"] == source
        assert volume.meta["spacing_known"] == (source != "unknown")
        assert np.allclose(np.linalg.norm(volume.affine[:3, :2], axis=0), expected)


def test_write_dicom_radiograph_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="grey levels in \\[0, 1\\]"):
        write_dicom_radiograph(np.full((4, 4), 2.0), tmp_path / "x.dcm")
    with pytest.raises(ValueError, match="MONOCHROME1"):
        write_dicom_radiograph(np.zeros((4, 4)), tmp_path / "x.dcm", photometric="RGB")


def test_real_cr_film_from_pydicom_is_monochrome1_and_inverted():
    from pathlib import Path

    root = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
    films = sorted(root.rglob("6154"))
    if not films:
        pytest.skip("pydicom's dicomdirtests CR file is not installed")
    volume = load_radiograph(films[0])
    ds = pydicom.dcmread(films[0])
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.Modality == "CR"
    assert volume.meta["spacing_source"] == "ImagerPixelSpacing (at the detector)" and volume.spacing == (0.1, 0.1)
    assert volume.meta["voi_source"].startswith("window 1600/2800 from the header")
    stored = ds.pixel_array.astype(float)
    # darker on screen where the stored value is higher: the rank order is reversed
    assert np.corrcoef(stored.ravel(), volume.array.ravel())[0, 1] < -0.99


def _pydicom_data_file(name: str):
    """A file of the pydicom-data package (the ``samples`` extra), found offline through pydicom."""
    from pydicom.data import get_testdata_file

    try:
        from pydicom.data.data_manager import get_external_sources
    except ImportError:
        pytest.skip("pydicom has no external data sources")
    if "pydicom-data" not in get_external_sources():
        pytest.skip("pydicom-data (the samples extra) is not installed")
    return get_testdata_file(name)


@pytest.mark.slow
def test_real_cr_chest_film_shows_the_mediastinum_brighter_than_the_lungs():
    path = _pydicom_data_file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.Modality == "CR" and ds.BodyPartExamined == "CHEST"
    shown = load_radiograph(path)
    rows, columns = shown.shape
    band = slice(int(rows * 0.35), int(rows * 0.6))
    mediastinum = shown.array[band, int(columns * 0.45) : int(columns * 0.55)].mean()
    lungs = [shown.array[band, int(columns * a) : int(columns * b)].mean() for a, b in ((0.2, 0.35), (0.65, 0.8))]
    assert mediastinum > max(lungs) + 0.15, (mediastinum, lungs)
    stored = load_dicom(path, invert_monochrome1=False).array
    assert (
        stored[band, int(columns * 0.45) : int(columns * 0.55)].mean()
        < stored[band, int(columns * 0.2) : int(columns * 0.35)].mean()
    )
    # PixelSpacing is "0.000\0.000" and there is no ImagerPixelSpacing: the spacing is honestly unknown
    assert shown.meta["spacing_source"] == "unknown" and not shown.meta["spacing_known"]
    assert shown.meta["voi_source"] == "window 15000/30000 from the header (LINEAR)"
    assert np.array_equal(load_radiograph(_pydicom_data_file("RG1_J2KR.dcm")).array, shown.array)
