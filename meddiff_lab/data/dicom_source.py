"""A folder of DICOM radiographs as a training set (``DATA_SOURCE = "dicom"``).

A hospital export is a tree of DICOM files in any layout (``PATIENT/STUDY/SERIES/IM0001``, flat UID
names, ``.dcm`` or no suffix), mixed with things that are not training images: CT slices, reports,
colour screenshots, files cut short by a failed copy. :class:`DicomRadiographs` walks the whole tree,
keeps the projection radiographs, and says what it left out and why:

    >>> train = DicomRadiographs("exports/", split="train", image_size=64)
    >>> print(train.report())            # images, patients, and every skipped file with its reason
    >>> train[0]["image"].shape           # (1, 64, 64) float32 in [-1, 1]

Each image is read as a PACS shows it (:func:`meddiff_lab.data.io.load_radiograph`: modality LUT, the
header's VOI LUT or window, MONOCHROME1 inverted so bone is bright and air dark), padded to a square
with black (the whole film stays in view) and resized. The split is by patient, from the header's
PatientID, so no patient is in two splits.

De-identified on the way in: an item carries the pixels, a pseudonymous patient number (0, 1, ...),
a made-up name (``dicom_000012``) and the view, never a header value that identifies anyone or the
original file name (which can hold a name). :meth:`DicomRadiographs.header` gives an item's header
after :func:`meddiff_lab.data.deid.deidentify`. The list of source files (``.files``) stays on the
machine that read them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from meddiff_lab.data.cxr_labels import CXR_LABELS
from meddiff_lab.data.io import RADIOGRAPH_MODALITIES, MedicalFileError, describe_file, load_radiograph
from meddiff_lab.data.sources import _check_image_size, _check_split, _ItemsDataset, _split_indices, _to_item_image

__all__ = ["DicomRadiographs", "looks_like_dicom_folder"]


def looks_like_dicom_folder(folder: str | os.PathLike, max_files: int = 200) -> bool:
    """Whether a folder (or a sub-folder) holds a DICOM Part 10 file among its first ``max_files`` files."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    for k, path in enumerate(p for p in folder.rglob("*") if p.is_file()):
        if k >= max_files:
            return False
        try:
            with open(path, "rb") as fh:
                head = fh.read(132)
        except OSError:
            continue
        if head[128:132] == b"DICM":
            return True
    return False


def _square(image: np.ndarray) -> np.ndarray:
    """Pad (rows, columns) to a square with zeros (black), centred."""
    rows, columns = image.shape
    side = max(rows, columns)
    out = np.zeros((side, side), dtype=np.float32)
    top, left = (side - rows) // 2, (side - columns) // 2
    out[top : top + rows, left : left + columns] = image
    return out


def _resize(image: np.ndarray, size: int | None) -> np.ndarray:
    from PIL import Image

    if size is None or image.shape == (size, size):
        return image.astype(np.float32)
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


class DicomRadiographs(_ItemsDataset):
    """Projection radiographs from a folder of DICOM files, split by patient.

    Args:
        root: the folder; every file below it is looked at (sub-folders, any names).
        split: ``"train"`` / ``"val"`` / ``"test"`` (a seeded split of *patients*: ``1 - val_fraction -
            test_fraction`` / ``val_fraction`` / ``test_fraction`` of them) or ``"all"``.
        image_size: output side in pixels (the film is padded to a square first); ``None`` keeps the
            padded size.
        modalities: which DICOM Modality values count as radiographs (CR, DX, MG, ... by default).
        voi: contrast, as :func:`meddiff_lab.data.io.display_pixels` (``"header"``: the file's own VOI
            LUT or window, else min-max).
        verify: decode every image while indexing, so a file that cannot be decoded is skipped and
            reported instead of failing mid-epoch (the resized images are kept: N x image_size² x 4
            bytes). ``False`` reads the headers only and decodes on access.
        seed, val_fraction, test_fraction: the patient split.

    Items (as every source in :mod:`meddiff_lab.data.sources`): ``"image"`` (1, H, W) float32 in [-1, 1],
    ``"labels"`` (14,) zeros (DICOM headers carry no finding labels: ``labels_known`` is False),
    ``"patient_id"`` (a pseudonym, 0 ... P-1), ``"image_index"`` (``dicom_000012``), plus ``"view"``
    (ViewPosition), ``"modality"``, ``"monochrome1_inverted"``, ``"spacing_mm"`` and ``"spacing_source"``.

    ``skipped`` lists ``(file, reason)`` for every file left out, over the whole folder (whatever the
    split); :meth:`report` prints them.
    """

    SPLITS = ("train", "val", "test", "all")
    labels_known = False

    def __init__(
        self,
        root,
        split: str = "train",
        image_size: int | None = 64,
        *,
        modalities: Sequence[str] = RADIOGRAPH_MODALITIES,
        voi="header",
        verify: bool = True,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        transform: Callable | None = None,
    ):
        _check_image_size(image_size)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder (expected a folder of DICOM radiographs)")
        self.split = _check_split(split, self.SPLITS, "DicomRadiographs")
        self.image_size, self.voi, self.transform = image_size, voi, transform
        self.modalities = tuple(str(m).upper() for m in modalities)
        self.skipped: list[tuple[str, str]] = []
        records = self._index(verify)
        if not records:
            raise MedicalFileError(
                f"{self.root}: no readable DICOM radiograph found "
                f"({len(self.skipped)} file(s) skipped)\n{self.report()}"
            )
        keys = sorted({r["patient_key"] for r in records})
        pseudonym = {key: k for k, key in enumerate(keys)}  # original PatientID -> 0 ... P-1
        for k, record in enumerate(records):
            record["patient_id"] = pseudonym[record.pop("patient_key")]
            record["image_index"] = f"dicom_{k:06d}"
        all_ids = np.array([r["patient_id"] for r in records])
        keep = _split_indices(all_ids, self.split, val_fraction, test_fraction, seed)
        self._records = [records[int(i)] for i in np.sort(keep)]
        self._patient_ids = np.array([r["patient_id"] for r in self._records], dtype=np.int64)
        self._labels = np.zeros((len(self._records), len(CXR_LABELS)), dtype=np.float32)
        self.n_patients_total, self.n_images_total = len(keys), len(records)

    # ------------------------------------------------------------------------------------- indexing
    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _index(self, verify: bool) -> list[dict]:
        import pydicom
        from pydicom.errors import InvalidDicomError

        from meddiff_lab.data.deid import _truncation

        records, seen = [], {}
        for path in sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            name = self._relative(path)
            if path.name.upper() == "DICOMDIR":
                self.skipped.append((name, "a DICOMDIR (an index of the files, not an image)"))
                continue
            try:
                ds = pydicom.dcmread(path, defer_size="4 KB")
            except InvalidDicomError:
                kind = describe_file(path)
                kind = "a text file" if kind.startswith("a text file") else kind
                self.skipped.append((name, f"not a DICOM file (it looks like {kind})"))
                continue
            except Exception as exc:
                self.skipped.append(
                    (name, f"the DICOM header could not be read ({type(exc).__name__}): truncated or damaged")
                )
                continue
            reason = self._reject(ds, path)
            if reason is None:
                reason = _truncation(path)
            uid = str(ds.get("SOPInstanceUID", "") or "")
            if reason is None and uid in seen:
                reason = f"same SOPInstanceUID as {seen[uid]} (a copy of the same image)"
            record = None
            if reason is None:
                record = {
                    "path": path,
                    "patient_key": str(ds.PatientID).strip(),
                    "view": str(ds.get("ViewPosition", "") or ""),
                    "modality": str(ds.Modality).upper(),
                }
                if verify:
                    try:
                        record.update(self._read(path))
                    except MedicalFileError as exc:
                        reason = str(exc).replace(str(path), "").lstrip(": ").split("\n")[0]
            if reason is not None:
                self.skipped.append((name, reason))
                continue
            seen[uid] = name
            records.append(record)
        return records

    def _reject(self, ds, path: Path) -> str | None:
        modality = str(ds.get("Modality", "") or "").upper()
        if "PixelData" not in ds:
            return "no pixel data (a report, presentation state or other non-image object)"
        if modality not in self.modalities:
            return (
                f"modality {modality or 'missing'} is not a projection radiograph (kept: {', '.join(self.modalities)})"
            )
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
            return f"not greyscale ({photometric or 'no PhotometricInterpretation'}, {samples} samples per pixel)"
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames != 1:
            return f"{frames} frames (a cine or multi-frame object); expected one film per file"
        if not str(ds.get("PatientID", "") or "").strip():
            return "no PatientID: it cannot be placed in a patient-level split"
        if not str(ds.get("SOPInstanceUID", "") or "").strip():
            return "no SOPInstanceUID: not a valid DICOM instance"
        return None

    def _read(self, path: Path) -> dict:
        volume = load_radiograph(path, voi=self.voi)
        image = _resize(_square(volume.array), self.image_size)
        return {
            "image01": image,
            "monochrome1_inverted": bool(volume.meta["monochrome1_inverted"]),
            "spacing_mm": tuple(volume.spacing),
            "spacing_source": volume.meta["spacing_source"],
        }

    # ------------------------------------------------------------------------------------- dataset
    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        record = self._records[index]
        if "image01" not in record:
            record.update(self._read(record["path"]))
        item = {
            "image": _to_item_image(record["image01"]),
            "labels": torch.from_numpy(self._labels[index].copy()),
            "patient_id": int(record["patient_id"]),
            "image_index": record["image_index"],
            "view": record["view"],
            "modality": record["modality"],
            "monochrome1_inverted": record["monochrome1_inverted"],
            "spacing_mm": record["spacing_mm"],
            "spacing_source": record["spacing_source"],
        }
        return self._finish(item)

    @property
    def files(self) -> list[Path]:
        """The source file of each item (local paths: their names may identify someone)."""
        return [r["path"] for r in self._records]

    def header(self, index: int):
        """Item ``index``'s DICOM header, de-identified (PS3.15 Basic Profile), pixel data left out."""
        import pydicom

        from meddiff_lab.data.deid import deidentify

        record = self._records[index]
        ds = pydicom.dcmread(record["path"], stop_before_pixels=True)
        return deidentify(ds, patient_pseudonym=f"P{record['patient_id']:05d}")

    def report(self) -> str:
        """What was read and what was skipped, with each skipped file's reason."""
        from collections import Counter

        lines = [
            f"DicomRadiographs({self.root}): {self.n_images_total if hasattr(self, 'n_images_total') else 0} "
            f"radiograph(s) from {getattr(self, 'n_patients_total', 0)} patient(s); split "
            f"{self.split!r}: {len(getattr(self, '_records', []))} image(s); skipped {len(self.skipped)} file(s)"
        ]
        for reason, count in Counter(r.split(" (")[0] for _, r in self.skipped).most_common():
            lines.append(f"  {count} x {reason}")
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"DicomRadiographs(root={str(self.root)!r}, split={self.split!r}, image_size={self.image_size}, "
            f"n={len(self)}, skipped={len(self.skipped)})"
        )
