"""The files of a written phantom set: the NIH ChestX-ray14 layout, and masks packed into bits.

:func:`meddiff_lab.data.phantom.write_synthetic_cxr` generates phantoms and hands them to
:func:`write_nih_layout`, which writes them the way the NIH release is laid out, so the same reader
(:class:`meddiff_lab.data.ChestXray14`) reads real and synthetic sets::

    Data_Entry_2017.csv                 the NIH metadata columns and label strings
    images_001/images/00000001_000.png  8-bit grey PNGs (images_002/ ... every images_per_folder)
    train_val_list.txt, test_list.txt   split by patient (no patient in both)
    masks/00000001_000.npz              every mask of that image (read with load_phantom_masks)
    phantom_truth.csv                   ground truth: cardiothoracic ratio, scanner, sex, age, view
    README.txt                          what this is and how it was generated

Masks are stored packed: up to 32 (H, W) bool masks of one image become one uint32 bit field (bit i
= the i-th name), compressed; :func:`pack_masks` and :func:`unpack_masks` convert.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from meddiff_lab.data.cxr_labels import labels_to_string
from meddiff_lab.data.splits import patient_split

if TYPE_CHECKING:
    from meddiff_lab.data.phantom import PhantomBatch

__all__ = ["NIH_2017_HEADER", "write_nih_layout", "load_phantom_masks", "pack_masks", "unpack_masks"]

#: The header of the NIH ``Data_Entry_2017.csv`` (with its bracketed names, whose commas split them
#: into two columns each, and the trailing comma that gives an unnamed 12th column).
NIH_2017_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)

#: the text that marks a folder as a synthetic set written here (and so safe to overwrite)
_STAMP = "meddiff-lab phantom"


def write_nih_layout(
    root,
    batches: Iterable[PhantomBatch],
    *,
    n: int,
    image_size: int,
    seed: int,
    pixel_spacing_mm: float,
    phantom_version: str,
    test_fraction: float = 0.2,
    images_per_folder: int = 10000,
    with_masks: bool = True,
    progress: bool = True,
) -> Path:
    """Write phantom batches in the NIH ChestX-ray14 layout under ``root`` (see the module docstring).

    Args:
        root: output folder (created; an earlier synthetic set there is replaced, anything else is
            refused).
        batches: :class:`~meddiff_lab.data.phantom.PhantomBatch` chunks, ``n`` images in all, each
            image (image_size, image_size) float32 in [0, 1] (written as round(255 × value)).
        n, image_size, seed: what was generated (for the progress bar, the CSV and README.txt);
            ``seed`` also seeds the patient split.
        pixel_spacing_mm: written in the ``OriginalImagePixelSpacing`` columns.
        phantom_version: written in README.txt, so a later run can tell a set is stale.
        test_fraction: share of images (whole patients) in ``test_list.txt``.
        images_per_folder: images per ``images_NNN`` folder (the NIH release uses 10,000).
        with_masks: write ``masks/*.npz`` (the batches must then carry their masks).
        progress: show a progress bar and the time taken.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    _prepare_output_folder(root)
    if with_masks:
        (root / "masks").mkdir(exist_ok=True)
    start_time = time.perf_counter()
    rows, truth, patient_ids, names = [], [], [], []
    bar = tqdm(total=n, desc="writing phantoms", unit="img", disable=not progress)
    written = 0
    for batch in batches:
        pixels = np.round(batch.images * 255.0).astype(np.uint8)
        for i, meta in enumerate(batch.metadata):
            folder = root / f"images_{written // images_per_folder + 1:03d}" / "images"
            folder.mkdir(parents=True, exist_ok=True)
            name = meta["image_index"]
            Image.fromarray(pixels[i], mode="L").save(folder / name, optimize=False, compress_level=6)
            if with_masks:
                _save_masks(root / "masks" / name.replace(".png", ".npz"), {k: v[i] for k, v in batch.masks.items()})
            rows.append(
                [
                    name,
                    labels_to_string(batch.labels[i]),
                    meta["follow_up"],
                    meta["patient_id"],
                    meta["age"],
                    meta["sex"],
                    meta["view"],
                    image_size,
                    image_size,
                    f"{pixel_spacing_mm:.3f}",
                    f"{pixel_spacing_mm:.3f}",
                    "",
                ]
            )
            truth.append(
                [name, f"{batch.cardiothoracic_ratio[i]:.4f}", meta["scanner"], meta["sex"], meta["age"], meta["view"]]
            )
            patient_ids.append(meta["patient_id"])
            names.append(name)
            written += 1
        bar.update(len(batch))
    bar.close()
    with open(root / "Data_Entry_2017.csv", "w", newline="") as fh:
        fh.write(NIH_2017_HEADER + "\n")
        csv.writer(fh, lineterminator="\n").writerows(rows)
    with open(root / "phantom_truth.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(
            ["Image Index", "Cardiothoracic Ratio", "Scanner", "Patient Sex", "Patient Age", "View Position"]
        )
        writer.writerows(truth)
    train_idx, test_idx = patient_split(patient_ids, (1.0 - test_fraction, test_fraction), seed)
    (root / "train_val_list.txt").write_text("".join(names[i] + "\n" for i in sorted(train_idx)))
    (root / "test_list.txt").write_text("".join(names[i] + "\n" for i in sorted(test_idx)))
    (root / "README.txt").write_text(
        f"Synthetic chest radiographs ({_STAMP}) in the NIH ChestX-ray14 layout.\n"
        f"n={n} image_size={image_size} seed={seed} phantom_version={phantom_version}.\n"
        "Not patient data; labels are true by construction.\n"
        "masks/<image>.npz holds the organ and finding masks; phantom_truth.csv the cardiothoracic ratio.\n"
        "Regenerate with: meddiff-lab data write --out <this folder>\n"
    )
    if progress:
        print(f"wrote {n} images ({image_size} px) to {root} in {time.perf_counter() - start_time:.1f} s")
    return root


def _prepare_output_folder(root: Path) -> None:
    """Create ``root``; clear an earlier synthetic set there; refuse to write over anything else."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"output {root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / "README.txt"
    ours = stamp.is_file() and _STAMP in stamp.read_text(errors="ignore")
    if ours:
        for sub in list(root.glob("images_*")) + [root / "masks"]:
            if sub.is_dir():
                shutil.rmtree(sub)
    elif any(root.iterdir()):
        raise ValueError(
            f"{root} is not empty and does not hold a synthetic set written here; refusing to write "
            f"over it (a real ChestX-ray14 folder?). Choose an empty or new folder."
        )


# --------------------------------------------------------------------------------- packed masks
def pack_masks(masks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Up to 32 (H, W) bool masks → ((H, W) uint32 bit field with bit i = ``names[i]``, (k,) str names)."""
    names = list(masks)
    if len(names) > 32:
        raise ValueError(f"at most 32 masks fit in a uint32 bit field, got {len(names)}: {names}")
    bits = np.zeros(next(iter(masks.values())).shape, np.uint32)
    for i, name in enumerate(names):
        bits |= masks[name].astype(np.uint32) << np.uint32(i)
    return bits, np.asarray(names)


def unpack_masks(
    bits: np.ndarray, stored_names: Sequence[str], names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """The inverse of :func:`pack_masks`: (H, W) bool masks ``names`` (default: all) from the bit field."""
    stored = [str(v) for v in stored_names]
    keys = stored if names is None else list(names)
    return {k: ((bits >> np.uint32(stored.index(k))) & np.uint32(1)).astype(bool) for k in keys}


def _save_masks(path: Path, masks: dict[str, np.ndarray]) -> None:
    """Store up to 32 (H, W) bool masks packed into one compressed ``.npz`` (arrays ``bits``, ``names``)."""
    bits, names = pack_masks(masks)
    np.savez_compressed(path, bits=bits, names=names)


def load_phantom_masks(root, image_index: str, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Read the masks written by :func:`~meddiff_lab.data.phantom.write_synthetic_cxr` for one image.

    Args:
        root: the folder of the written set.
        image_index: the image's file name (``"00000001_000.png"``).
        names: the masks to read (default: every stored mask).

    Returns:
        dict of (H, W) bool masks.

    Raises:
        FileNotFoundError: naming the mask file when it is missing.
        KeyError: naming the masks asked for that the file does not hold.
    """
    path = Path(root) / "masks" / Path(image_index).with_suffix(".npz").name
    if not path.is_file():
        raise FileNotFoundError(
            f"no masks for {image_index!r}: expected {path} (written by write_synthetic_cxr with with_masks=True)"
        )
    with np.load(path) as data:
        stored = [str(v) for v in data["names"]]
        bits = data["bits"]
    missing = [k for k in (names or ()) if k not in stored]
    if missing:
        raise KeyError(f"mask(s) {missing} not in {path}; it has {stored}")
    return unpack_masks(bits, stored, names)
