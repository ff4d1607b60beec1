"""Tests for meddiff_lab/data/dicom_source.py: a folder of mixed DICOM radiographs (any layout, both
polarities, compressed, with junk beside them) read into a patient-level split with a skipped-files report."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, RLELossless

from meddiff_lab.data import generate_phantoms, load_dataset
from meddiff_lab.data.deid import find_phi
from meddiff_lab.data.dicom_source import DicomRadiographs, looks_like_dicom_folder
from meddiff_lab.data.io import Volume, write_dicom_radiograph, write_dicom_series

SIZE = 32


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """8 patients, 2-3 films each, as a hospital exports them, plus 8 files that are not training films."""
    root = tmp_path_factory.mktemp("export") / "dicom"
    batch = generate_phantoms(20, SIZE, seed=3, masks=False)
    layouts = ["{p}/{s}/IM{k:04d}", "{p}_{k}.dcm", "flat/1.2.826.0.1.3680043.10.54.{n}", "{p}/CR/{k}.DCM"]
    syntaxes = [None, RLELossless, JPEG2000Lossless]
    films = {}
    for n in range(20):
        patient = f"Doe^{n % 8}"
        photometric = "MONOCHROME1" if n % 2 else "MONOCHROME2"
        name = layouts[n % 4].format(p=f"MRN{n % 8:04d}", s=f"STUDY{n // 8}", k=n, n=n)
        path = write_dicom_radiograph(
            batch.images[n],
            root / name,
            photometric=photometric,
            modality="CR" if n % 3 else "DX",
            patient_id=f"MRN{n % 8:04d}",
            patient_name=patient,
            view="AP" if n % 5 == 0 else "PA",
            transfer_syntax=syntaxes[n % 3],
        )
        films[path] = (n % 8, batch.images[n])
    junk = root / "junk"
    junk.mkdir()
    volume = Volume(np.zeros((2, 8, 8)), (1.0, 1.0, 1.0), np.eye(4), {})
    write_dicom_series(volume, junk / "ct", patient_id="MRN0001")  # 2 CT slices: not radiographs
    (junk / "readme.txt").write_text("exported by the PACS for Doe")
    first = next(iter(films))
    (junk / "cut.dcm").write_bytes(first.read_bytes()[:-100])
    shutil.copy(first, junk / "copy_of_first.dcm")
    shutil.copy(get_testdata_file("SC_rgb_rle.dcm"), junk / "colour.dcm")
    anonymous = write_dicom_radiograph(batch.images[0], junk / "no_patient.dcm", patient_id="")
    (junk / "DICOMDIR").write_bytes(anonymous.read_bytes())
    return root, films


EXPECTED_SKIPS = {
    "junk/ct/slice_0000.dcm": "modality CT is not a projection radiograph",
    "junk/ct/slice_0001.dcm": "modality CT is not a projection radiograph",
    "junk/readme.txt": "not a DICOM file (it looks like a text file)",
    "junk/cut.dcm": "truncated",
    "junk/copy_of_first.dcm": "same SOPInstanceUID as",
    "junk/colour.dcm": "modality OT is not a projection radiograph",
    "junk/no_patient.dcm": "no PatientID",
    "junk/DICOMDIR": "a DICOMDIR",
}


def test_mixed_folder_reads_into_a_patient_level_split_without_leakage(export):
    root, films = export
    parts = {split: DicomRadiographs(root, split, SIZE, seed=1) for split in ("train", "val", "test", "all")}
    assert len(parts["all"]) == 20 and parts["all"].n_patients_total == 8
    assert sum(len(parts[s]) for s in ("train", "val", "test")) == 20
    patients = {s: set(parts[s].patient_ids.tolist()) for s in ("train", "val", "test")}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    assert not (patients["val"] & patients["test"]) and len(patients["train"]) >= 4 and patients["test"]
    assert set().union(*patients.values()) == set(range(8))
    # the same patient gets the same pseudonym in every split, and all of a patient's films go together
    real = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in parts["all"].files}
    assert len(real) == 8
    for split in ("train", "val", "test"):
        for path, pid in zip(parts[split].files, parts[split].patient_ids):
            assert films[path][0] == int(str(pydicom.dcmread(path, stop_before_pixels=True).PatientID)[3:])
            assert pid in patients[split]


def test_skipped_files_are_reported_with_their_reasons(export):
    root, _ = export
    data = DicomRadiographs(root, "all", SIZE)
    skipped = dict(data.skipped)
    assert set(skipped) == set(EXPECTED_SKIPS), skipped
    for name, reason in EXPECTED_SKIPS.items():
        assert reason in skipped[name], (name, skipped[name])
    report = data.report()
    assert "20 radiograph(s) from 8 patient(s)" in report and "skipped 8 file(s)" in report
    assert all(name in report for name in EXPECTED_SKIPS)


def test_items_show_bone_bright_whatever_the_polarity_or_codec(export):
    root, films = export
    data = DicomRadiographs(root, "all", SIZE)
    seen = set()
    for k, path in enumerate(data.files):
        item = data[k]
        image = item["image"]
        assert image.shape == (1, SIZE, SIZE) and str(image.dtype) == "torch.float32"
        assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
        truth = films[path][1]
        shown = (image[0].numpy() + 1) / 2
        stretched = (truth - truth.min()) / (truth.max() - truth.min())  # no window in these headers: min-max
        assert np.abs(shown - stretched).max() < 2e-3, path.name
        seen.add(
            (pydicom.dcmread(path, stop_before_pixels=True).PhotometricInterpretation, item["monochrome1_inverted"])
        )
        assert item["spacing_source"] == "ImagerPixelSpacing (at the detector)" and item["modality"] in ("CR", "DX")
    assert seen == {("MONOCHROME1", True), ("MONOCHROME2", False)}


def test_items_and_headers_carry_no_identifying_values(export):
    root, _ = export
    data = DicomRadiographs(root, "all", SIZE, verify=False)  # lazy: decoded on access
    item = data[3]
    text = " ".join(str(v) for k, v in item.items() if k not in ("image", "labels"))
    assert "Doe" not in text and "MRN" not in text and item["image_index"] == "dicom_000003"
    header = data.header(3)
    assert find_phi(header, ["Doe", "MRN"]) == [] and header.PatientID == f"P{item['patient_id']:05d}"
    assert header.PatientIdentityRemoved == "YES" and "PixelData" not in header


def test_load_dataset_finds_the_dicom_folder(export):
    root, _ = export
    assert looks_like_dicom_folder(root) and not looks_like_dicom_folder(root / "junk" / "ct" / "nothing")
    train = load_dataset("dicom", root.parent, "train", SIZE)
    assert isinstance(train, DicomRadiographs) and train.root == root and len(train) > 0
    assert train.labels.shape == (len(train), 14) and not train.labels_known


def test_folder_without_radiographs_and_missing_folder(tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "notes.txt").write_text("nothing")
    with pytest.raises(Exception, match="(?s)no readable DICOM radiograph.*notes.txt: not a DICOM file"):
        DicomRadiographs(tmp_path / "only")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        DicomRadiographs(tmp_path / "missing")
