"""DICOM de-identification after the DICOM PS3.15 Annex E *Basic Application Level Confidentiality Profile*.

Before images leave the hospital, the header must lose everything that identifies the patient or
the people and places involved, while the pixels (and what is needed to read them) stay intact:

    >>> from meddiff_lab.data import deidentify
    >>> uid_map = {}                                   # share it across a series / study
    >>> clean = deidentify(dataset, uid_map=uid_map)   # a de-identified copy; `dataset` is untouched

What :func:`deidentify` does (actions as named in PS3.15 Table E.1-1):

* **X** remove: addresses, phone numbers, institution and department, physicians and operators,
  other patient IDs/names, patient age/size/weight/history, descriptions and free-text comments,
  request/procedure identifiers, device serial numbers, station name, and *every* other person name
  (PN), date, time and date-time (DA/TM/DT) and application entity title (AE) not listed below, in
  nested sequences too.
* **Z** empty (kept because IODs require them, Type 2): PatientName, PatientID, PatientBirthDate,
  PatientSex, ReferringPhysicianName, StudyDate, StudyTime, AccessionNumber, StudyID.
  ``patient_pseudonym=`` puts a study pseudonym in PatientName/PatientID instead.
* **U** replace UIDs: every instance UID (study, series, SOP instance, frame of reference, referenced
  instances, the file meta's MediaStorageSOPInstanceUID...) gets a new random UID, *consistently*:
  the same input UID always maps to the same new UID within one ``uid_map`` -- so slices of a series
  still share a SeriesInstanceUID and references between objects still resolve. Well-known UIDs
  (SOP classes, transfer syntaxes, coding schemes) are kept.
* Private tags (odd groups), overlays (60xx) and curves (50xx) are removed.
* Marks the result: PatientIdentityRemoved = "YES", DeidentificationMethod, and
  DeidentificationMethodCodeSequence with code 113100 (DCM, "Basic Application Confidentiality
  Profile"); LongitudinalTemporalInformationModified = "REMOVED" (dates are gone).

Not done (options of PS3.15 beyond the basic profile): shifting dates instead of removing them, and
cleaning *pixels*: text burned into the image (``BurnedInAnnotation == "YES"``, common on
ultrasound and secondary captures) stays; :func:`deidentify` warns when the header says so.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import MutableMapping

__all__ = ["deidentify", "deidentify_folder", "REMOVE", "EMPTY", "find_phi"]

#: PS3.15 Table E.1-1 action X (remove), by keyword
REMOVE: frozenset[str] = frozenset({
    # patient
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName", "PatientBirthTime",
    "PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "PatientMotherBirthName", "PatientTelephoneNumbers",
    "PatientReligiousPreference", "PatientComments", "PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence",
    "PatientState", "PatientTransportArrangements", "PatientSexNeutered", "MilitaryRank", "BranchOfService",
    "MedicalRecordLocator", "MedicalAlerts", "Allergies", "CountryOfResidence", "RegionOfResidence", "EthnicGroup",
    "Occupation", "SmokingStatus", "AdditionalPatientHistory", "PregnancyStatus", "LastMenstrualDate",
    "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization", "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence", "PatientInstitutionResidence", "CurrentPatientLocation",
    "ReferencedPatientSequence", "ReferencedPatientPhotoSequence", "PatientBreedDescription",
    # visit, admission, request, procedure
    "AdmissionID", "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "ServiceEpisodeID",
    "ServiceEpisodeDescription", "VisitComments", "ReasonForStudy", "RequestingPhysician", "RequestingService",
    "RequestedProcedureID", "RequestedProcedureDescription", "ReasonForTheRequestedProcedure",
    "RequestedProcedureComments", "RequestAttributesSequence", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "ImagingServiceRequestComments", "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription", "PerformedProcedureStepID", "PerformedProcedureStepDescription",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime", "CommentsOnThePerformedProcedureStep", "ReferencedPerformedProcedureStepSequence",
    "ReferencedStudySequence", "StudyComments", "InterpretationAuthor", "InterpretationText", "InterpretationDiagnosisDescription",
    # people and places
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "InstitutionalDepartmentTypeCodeSequence", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName", "ConsultingPhysicianIdentificationSequence",
    "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy", "PhysiciansReadingStudyIdentificationSequence",
    "OperatorsName", "OperatorIdentificationSequence", "PersonName", "PersonAddress", "PersonTelephoneNumbers",
    "OrderEnteredBy", "OrderEntererLocation", "OrderCallbackPhoneNumber", "ScheduledPerformingPhysicianName",
    "ReviewerName", "ContentCreatorName", "VerifyingObserverName", "VerifyingOrganization",
    # equipment that identifies a site
    "StationName", "DeviceSerialNumber", "DetectorID", "GantryID", "PlateID", "CassetteID", "DeviceUID",
    # descriptions and free text
    "StudyDescription", "SeriesDescription", "ImageComments", "FrameComments", "AcquisitionComments",
    "DerivationDescription", "ProtocolName", "PerformedProtocolCodeSequence", "TextString", "TextComments",
    "ContentSequence",
    "OriginalAttributesSequence", "ModifiedAttributesSequence", "DigitalSignaturesSequence", "MACParametersSequence",
    "DataSetTrailingPadding", "TimezoneOffsetFromUTC", "IconImageSequence",
    # dates and times beyond the type-2 ones emptied below (all other DA/DT/TM go by VR as well)
    "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "ContentDate",
    "ContentTime", "InstanceCreationDate", "InstanceCreationTime", "OverlayDate", "OverlayTime", "CurveDate", "CurveTime",
})

#: PS3.15 action Z (replace with an empty value), by keyword: Type 2 attributes that must stay present
EMPTY: frozenset[str] = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID",
})

#: UID attributes that name *kinds* of things, not instances: kept as they are
_KEEP_UIDS = frozenset({
    "SOPClassUID", "MediaStorageSOPClassUID", "ReferencedSOPClassUID", "TransferSyntaxUID", "ImplementationClassUID",
    "CodingSchemeUID", "ContextGroupExtensionCreatorUID", "MappingResource", "ContextUID", "ReferencedSOPClassUIDInFile",
    "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "PrivateInformationCreatorUID",
    "ReferencedTransferSyntaxUIDInFile", "SOPClassesSupported",
})

_METHOD = "DICOM PS3.15 E.1.1 Basic Profile (meddiff-lab)"  # LO: at most 64 characters


def _tags(keywords) -> set:
    from pydicom.datadict import tag_for_keyword

    return {tag for tag in (tag_for_keyword(k) for k in keywords) if tag is not None}


def deidentify(dataset, uid_map: MutableMapping[str, str] | None = None, patient_pseudonym: str | None = None,
               uid_prefix: str | None = None):
    """Return a de-identified copy of a pydicom ``Dataset`` (PS3.15 Basic Profile); the input is untouched.

    Args:
        dataset: a ``pydicom.Dataset`` (a file read with ``pydicom.dcmread``), with or without file meta.
        uid_map: old UID -> new UID. Pass the same dict for every file of a study so UIDs stay consistent
            (it is filled in place); ``None`` uses a fresh one (consistent within this dataset only).
        patient_pseudonym: put this in PatientName and PatientID (e.g. ``"SUBJ-0001"``) instead of emptying them.
        uid_prefix: root for new UIDs (``None``: the UUID-derived ``2.25.`` root, no registration needed).

    Returns:
        A new ``Dataset``: pixel data byte-for-byte identical, identifying attributes removed, emptied
        or replaced (see the module doc), ``PatientIdentityRemoved = "YES"``.
    """
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID, generate_uid

    if not isinstance(dataset, Dataset):
        raise TypeError(f"deidentify expects a pydicom Dataset (from pydicom.dcmread), got {type(dataset).__name__}")
    uid_map = {} if uid_map is None else uid_map
    remove_tags, empty_tags, keep_uid_tags = _tags(REMOVE), _tags(EMPTY), _tags(_KEEP_UIDS)
    out = copy.deepcopy(dataset)

    def new_uid(old: str) -> str:
        old = str(old).strip()
        if old not in uid_map:
            uid_map[old] = str(generate_uid(prefix=uid_prefix if uid_prefix else None))
        return uid_map[old]

    def is_well_known(value: str) -> bool:
        return UID(value).is_valid and UID(value).name != value  # pydicom knows its name: a registered UID

    def clean(ds: Dataset, top_level: bool) -> None:
        for elem in list(ds):
            tag = elem.tag
            if tag.is_private:
                del ds[tag]
                continue
            group = tag.group
            if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:  # curves and overlays
                del ds[tag]
                continue
            if tag in empty_tags:
                elem.value = "" if elem.VR != "SQ" else Sequence()
                continue
            if tag in remove_tags:
                del ds[tag]
                continue
            if elem.VR == "SQ":
                for item in elem.value:
                    clean(item, False)
                continue
            if elem.VR in ("PN", "DA", "DT", "TM", "AE"):  # every other person name, date, time, AE title
                del ds[tag]
                continue
            if elem.VR == "UI" and tag not in keep_uid_tags and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                replaced = [v if is_well_known(str(v)) else new_uid(str(v)) for v in values]
                elem.value = replaced if elem.VM > 1 else replaced[0]

    clean(out, True)
    file_meta = getattr(out, "file_meta", None)
    if file_meta is not None:
        for keyword in ("MediaStorageSOPInstanceUID",):
            if keyword in file_meta and str(file_meta[keyword].value):
                file_meta[keyword].value = new_uid(str(file_meta[keyword].value))
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformation", "PrivateInformationCreatorUID"):
            if keyword in file_meta:
                del file_meta[keyword]
    if patient_pseudonym is not None:
        out.PatientName = str(patient_pseudonym)
        out.PatientID = str(patient_pseudonym)
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = _METHOD
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113100", "DCM", "Basic Application Confidentiality Profile"
    out.DeidentificationMethodCodeSequence = Sequence([code])
    out.LongitudinalTemporalInformationModified = "REMOVED"
    if str(dataset.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.warn("BurnedInAnnotation is YES: identifying text may be burned into the pixels, which "
                      "deidentify leaves untouched; check or mask the image before sharing it", stacklevel=2)
    return out


def deidentify_folder(source: str | os.PathLike, destination: str | os.PathLike,
                      uid_map: MutableMapping[str, str] | None = None,
                      patient_pseudonym: str | None = None) -> list[Path]:
    """De-identify every DICOM file in ``source`` into ``destination`` with one shared UID map.

    Output files are named by their new SOPInstanceUID (original file names can carry PHI). Non-DICOM
    files are not copied. Returns the written paths.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    src, dst = Path(source), Path(destination)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder (expected a folder of DICOM files)")
    dst.mkdir(parents=True, exist_ok=True)
    uid_map = {} if uid_map is None else uid_map
    written = []
    for path in sorted(p for p in src.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, EOFError):
            continue
        clean = deidentify(ds, uid_map=uid_map, patient_pseudonym=patient_pseudonym)
        out = dst / f"{clean.SOPInstanceUID}.dcm"
        has_meta = getattr(clean, "file_meta", None) is not None and "TransferSyntaxUID" in clean.file_meta
        clean.save_as(out, enforce_file_format=has_meta)
        written.append(out)
    return written


def find_phi(dataset, needles) -> list[str]:
    """Where any of the strings ``needles`` still occurs in a dataset (recursively, file meta included).

    Returns ``"keyword: value"`` descriptions of the elements that contain one; ``[]`` when clean. Useful to
    check a de-identification (``find_phi(clean, [original.PatientName, original.InstitutionName])``).
    """
    needles = [str(n).strip().lower() for n in needles if str(n).strip()]
    found: list[str] = []

    def text_of(value) -> str:
        if isinstance(value, bytes):
            return value.decode("latin-1", "replace").lower()
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return " ".join(str(v) for v in value).lower()
        return str(value).lower()

    def visit(ds) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
                continue
            if elem.tag == 0x7FE00010:  # pixel data: not header text
                continue
            text = text_of(elem.value)
            for needle in needles:
                if needle in text:
                    found.append(f"{elem.keyword or elem.tag}: {str(elem.value)[:60]}")
                    break

    if getattr(dataset, "file_meta", None) is not None:
        visit(dataset.file_meta)
    visit(dataset)
    return found
