"""Chest radiograph datasets behind one interface: ChestX-ray14, MedMNIST, MedNIST, a folder per class,
and the synthetic phantom.

Every dataset here is a ``torch.utils.data.Dataset`` whose items are dicts:

=================  ==========================================================================
``"image"``        (1, H, W) float32 tensor in [-1, 1] (H = W = ``image_size`` when given)
``"labels"``       (14,) float32 multi-hot over ``CXR_LABELS`` (all zeros: no finding, or
                   unknown for sources without finding labels: see ``labels_known``)
``"patient_id"``   int (-1 when the source has none)
``"image_index"``  the file name (ChestX-ray14 style ``00000001_000.png``) or a stable item name
=================  ==========================================================================

plus source-specific keys (``"label"``/``"class_name"`` for class folders, ``"age"``, ``"sex"``,
``"view"``, ``"follow_up"`` for ChestX-ray14). ``load_dataset(source, root, split, image_size)``
picks the reader for the notebooks' ``DATA_SOURCE`` parameter.

Readers accept the real on-disk formats:

- ChestX-ray14 (NIH): ``Data_Entry_2017.csv`` (2017 header with the bracketed
  ``OriginalImage[Width,Height]`` columns and trailing comma, or the 2020 header with
  ``OriginalImageWidth`` ... ``OriginalImagePixelSpacing_y``), images in ``images_*/images/*.png``
  (or one ``images/`` folder), ``train_val_list.txt`` and ``test_list.txt``.
- MedMNIST ``.npz``: ``train_images``, ``train_labels``, ``val_*``, ``test_*`` (ChestMNIST: 14
  labels in NIH order; PneumoniaMNIST: 0 normal / 1 pneumonia), 28 px or the MedMNIST+ sizes.
- MedNIST: ``MedNIST/<class>/*.jpeg`` (64×64), class ``CXR`` by default.
- A folder per class, e.g. the Kermany pneumonia set ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}``.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from meddiff_lab.data.cxr_labels import CXR_LABELS, labels_from_string
from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.data.phantom import generate_phantoms

__all__ = [
    "DATA_SOURCES",
    "ChestXray14",
    "MedMNIST",
    "MedNIST",
    "ImageFolderDataset",
    "SyntheticCXR",
    "load_dataset",
    "load_images",
    "read_nih_metadata",
    "find_source_root",
    "check_source",
    "DataCheckError",
]

#: Names accepted by :func:`load_dataset` (the notebooks' ``DATA_SOURCE``).
DATA_SOURCES = ("synthetic", "chestxray14", "medmnist", "mednist", "folder", "dicom")

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# ------------------------------------------------------------------------------------- helpers
def _load_grey(path: Path, image_size: int | None) -> np.ndarray:
    """Read an image file as (H, W) float32 in [0, 1] (8- or 16-bit grey, RGB or RGBA), resized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max() > 255 else 255.0
        arr = arr / top
        if image_size is not None and arr.shape != (image_size, image_size):
            arr = np.asarray(Image.fromarray(arr, mode="F").resize((image_size, image_size), Image.BILINEAR))
        return np.clip(arr, 0.0, 1.0).astype(np.float32)
    if img.mode != "L":
        img = img.convert("L")
    if image_size is not None and img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)  # PIL antialiases when shrinking
    return np.asarray(img, dtype=np.float32) / 255.0


def _to_item_image(arr01: np.ndarray) -> torch.Tensor:
    """(H, W) in [0, 1] → (1, H, W) float32 tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(arr01 * 2.0 - 1.0, dtype=np.float32))[None]


def _check_image_size(image_size):
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 4):
        raise ValueError(f"image_size must be a positive integer (pixels) or None, got {image_size!r}")


def _check_split(split: str, allowed: Sequence[str], source: str) -> str:
    split = {"trainval": "train_val", "train-val": "train_val", "validation": "val", "valid": "val"}.get(split, split)
    if split not in allowed:
        raise ValueError(f"unknown split {split!r} for {source}; expected one of {', '.join(allowed)}")
    return split


def _split_indices(n_or_ids, split: str, val_fraction: float, test_fraction: float, seed: int):
    """Indices of ``split`` ('train'/'val'/'test'/'all') in a seeded split (by patient when IDs are given)."""
    from meddiff_lab.data.splits import patient_split

    ids = np.arange(n_or_ids) if isinstance(n_or_ids, (int, np.integer)) else np.asarray(n_or_ids)
    if split == "all":
        return np.arange(len(ids))
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    parts = patient_split(ids, fractions, seed)
    return {"train": parts[0], "val": parts[1], "test": parts[2], "train_val": np.concatenate(parts[:2])}[split]


class _ItemsDataset(Dataset):
    """Common behaviour: ``transform`` applied to each item dict, ``labels``, ``patient_ids``."""

    transform: Callable | None = None
    labels_known: bool = True

    def _finish(self, item: dict) -> dict:
        return self.transform(item) if self.transform is not None else item

    @property
    def labels(self) -> np.ndarray:
        """(N, 14) float32 multi-hot over ``CXR_LABELS`` without reading any image."""
        return self._labels

    @property
    def patient_ids(self) -> np.ndarray:
        return self._patient_ids

    def label_counts(self) -> dict[str, int]:
        """Images per finding (and ``"No Finding"``)."""
        counts = {name: int(c) for name, c in zip(CXR_LABELS, self._labels.sum(0))}
        counts["No Finding"] = int((self._labels.sum(1) == 0).sum())
        return counts

    def images(self, indices=None) -> torch.Tensor:
        """Stack items' images: (K, 1, H, W) in [-1, 1] (all items when ``indices`` is None)."""
        indices = range(len(self)) if indices is None else indices
        return torch.stack([self[int(i)]["image"] for i in indices])


# --------------------------------------------------------------------------------- ChestX-ray14
def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9\[\]]", "", name.strip().lower())


# canonical field -> accepted header names (normalised by _norm)
_NIH_COLUMNS = {
    "image_index": ("imageindex",),
    "finding_labels": ("findinglabels",),
    "follow_up": ("followup",),
    "patient_id": ("patientid",),
    "age": ("patientage",),
    "sex": ("patientgender", "patientsex"),
    "view": ("viewposition",),
    "width": ("originalimage[width", "originalimagewidth"),
    "height": ("height]", "originalimageheight"),
    "spacing_x": ("originalimagepixelspacing[x", "originalimagepixelspacingx"),
    "spacing_y": ("y]", "originalimagepixelspacingy"),
}


def _parse_age(text: str):
    m = re.match(r"\s*(\d+(?:\.\d+)?)\s*([YyMmDdWw]?)", str(text))
    if not m:
        return None
    value, unit = float(m.group(1)), m.group(2).upper()
    return int(value / {"": 1, "Y": 1, "M": 12, "W": 52, "D": 365}[unit])


def read_nih_metadata(path) -> list[dict]:
    """Read ChestX-ray14's ``Data_Entry_2017.csv`` (2017 or 2020 header) into one dict per image.

    Returns:
        Dicts with ``image_index`` (str), ``labels`` ((14,) float32 multi-hot), ``finding_labels``
        (the original string), ``patient_id`` (int), ``follow_up`` (int or None), ``age`` (years or
        None; ``"058Y"`` style values are understood), ``sex``, ``view``, ``width``, ``height``,
        ``spacing_x``, ``spacing_y`` (floats or None).

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file and line: a required column (Image Index, Finding Labels, Patient
            ID) is missing, a row has an unknown finding or an empty Finding Labels (write ``No Finding``),
            a Patient ID that is not a whole number, or an image listed twice; or the file is not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ChestX-ray14 metadata not found: {path} (expected Data_Entry_2017.csv)")
    try:
        return _read_nih_rows(path)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start : exc.start + 1]!r}); "
            f"expected the ChestX-ray14 CSV as published (UTF-8)"
        ) from None


def _parse_patient_id(text: str) -> int:
    """``"00012"`` or ``"12"`` (or ``"12.0"``, as a spreadsheet writes it) -> 12; anything else raises ValueError."""
    if re.fullmatch(r"\s*\d+\s*", text):
        return int(text)
    value = float(text)  # ValueError for words
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise ValueError(text)
    return int(value)


def _read_nih_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path} is empty: expected the ChestX-ray14 header line") from None
        normalised = [_norm(h) for h in header]
        where = {}
        for field_name, accepted in _NIH_COLUMNS.items():
            for i, h in enumerate(normalised):
                if h in accepted:
                    where[field_name] = i
                    break
        missing = [f for f in ("image_index", "finding_labels", "patient_id") if f not in where]
        if missing:
            raise ValueError(
                f"{path} is not ChestX-ray14 metadata: missing column(s) "
                f"{[_NIH_COLUMNS[m][0] for m in missing]}; found columns {header}"
            )
        records, first_line = [], {}
        for line_no, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue

            def get(field_name, row=row):
                i = where.get(field_name)
                return row[i].strip() if i is not None and i < len(row) else ""

            def num(field_name, cast=float):
                text = get(field_name)
                try:
                    return cast(float(text)) if text else None
                except ValueError:
                    return None

            if not get("image_index"):
                raise ValueError(f"{path}, line {line_no}: empty Image Index; every row names its image file")
            if not get("finding_labels"):
                raise ValueError(
                    f"{path}, line {line_no}: empty Finding Labels for {get('image_index')}; write "
                    f"'No Finding' for an image without findings"
                )
            try:
                labels = labels_from_string(get("finding_labels"))
            except ValueError as exc:
                raise ValueError(f"{path}, line {line_no}: {exc}") from None
            pid_text = get("patient_id")
            try:
                patient_id = _parse_patient_id(pid_text)
            except (ValueError, OverflowError):
                raise ValueError(
                    f"{path}, line {line_no}: Patient ID {pid_text!r} is not a whole number (expected e.g. 12 or 00012)"
                ) from None
            if get("image_index") in first_line:
                raise ValueError(
                    f"{path}, line {line_no}: image {get('image_index')} is listed twice (first on "
                    f"line {first_line[get('image_index')]}); remove the duplicate row"
                )
            first_line[get("image_index")] = line_no
            records.append(
                dict(
                    image_index=get("image_index"),
                    labels=labels,
                    finding_labels=get("finding_labels"),
                    patient_id=patient_id,
                    follow_up=num("follow_up", int),
                    age=_parse_age(get("age")),
                    sex=get("sex") or None,
                    view=get("view") or None,
                    width=num("width"),
                    height=num("height"),
                    spacing_x=num("spacing_x"),
                    spacing_y=num("spacing_y"),
                )
            )
    return records


def _index_pngs(root: Path) -> dict[str, Path]:
    """File name → path for every image in the NIH folder layouts under ``root``."""
    found: dict[str, Path] = {}
    candidates = sorted(root.glob("images_*/images")) + sorted(root.glob("images_*")) + [root / "images", root]
    for folder in candidates:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.suffix.lower() in _IMAGE_EXTENSIONS and entry.name not in found and entry.is_file():
                found[entry.name] = entry
    return found


def _read_list(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; expected one image file name per line") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _check_official_lists(root: Path, records: list[dict]) -> None:
    """The official ``train_val_list.txt`` and ``test_list.txt`` must not share a patient (or an image)."""
    lists = {name: root / name for name in ("train_val_list.txt", "test_list.txt")}
    if not all(path.is_file() for path in lists.values()):
        return
    train_val, test = (set(_read_list(path)) for path in lists.values())
    both = sorted(train_val & test)
    if both:
        raise ValueError(
            f"{root}: image {both[0]} is in both train_val_list.txt and test_list.txt "
            f"({len(both)} image(s) in both); the official split must not share an image"
        )
    patient = {r["image_index"]: r["patient_id"] for r in records}
    train_patients = {patient[i] for i in train_val if i in patient}
    leaked = sorted({patient[i] for i in test if i in patient} & train_patients)
    if leaked:
        example = next(i for i in sorted(test) if patient.get(i) == leaked[0])
        raise ValueError(
            f"{root}: patient {leaked[0]} has images in both train_val_list.txt and test_list.txt "
            f"(e.g. {example} in test_list.txt; {len(leaked)} patient(s) in both): the split leaks "
            f"patients; every image of a patient belongs to one list"
        )


class ChestXray14(_ItemsDataset):
    """The NIH ChestX-ray14 layout (the real dataset or the synthetic set written in its layout).

    Args:
        root: folder with ``Data_Entry_2017.csv`` (or ``Data_Entry_2017_v2020.csv``), the image
            folders and the split lists.
        split: ``"train_val"`` / ``"test"`` (the official lists), ``"train"`` / ``"val"`` (the
            train_val list split again by patient: ``val_fraction`` of its images, seeded), or ``"all"``.
        image_size: output side in pixels (None keeps the file's size).
        masks: for the synthetic set: mask names to return as ``item["masks"]``, a (K, H, W) float32
            tensor in {0, 1} (``masks/<image>.npz`` written by ``write_synthetic_cxr``).
        transform: called on each item dict (e.g. a MONAI dictionary transform).
        missing: ``"skip"`` (default: images listed but not on disk are left out, with one warning;
            handy with a partial download) or ``"error"``.
        val_fraction, seed: for the train/val split.

    Items: ``image`` (1, H, W) in [-1, 1], ``labels`` (14,), ``patient_id``, ``image_index``,
    ``follow_up``, ``age``, ``sex``, ``view``.
    """

    SPLITS = ("train", "val", "train_val", "test", "all")

    def __init__(
        self,
        root,
        split: str = "train",
        image_size: int | None = 64,
        *,
        masks: Sequence[str] | None = None,
        transform: Callable | None = None,
        missing: str = "skip",
        val_fraction: float = 0.1,
        seed: int = 0,
    ):
        _check_image_size(image_size)
        self.root = Path(root)
        self.split = _check_split(split, self.SPLITS, "ChestXray14")
        self.image_size = image_size
        self.transform = transform
        self.mask_names = tuple(masks) if masks else ()
        if missing not in ("skip", "error"):
            raise ValueError(f"missing must be 'skip' or 'error', got {missing!r}")
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"ChestX-ray14 folder not found: {self.root}. See data/README.md for where "
                f"to get it, or use DATA_SOURCE='synthetic'."
            )
        csv_path = next(
            (
                self.root / name
                for name in ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
                if (self.root / name).is_file()
            ),
            None,
        )
        if csv_path is None:
            raise FileNotFoundError(
                f"no Data_Entry_2017.csv (or Data_Entry_2017_v2020.csv) in {self.root}: "
                f"this is not the ChestX-ray14 layout"
            )
        records = read_nih_metadata(csv_path)
        if self.split != "all":
            list_name = "test_list.txt" if self.split == "test" else "train_val_list.txt"
            list_path = self.root / list_name
            if not list_path.is_file():
                raise FileNotFoundError(
                    f"split {self.split!r} needs {list_path} (the NIH split list); use split='all' to read every image"
                )
            _check_official_lists(self.root, records)
            wanted = set(_read_list(list_path))
            records = [r for r in records if r["image_index"] in wanted]
            if self.split in ("train", "val"):
                ids = [r["patient_id"] for r in records]
                if len(set(ids)) >= 2 and records:
                    from meddiff_lab.data.splits import patient_split

                    train_idx, val_idx = patient_split(ids, (1.0 - val_fraction, val_fraction), seed)
                    keep = train_idx if self.split == "train" else val_idx
                    records = [records[i] for i in keep]
        files = _index_pngs(self.root)
        present = [r for r in records if r["image_index"] in files]
        absent = len(records) - len(present)
        if absent and missing == "error":
            raise FileNotFoundError(
                f"{absent} image(s) of split {self.split!r} listed in {csv_path.name} are not "
                f"under {self.root} (first: {next(r['image_index'] for r in records if r['image_index'] not in files)})"
            )
        if not present:
            raise FileNotFoundError(
                f"none of the {len(records)} images of split {self.split!r} was found under "
                f"{self.root} (looked in images_*/images/, images/ and the folder itself)"
            )
        if absent:
            warnings.warn(
                f"ChestXray14: {absent} of {len(records)} images of split {self.split!r} are not on disk "
                f"and are left out (partial download?)",
                stacklevel=2,
            )
        self.records = present
        self.csv_path = csv_path
        self._paths = [files[r["image_index"]] for r in present]
        self._labels = np.stack([r["labels"] for r in present]).astype(np.float32)
        self._patient_ids = np.asarray([r["patient_id"] for r in present], dtype=np.int64)

    @property
    def image_indices(self) -> list[str]:
        return [r["image_index"] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        r = self.records[index]
        item = {
            "image": _to_item_image(_load_grey(self._paths[index], self.image_size)),
            "labels": torch.from_numpy(r["labels"].copy()),
            "patient_id": r["patient_id"],
            "image_index": r["image_index"],
            "follow_up": r["follow_up"] if r["follow_up"] is not None else -1,
            "age": r["age"] if r["age"] is not None else -1,
            "sex": r["sex"] or "",
            "view": r["view"] or "",
        }
        if self.mask_names:
            item["masks"] = self._masks(r["image_index"], item["image"].shape[-1])
        return self._finish(item)

    def _masks(self, image_index: str, size: int) -> torch.Tensor:
        from PIL import Image

        from meddiff_lab.data.phantom_files import load_phantom_masks

        masks = load_phantom_masks(self.root, image_index, self.mask_names)
        out = []
        for name in self.mask_names:
            m = masks[name]
            if m.shape != (size, size):
                m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)) >= 128
            out.append(m.astype(np.float32))
        return torch.from_numpy(np.stack(out))

    def __repr__(self) -> str:
        return (
            f"ChestXray14(root={str(self.root)!r}, split={self.split!r}, image_size={self.image_size}, n={len(self)})"
        )


# ------------------------------------------------------------------------------------ MedMNIST
#: MedMNIST chest datasets: labels → CXR_LABELS (ChestMNIST's 14 labels are in NIH order).
MEDMNIST_FLAGS = ("chestmnist", "pneumoniamnist")


class MedMNIST(_ItemsDataset):
    """A MedMNIST ``.npz`` file (ChestMNIST or PneumoniaMNIST, any MedMNIST+ size).

    Args:
        root: folder holding ``{flag}.npz`` (28 px) or ``{flag}_{size}.npz`` (MedMNIST+: 64, 128, 224),
            or the path of an ``.npz`` file itself.
        split: ``"train"``, ``"val"`` or ``"test"`` (MedMNIST's official splits, made by patient).
        image_size: output side (None keeps the file's).
        flag: ``"chestmnist"`` or ``"pneumoniamnist"`` (other 2D MedMNIST flags load too, with
            ``labels`` all zeros and the class in ``item["label"]``).
        size: which MedMNIST+ file to prefer (None: the 28 px file, else whichever exists).

    Items: ``image``, ``labels`` (14,) (ChestMNIST: as stored; PneumoniaMNIST: Pneumonia when label 1),
    ``label`` (the file's own label row as a tensor), ``patient_id`` (-1: MedMNIST has none),
    ``image_index`` (``"{flag}/{split}/{i}"``).
    """

    SPLITS = ("train", "val", "test")

    def __init__(
        self,
        root,
        split: str = "train",
        image_size: int | None = 64,
        *,
        flag: str = "chestmnist",
        size: int | None = None,
        transform: Callable | None = None,
    ):
        _check_image_size(image_size)
        self.split = _check_split(split, self.SPLITS, "MedMNIST")
        self.flag, self.image_size, self.transform = flag, image_size, transform
        self.path = self._find(Path(root), flag, size)
        try:
            with np.load(self.path) as data:
                key_i, key_l = f"{self.split}_images", f"{self.split}_labels"
                if key_i not in data.files or key_l not in data.files:
                    raise ValueError(
                        f"{self.path} has no {key_i!r}/{key_l!r} arrays; it has {data.files} (expected a MedMNIST .npz)"
                    )
                self._images = np.asarray(data[key_i])
                self._raw_labels = np.asarray(data[key_l])
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(f"cannot read {self.path} as a MedMNIST .npz (truncated or damaged?): {exc}") from None
        except ValueError as exc:
            if str(self.path) in str(exc):
                raise
            raise ValueError(f"cannot read {self.path} as a MedMNIST .npz: {exc}") from None
        if self._images.ndim == 4:  # RGB datasets: average to grey
            self._images = self._images.mean(-1)
        if self._images.ndim != 3:
            raise ValueError(f"{self.path}: {self.split}_images has shape {self._images.shape}; expected (N, H, W)")
        if len(self._images) != len(self._raw_labels):
            raise ValueError(f"{self.path}: {len(self._images)} images but {len(self._raw_labels)} labels")
        if self._images.dtype.kind not in "uif":
            raise ValueError(f"{self.path}: {self.split}_images holds {self._images.dtype} values; expected numbers")
        if self._images.dtype.kind == "f":
            finite = np.isfinite(self._images)
            if not finite.all():
                bad = np.flatnonzero(~finite.reshape(len(finite), -1).all(1))
                raise ValueError(
                    f"{self.path}: {len(bad)} image(s) of {self.split}_images hold NaN or inf "
                    f"(first: index {bad[0]}); expected finite pixel values"
                )
        raw = self._raw_labels.reshape(len(self._raw_labels), -1)
        self._labels = np.zeros((len(raw), len(CXR_LABELS)), np.float32)
        if flag.startswith("chestmnist") and raw.shape[1] == len(CXR_LABELS):
            self._labels[:] = raw
        elif flag.startswith("pneumoniamnist"):
            self._labels[:, CXR_LABELS.index("Pneumonia")] = raw[:, 0] == 1
        else:
            self.labels_known = False
        self._patient_ids = np.full(len(raw), -1, np.int64)

    @staticmethod
    def _find(root: Path, flag: str, size: int | None) -> Path:
        if root.is_file():
            return root
        names = [f"{flag}_{size}.npz"] if size not in (None, 28) else [f"{flag}.npz", f"{flag}_28.npz"]
        names += [p.name for p in sorted(root.glob(f"{flag}*.npz"))] + [
            p.name for p in sorted((root / "medmnist").glob(f"{flag}*.npz"))
        ]
        for folder in (root, root / "medmnist"):
            for name in names:
                if (folder / name).is_file():
                    return folder / name
        raise FileNotFoundError(
            f"no {flag} .npz under {root} (looked for {names[:2]} in {root} and {root / 'medmnist'}); "
            f"get it with: meddiff-lab data download medmnist --root data/downloads"
        )

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        arr = self._images[index].astype(np.float32)
        arr = arr / 255.0 if self._images.dtype == np.uint8 or arr.max() > 1.0 else arr
        if self.image_size is not None and arr.shape != (self.image_size, self.image_size):
            arr = np.asarray(Image.fromarray(arr, mode="F").resize((self.image_size, self.image_size), Image.BILINEAR))
        item = {
            "image": _to_item_image(np.clip(arr, 0.0, 1.0)),
            "labels": torch.from_numpy(self._labels[index].copy()),
            "label": torch.as_tensor(self._raw_labels[index].reshape(-1).astype(np.int64)),
            "patient_id": -1,
            "image_index": f"{self.flag}/{self.split}/{index}",
        }
        return self._finish(item)

    def __repr__(self) -> str:
        return f"MedMNIST(path={str(self.path)!r}, split={self.split!r}, image_size={self.image_size}, n={len(self)})"


# -------------------------------------------------------------------------- class folders
def _kermany_patient(name: str) -> int:
    """Patient number in Kermany file names (``person1_bacteria_1.jpeg``, ``IM-0115-0001.jpeg``,
    ``NORMAL2-IM-1427-0001.jpeg``); -1 when there is none. Normal (IM) and pneumonia (person) IDs
    are kept apart by an offset."""
    m = re.match(r"person(\d+)_", name)
    if m:
        return int(m.group(1))
    m = re.search(r"IM-(\d+)-", name)
    if m:
        return 1_000_000 + int(m.group(1))
    return -1


class ImageFolderDataset(_ItemsDataset):
    """A folder per class (``root/<class>/*.png|jpeg``), with optional split subfolders.

    Reads the Kermany pneumonia layout ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` (its
    nested ``chest_xray/chest_xray`` copy and ``__MACOSX`` folders are skipped) and any
    ``root/<class>/`` tree. Without split subfolders, ``split`` takes a seeded share of the
    files (by patient when the file names carry one).

    Args:
        root: the tree's top folder.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        image_size: output side (None keeps each file's size; then items differ in size).
        classes: class folder names to use (default: every folder, sorted).

    Items: ``image``, ``label`` (class index), ``class_name``, ``labels`` (14,) (a class named like
    a finding, e.g. ``PNEUMONIA``, sets that finding), ``patient_id``, ``image_index`` (file name).
    """

    SPLITS = ("train", "val", "test", "all")

    def __init__(
        self,
        root,
        split: str = "train",
        image_size: int | None = 64,
        *,
        classes: Sequence[str] | None = None,
        transform: Callable | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
    ):
        _check_image_size(image_size)
        self.split = _check_split(split, self.SPLITS, "ImageFolderDataset")
        self.image_size, self.transform = image_size, transform
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        if not self._class_dirs(root) and (root / "chest_xray").is_dir():
            root = root / "chest_xray"
        self.root = root
        split_dirs = {
            d.name.lower(): d for d in root.iterdir() if d.is_dir() and d.name.lower() in ("train", "val", "test")
        }
        if split_dirs and self.split != "all":
            if self.split not in split_dirs:
                raise FileNotFoundError(f"{root} has split folders {sorted(split_dirs)} but no {self.split!r}")
            bases = [split_dirs[self.split]]
        elif split_dirs:
            bases = [split_dirs[k] for k in sorted(split_dirs)]
        else:
            bases = [root]
        found_classes = sorted({d.name for b in bases for d in self._class_dirs(b)})
        self.classes = list(classes) if classes is not None else found_classes
        unknown = set(self.classes) - set(found_classes)
        if unknown or not self.classes:
            raise FileNotFoundError(
                f"class folder(s) {sorted(unknown) or '(none)'} not found in {bases[0]}; it has {found_classes}"
            )
        files = []
        for b in bases:
            for label, name in enumerate(self.classes):
                folder = b / name
                if folder.is_dir():
                    files += [
                        (p, label)
                        for p in sorted(folder.iterdir())
                        if p.suffix.lower() in _IMAGE_EXTENSIONS and not p.name.startswith(".")
                    ]
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(_IMAGE_EXTENSIONS)}) in the class folders of {bases[0]}")
        if not split_dirs and self.split != "all":
            pids = [_kermany_patient(p.name) for p, _ in files]
            ids = [pid if pid >= 0 else -(i + 1) for i, pid in enumerate(pids)]  # no ID: each file its own patient
            keep = _split_indices(ids, self.split, val_fraction, test_fraction, seed)
            files = [files[i] for i in keep]
        self._files = files
        finding_of = {name.lower(): name for name in CXR_LABELS}
        self._labels = np.zeros((len(files), len(CXR_LABELS)), np.float32)
        self.labels_known = any(c.lower() in finding_of or c.lower() == "normal" for c in self.classes)
        for i, (_, label) in enumerate(files):
            finding = finding_of.get(self.classes[label].lower())
            if finding:
                self._labels[i, CXR_LABELS.index(finding)] = 1.0
        self._patient_ids = np.asarray([_kermany_patient(p.name) for p, _ in files], np.int64)

    @staticmethod
    def _class_dirs(folder: Path) -> list[Path]:
        skip = {"train", "val", "test", "__macosx", "chest_xray"}
        return [
            d
            for d in sorted(folder.iterdir())
            if d.is_dir() and d.name.lower() not in skip and not d.name.startswith(".")
        ]

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> dict:
        path, label = self._files[index]
        item = {
            "image": _to_item_image(_load_grey(path, self.image_size)),
            "labels": torch.from_numpy(self._labels[index].copy()),
            "label": label,
            "class_name": self.classes[label],
            "patient_id": int(self._patient_ids[index]),
            "image_index": path.name,
        }
        return self._finish(item)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, classes={self.classes}, "
            f"image_size={self.image_size}, n={len(self)})"
        )


class MedNIST(ImageFolderDataset):
    """MONAI's MedNIST (``MedNIST/<class>/*.jpeg``, 64×64), by default only the chest radiographs (``CXR``).

    Args:
        root: the folder holding ``MedNIST/`` (or ``MedNIST`` itself).
        split: ``"train"`` / ``"val"`` / ``"test"`` (a seeded 70/10/20 split of the files; MedNIST has
            no patient IDs) or ``"all"``.
        classes: default ``("CXR",)``; MedNIST also has AbdomenCT, BreastMRI, ChestCT, Hand, HeadCT.

    ``labels`` are all zeros and ``labels_known`` is False: MedNIST has no finding labels.
    """

    def __init__(
        self,
        root,
        split: str = "train",
        image_size: int | None = 64,
        *,
        classes: Sequence[str] | None = ("CXR",),
        transform: Callable | None = None,
        seed: int = 0,
    ):
        root = Path(root)
        if (root / "MedNIST").is_dir():
            root = root / "MedNIST"
        if not root.is_dir():
            raise FileNotFoundError(
                f"MedNIST not found at {root}; get it with: meddiff-lab data download mednist --root data/downloads"
            )
        super().__init__(root, split, image_size, classes=classes, transform=transform, seed=seed)
        self.labels_known = False


# --------------------------------------------------------------------------------- synthetic
class SyntheticCXR(_ItemsDataset):
    """Phantoms generated in memory (when no synthetic set is on disk), split by patient.

    Args:
        n: images generated in total (before splitting).
        split: ``"train"`` / ``"val"`` / ``"test"`` (70/10/20 % of images, whole patients) or ``"all"``.
        image_size, seed: as :func:`meddiff_lab.data.generate_phantoms`.
        masks: mask names to return as ``item["masks"]`` (K, H, W) float32.

    ``self.batch`` keeps the :class:`PhantomBatch` of this split (images, masks, ground truth).
    """

    SPLITS = ("train", "val", "test", "all")

    def __init__(
        self,
        n: int = 512,
        split: str = "train",
        image_size: int = 64,
        seed: int = 0,
        *,
        masks: Sequence[str] | None = None,
        transform: Callable | None = None,
    ):
        from meddiff_lab.data.phantom import generate_phantoms

        self.split = _check_split(split, self.SPLITS, "SyntheticCXR")
        self.image_size, self.transform = image_size, transform
        self.mask_names = tuple(masks) if masks else ()
        full = generate_phantoms(n, image_size, seed, masks=self.mask_names)
        keep = _split_indices(full.patient_ids, self.split, 0.1, 0.2, seed) if self.split != "all" else np.arange(n)
        self.batch = full.subset(keep)
        self._labels = self.batch.labels
        self._patient_ids = self.batch.patient_ids

    def __len__(self) -> int:
        return len(self.batch)

    def __getitem__(self, index: int) -> dict:
        meta = self.batch.metadata[index]
        item = {
            "image": _to_item_image(self.batch.images[index]),
            "labels": torch.from_numpy(self.batch.labels[index].copy()),
            "patient_id": meta["patient_id"],
            "image_index": meta["image_index"],
            "follow_up": meta["follow_up"],
            "age": meta["age"],
            "sex": meta["sex"],
            "view": meta["view"],
        }
        if self.mask_names:
            item["masks"] = torch.from_numpy(
                np.stack([self.batch.masks[k][index] for k in self.mask_names]).astype(np.float32)
            )
        return self._finish(item)

    def __repr__(self) -> str:
        return f"SyntheticCXR(split={self.split!r}, image_size={self.image_size}, n={len(self)})"


# ------------------------------------------------------------------------------- one interface
_ROOT_CANDIDATES = {
    "synthetic": ("synthetic_cxr", "."),
    "chestxray14": (".", "chestxray14", "ChestX-ray14", "ChestXray14", "chestx-ray14", "NIH", "nih"),
    "medmnist": (".", "medmnist"),
    "mednist": ("MedNIST", "mednist/MedNIST", "."),
    "folder": ("chest_xray", "."),
    "dicom": ("dicom", "DICOM", "."),
}


def _looks_like(source: str, folder: Path) -> bool:
    if not folder.is_dir():
        return False
    if source in ("synthetic", "chestxray14"):
        return (folder / "Data_Entry_2017.csv").is_file() or (folder / "Data_Entry_2017_v2020.csv").is_file()
    if source == "medmnist":
        return any(folder.glob("*mnist*.npz"))
    if source == "mednist":
        return (folder / "CXR").is_dir() or (folder / "MedNIST" / "CXR").is_dir()
    if source == "folder":
        return _has_class_images(folder)
    if source == "dicom":  # a folder of DICOM radiographs: meddiff_lab/data/dicom_source.py
        from meddiff_lab.data.dicom_source import looks_like_dicom_folder

        return looks_like_dicom_folder(folder)
    return False


def _has_class_images(folder: Path, depth: int = 0) -> bool:
    """True when a subfolder (or, for split folders, a sub-subfolder) holds image files."""
    for d in sorted(folder.iterdir()):
        if not d.is_dir() or d.name.startswith((".", "__")):
            continue
        if d.name.lower() in ("train", "val", "test") and depth == 0:
            if _has_class_images(d, 1):
                return True
            continue
        if any(p.suffix.lower() in _IMAGE_EXTENSIONS for p in list(d.iterdir())[:50]):
            return True
    return False


def _source_name(source: str) -> str:
    key = str(source).lower().replace("-", "").replace("_", "")
    aliases = {
        "synthetic": "synthetic",
        "phantom": "synthetic",
        "chestxray14": "chestxray14",
        "nih": "chestxray14",
        "chestmnist": "medmnist",
        "pneumoniamnist": "medmnist",
        "medmnist": "medmnist",
        "mednist": "mednist",
        "folder": "folder",
        "imagefolder": "folder",
        "kermany": "folder",
        "dicom": "dicom",
    }
    if key not in aliases:
        raise ValueError(f"unknown DATA_SOURCE {source!r}; expected one of {', '.join(DATA_SOURCES)}")
    return aliases[key]


def find_source_root(source: str, root) -> Path | None:
    """Where under ``root`` (or ``root/downloads``, the git-ignored place for real data) the data of
    ``source`` lies; None when nothing is there."""
    name = _source_name(source)
    root = Path(root)
    for base in (root, root / "downloads"):
        for sub in _ROOT_CANDIDATES[name]:
            folder = base / sub if sub != "." else base
            if _looks_like(name, folder):
                return folder
    return None


def load_dataset(
    source: str = "synthetic", root="../data", split: str = "train", image_size: int | None = 64, **kwargs
) -> Dataset:
    """The dataset a notebook asks for with ``DATA_SOURCE`` and ``DATA_DIR``.

    Args:
        source: ``"synthetic"``, ``"chestxray14"``, ``"medmnist"``, ``"mednist"`` or ``"folder"``.
        root: the data folder (the notebooks' ``DATA_DIR``); the source is looked for in it, in its usual
            subfolder (``synthetic_cxr/``, ``chestxray14/``, ``medmnist/``, ``MedNIST/``, ``chest_xray/``) and
            in the same subfolders of ``root/downloads/`` (git-ignored: where real data belongs).
        split: ``"train"``, ``"val"``, ``"test"`` (and ``"all"``; ``"train_val"`` for ChestX-ray14).
        image_size: output side in pixels.
        **kwargs: passed to the reader (``flag=`` for MedMNIST, ``classes=`` for folders, ``masks=``,
            ``transform=``); for ``"synthetic"`` with no set on disk, ``n=`` (default 512) and ``seed=``.

    When ``"synthetic"`` finds no written set, phantoms are generated in memory (and it says so).

    Raises:
        ValueError: for an unknown source.
        FileNotFoundError: when a real dataset is not under ``root``, saying where it was looked for
            and where to get it.
    """
    name = _source_name(source)
    folder = find_source_root(name, root)
    if name == "synthetic":
        n = kwargs.pop("n", 512)
        seed = kwargs.pop("seed", 0)
        if folder is not None:
            return ChestXray14(folder, split, image_size, **kwargs)
        print(f"No synthetic set on disk under {root} (run `make data`); generating {n} phantoms in memory.")
        return SyntheticCXR(n, split, image_size or 64, seed, **kwargs)
    if folder is None:
        looked = ", ".join(str(Path(root) / d / s) for d in (".", "downloads") for s in _ROOT_CANDIDATES[name])
        raise FileNotFoundError(
            f"DATA_SOURCE={source!r}: no data found (looked in {looked}). data/README.md says "
            f"where to get it; DATA_SOURCE='synthetic' always works."
        )
    if name == "chestxray14":
        return ChestXray14(folder, split, image_size, **kwargs)
    if name == "medmnist":
        return MedMNIST(folder, split, image_size, **kwargs)
    if name == "mednist":
        return MedNIST(folder, split, image_size, **kwargs)
    if name == "dicom":
        from meddiff_lab.data.dicom_source import DicomRadiographs

        return DicomRadiographs(folder, split, image_size, **kwargs)
    return ImageFolderDataset(folder, split, image_size, **kwargs)


def load_images(
    source: str = "synthetic", root="../data", n: int = 64, image_size: int = 64, split: str = "train", seed: int = 0
) -> torch.Tensor:
    """Up to ``n`` images of a data source as one batch: (N, 1, image_size, image_size) float32 in [-1, 1].

    What the notebooks' ``DATA_SOURCE`` / ``DATA_DIR`` parameters load.

    Args:
        source: ``"synthetic"``: ``n`` phantoms generated in memory (``generate_phantoms(n, image_size,
            seed)``; ``root`` and ``split`` are not used, so the images do not depend on what is on disk);
            any other source of :func:`load_dataset`: its first ``n`` items of ``split`` under ``root``.
        seed: the phantoms' seed (synthetic only).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_dataset`; ValueError when the split is empty.
    """
    if _source_name(source) == "synthetic":
        return to_model_batch(generate_phantoms(n, image_size, seed, masks=()).images)
    dataset = load_dataset(source, root, split, image_size)
    count = min(len(dataset), n)
    if count == 0:
        raise ValueError(f"DATA_SOURCE={source!r}: the {split!r} split under {root} holds no images")
    return torch.stack([torch.as_tensor(dataset[i]["image"], dtype=torch.float32) for i in range(count)])


class DataCheckError(ValueError):
    """``check_source`` found bad items; ``report`` is the description, ``problems`` one line per bad item."""

    def __init__(self, message: str, report: str, problems: list[str]):
        super().__init__(message)
        self.report, self.problems = report, problems


def check_source(source: str, root, progress: bool = False) -> str:
    """Open every split of a source under ``root``, read every item, and describe it (the ``data check`` command).

    Returns a multi-line report. Raises like :func:`load_dataset` when the data is not there, and
    :class:`DataCheckError` (a ``ValueError``, carrying the report and one line per problem) when a
    split cannot be opened (e.g. official lists that share a patient) or an item cannot be read or
    holds NaN/inf.
    """
    from tqdm.auto import tqdm

    name = _source_name(source)
    splits = {"chestxray14": ("train_val", "test"), "synthetic": ("train_val", "test")}.get(
        name, ("train", "val", "test")
    )
    lines, problems = [], []
    folder = find_source_root(name, root)
    lines.append(f"{name}: found at {folder}" if folder else f"{name}: nothing under {root}")
    for split in splits:
        try:
            ds = load_dataset(name, root, split, 64)
        except FileNotFoundError:
            raise
        except ValueError as exc:
            problems.append(f"{split}: {exc}")
            lines.append(f"  {split:9s} cannot be opened: {exc}")
            continue
        first, bad = None, 0
        for i in tqdm(range(len(ds)), desc=f"reading {split}", unit="img", disable=not progress, leave=False):
            try:
                item = ds[i]
            except (ValueError, OSError) as exc:
                problems.append(f"{split} item {i}: {exc}")
                bad += 1
                continue
            if not bool(torch.isfinite(item["image"]).all()):
                problems.append(f"{split} item {i} ({item.get('image_index')}): image holds NaN or inf")
                bad += 1
                continue
            first = first or item
        counts = ds.label_counts() if getattr(ds, "labels_known", True) else {}
        top = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:5])
        n_pat = len(set(ds.patient_ids.tolist()) - {-1})
        described = (
            f"first item {first['image_index']} image {tuple(first['image'].shape)} in "
            f"[{first['image'].min():.2f}, {first['image'].max():.2f}]"
            if first is not None
            else "no readable item"
        )
        lines.append(
            f"  {split:9s} {len(ds):6d} images, {n_pat} patients, {len(ds) - bad} read; {described}"
            + (f"; {top}" if top else "")
        )
    report = "\n".join(lines)
    if problems:
        raise DataCheckError(
            f"{len(problems)} problem(s) in {name} under {root}; first: {problems[0]}", report, problems
        )
    return report
