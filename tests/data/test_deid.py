"""Tests for meddiff_lab/data/deid.py: no PHI left in the header, pixels untouched, UIDs replaced consistently."""

from __future__ import annotations

import copy
from pathlib import Path

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
    keep = {
        "SOPClassUID",
        "MediaStorageSOPClassUID",
        "TransferSyntaxUID",
        "ImplementationClassUID",
        "ReferencedSOPClassUID",
    }
    meta = list(ds.file_meta) if getattr(ds, "file_meta", None) is not None else []
    return {str(e.value) for e in list(all_elements(ds)) + meta if e.VR == "UI" and e.keyword not in keep and e.value}


@pytest.fixture()
def ct():
    return pydicom.dcmread(CT_SMALL)


@pytest.fixture()
def loaded_with_phi(ct):
    """CT_small plus PHI in many places, nested sequences, overlays and curves."""
    ds = copy.deepcopy(ct)
    ds.PatientBirthDate, ds.PatientAddress, ds.PatientTelephoneNumbers = (
        "19600203",
        "12 Secret Lane, Springfield",
        "555-0199",
    )
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


PHI = [
    "CompressedSamples",
    "1CT1",
    "JFK IMAGING",
    "ABCD1234",
    "1234ABCD",
    "20040119",
    "19970430",
    "19600203",
    "Secret Lane",
    "555-0199",
    "ACC99887766",
    "House",
    "Tech^Terry",
    "Cuddy",
    "Wilson",
    "Hospital Road",
    "Radiology West",
    "Doe",
    "Smith^Mary",
    "SN-77821",
    "CT01_OC0",
    "Princeton",
    "RP-4455",
    "SPS-4455",
    "CLUNIE1",
    "061Y",
    "smoker",
]


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
    volume = Volume(
        np.rint(rng.uniform(-1000, 1000, (5, 8, 7))),
        (2.5, 0.8, 0.8),
        np.array([[0, 0, -0.8, 10], [0, -0.8, 0, 20], [2.5, 0, 0, -30], [0, 0, 0, 1.0]]),
        {},
    )
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


# ------------------------------------------------------------------ the whole PS3.15 Table E.1-1, planted
from datetime import date, timedelta  # noqa: E402

from pydicom.datadict import dictionary_has_tag, dictionary_VR  # noqa: E402

from meddiff_lab.data.deid import EXTRA_REMOVE, resolved_action  # noqa: E402
from meddiff_lab.data.deid_profile import BASIC_PROFILE, profile_action  # noqa: E402

STRUCTURAL = {"SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"}


def planted(n: int, vr: str):
    """A value for VR ``vr`` that occurs nowhere else: its bytes are searched for in the written files."""
    if vr == "DA":
        return (date(1950, 1, 1) + timedelta(days=n)).strftime("%Y%m%d")
    if vr == "TM":
        return f"120000.{n:06d}"
    if vr == "DT":
        return f"19500101120000.{n:06d}"
    if vr == "DS":
        return f"-7{n:05d}.2577"  # the sign keeps it from matching digits inside a new UID
    if vr == "IS":
        return f"-7{n:05d}0077"
    if vr == "AS":
        return "087Y"
    if vr in ("US", "SS", "UL", "SL"):
        return 0xBEE
    if vr in ("OB", "OW", "UN"):
        return f"PHI{n:05d}B".encode()
    if vr == "UI":
        return f"1.2.826.0.1.3680043.10.999.{n}"
    if vr == "UR":
        return f"http://phi{n:05d}.example"
    return f"PHI{n:05d}"  # PN, LO, SH, LT, ST, UT, UC, CS, AE


def plant_table(ds, base: int) -> list:
    """Set every attribute of Table E.1-1 (plus the ones removed beyond it) to a planted value; each
    sequence gets an item with a name and a nested ScheduledProcedureStepSequence. Returns the needles."""
    from pydicom.datadict import tag_for_keyword

    rows = [int(t, 16) for t in BASIC_PROFILE if "x" not in t]
    rows += [tag_for_keyword(k) for k in sorted(EXTRA_REMOVE)]
    needles = []
    for i, tag in enumerate(rows):
        if tag >> 16 in (0x0000, 0x0002) or (
            dictionary_has_tag(tag) and pydicom.datadict.keyword_for_tag(tag) in STRUCTURAL
        ):
            continue
        n = base + i
        vr = dictionary_VR(tag) if dictionary_has_tag(tag) else "LO"
        vr = vr.split(" or ")[0]
        if vr == "SQ":
            item, step = Dataset(), Dataset()
            item.PersonName = planted(n, "PN") + "N"
            step.ScheduledStationName = planted(n, "SH") + "S"
            item.ScheduledProcedureStepSequence = Sequence([step])
            ds.add_new(tag, "SQ", Sequence([item]))
            needles += [str(item.PersonName), str(step.ScheduledStationName)]
            continue
        value = planted(n, vr)
        ds.add_new(tag, vr, value)
        if vr not in ("US", "SS", "UL", "SL", "AS"):
            needles.append(value.decode() if isinstance(value, bytes) else value)
    return needles


@pytest.fixture()
def planted_study(tmp_path):
    """A 3-slice CT study in nested folders (names with PHI) carrying PHI in every Table E.1-1 attribute,
    a sequence the table omits, private and unknown tags, the file meta and the preamble."""
    from meddiff_lab.data.io import Volume, write_dicom_series

    rng = np.random.default_rng(1)
    volume = Volume(np.rint(rng.uniform(-1000, 1000, (3, 8, 8))), (2.0, 0.7, 0.7), np.diag([2.0, 0.7, 0.7, 1.0]), {})
    plain = write_dicom_series(volume, tmp_path / "plain", patient_name="Doe^John", patient_id="MRN4455")
    folder = tmp_path / "export" / "Doe^John MRN4455"
    folder.mkdir(parents=True)
    needles = ["Doe^John"]
    originals = []
    for k, path in enumerate(plain):
        ds = pydicom.dcmread(path)
        needles += [
            str(ds.SOPInstanceUID),
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.FrameOfReferenceUID),
        ]
        needles += plant_table(ds, 1000 * k)
        step = Dataset()  # PHI inside a sequence that Table E.1-1 does not list
        step.ScheduledStationName, step.ScheduledPerformingPhysicianName = f"STATION{k}X", f"Kildare^James{k}"
        ds.ScheduledProcedureStepSequence = Sequence([step])
        ds.add_new(0x00291010, "LO", f"PRIVATEPHI{k}")  # a private element without its creator
        block = ds.private_block(0x0033, "ACME PHI CREATOR", create=True)
        block.add_new(0x01, "LO", f"ACMEPHI{k}")
        ds.add_new(0x44440010, "UN", f"UNKNOWNPHI{k}".encode())  # an even-group tag no dictionary knows
        ds.file_meta.SourceApplicationEntityTitle = f"AEPHI{k}"
        ds.preamble = f"PREAMBLEPHI{k} Doe^John".encode().ljust(128, b"\x00")
        needles += [
            f"STATION{k}X",
            f"Kildare^James{k}",
            f"PRIVATEPHI{k}",
            "ACME PHI CREATOR",
            f"ACMEPHI{k}",
            f"UNKNOWNPHI{k}",
            f"AEPHI{k}",
            f"PREAMBLEPHI{k}",
        ]
        if k == 1:  # a reference to slice 0, which must follow slice 0's new UID
            ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = pydicom.dcmread(plain[0]).SOPInstanceUID
        out = folder / f"Doe_John_{k}.dcm"
        ds.save_as(out, enforce_file_format=True)
        originals.append(out)
    return originals, sorted(set(needles))


def test_no_planted_phi_survives_in_the_written_bytes(planted_study, tmp_path):
    originals, needles = planted_study
    raw = [p.read_bytes() for p in originals]
    assert len(needles) > 3 * 600 and all(any(n.encode() in r for r in raw) for n in needles), "all planted"
    uid_map = {}
    report = deidentify_folder(tmp_path / "export", tmp_path / "clean", uid_map=uid_map)
    assert len(report) == 3 and not report.skipped, str(report)
    for _, out in report.written:
        data = out.read_bytes()
        left = [n for n in needles if n.encode() in data]
        assert left == [], f"{out.name} keeps {len(left)} planted values, e.g. {left[:5]}"
        assert data[:128] == b"\x00" * 128 and data[128:132] == b"DICM"
        assert "Doe" not in out.name and "MRN" not in out.name
    before = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p) for p in originals}
    after = [pydicom.dcmread(out) for _, out in report.written]
    for clean in after:  # pixels identical, matched through the UID map
        old = next(uid for uid, new in uid_map.items() if new == clean.SOPInstanceUID)
        assert clean.PixelData == before[old].PixelData
        assert np.array_equal(clean.pixel_array, before[old].pixel_array)
        assert not any(e.tag.is_private or e.VR == "UN" for e in all_elements(clean))
        assert clean.file_meta.MediaStorageSOPInstanceUID == clean.SOPInstanceUID
    assert len({c.StudyInstanceUID for c in after}) == 1 and len({c.SeriesInstanceUID for c in after}) == 1
    assert len({c.FrameOfReferenceUID for c in after}) == 1 and len({c.SOPInstanceUID for c in after}) == 3
    slice0 = str(pydicom.dcmread(originals[0]).SOPInstanceUID)
    slice1 = next(c for c in after if c.SOPInstanceUID == uid_map[str(pydicom.dcmread(originals[1]).SOPInstanceUID)])
    assert slice1.ReferencedImageSequence[0].ReferencedSOPInstanceUID == uid_map[slice0], "references follow"


@pytest.mark.parametrize(
    "keyword",
    [
        "PerformedStationName",
        "PerformedLocation",
        "ScheduledStationName",
        "PatientTelecomInformation",
        "PatientBirthDateInAlternativeCalendar",
        "PatientDeathDateInAlternativeCalendar",
        "StudyIDIssuer",
        "IssuerOfAdmissionID",
        "SpecialNeeds",
        "GeneratorID",
        "SourceSerialNumber",
        "UnformattedTextValue",
        "LabelText",
        "BarcodeValue",
        "DeviceLabel",
        "PlacerOrderNumberProcedure",
        "FillerOrderNumberProcedure",
        "ClinicalTrialSponsorName",
        "ClinicalTrialSubjectID",
    ],
)
def test_attributes_named_in_the_issue_are_handled_at_depth(ct, keyword):
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    assert profile_action(tag) is not None or keyword in EXTRA_REMOVE
    vr = dictionary_VR(tag).split(" or ")[0]
    value = planted(7, vr)
    inner = Dataset()
    inner.add_new(tag, vr, value)
    outer = Dataset()
    outer.ScheduledProcedureStepSequence = Sequence([inner])
    ct.RequestAttributesSequence = Sequence([outer])  # removed as a whole (X)
    ct.ScheduledProcedureStepSequence = Sequence([copy.deepcopy(inner)])  # not in the table: cleaned inside
    ct.add_new(tag, vr, value)
    clean = deidentify(ct)
    assert find_phi(clean, [value]) == []
    assert "RequestAttributesSequence" not in clean


def test_table_is_complete_and_in_one_place():
    assert len(BASIC_PROFILE) == 655
    assert {resolved_action(a) for a, _ in BASIC_PROFILE.values()} == {"X", "Z", "D", "U", "U*"}
    assert profile_action(0x00100010) == "Z" and profile_action(0x60024000) == "X"  # repeating group 60xx
    assert profile_action(0x00280010) is None  # Rows: kept


def test_dummy_values_keep_type_1_attributes_present(ct):
    ct.ContentSequence = Sequence([Dataset()])
    ct.ContentSequence[0].TextValue = "Findings for John Doe"
    ct.ClinicalTrialSubjectID, ct.DeviceLabel = "SUBJ-JD", "Doe's detector"
    clean = deidentify(ct)
    assert clean.ClinicalTrialSubjectID == "ANONYMIZED" and clean.DeviceLabel == "ANONYMIZED"
    assert len(clean.ContentSequence) == 1 and len(clean.ContentSequence[0]) == 0
    assert find_phi(clean, ["Doe", "SUBJ-JD"]) == []


def test_keep_list_retains_chosen_private_elements(ct):
    ct.add_new(0x00291010, "LO", "safe private value")
    ct.add_new(0x00291011, "LO", "Doe private")
    clean = deidentify(ct, keep=[0x00291010])
    assert clean[0x00291010].value == "safe private value" and 0x00291011 not in clean


def test_folder_tool_reports_each_bad_file_and_writes_the_rest(tmp_path):
    from meddiff_lab.data.io import Volume, write_dicom_series

    volume = Volume(np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6), (1.0, 1.0, 1.0), np.eye(4), {})
    paths = write_dicom_series(volume, tmp_path / "src" / "a" / "b", patient_name="Doe^John")
    src = tmp_path / "src"
    (src / "notes.txt").write_text("patient list: Doe^John")
    (src / "truncated.dcm").write_bytes(paths[0].read_bytes()[:300])
    ds = pydicom.dcmread(paths[1])
    del ds.SOPInstanceUID
    ds.save_as(src / "no_sop.dcm", enforce_file_format=False)
    ds = pydicom.dcmread(paths[2])
    ds.PixelData = ds.PixelData[:20]
    ds.save_as(src / "short_pixels.dcm", enforce_file_format=True)
    (src / "copy").mkdir()
    (src / "copy" / "dup.dcm").write_bytes(paths[3].read_bytes())
    raw = pydicom.dcmread(paths[0])  # a valid data set without the 128-byte preamble and file meta
    raw.SOPInstanceUID = "1.2.826.0.1.3680043.10.999.77"
    raw.file_meta, raw.preamble = pydicom.dataset.FileMetaDataset(), None
    raw.save_as(src / "raw_no_preamble", implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert (src / "raw_no_preamble").read_bytes()[128:132] != b"DICM"
    with pytest.warns(UserWarning, match="skipped 5 of 10 files"):
        report = deidentify_folder(src, tmp_path / "out")
    reasons = {p.name: why for p, why in report.skipped}
    assert set(reasons) == {"notes.txt", "truncated.dcm", "no_sop.dcm", "short_pixels.dcm", "dup.dcm"}, reasons
    assert "not a DICOM file" in reasons["notes.txt"] and "truncated" in reasons["truncated.dcm"]
    assert "SOPInstanceUID" in reasons["no_sop.dcm"] and "truncated: 20 of 72 bytes" in reasons["short_pixels.dcm"]
    assert "same SOPInstanceUID as" in reasons["dup.dcm"] and "slice_0003.dcm" in reasons["dup.dcm"]
    written = {p.relative_to(src).as_posix() for p, _ in report.written}
    assert written == {f"a/b/slice_{k:04d}.dcm" for k in range(4)} | {"raw_no_preamble"}, "sub-folders walked"
    text = str(report)
    assert all(name in text for name in reasons) and "skipped 5" in text
    clean_raw = pydicom.dcmread(dict((p.name, o) for p, o in report.written)["raw_no_preamble"])
    assert clean_raw.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    with pytest.warns(UserWarning, match="skipped 5"):  # fresh UIDs: new names, nothing overwritten
        again = deidentify_folder(src, tmp_path / "out", uid_map={})
    assert len(list((tmp_path / "out").iterdir())) == 10 and len(again) == 5


@pytest.mark.parametrize(
    "name",
    [
        "liver_1frame.dcm",
        "reportsi.dcm",
        "waveform_ecg.dcm",
        "JPEG2000.dcm",
        "nested_priv_SQ.dcm",
        "UN_sequence.dcm",
        "CT_small.dcm",
    ],
)
def test_valid_files_with_undefined_length_sequences_are_not_called_truncated(tmp_path, name):
    from meddiff_lab.data.deid import _truncation

    path = Path(get_testdata_file(name))
    assert _truncation(path) is None
    cut = tmp_path / name
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) - 40])
    assert _truncation(cut) is not None, "the same file cut short is"


@pytest.mark.slow
def test_folder_tool_on_pydicoms_own_test_files_skips_only_for_real_reasons(tmp_path):
    """pydicom's test files: valid files of every kind are written; the broken ones are named."""
    import warnings

    root = Path(get_testdata_file("CT_small.dcm")).parent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = deidentify_folder(root, tmp_path / "out")
    reasons = {p.relative_to(root).as_posix(): why for p, why in report.skipped}
    written = {p.relative_to(root).as_posix() for p, _ in report.written}
    for name in (
        "JPEG2000.dcm",
        "JPEG-lossy.dcm",
        "examples_jpeg2k.dcm",
        "liver_1frame.dcm",
        "reportsi.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "image_dfl.dcm",
        "waveform_ecg.dcm",
        "MR_small.dcm",
    ):
        assert name in written or reasons[name].startswith("same SOPInstanceUID as"), (name, reasons.get(name))
    assert reasons["MR_truncated.dcm"].startswith("truncated") and reasons["rtplan_truncated.dcm"].startswith(
        "truncated"
    )
    assert reasons["dicomdirtests/DICOMDIR"].startswith("a DICOMDIR")
    assert reasons["test1.json"] == "not a DICOM file (it looks like a text file)"
    assert len(written) > 100
