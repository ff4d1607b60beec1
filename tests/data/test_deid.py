"""Tests for meddiff_lab/data/deid.py: no PHI left in the header, pixels untouched, UIDs replaced consistently."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from meddiff_lab.data.deid import deidentify, deidentify_folder, find_phi
from meddiff_lab.data.io import load_dicom, load_dicom_series

CT_SMALL = get_testdata_file("CT_small.dcm")


def all_elements(ds):
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from all_elements(item)


def instance_uids(ds):
    keep = {"SOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID", "ImplementationClassUID", "ReferencedSOPClassUID"}
    meta = list(ds.file_meta) if getattr(ds, "file_meta", None) is not None else []
    return {str(e.value) for e in list(all_elements(ds)) + meta if e.VR == "UI" and e.keyword not in keep and e.value}


@pytest.fixture()
def ct():
    return pydicom.dcmread(CT_SMALL)


@pytest.fixture()
def loaded_with_phi(ct):
    """CT_small plus PHI in many places, nested sequences, overlays and curves."""
    ds = copy.deepcopy(ct)
    ds.PatientBirthDate, ds.PatientAddress, ds.PatientTelephoneNumbers = "19600203", "12 Secret Lane, Springfield", "555-0199"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.OperatorsName = "ACC99887766", "House^Gregory", "Tech^Terry"
    ds.PerformingPhysicianName, ds.PhysiciansOfRecord = "Cuddy^Lisa", "Wilson^James"
    ds.InstitutionAddress, ds.InstitutionalDepartmentName = "1 Hospital Road, Springfield", "Radiology West"
    ds.OtherPatientNames, ds.PatientMotherBirthName = "Doe^Jane", "Smith^Mary"
    ds.ImageComments, ds.StudyDescription, ds.SeriesDescription = "pt John Doe, MRN 4455", "CT chest Doe", "axial Doe"
    ds.DeviceSerialNumber, ds.StationName = "SN-77821", "CT01_OC0"
    ds.PatientAge, ds.PatientWeight, ds.AdditionalPatientHistory = "061Y", "82", "smoker, Doe family"
    physician = Dataset()
    physician.PersonIdentificationCodeSequence = Sequence()
    physician.InstitutionName = "Princeton-Plainsboro"
    ds.ReferringPhysicianIdentificationSequence = Sequence([physician])
    request = Dataset()
    request.RequestedProcedureID, request.ScheduledProcedureStepID = "RP-4455", "SPS-4455"
    ds.RequestAttributesSequence = Sequence([request])
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = ds.SOPClassUID, "1.2.826.0.1.3680043.99.1.2.3"
    ref.ReferencedFrameNumber = "1"
    ds.ReferencedImageSequence = Sequence([ref])
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 16)  # overlay data
    ds.add_new(0x60004000, "LT", "overlay: Doe")  # overlay comments
    ds.add_new(0x50003000, "OW", b"\x00" * 8)  # curve data
    ds.add_new(0x00291010, "LO", "private Doe")  # an unclaimed private tag
    return ds


PHI = ["CompressedSamples", "1CT1", "JFK IMAGING", "ABCD1234", "1234ABCD", "20040119", "19970430", "19600203",
       "Secret Lane", "555-0199", "ACC99887766", "House", "Tech^Terry", "Cuddy", "Wilson", "Hospital Road",
       "Radiology West", "Doe", "Smith^Mary", "SN-77821", "CT01_OC0", "Princeton", "RP-4455", "SPS-4455",
       "CLUNIE1", "061Y", "smoker"]


def test_no_phi_left_anywhere_and_pixels_untouched(loaded_with_phi):
    original = loaded_with_phi
    clean = deidentify(original)
    assert find_phi(original, PHI), "the fixture really contains PHI"
    assert find_phi(clean, PHI) == []
    assert find_phi(clean, instance_uids(original)) == [], "every instance UID replaced"
    assert clean.PixelData == original.PixelData
    assert np.array_equal(clean.pixel_array, original.pixel_array)
    assert clean.RescaleIntercept == original.RescaleIntercept and clean.Rows == original.Rows
    assert not any(e.tag.is_private for e in all_elements(clean))
    assert not any(0x5000 <= e.tag.group <= 0x50FF or 0x6000 <= e.tag.group <= 0x60FF for e in all_elements(clean))
    assert not any(e.VR in ("PN", "DA", "TM", "DT") and e.value for e in all_elements(clean))


def test_marks_and_required_attributes(ct):
    clean = deidentify(ct)
    assert clean.PatientIdentityRemoved == "YES"
    assert "PS3.15" in clean.DeidentificationMethod
    assert clean.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    for keyword in ("PatientName", "PatientID", "StudyDate", "AccessionNumber", "StudyID"):
        assert keyword in clean and str(clean[keyword].value) == "", keyword
    assert clean.SOPClassUID == ct.SOPClassUID and clean.Modality == "CT"
    assert clean.file_meta.TransferSyntaxUID == ct.file_meta.TransferSyntaxUID
    assert clean.file_meta.MediaStorageSOPInstanceUID == clean.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in clean.file_meta
    assert str(ct.PatientName) == "CompressedSamples^CT1", "the input is left untouched"


def test_uids_replaced_consistently_within_a_map(ct):
    second = copy.deepcopy(ct)
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = "1.3.6.1.4.1.5962.1.1.1.1.2.99"
    uid_map = {}
    a, b = deidentify(ct, uid_map=uid_map), deidentify(second, uid_map=uid_map)
    assert a.StudyInstanceUID == b.StudyInstanceUID != ct.StudyInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert uid_map[str(ct.StudyInstanceUID)] == a.StudyInstanceUID
    assert all(UID(v).is_valid for v in uid_map.values())
    again = deidentify(ct, uid_map=uid_map)
    assert again.SOPInstanceUID == a.SOPInstanceUID, "same input UID, same new UID within one map"
    assert deidentify(ct).SOPInstanceUID != a.SOPInstanceUID, "a fresh map gives fresh UIDs"


def test_references_follow_the_same_mapping(loaded_with_phi):
    uid_map = {}
    clean = deidentify(loaded_with_phi, uid_map=uid_map)
    ref = clean.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == uid_map["1.2.826.0.1.3680043.99.1.2.3"]
    assert ref.ReferencedSOPClassUID == loaded_with_phi.SOPClassUID


def test_pseudonym_and_round_trip_through_a_file(ct, tmp_path):
    clean = deidentify(ct, patient_pseudonym="SUBJ-0001")
    assert str(clean.PatientName) == "SUBJ-0001" == clean.PatientID
    path = tmp_path / "clean.dcm"
    clean.save_as(path, enforce_file_format=True)
    assert np.array_equal(load_dicom(path).array, load_dicom(CT_SMALL).array)


def test_deidentify_folder_keeps_the_series_readable(tmp_path):
    from meddiff_lab.data.io import Volume, write_dicom_series

    rng = np.random.default_rng(0)
    volume = Volume(np.rint(rng.uniform(-1000, 1000, (5, 8, 7))), (2.5, 0.8, 0.8),
                    np.array([[0, 0, -0.8, 10], [0, -0.8, 0, 20], [2.5, 0, 0, -30], [0, 0, 0, 1.0]]), {})
    originals = write_dicom_series(volume, tmp_path / "in", patient_name="Doe^John", patient_id="MRN4455", shuffle=True)
    uid_map = {}
    written = deidentify_folder(tmp_path / "in", tmp_path / "out", uid_map=uid_map)
    assert len(written) == 5
    before, after = load_dicom_series(tmp_path / "in"), load_dicom_series(tmp_path / "out")
    assert np.array_equal(before.array, after.array) and before.spacing == after.spacing
    assert np.allclose(before.affine, after.affine)
    series_uids = {pydicom.dcmread(p).SeriesInstanceUID for p in written}
    assert len(series_uids) == 1 and series_uids != {pydicom.dcmread(originals[0]).SeriesInstanceUID}
    for path in written:
        assert find_phi(pydicom.dcmread(path), ["Doe", "MRN4455", "20000101"]) == []
        assert not any(old in path.name for old in uid_map)


def test_burned_in_annotation_warns(ct):
    ct.BurnedInAnnotation = "YES"
    with pytest.warns(UserWarning, match="burned into the pixels"):
        deidentify(ct)


def test_rejects_non_datasets():
    with pytest.raises(TypeError, match="pydicom Dataset"):
        deidentify({"PatientName": "x"})
