"""DICOM de-identification after the DICOM PS3.15 Annex E *Basic Application Level Confidentiality Profile*.

Before images leave the hospital, the header must lose everything that identifies the patient or
the people and places involved, while the pixels (and what is needed to read them) stay intact:

    >>> from meddiff_lab.data import deidentify, deidentify_folder
    >>> uid_map = {}                                   # share it across a series / study
    >>> clean = deidentify(dataset, uid_map=uid_map)   # a de-identified copy; `dataset` is untouched
    >>> report = deidentify_folder("export/", "clean/")   # every file below export/, one by one
    >>> print(report)                                  # written, skipped (with the reason), flagged

The rules come from one table, :data:`meddiff_lab.data.deid_profile.BASIC_PROFILE` (PS3.15 Table
E.1-1, 655 attributes, with its source and version), applied at every nesting depth:

* **X** remove; **Z** empty (Type 2 attributes that must stay present: PatientName, PatientID,
  PatientBirthDate, PatientSex, StudyDate, AccessionNumber, StudyID...); **D** replace with a dummy
  of the right VR (``"ANONYMIZED"``, ``19000101``, ``000000``, ``0``; a sequence becomes one empty
  item); **U** replace a UID consistently (below).
* The table's compound actions take the most protective choice: ``Z/D`` -> Z, ``X/Z``, ``X/D`` and
  ``X/Z/D`` -> X. ``X/Z/U*`` (Referenced Image Sequence, Source Image Sequence) keeps the sequence so
  references still resolve, with every UID in it replaced and its items cleaned like the rest.
* UIDs: every instance UID -- the table's ``U`` rows and any other UI element that is not a well-known
  UID (SOP classes, transfer syntaxes, coding schemes) -- gets a new ``2.25.`` UID *consistently*: the
  same input UID maps to the same new UID within one ``uid_map``, so slices of a series still share a
  SeriesInstanceUID and references between objects still resolve. The file meta's
  MediaStorageSOPInstanceUID follows SOPInstanceUID.
* Beyond the table (stricter than the profile): every element the table does not list is removed when
  it is *private* (odd group), *unknown* (an even-group tag no DICOM dictionary knows), of VR **UN**,
  a group length, part of an overlay (60xx) or curve (50xx) group, or a person name, date, time,
  date-time or AE title -- unless its tag is in ``keep=``. A few identifying attributes missing from
  Table E.1-1 are removed too (:data:`EXTRA_REMOVE`).
* The 128-byte file preamble (free for applications to fill, so it can hold anything) is zeroed, and
  the file meta loses the sending/receiving AE titles and private information.
* Marks the result: PatientIdentityRemoved = "YES", DeidentificationMethod, and
  DeidentificationMethodCodeSequence with code 113100 (DCM, "Basic Application Confidentiality
  Profile"); LongitudinalTemporalInformationModified = "REMOVED" (dates are gone).

Not done (options of PS3.15 beyond the basic profile): shifting dates instead of removing them, and
cleaning *pixels*: text burned into the image (``BurnedInAnnotation == "YES"``, common on
ultrasound, secondary captures and scanned films) stays. :func:`deidentify` warns when the header says
so and :func:`deidentify_folder` lists such files, and the images without the attribute that commonly
carry burned-in text, in its report.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from .deid_profile import BASIC_PROFILE, BASIC_PROFILE_SOURCE, profile_action

__all__ = [
    "deidentify",
    "deidentify_folder",
    "DeidReport",
    "REMOVE",
    "EMPTY",
    "EXTRA_REMOVE",
    "find_phi",
    "resolved_action",
    "BASIC_PROFILE",
    "BASIC_PROFILE_SOURCE",
]


def resolved_action(table_action: str | None) -> str | None:
    """The action applied for a Table E.1-1 entry: ``"X"``, ``"Z"``, ``"D"``, ``"U"``, ``"U*"`` or None."""
    if table_action is None:
        return None
    if table_action == "X/Z/U*":
        return "U*"
    return table_action.split("/")[0]  # Z/D -> Z; X/Z, X/D, X/Z/D -> X


def _keywords(action: str) -> frozenset[str]:
    from pydicom.datadict import keyword_for_tag

    out = set()
    for tag, (table_action, _) in BASIC_PROFILE.items():
        if "x" not in tag and resolved_action(table_action) == action:
            keyword = keyword_for_tag(int(tag, 16))
            if keyword:
                out.add(keyword)
    return frozenset(out)


#: identifying attributes that PS3.15 2026c Table E.1-1 does not list; removed as well
EXTRA_REMOVE: frozenset[str] = frozenset(
    {
        "PatientBirthDateInAlternativeCalendar",
        "PatientDeathDateInAlternativeCalendar",
        "PatientAlternativeCalendar",
        "PlacerOrderNumberProcedure",
        "FillerOrderNumberProcedure",
        "IssuerOfPatientIDQualifiersSequence",
        "PatientBreedDescription",
        "ResponsiblePersonRole",
        "PerformedProtocolCodeSequence",
        "MACParametersSequence",
    }
)

#: keywords removed (action X after resolving the table's compound actions, plus :data:`EXTRA_REMOVE`)
REMOVE: frozenset[str] = _keywords("X") | EXTRA_REMOVE

#: keywords replaced with an empty value (action Z: attributes that must stay present, Type 2)
EMPTY: frozenset[str] = _keywords("Z")

#: UID attributes that name *kinds* of things, not instances: kept as they are
_KEEP_UIDS = frozenset(
    {
        "SOPClassUID",
        "MediaStorageSOPClassUID",
        "ReferencedSOPClassUID",
        "TransferSyntaxUID",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "MappingResource",
        "ContextUID",
        "ReferencedSOPClassUIDInFile",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "PrivateInformationCreatorUID",
        "ReferencedTransferSyntaxUIDInFile",
        "SOPClassesSupported",
        "MappingResourceUID",
        "CodingSchemeRegistry",
    }
)

_METHOD = "DICOM PS3.15 E.1.1 Basic Profile (meddiff-lab)"  # LO: at most 64 characters
_SWEPT_VRS = ("PN", "DA", "DT", "TM", "AE")  # removed wherever the table says nothing about them
_TEXT_DUMMY = "ANONYMIZED"
_DUMMIES = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "IS": "0",
    "DS": "0",
    "AS": "000Y",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
}
_BINARY_VRS = ("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "OB", "OW", "OF", "OD", "OL", "OV", "AT")
_TEXT_VRS = ("PN", "LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE")
#: modalities whose images often carry burned-in text (ultrasound, captures, endoscopy, photographs)
_BURN_PRONE = frozenset({"US", "SC", "OT", "XC", "ES", "GM", "SM", "DOC"})


def _tags(keywords: Iterable[str]) -> set:
    from pydicom.datadict import tag_for_keyword

    return {tag for tag in (tag_for_keyword(k) for k in keywords) if tag is not None}


def _is_known(tag) -> bool:
    """Whether a DICOM dictionary (pydicom's, repeating groups included) knows this public tag."""
    from pydicom.datadict import get_entry

    try:
        get_entry(tag)
        return True
    except KeyError:
        return False


def deidentify(
    dataset,
    uid_map: MutableMapping[str, str] | None = None,
    patient_pseudonym: str | None = None,
    uid_prefix: str | None = None,
    keep: Iterable[int] = (),
):
    """Return a de-identified copy of a pydicom ``Dataset`` (PS3.15 Basic Profile); the input is untouched.

    Args:
        dataset: a ``pydicom.Dataset`` (a file read with ``pydicom.dcmread``), with or without file meta.
        uid_map: old UID -> new UID. Pass the same dict for every file of a study so UIDs stay consistent
            (it is filled in place); ``None`` uses a fresh one (consistent within this dataset only).
        patient_pseudonym: put this in PatientName and PatientID (e.g. ``"SUBJ-0001"``) instead of emptying them.
        uid_prefix: root for new UIDs (``None``: the UUID-derived ``2.25.`` root, no registration needed).
        keep: tags (ints such as ``0x00291010``) of private, unknown or UN elements to keep as they are
            (a "safe private" list you have checked); the table's rules still apply to listed attributes.

    Returns:
        A new ``Dataset``: pixel data byte-for-byte identical, identifying attributes removed, emptied
        or replaced (see the module doc), ``PatientIdentityRemoved = "YES"``, a zeroed preamble.
    """
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID, generate_uid

    if not isinstance(dataset, Dataset):
        raise TypeError(f"deidentify expects a pydicom Dataset (from pydicom.dcmread), got {type(dataset).__name__}")
    uid_map = {} if uid_map is None else uid_map
    keep = {int(t) for t in keep}
    extra_tags, keep_uid_tags = _tags(EXTRA_REMOVE), _tags(_KEEP_UIDS)
    out = copy.deepcopy(dataset)

    def new_uid(old: str) -> str:
        old = str(old).strip().rstrip("\x00")
        if old not in uid_map:
            uid_map[old] = str(generate_uid(prefix=uid_prefix if uid_prefix else None))
        return uid_map[old]

    def is_well_known(value: str) -> bool:
        return UID(value).is_valid and UID(value).name != value  # pydicom knows its name: a registered UID

    def replace_uids(elem) -> None:
        if elem.VR != "UI" or elem.value in (None, ""):
            return
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        replaced = [v if is_well_known(str(v)) else new_uid(str(v)) for v in values]
        elem.value = replaced if elem.VM > 1 else replaced[0]

    def dummy(ds: Dataset, elem) -> None:
        if elem.VR == "SQ":
            elem.value = Sequence([Dataset()])  # one empty item: present, non-empty, nothing inside
        elif elem.VR == "UI":
            elem.value = new_uid(str(elem.value)) if elem.value else str(generate_uid(prefix=uid_prefix or None))
        elif elem.VR in _DUMMIES:
            elem.value = _DUMMIES[elem.VR]
        elif elem.VR in _TEXT_VRS:
            elem.value = _TEXT_DUMMY
        else:  # binary, AT, UR...: no meaningful dummy exists, so the element goes
            del ds[elem.tag]

    def clean(ds: Dataset) -> None:
        for elem in list(ds):
            tag = elem.tag
            if tag.is_private or elem.VR == "UN" or tag.element == 0x0000:
                if int(tag) not in keep:
                    del ds[tag]
                continue
            action = resolved_action(profile_action(int(tag)))
            if action is None and int(tag) in extra_tags:
                action = "X"
            group = tag.group
            if action is None and (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF):
                action = "X"  # the rest of an overlay or curve group
            if action == "X":
                del ds[tag]
            elif action == "Z":
                elem.value = Sequence() if elem.VR == "SQ" else (None if elem.VR in _BINARY_VRS else "")
            elif action == "D":
                dummy(ds, elem)
            elif action == "U":
                replace_uids(elem)
            elif elem.VR == "SQ":  # U* (references kept, their UIDs replaced) or a sequence the table omits
                for item in elem.value:
                    clean(item)
            elif action == "U*":
                replace_uids(elem)
            elif not _is_known(tag):
                if int(tag) not in keep:
                    del ds[tag]
            elif elem.VR in _SWEPT_VRS:  # every other person name, date, time, AE title
                del ds[tag]
            elif elem.VR == "UI" and tag not in keep_uid_tags:
                replace_uids(elem)

    clean(out)
    file_meta = getattr(out, "file_meta", None)
    if file_meta is not None:
        if "MediaStorageSOPInstanceUID" in file_meta and str(file_meta.MediaStorageSOPInstanceUID):
            file_meta.MediaStorageSOPInstanceUID = new_uid(str(file_meta.MediaStorageSOPInstanceUID))
        for keyword in (
            "SourceApplicationEntityTitle",
            "SendingApplicationEntityTitle",
            "ReceivingApplicationEntityTitle",
            "PrivateInformation",
            "PrivateInformationCreatorUID",
            "SourcePresentationAddress",
            "SendingPresentationAddress",
            "ReceivingPresentationAddress",
        ):
            if keyword in file_meta:
                del file_meta[keyword]
        for elem in list(file_meta):
            if elem.tag.is_private or elem.VR == "UN":
                del file_meta[elem.tag]
    out.preamble = b"\x00" * 128  # the preamble is free for applications to fill: it can hold anything
    out.filename = None  # the original path, which can carry a name, is not the copy's
    if patient_pseudonym is not None:
        out.PatientName = str(patient_pseudonym)
        out.PatientID = str(patient_pseudonym)
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = _METHOD
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
        "113100",
        "DCM",
        "Basic Application Confidentiality Profile",
    )
    out.DeidentificationMethodCodeSequence = Sequence([code])
    out.LongitudinalTemporalInformationModified = "REMOVED"
    if str(dataset.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.warn(
            "BurnedInAnnotation is YES: identifying text may be burned into the pixels, which "
            "deidentify leaves untouched; check or mask the image before sharing it",
            stacklevel=2,
        )
    return out


@dataclass
class DeidReport:
    """What :func:`deidentify_folder` did: one line per input file.

    Attributes:
        written: (input, output) paths of the de-identified copies.
        skipped: (input, reason) for every file not written (not DICOM, damaged, duplicate...).
        flagged: (input, reason) for written files whose *pixels* may still identify someone
            (burned-in annotation).
    """

    source: Path
    destination: Path
    written: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    flagged: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def outputs(self) -> list[Path]:
        return [out for _, out in self.written]

    # a list of the written paths, as deidentify_folder returned before it returned a report
    def __len__(self) -> int:
        return len(self.written)

    def __iter__(self):
        return iter(self.outputs)

    def __getitem__(self, index):
        return self.outputs[index]

    def __str__(self) -> str:
        def rel(path: Path) -> str:
            try:
                return str(path.relative_to(self.source))
            except ValueError:
                return str(path)

        lines = [
            f"de-identified {len(self.written)} file(s) from {self.source} into {self.destination}; "
            f"skipped {len(self.skipped)}; flagged {len(self.flagged)}"
        ]
        lines += [f"  skipped {rel(p)}: {why}" for p, why in self.skipped]
        lines += [f"  flagged {rel(p)}: {why}" for p, why in self.flagged]
        return "\n".join(lines)


def _read_one(path: Path):
    """(dataset, None) or (None, reason): a whole DICOM file read and parsed, with or without a preamble."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        try:  # a raw data set without the 128-byte preamble and 'DICM' marker is still DICOM
            ds = pydicom.dcmread(path, force=True)
            if not (len(ds) and ("SOPClassUID" in ds or "SOPInstanceUID" in ds) and str(ds.get("Modality", "x"))):
                raise ValueError
        except Exception:
            from .io import describe_file

            kind = describe_file(path)
            kind = "a text file" if kind.startswith("a text file") else kind  # never quote a file's text
            return None, f"not a DICOM file (it looks like {kind})"
    except Exception as exc:
        return None, f"the DICOM header could not be read ({type(exc).__name__}: {str(exc)[:80]}): truncated or damaged"
    try:
        for elem in ds.iterall():  # parse every element now: a damaged header fails here, not half-way
            _ = elem.value
    except Exception as exc:
        return (
            None,
            f"the DICOM header could not be parsed ({type(exc).__name__}: {str(exc)[:80]}): truncated or damaged",
        )
    truncated = _truncation(path)
    if truncated:
        return None, truncated
    return ds, None


def _truncation(path: Path) -> str | None:
    """Why a Part 10 file ends early, or None. pydicom stops quietly at the end of a cut file and returns
    the elements it has, so walk the top-level elements and compare their declared lengths with the bytes."""
    from pydicom.filereader import _read_file_meta_info, data_element_generator

    size = path.stat().st_size
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
            if head[128:132] != b"DICM":
                return None  # no preamble: nothing to compare against
            tsyntax = _read_file_meta_info(fp).get("TransferSyntaxUID")
            if tsyntax is None or (tsyntax.is_transfer_syntax and tsyntax.is_deflated):
                return None  # unknown encoding, or deflated bytes that cannot be walked as elements
            last = None
            implicit = tsyntax.is_implicit_VR if tsyntax.is_transfer_syntax else False
            little = tsyntax.is_little_endian if tsyntax.is_transfer_syntax else True
            for last in data_element_generator(fp, implicit, little, defer_size=4096):
                length = getattr(last, "length", None)  # None: a sequence of undefined length, parsed whole
                if (
                    length is not None
                    and length != 0xFFFFFFFF
                    and isinstance(last.value, (bytes, str))
                    and len(last.value) < length
                ):
                    return f"truncated: element {last.tag} declares {length} bytes, the file holds {len(last.value)}"
            if fp.tell() > size:
                return f"truncated: element {last.tag} runs {fp.tell() - size} bytes past the end of the file"
            if last is None:
                return "truncated: nothing after the file meta information"
    except Exception as exc:
        return f"the DICOM data set could not be walked ({type(exc).__name__}: {str(exc)[:80]}): truncated or damaged"
    return None


def _pixel_problem(ds) -> str | None:
    """Why the pixel data is incomplete (native: fewer bytes than the header needs), or None."""
    if "PixelData" not in ds:
        return None
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    data = ds.PixelData
    if tsyntax is not None and tsyntax.is_encapsulated:
        from .io import compressed_pixel_problem

        return compressed_pixel_problem(ds)
    from pydicom.pixels.utils import get_expected_length

    try:
        expected = int(get_expected_length(ds, unit="bytes"))  # YBR_FULL_422 and 1-bit data included
    except (AttributeError, TypeError, ValueError, KeyError):
        return "pixel data without Rows/Columns/BitsAllocated: its size cannot be checked"
    if len(data) < expected:
        return f"pixel data truncated: {len(data)} of {expected} bytes"
    return None


def _complete_file_meta(clean, original) -> None:
    """Give a data set read without file meta (no preamble) the file meta a Part 10 file needs."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(clean, "file_meta", None)
    if meta is None:
        meta = clean.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = getattr(original, "original_encoding", (True, True))
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    meta.MediaStorageSOPClassUID = clean.SOPClassUID if "SOPClassUID" in clean else meta.get("MediaStorageSOPClassUID")
    meta.MediaStorageSOPInstanceUID = clean.SOPInstanceUID


def deidentify_folder(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    uid_map: MutableMapping[str, str] | None = None,
    patient_pseudonym: str | None = None,
    keep: Iterable[int] = (),
) -> DeidReport:
    """De-identify every DICOM file under ``source`` (sub-folders too) into ``destination``.

    Each file is handled on its own: a file that is not DICOM, is truncated or damaged, has no
    SOPInstanceUID, has incomplete pixel data, or would overwrite another output is *skipped* and
    listed with its reason; the others are written. One ``uid_map`` is shared by all files so series
    and references stay consistent. Outputs are named by their new SOPInstanceUID (file and folder
    names can carry PHI) in one flat folder; an existing file is never overwritten.

    Returns:
        A :class:`DeidReport` (``print(report)`` lists every skipped and flagged file; iterating it
        gives the written paths). A warning says how many files were skipped.
    """
    src, dst = Path(source), Path(destination)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder (expected a folder of DICOM files)")
    dst.mkdir(parents=True, exist_ok=True)
    uid_map = {} if uid_map is None else uid_map
    report = DeidReport(src, dst)
    first_input: dict[Path, Path] = {}
    inside_destination = dst.resolve()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        if inside_destination == path.resolve().parent or inside_destination in path.resolve().parents:
            continue  # destination inside source: do not read our own outputs
        ds, reason = _read_one(path)
        if ds is None:
            report.skipped.append((path, reason))
            continue
        if "DirectoryRecordSequence" in ds:
            report.skipped.append((path, "a DICOMDIR (an index of the files on a medium, naming patients): not copied"))
            continue
        if not str(ds.get("SOPInstanceUID", "") or "").strip():
            report.skipped.append((path, "no SOPInstanceUID (0008,0018): not a valid DICOM instance"))
            continue
        problem = _pixel_problem(ds)
        if problem:
            report.skipped.append((path, problem))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # burned-in annotation goes into the report instead
            clean = deidentify(ds, uid_map=uid_map, patient_pseudonym=patient_pseudonym, keep=keep)
        out = dst / f"{clean.SOPInstanceUID}.dcm"
        if out in first_input:
            report.skipped.append(
                (
                    path,
                    f"same SOPInstanceUID as {first_input[out].relative_to(src)}: not written (it would "
                    f"overwrite that file's copy)",
                )
            )
            continue
        if out.exists():
            report.skipped.append((path, f"{out.name} already exists in the destination: not overwritten"))
            continue
        _complete_file_meta(clean, ds)
        clean.save_as(out, enforce_file_format=True)
        first_input[out] = path
        report.written.append((path, out))
        burned = str(ds.get("BurnedInAnnotation", "")).upper()
        if burned == "YES":
            report.flagged.append((path, "BurnedInAnnotation is YES: text in the pixels may identify the patient"))
        elif not burned and str(ds.get("Modality", "")) in _BURN_PRONE:
            report.flagged.append(
                (
                    path,
                    f"modality {ds.get('Modality')} without BurnedInAnnotation: such images "
                    f"often carry burned-in text; check the pixels",
                )
            )
    if report.skipped:
        warnings.warn(
            f"deidentify_folder skipped {len(report.skipped)} of "
            f"{len(report.skipped) + len(report.written)} files; print the report for the reasons",
            stacklevel=2,
        )
    return report


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

    preamble = getattr(dataset, "preamble", None)
    if preamble:
        text = preamble.decode("latin-1", "replace").lower()
        found += [f"preamble: {needle}" for needle in needles if needle in text][:1]
    if getattr(dataset, "file_meta", None) is not None:
        visit(dataset.file_meta)
    visit(dataset)
    return found
