"""Reading scanner files into :class:`Volume`: NIfTI (nibabel), DICOM files and series (pydicom), PNG.

A :class:`Volume` keeps the numbers *and* where they are in the patient:

* ``array``: float32, in the modality's units (Hounsfield units for CT);
* ``spacing``: the voxel size in mm, one value per array axis, in array-axis order;
* ``affine``: a 4 x 4 matrix mapping an array index ``(i, j, k, 1)`` to millimetres in the
  patient's RAS+ frame (see below);
* ``meta``: where it came from and what the header said.

Coordinate frames, because they are the classic trap: DICOM describes positions in LPS+ (x grows
toward the patient's Left, y toward Posterior, z toward Superior); NIfTI and MONAI use RAS+
(x toward Right, y toward Anterior, z toward Superior). The two differ by negating x and y:
``affine_ras = diag(-1, -1, 1, 1) @ affine_lps``. Every ``Volume.affine`` here is RAS+.

Array layouts:

* ``load_nifti``: the array as stored (nibabel's order), the file's own affine.
* ``load_dicom``: one slice is ``(rows, columns)``; the affine's first two columns step along rows and
  columns and its third column is the slice normal times the slice thickness (so it is the affine of
  ``array[..., None]``). A multi-frame file is ``(frames, rows, columns)``.
* ``load_radiograph``: a projection radiograph (CR, DX, MG...) as a PACS shows it, ``(rows, columns)`` in
  [0, 1]: modality LUT, then the header's VOI LUT or window, then MONOCHROME1 inverted (below).
* ``load_dicom_series``: ``(slices, rows, columns)``, slices ordered by position along the slice
  normal -- never by file name or InstanceNumber, which exporters get wrong.
* ``load_png``: ``(rows, columns)``, raw stored values (0..255 or 0..65535), no patient frame.

A file that is not what it claims to be (a PNG named ``.dcm``, a truncated ``.nii.gz``, a text file)
raises :class:`MedicalFileError`, whose message names the file, what was expected and what the file
looks like instead.

Radiographs, the other classic trap. DICOM's PhotometricInterpretation says which way round the grey
scale runs: MONOCHROME2 (higher value = brighter, CT and most DX) or **MONOCHROME1** (higher value =
*darker*: many CR and DX archives, VinDr-CXR). A viewer that ignores it shows white lungs and a black
spine. ``load_dicom`` and ``load_radiograph`` therefore invert MONOCHROME1 images so that higher is
always brighter, and say so in ``meta["monochrome1_inverted"]``. A MONOCHROME1 value ``v`` becomes
``lo + hi - v``, where ``[lo, hi]`` is the range the modality LUT can output (``meta["value_range"]``), so
values stay in range and the header's window maps to ``(lo + hi - center, width)``. Projection radiographs
carry their pixel size in ImagerPixelSpacing (at the detector) rather than PixelSpacing (at the
patient); dividing by EstimatedRadiographicMagnificationFactor gives the size at the patient. Where the
spacing came from is ``meta["spacing_source"]``.

Compressed files (JPEG baseline and lossless, JPEG-LS, JPEG 2000, RLE) decode through pydicom's pixel
data plugins: pylibjpeg with pylibjpeg-libjpeg (JPEG, JPEG-LS) and pylibjpeg-openjpeg (JPEG 2000),
dependencies of this package; RLE needs none.
"""

from __future__ import annotations

import gzip
import os
import uuid
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .intensity import hu_from_dicom

__all__ = [
    "Volume",
    "MedicalFileError",
    "load_nifti",
    "save_nifti",
    "load_dicom",
    "load_dicom_series",
    "dicom_series_to_nifti",
    "write_dicom_series",
    "load_png",
    "describe_file",
    "LPS_TO_RAS",
    "load_radiograph",
    "display_pixels",
    "pixel_spacing",
    "RADIOGRAPH_MODALITIES",
    "write_dicom_radiograph",
]

#: projection radiography modalities (ImagerPixelSpacing, MONOCHROME1 common)
RADIOGRAPH_MODALITIES = ("CR", "DX", "MG", "RF", "XA", "IO", "PX", "RG")

#: multiply an LPS+ affine by this (on the left) to get the RAS+ affine, and back
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima", ""}


class MedicalFileError(ValueError):
    """A file is not what its name or the caller says it is (the message names the file)."""


# --------------------------------------------------------------------------------------------- Volume
@dataclass
class Volume:
    """An image with its geometry.

    Attributes:
        array: float32, 2-D ``(rows, columns)`` or 3-D (see the module doc for each reader's layout);
            CT in Hounsfield units.
        spacing: voxel size in mm, one entry per array axis, in array-axis order.
        affine: (4, 4) float64, array index ``(i, j, k, 1)`` -> RAS+ millimetres.
        meta: where the volume came from (``path``, ``format``, ``modality``, ``units``, ...).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array, dtype=np.float32)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.array.ndim not in (2, 3, 4):
            raise ValueError(f"a Volume holds a 2-D, 3-D or 4-D array, got shape {self.array.shape}")
        if len(self.spacing) != self.array.ndim:
            raise ValueError(
                f"spacing needs one value per array axis: array {self.array.shape}, spacing {self.spacing}"
            )
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive millimetres, got {self.spacing}")
        if self.affine.shape != (4, 4) or not np.all(np.isfinite(self.affine)):
            raise ValueError(f"affine must be a finite 4 x 4 matrix, got shape {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def orientation(self) -> str:
        """Axis codes of the array axes in RAS+ terms, e.g. ``"LAS"``: axis 0 grows toward the patient's Left.

        ``"unknown"`` when the file had no patient frame (a PNG, a DICOM without position/orientation).
        """
        import nibabel as nib

        if self.meta.get("orientation_known") is False:
            return "unknown"

        codes = nib.orientations.aff2axcodes(self.affine)
        return "".join(c if c is not None else "?" for c in codes[: max(self.ndim, 3) if self.ndim != 2 else 2])

    def world_coordinates(self, index: Sequence[float]) -> np.ndarray:
        """RAS+ position in mm of an array index (2 or 3 values; a missing third index is 0)."""
        idx = np.zeros(4)
        idx[: len(index)] = index
        idx[3] = 1.0
        return (self.affine @ idx)[:3]

    def reoriented(self, axcodes: str = "RAS") -> Volume:
        """The same image with its 3-D array axes permuted/flipped to ``axcodes`` (e.g. ``"RAS"``, ``"SPL"``).

        No resampling: only axis order and direction change, so the voxel values are the same numbers;
        the affine is updated so every voxel keeps its position in the patient.
        """
        from nibabel import orientations as ornt

        if self.ndim != 3:
            raise ValueError(f"reoriented() needs a 3-D volume, got shape {self.shape}")
        if len(axcodes) != 3 or set(axcodes.upper()) - set("RLAPSI"):
            raise ValueError(f"axcodes must be three letters from R/L, A/P, S/I such as 'RAS', got {axcodes!r}")
        current = ornt.io_orientation(self.affine)
        transform = ornt.ornt_transform(current, ornt.axcodes2ornt(tuple(axcodes.upper())))
        array = ornt.apply_orientation(self.array, transform)
        affine = self.affine @ ornt.inv_ornt_aff(transform, self.shape)
        spacing = [0.0] * 3
        for old_axis, (new_axis, _) in enumerate(transform):
            spacing[int(new_axis)] = self.spacing[old_axis]
        meta = dict(self.meta, reoriented_from=self.orientation)
        return Volume(np.ascontiguousarray(array), tuple(spacing), affine, meta)

    def to_nifti_image(self):
        """A ``nibabel.Nifti1Image`` (2-D arrays become ``(rows, columns, 1)`` so the affine stays valid)."""
        import nibabel as nib

        array = self.array[..., None] if self.ndim == 2 else self.array
        image = nib.Nifti1Image(array, self.affine)
        image.header.set_xyzt_units("mm", "sec")
        image.set_qform(self.affine, code=1)
        image.set_sform(self.affine, code=1)
        return image

    def to_metatensor(self):
        """A channel-first MONAI ``MetaTensor`` ``(1, *shape)`` carrying the affine (for ``Spacing``,
        ``Orientation``)."""
        import torch
        from monai.data import MetaTensor

        return MetaTensor(
            torch.from_numpy(self.array.copy())[None],
            affine=torch.from_numpy(self.affine.copy()),
            meta={"filename_or_obj": str(self.meta.get("path", ""))},
        )

    @classmethod
    def from_metatensor(cls, tensor, meta: dict[str, Any] | None = None) -> Volume:
        """Back from a channel-first ``MetaTensor`` ``(1, ...)``; spacing from the affine's column norms."""
        array = np.asarray(tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else tensor)
        if array.shape[0] != 1:
            raise ValueError(f"expected a channel-first tensor with one channel, got shape {array.shape}")
        affine = np.asarray(
            tensor.affine.detach().cpu().numpy() if hasattr(tensor.affine, "detach") else tensor.affine,
            dtype=np.float64,
        )
        array = array[0]
        if affine.shape == (3, 3):  # MONAI's 2-D affine
            full = np.eye(4)
            full[:2, :2], full[:2, 3] = affine[:2, :2], affine[:2, 2]
            affine = full
        spacing = tuple(np.linalg.norm(affine[:3, : array.ndim], axis=0))
        return cls(array, spacing, affine, dict(meta or {}))

    def __repr__(self) -> str:
        src = self.meta.get("path") or self.meta.get("format", "")
        lo, hi = (float(self.array.min()), float(self.array.max())) if self.array.size else (0.0, 0.0)
        units = self.meta.get("units", "")
        return (
            f"Volume(shape={self.shape}, spacing={tuple(round(s, 4) for s in self.spacing)} mm, "
            f"orientation={self.orientation!r}, range=[{lo:.6g}, {hi:.6g}]{' ' + units if units else ''}, "
            f"source={str(src)!r})"
        )


# ------------------------------------------------------------------------------------ file sniffing
def describe_file(path: str | os.PathLike) -> str:
    """A short description of what a file *is*, from its first bytes (for error messages).

    Examples: ``"a PNG image"``, ``"a DICOM file"``, ``"gzip-compressed data (a NIfTI-1 volume inside)"``,
    ``"a text file starting with 'hello'"``, ``"an empty file (0 bytes)"``.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if size == 0:
        return "an empty file (0 bytes)"
    kind = _describe_bytes(head)
    if kind == "gzip-compressed data":
        try:
            with gzip.open(p, "rb") as fh:
                inner = fh.read(1024)
                while fh.read(1 << 24):  # decompress to the end: a truncated stream fails here
                    pass
            inner_kind = _describe_bytes(inner)
            kind += f" ({inner_kind} inside)" if inner_kind != "unrecognised binary data" else ""
        except (OSError, EOFError, zlib.error):
            inner_kind = _describe_bytes(inner) if "inner" in locals() else "unrecognised binary data"
            kind += f" ({inner_kind} inside)" if inner_kind != "unrecognised binary data" else ""
            kind += " that does not decompress to the end (truncated or damaged)"
    elif kind == "a PNG image" and not _png_complete(p):
        kind = "a truncated PNG image (no IEND chunk: the file ends early)"
    return kind


def _png_complete(path: Path) -> bool:
    """Walk the PNG chunks (length, type, data, CRC) and check the file reaches its IEND chunk."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(8)
        while True:
            header = fh.read(8)
            if len(header) < 8:
                return False
            length, chunk_type = int.from_bytes(header[:4], "big"), header[4:]
            if chunk_type == b"IEND":
                return True
            next_chunk = fh.tell() + length + 4
            if next_chunk > size:
                return False
            fh.seek(next_chunk)


def _describe_bytes(head: bytes) -> str:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "a DICOM file"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "a NIfTI-1 volume"
    if len(head) >= 8 and head[4:8] == b"n+2\x00":
        return "a NIfTI-2 volume"
    for magic, name in (
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive"),
        (b"GIF8", "a GIF image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"\x93NUMPY", "a NumPy .npy array"),
    ):
        if head.startswith(magic):
            return name
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text[:512]):
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"a text file starting with {first!r}"
    return "unrecognised binary data"


def _existing_file(path: str | os.PathLike, expected: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a path to {expected}, got {type(path).__name__}")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file (expected {expected})")
    if p.is_dir():
        raise MedicalFileError(
            f"{p} is a folder, expected {expected}"
            + (" (for a folder of DICOM slices use load_dicom_series)" if "DICOM" in expected else "")
        )
    return p


# ------------------------------------------------------------------------------------------- NIfTI
def load_nifti(path: str | os.PathLike, allow_nonfinite: bool = False) -> Volume:
    """Read a NIfTI volume (``.nii`` or ``.nii.gz``) with nibabel.

    The array is as stored, scaled by the header's ``scl_slope`` / ``scl_inter``, float32; ``spacing``
    is the header's voxel size (``pixdim``) for each array axis; ``affine`` is the file's (sform, else
    qform) affine, RAS+.

    Raises:
        FileNotFoundError: no such file.
        MedicalFileError: the file is not a readable NIfTI volume (wrong format, truncated, not gzip),
            its header is invalid (a NaN affine), or voxels are NaN/inf (unless ``allow_nonfinite``).
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    p = _existing_file(path, "a NIfTI volume (.nii or .nii.gz)")
    try:
        image = nib.load(p)
        array = np.asarray(image.get_fdata(dtype=np.float32))
    except (ImageFileError, EOFError, OSError, zlib.error, ValueError) as exc:
        raise MedicalFileError(
            f"{p}: cannot be read as a NIfTI volume ({_first_line(exc)}). Expected a NIfTI-1/2 file "
            f"(.nii, or .nii.gz compressed); this file looks like {describe_file(p)}."
        ) from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        warnings.warn(f"{p} is a {type(image).__name__}, not NIfTI; reading it anyway", stacklevel=2)
    zooms = image.header.get_zooms()
    spatial_units, time_units = image.header.get_xyzt_units()
    spacing = tuple(float(z) for z in zooms[: array.ndim])
    if spatial_units in ("meter", "micron"):
        factor = 1000.0 if spatial_units == "meter" else 0.001
        spacing = tuple(s * factor for s in spacing[:3]) + spacing[3:]
    meta = {
        "path": str(p),
        "format": type(image).__name__.replace("Image", ""),
        "header_units": spatial_units or "unknown",
        "qform_code": int(image.header["qform_code"]),
        "sform_code": int(image.header["sform_code"]),
        "dtype_on_disk": str(image.get_data_dtype()),
        "description": image.header["descrip"].item().decode("latin-1", "replace").strip("\x00 "),
    }
    if array.ndim == 4:
        meta["time_step"] = float(zooms[3]) if len(zooms) > 3 else None
    if array.ndim > 4:
        raise MedicalFileError(f"{p}: a {array.ndim}-D NIfTI image; expected a 2-D, 3-D or 4-D volume")
    nonfinite = int(array.size - np.count_nonzero(np.isfinite(array)))
    if nonfinite and not allow_nonfinite:
        raise MedicalFileError(
            f"{p}: {nonfinite} of {array.size} voxels are NaN or inf; expected finite "
            f"intensities (pass allow_nonfinite=True to read them as they are)"
        )
    try:
        return Volume(array, spacing, image.affine, meta)
    except ValueError as exc:  # a NaN affine, a zero voxel size: the file's header is wrong
        raise MedicalFileError(f"{p}: invalid NIfTI header: {exc}") from None


def save_nifti(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a :class:`Volume` as NIfTI-1 (``.nii`` or ``.nii.gz``) with its affine as both qform and sform."""
    import nibabel as nib

    p = Path(path)
    if not (p.name.endswith(".nii") or p.name.endswith(".nii.gz")):
        raise ValueError(f"{p}: a NIfTI file name must end in .nii or .nii.gz")
    p.parent.mkdir(parents=True, exist_ok=True)
    nib.save(volume.to_nifti_image(), p)
    return p


# ------------------------------------------------------------------------------------------- DICOM
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_dicom(path: Path, stop_before_pixels: bool = False):
    """pydicom.dcmread with messages that name the file and say what it looks like."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    kind = describe_file(path)
    if kind != "a DICOM file" and not kind.startswith("unrecognised"):
        raise MedicalFileError(
            f"{path} is not a DICOM file: it looks like {kind}. Expected a DICOM "
            f"Part 10 file ('DICM' at byte 128)" + _hint_for(kind)
        )
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        pass  # maybe a raw data set without the 128-byte preamble: accept only if it parses as one
    except Exception as exc:  # truncated or damaged header
        raise MedicalFileError(
            f"{path}: the DICOM header could not be read ({_first_line(exc)}); the file looks truncated or damaged"
        ) from None
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
        plausible = len(ds) > 0 and ("SOPClassUID" in ds or "PixelData" in ds) and "Rows" in ds
    except Exception:
        plausible = False
    if not plausible:
        raise MedicalFileError(
            f"{path} is not a DICOM file: it looks like {kind}. Expected a DICOM Part 10 file ('DICM' at byte 128)"
        )
    return ds


def _hint_for(kind: str) -> str:
    if kind == "a PNG image":
        return "; for PNG files use load_png"
    if "NIfTI" in kind:
        return "; for NIfTI files use load_nifti"
    return ""


def _pixels(ds, path: Path) -> np.ndarray:
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        size = path.stat().st_size
        raise MedicalFileError(
            f"{path}: a DICOM file without pixel data ({size} bytes); expected an image. "
            f"It may be truncated, or a non-image object (report, DICOMDIR, presentation state)"
        )
    problem = compressed_pixel_problem(ds)
    if problem:
        raise MedicalFileError(f"{path}: {problem}; the file looks truncated or damaged")
    try:
        return hu_from_dicom(ds)
    except Exception as exc:
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        raise MedicalFileError(
            f"{path}: the DICOM pixel data could not be decoded ({_first_line(exc)}); the file "
            f"may be truncated, or compressed with a codec that is not installed (transfer "
            f"syntax {getattr(tsyntax, 'name', tsyntax) or 'unknown'}{_codec_hint(tsyntax)})"
        ) from None


def compressed_pixel_problem(ds) -> str | None:
    """Why encapsulated (compressed) pixel data is incomplete, or None.

    The JPEG family (baseline, lossless, JPEG-LS) and JPEG 2000 end each frame with a marker (EOI /
    EOC, bytes FF D9). A decoder given a cut stream often returns an image anyway, with the missing rows
    filled in, so a frame without its end marker is reported here instead of decoded.
    """
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in ds or tsyntax is None or not tsyntax.is_encapsulated:
        return None
    from pydicom.encaps import generate_frames

    frames_expected = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        frames = list(generate_frames(ds.PixelData, number_of_frames=frames_expected))
    except Exception as exc:
        return f"the compressed pixel data cannot be split into frames ({_first_line(exc)})"
    if len(frames) < frames_expected:
        return f"the compressed pixel data holds {len(frames)} of {frames_expected} frames"
    if str(tsyntax).startswith("1.2.840.10008.1.2.4."):  # the JPEG family and JPEG 2000
        for k, frame in enumerate(frames):
            if b"\xff\xd9" not in frame.rstrip(b"\x00")[-3:]:  # some encoders pad with one FF byte
                return (
                    f"frame {k} of the compressed pixel data ({len(frame)} bytes) ends without its end "
                    f"marker (FF D9): the stream is cut short"
                )
    return None


def _codec_hint(tsyntax) -> str:
    """Which plugin a compressed transfer syntax needs, when pydicom has none available for it."""
    if tsyntax is None:
        return ""
    try:
        from pydicom.pixels import get_decoder

        decoder = get_decoder(tsyntax)
    except Exception:
        return ": pydicom has no decoder for it"
    if decoder.is_available:
        return ""
    missing = (
        "; ".join(
            f"{name}: {', '.join(deps)}"
            for name, deps in decoder.missing_dependencies.items()
            if isinstance(deps, (list, tuple))
        )
        or decoder.missing_dependencies
    )
    return f"; install one of the plugins that decode it ({missing})"


def _orientation_vectors(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Row direction X, column direction Y and slice normal X x Y (unit vectors, LPS+), or None."""
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    v = np.asarray([float(x) for x in iop], dtype=np.float64)
    x_dir, y_dir = v[:3], v[3:]
    if not (np.isclose(np.linalg.norm(x_dir), 1, atol=1e-3) and np.isclose(np.linalg.norm(y_dir), 1, atol=1e-3)):
        return None
    x_dir, y_dir = x_dir / np.linalg.norm(x_dir), y_dir / np.linalg.norm(y_dir)
    normal = np.cross(x_dir, y_dir)
    return x_dir, y_dir, normal / np.linalg.norm(normal)


def _two_positive(ds, keyword: str) -> tuple[float, float] | None:
    value = ds.get(keyword)
    try:
        if value is not None and len(value) == 2 and all(np.isfinite(float(v)) and float(v) > 0 for v in value):
            return float(value[0]), float(value[1])
    except (TypeError, ValueError):
        pass
    return None


def pixel_spacing(ds) -> tuple[tuple[float, float], str]:
    """(row spacing, column spacing) in mm and where it came from, for a pydicom ``Dataset``.

    In order: ``PixelSpacing`` (in the patient; skipped when absent or zero, as in "0.000\\0.000"),
    ``ImagerPixelSpacing`` (at the detector of a projection radiograph) divided by
    ``EstimatedRadiographicMagnificationFactor`` when the header has one (an estimate of the size in the
    patient's plane), ``NominalScannedPixelSpacing`` (digitised film); else ``(1.0, 1.0)`` and ``"unknown"``.
    """
    spacing = _two_positive(ds, "PixelSpacing")
    if spacing is not None:
        return spacing, "PixelSpacing"
    spacing = _two_positive(ds, "ImagerPixelSpacing")
    if spacing is not None:
        try:
            magnification = float(ds.get("EstimatedRadiographicMagnificationFactor", 0) or 0)
        except (TypeError, ValueError):
            magnification = 0.0
        if np.isfinite(magnification) and magnification > 0:
            return (
                (spacing[0] / magnification, spacing[1] / magnification),
                f"ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor ({magnification:g})",
            )
        return spacing, "ImagerPixelSpacing (at the detector)"
    spacing = _two_positive(ds, "NominalScannedPixelSpacing")
    if spacing is not None:
        return spacing, "NominalScannedPixelSpacing"
    return (1.0, 1.0), "unknown"


def _pixel_spacing(ds) -> tuple[tuple[float, float], bool]:
    spacing, source = pixel_spacing(ds)
    return spacing, source != "unknown"


def _modality_range(ds) -> tuple[float, float]:
    """The range of values the modality LUT (or rescale) can output: pydicom's convention for windowing."""
    lut = ds.get("ModalityLUTSequence")
    if lut:
        return 0.0, float(2 ** int(lut[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    lo, hi = lo * slope + intercept, hi * slope + intercept
    return (lo, hi) if lo <= hi else (hi, lo)


def _header_window(ds, index: int = 0) -> tuple[float, float] | None:
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        wc, ww = ds["WindowCenter"], ds["WindowWidth"]
        center = float(wc.value[index] if wc.VM > 1 else wc.value)
        width = float(ww.value[index] if ww.VM > 1 else ww.value)
    except (TypeError, ValueError, IndexError):
        return None
    return (center, width) if np.isfinite(center) and np.isfinite(width) and width > 0 else None


def display_pixels(ds, modality_values: np.ndarray | None = None, voi="header", index: int = 0) -> np.ndarray:
    """What a PACS shows: modality LUT, then the VOI LUT or window, then MONOCHROME1 inverted; in [0, 1].

    (A MONOCHROME2 image whose PresentationLUTShape is INVERSE is inverted too; ``meta["display_inverted"]``
    in :func:`load_radiograph` says whether this image was.)

    Args:
        ds: a pydicom ``Dataset`` with pixel data (greyscale).
        modality_values: the pixel data after the modality LUT (e.g. ``load_dicom(..., invert_monochrome1=False)
            .array``), to skip decoding it again; ``None`` decodes ``ds``.
        voi: ``"header"`` -- the header's VOI LUT Sequence if it has one, else its WindowCenter/WindowWidth
            (with its VOILUTFunction: LINEAR, LINEAR_EXACT or SIGMOID), both through pydicom's
            ``apply_voi_lut``; else the image's min-max. ``"minmax"`` ignores the header. ``(center, width)``
            uses that window (DICOM's LINEAR function).
        index: which of several header windows / VOI LUTs (radiographs often carry a few).

    Returns:
        float32 array of the pixel data's shape in [0, 1], 1 = white on screen. The VOI output is
        normalised by its own range: a window's is the modality range (pydicom's convention), a VOI
        LUT's is ``[0, 2**bits - 1]`` from its LUTDescriptor.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if modality_values is None:
        modality_values = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    values = np.asarray(modality_values, dtype=np.float64)
    lo, hi = _modality_range(ds)
    header_lut = ds.get("VOILUTSequence")
    if isinstance(voi, str) and voi == "header" and header_lut:
        out = _apply_voi_lut_sequence(values, header_lut[index])
    elif isinstance(voi, str) and voi == "header" and _header_window(ds, index) is not None:
        out = np.asarray(apply_voi_lut(values, ds, index=index, prefer_lut=False), dtype=np.float64)
        out = (out - lo) / max(hi - lo, 1e-12)
    elif isinstance(voi, str) and voi in ("header", "minmax"):
        vmin, vmax = float(values.min()), float(values.max())
        out = (values - vmin) / (vmax - vmin) if vmax > vmin else np.zeros_like(values)
    elif isinstance(voi, (tuple, list)) and len(voi) == 2:
        from .intensity import window

        out = window(values, float(voi[0]), float(voi[1]), mode="linear")
    else:
        raise ValueError(f"voi must be 'header', 'minmax' or (center, width), got {voi!r}")
    out = np.clip(out, 0.0, 1.0)
    if _display_inverted(ds):
        out = 1.0 - out
    return out.astype(np.float32)


def _display_inverted(ds) -> bool:
    """MONOCHROME1 is shown inverted; so is MONOCHROME2 whose PresentationLUTShape is INVERSE (for
    MONOCHROME1 the standard's INVERSE shape *is* that inversion, not a second one)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    return photometric == "MONOCHROME1" or (photometric == "MONOCHROME2" and shape == "INVERSE")


def _apply_voi_lut_sequence(values: np.ndarray, item) -> np.ndarray:
    """A VOI LUT Sequence item applied (PS3.3 C.11.2.1.1), output scaled to [0, 1] by its bit depth.

    Values below the first mapped value take the first entry, above the last the last entry. (Written
    here rather than calling pydicom's ``apply_voi_lut``, whose index array takes the LUT's output type:
    with an 8-bit LUT, indices past 255 wrap around -- pydicom 3.0.)
    """
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):
        data = np.frombuffer(bytes(data), dtype="<u2")
    table = np.asarray(data, dtype=np.float64).ravel()[:entries]
    index = np.clip(np.rint(values).astype(np.int64) - first, 0, len(table) - 1)
    return table[index] / float(2**bits - 1)


def _voi_source(ds, voi, index: int = 0) -> str:
    if isinstance(voi, (tuple, list)):
        return f"window {voi[0]:g}/{voi[1]:g} (given)"
    if voi == "header" and ds.get("VOILUTSequence"):
        return "VOI LUT Sequence from the header"
    window = _header_window(ds, index) if voi == "header" else None
    if window is not None:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
        return f"window {window[0]:g}/{window[1]:g} from the header ({function})"
    return "min-max of the image" + (" (no window in the header)" if voi == "header" else "")


def _affine_lps(step0: np.ndarray, step1: np.ndarray, step2: np.ndarray, origin: np.ndarray) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = step0, step1, step2, origin
    return affine


def _dicom_meta(ds, path: Path) -> dict[str, Any]:
    modality = str(ds.get("Modality", ""))
    has_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds
    meta = {
        "path": str(path),
        "format": "DICOM",
        "modality": modality,
        "units": "HU" if modality == "CT" and has_rescale else str(ds.get("RescaleType", "") or "stored value"),
        "rescale_slope": float(ds.get("RescaleSlope", 1) or 1),
        "rescale_intercept": float(ds.get("RescaleIntercept", 0) or 0),
        "photometric_interpretation": str(ds.get("PhotometricInterpretation", "")),
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
        "series_description": str(ds.get("SeriesDescription", "")),
        "sop_class": str(getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID", ""))),
    }
    window = _header_window(ds)
    if window is not None:
        meta["window"] = window
    spacing, source = pixel_spacing(ds)
    meta["spacing_source"] = source
    meta["value_range"] = _modality_range(ds)
    return meta


def load_dicom(path: str | os.PathLike, *, invert_monochrome1: bool = True) -> Volume:
    """Read one DICOM file: pixel values in the modality's units (HU for CT via RescaleSlope/Intercept).

    Returns a :class:`Volume`: ``(rows, columns)`` for one slice (``(frames, rows, columns)`` for a
    multi-frame file), ``spacing`` from :func:`pixel_spacing` (``PixelSpacing``, else
    ``ImagerPixelSpacing`` for radiographs; ``meta["spacing_source"]`` says which), ``affine`` from
    ``ImagePositionPatient`` / ``ImageOrientationPatient`` converted to RAS+, and ``meta`` with the
    modality, units, the header's own window and the pydicom ``dataset``.

    A MONOCHROME1 image (higher value = darker) is inverted so that higher is brighter, as for every other
    image: ``v -> lo + hi - v`` over the modality range ``meta["value_range"]``; ``meta["window"]`` is
    mirrored the same way, ``meta["monochrome1_inverted"]`` is True and ``meta["header_window"]`` keeps the
    header's own numbers. ``invert_monochrome1=False`` keeps the stored orientation.

    Raises:
        FileNotFoundError: no such file.
        MedicalFileError: not DICOM, truncated, no pixel data, or pixel data that cannot be decoded.
    """
    p = _existing_file(path, "a DICOM file")
    ds = _read_dicom(p)
    array = _pixels(ds, p)
    monochrome1 = str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"
    (row_spacing, col_spacing), spacing_known = _pixel_spacing(ds)
    thickness = float(ds.get("SpacingBetweenSlices", 0) or ds.get("SliceThickness", 0) or 1.0)
    vectors = _orientation_vectors(ds)
    if vectors is None:
        x_dir, y_dir, normal = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])
    else:
        x_dir, y_dir, normal = vectors
    ipp = ds.get("ImagePositionPatient")
    origin = np.asarray([float(v) for v in ipp], dtype=np.float64) if ipp is not None and len(ipp) == 3 else np.zeros(3)
    meta = _dicom_meta(ds, p)
    meta.update(
        spacing_known=spacing_known,
        orientation_known=vectors is not None and ipp is not None,
        slice_thickness=float(ds.get("SliceThickness", 0) or 0) or None,
        dataset=ds,
        monochrome1_inverted=bool(monochrome1 and invert_monochrome1),
    )
    if monochrome1 and invert_monochrome1:
        lo, hi = meta["value_range"]
        array = (lo + hi) - array
        meta["units"] = f"{meta['units']}, inverted (MONOCHROME1: higher is now brighter)"
        if "window" in meta:
            meta["header_window"] = meta["window"]
            meta["window"] = (lo + hi - meta["window"][0], meta["window"][1])
    if array.ndim == 2:
        affine = LPS_TO_RAS @ _affine_lps(y_dir * row_spacing, x_dir * col_spacing, normal * thickness, origin)
        return Volume(array, (row_spacing, col_spacing), affine, meta)
    if array.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        affine = LPS_TO_RAS @ _affine_lps(normal * thickness, y_dir * row_spacing, x_dir * col_spacing, origin)
        return Volume(array, (thickness, row_spacing, col_spacing), affine, meta)
    raise MedicalFileError(
        f"{p}: pixel data of shape {array.shape} (colour or multi-sample); expected a greyscale image"
    )


def load_radiograph(path: str | os.PathLike, voi="header", index: int = 0) -> Volume:
    """Read a projection radiograph (CR, DX, MG...) the way a PACS first shows it, in [0, 1].

    The modality LUT, then the header's VOI LUT Sequence or window (``voi="header"``; the image's
    min-max when the header has neither), then MONOCHROME1 inverted -- see :func:`display_pixels` for
    ``voi`` and ``index``. Spacing from :func:`pixel_spacing`. A radiograph is a projection: the affine
    is a plain scaling (no patient frame), as for a PNG.

    Returns:
        A :class:`Volume` ``(rows, columns)`` float32 in [0, 1] (1 = white), ``meta`` as
        :func:`load_dicom`'s plus ``display`` (True), ``voi_source`` (what set the contrast) and
        ``photometric_interpretation`` (as stored).

    Raises:
        FileNotFoundError, MedicalFileError: as :func:`load_dicom`; also for colour images.
    """
    volume = load_dicom(path, invert_monochrome1=False)
    ds = volume.meta["dataset"]
    array = display_pixels(ds, volume.array, voi=voi, index=index)
    meta = dict(volume.meta)
    meta.update(
        display=True,
        units="display grey level in [0, 1]",
        voi_source=_voi_source(ds, voi, index),
        monochrome1_inverted=meta["photometric_interpretation"].strip() == "MONOCHROME1",
        display_inverted=_display_inverted(ds),
        orientation_known=False,
    )
    if meta["modality"] and meta["modality"] not in RADIOGRAPH_MODALITIES:
        meta["note"] = f"modality {meta['modality']} is not a projection radiograph"
    row_spacing, col_spacing = volume.spacing[-2:]
    if array.ndim == 2:
        return Volume(array, (row_spacing, col_spacing), np.diag([row_spacing, col_spacing, 1.0, 1.0]), meta)
    return Volume(array, volume.spacing, volume.affine, meta)


def _iter_files(folder: Path, recursive: bool) -> Iterable[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in pattern if f.is_file() and not f.name.startswith("."))


def load_dicom_series(
    folder: str | os.PathLike,
    series_uid: str | None = None,
    *,
    recursive: bool = False,
    spacing_tolerance: float = 0.01,
    on_uneven: str = "warn",
) -> Volume:
    """Read a folder of DICOM slices into one volume ``(slices, rows, columns)``, sorted by position.

    Slices are ordered by ``ImagePositionPatient`` projected on the slice normal
    (``ImageOrientationPatient`` row x column direction) -- never by file name or ``InstanceNumber``.
    The slice spacing is measured from those positions (``SliceThickness`` is the thickness of the slab
    a slice integrates, which can differ from the distance between slices). Each slice gets its own
    RescaleSlope/Intercept.

    Args:
        folder: the folder holding the series' files.
        series_uid: which series to read when the folder holds several (otherwise an error lists them).
        recursive: also look in sub-folders.
        spacing_tolerance: relative deviation of a gap from the median gap that counts as uneven.
        on_uneven: ``"warn"`` (default; ``meta["uneven_spacing"]`` is set) or ``"raise"``.

    Returns:
        A :class:`Volume` with ``spacing = (slice spacing, row spacing, column spacing)`` in mm, the RAS+
        affine, and ``meta`` holding ``files`` (in position order), ``slice_positions`` (mm along the
        normal), ``instance_numbers``, ``slice_gaps``, ``uneven_spacing``, ``skipped_files``.

    Raises:
        FileNotFoundError: no such folder.
        MedicalFileError: a file that claims to be DICOM is not; no DICOM images; several series and no
            ``series_uid``; slices that disagree (orientation, size, pixel spacing); two slices at one position;
            uneven spacing with ``on_uneven="raise"``.
    """
    if on_uneven not in ("warn", "raise"):
        raise ValueError(f"on_uneven must be 'warn' or 'raise', got {on_uneven!r}")
    root = Path(folder).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder (expected a folder of DICOM slices)")
    if not root.is_dir():
        raise MedicalFileError(f"{root} is a file, expected a folder of DICOM slices (for one file use load_dicom)")
    slices, skipped = [], []
    for f in _iter_files(root, recursive):
        if f.name.upper() == "DICOMDIR":
            skipped.append(f.name)
            continue
        try:
            ds = _read_dicom(f, stop_before_pixels=True)
        except MedicalFileError:
            if f.suffix.lower() in _DICOM_SUFFIXES or _looks_like_uid_name(f.name):
                raise  # it claims to be DICOM: say so rather than silently dropping a slice
            skipped.append(f.name)
            continue
        if "Rows" not in ds:  # a DICOM object without an image (report, presentation state, DICOMDIR...)
            skipped.append(f.name)
            continue
        slices.append((f, ds))
    if not slices:
        raise MedicalFileError(
            f"{root}: no DICOM image files found" + (f" (skipped: {', '.join(skipped[:5])})" if skipped else "")
        )

    by_series: dict[str, list] = {}
    for f, ds in slices:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
    if series_uid is not None:
        if series_uid not in by_series:
            raise MedicalFileError(
                f"{root}: no series with SeriesInstanceUID {series_uid!r}; found {sorted(by_series)}"
            )
        slices = by_series[series_uid]
    elif len(by_series) > 1:
        listing = "; ".join(
            f"{uid} ({len(items)} files, {str(items[0][1].get('SeriesDescription', '') or 'no description')!r})"
            for uid, items in by_series.items()
        )
        raise MedicalFileError(
            f"{root} holds {len(by_series)} series (mixed series): {listing}. Pass series_uid=... to choose one"
        )
    return _assemble_series(root, slices, skipped, spacing_tolerance, on_uneven)


def _looks_like_uid_name(name: str) -> bool:
    """File names such as ``1.2.840.113619.2.55.3.1234`` (DICOM UIDs) have a numeric 'suffix'."""
    return all(part.isdigit() for part in name.split(".")) and name.count(".") >= 2


def _assemble_series(root: Path, slices: list, skipped: list[str], tolerance: float, on_uneven: str) -> Volume:
    first_file, first = slices[0]
    vectors = _orientation_vectors(first)
    if vectors is None:
        raise MedicalFileError(f"{first_file}: no usable ImageOrientationPatient; a series needs it to order slices")
    x_dir, y_dir, normal = vectors
    shape = (int(first.Rows), int(first.Columns))
    (row_spacing, col_spacing), _ = _pixel_spacing(first)
    positions = []
    for f, ds in slices:
        v = _orientation_vectors(ds)
        if v is None or not (np.allclose(v[0], x_dir, atol=1e-4) and np.allclose(v[1], y_dir, atol=1e-4)):
            raise MedicalFileError(
                f"{f}: ImageOrientationPatient {list(ds.get('ImageOrientationPatient', []))} differs from "
                f"{first_file.name}'s {list(first.ImageOrientationPatient)}: mixed orientations in one series "
                f"(a localizer or another series?); expected one orientation"
            )
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise MedicalFileError(
                f"{f}: {int(ds.Rows)} x {int(ds.Columns)} pixels but {first_file.name} has "
                f"{shape[0]} x {shape[1]}; expected one image size per series"
            )
        if not np.allclose(_pixel_spacing(ds)[0], (row_spacing, col_spacing), rtol=1e-4):
            raise MedicalFileError(
                f"{f}: PixelSpacing {_pixel_spacing(ds)[0]} differs from {first_file.name}'s "
                f"{(row_spacing, col_spacing)}; expected one pixel spacing per series"
            )
        ipp = ds.get("ImagePositionPatient")
        if ipp is None or len(ipp) != 3:
            raise MedicalFileError(f"{f}: no ImagePositionPatient; a series needs it to order slices")
        positions.append(np.asarray([float(v) for v in ipp]))
    positions = np.asarray(positions)
    along_normal = positions @ normal
    order = np.argsort(along_normal, kind="stable")
    sorted_pos, along = positions[order], along_normal[order]
    gaps = np.diff(along)
    if len(gaps) and gaps.min() < 1e-3:
        i = int(np.argmin(gaps))
        a, b = slices[order[i]][0].name, slices[order[i + 1]][0].name
        raise MedicalFileError(
            f"{root}: {a} and {b} are at the same position ({along[i]:.3f} mm along the slice "
            f"normal): several acquisitions, echoes or time points are mixed in this series; "
            f"expected one slice per position"
        )
    meta = _dicom_meta(first, first_file)
    meta.pop("path")
    if len(gaps):
        spacing = float(np.median(gaps))
        step = (sorted_pos[-1] - sorted_pos[0]) / (len(sorted_pos) - 1)
        uneven = bool(np.abs(gaps - spacing).max() > tolerance * spacing + 1e-3)
        if uneven:
            i = int(np.argmax(np.abs(gaps - spacing)))
            message = (
                f"{root}: uneven slice spacing: gaps from {gaps.min():.3f} to {gaps.max():.3f} mm (median "
                f"{spacing:.3f} mm); the largest deviation is between {slices[order[i]][0].name} and "
                f"{slices[order[i + 1]][0].name} (a missing slice?). The affine assumes even spacing"
            )
            if on_uneven == "raise":
                raise MedicalFileError(message)
            warnings.warn(message, stacklevel=3)
        tilt = float(np.degrees(np.arccos(np.clip(abs(step @ normal) / np.linalg.norm(step), -1, 1))))
        if tilt > 0.05:
            warnings.warn(
                f"{root}: slices are shifted in-plane as well ({tilt:.2f} degrees off the normal: gantry tilt "
                f"or a sheared acquisition); the affine is sheared accordingly",
                stacklevel=3,
            )
        meta["tilt_degrees"] = tilt
    else:
        spacing = float(first.get("SpacingBetweenSlices", 0) or first.get("SliceThickness", 0) or 1.0)
        step, uneven = normal * spacing, False
    array = np.stack([_pixels(_read_dicom(slices[i][0]), slices[i][0]) for i in order]).astype(np.float32)
    affine = LPS_TO_RAS @ _affine_lps(step, y_dir * row_spacing, x_dir * col_spacing, sorted_pos[0])
    instance_numbers = [int(slices[i][1].get("InstanceNumber", -1) or -1) for i in order]
    meta.update(
        folder=str(root),
        files=[slices[i][0].name for i in order],
        slice_positions=along.tolist(),
        slice_gaps=gaps.tolist(),
        uneven_spacing=uneven,
        instance_numbers=instance_numbers,
        instance_numbers_agree_with_positions=bool(
            np.all(np.diff(instance_numbers) > 0) or np.all(np.diff(instance_numbers) < 0)
        ),
        slice_thickness=float(first.get("SliceThickness", 0) or 0) or None,
        skipped_files=skipped,
        dataset=_read_dicom(slices[order[0]][0], stop_before_pixels=True),
    )
    return Volume(array, (spacing, row_spacing, col_spacing), affine, meta)


def dicom_series_to_nifti(
    folder: str | os.PathLike, out_path: str | os.PathLike, series_uid: str | None = None, reorient: str | None = "RAS"
) -> Volume:
    """Convert a DICOM series to NIfTI with the right affine (DICOM LPS+ -> NIfTI RAS+).

    Args:
        folder: the series folder (see :func:`load_dicom_series`).
        out_path: ``.nii`` or ``.nii.gz`` file to write.
        reorient: permute/flip the axes to these codes first (``"RAS"``, the NIfTI habit); ``None`` keeps
            the DICOM layout ``(slices, rows, columns)``. Either way every voxel keeps its position.

    Returns:
        The :class:`Volume` that was written (``meta["path"]`` is the NIfTI file).
    """
    volume = load_dicom_series(folder, series_uid)
    if reorient:
        volume = volume.reoriented(reorient)
    meta = {k: v for k, v in volume.meta.items() if k != "dataset"}
    out = save_nifti(volume, out_path)
    meta.update(path=str(out), format="NIfTI-1", converted_from=str(folder))
    return Volume(volume.array, volume.spacing, volume.affine, meta)


def _new_dicom_image(sop_class: str, stored: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int = 16):
    """A pydicom ``Dataset`` holding one greyscale frame: the file meta (Explicit VR Little Endian), a
    new SOP Instance UID of ``sop_class``, the Image Pixel module and ``PixelData``.

    Args:
        stored: (rows, columns) stored values, int16 (signed pixel representation) or uint16.
        photometric: ``"MONOCHROME2"`` or ``"MONOCHROME1"``.
        bits_stored: BitsStored (16 bits allocated; HighBit = bits_stored - 1).

    The caller adds the patient, study, series and geometry attributes.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, int(bits_stored), int(bits_stored) - 1
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    return ds


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike,
    *,
    modality: str = "CT",
    shuffle: bool = False,
    seed: int = 0,
    series_description: str = "meddiff-lab synthetic",
    patient_name: str = "Synthetic^Phantom",
    patient_id: str = "SYNTH0001",
) -> list[Path]:
    """Write a 3-D :class:`Volume` ``(slices, rows, columns)`` as a DICOM series, one file per slice.

    Positions and orientation come from the volume's affine (RAS+ -> DICOM LPS+); CT values are stored as
    int16 with RescaleIntercept -1024 (other modalities: a slope/intercept that fits 16 bits).

    Args:
        shuffle: give the files random names and scrambled InstanceNumbers, as some exporters do (a reader
            must sort by position).

    Returns:
        The written paths, in slice order.
    """
    from pydicom.uid import CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage, generate_uid

    if volume.ndim != 3:
        raise ValueError(f"write_dicom_series needs a 3-D volume (slices, rows, columns), got shape {volume.shape}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ volume.affine
    step, row_step, col_step, origin = lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3]
    row_spacing, col_spacing = float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))
    x_dir, y_dir = col_step / col_spacing, row_step / row_spacing
    data = volume.array
    if modality == "CT":
        slope, intercept = 1.0, -1024.0
        stored = np.clip(np.rint(data - intercept), -32768, 32767).astype(np.int16)
    else:
        lo, hi = float(data.min()), float(data.max())
        integral = bool(np.array_equal(data, np.rint(data)))
        if integral and -32768 <= lo and hi <= 32767:
            slope, intercept = 1.0, 0.0
            stored = np.rint(data).astype(np.int16)
        else:
            if integral and lo >= 0 and hi <= 65535:
                slope, intercept = 1.0, 0.0
            else:
                slope, intercept = max(hi - lo, 1e-6) / 65535.0, lo
            stored = np.clip(np.rint((data - intercept) / slope), 0, 65535).astype(np.uint16)
    sop_class = {"CT": CTImageStorage, "MR": MRImageStorage}.get(modality, SecondaryCaptureImageStorage)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(seed)
    numbers = rng.permutation(len(data)) + 1 if shuffle else np.arange(1, len(data) + 1)
    paths = []
    for k in range(len(data)):
        ds = _new_dicom_image(sop_class, stored[k])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality, ds.SeriesDescription, ds.PatientName, ds.PatientID = (
            modality,
            series_description,
            patient_name,
            patient_id,
        )
        ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20000101", 1, int(numbers[k])
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.concatenate([x_dir, y_dir])]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + k * step]
        ds.PixelSpacing = [f"{row_spacing:.6f}", f"{col_spacing:.6f}"]
        ds.SliceThickness = f"{volume.spacing[0]:.4f}"
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        if modality == "CT":
            ds.RescaleType = "HU"
        name = (
            f"IM_{uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | k).hex[:12]}.dcm"
            if shuffle
            else f"slice_{k:04d}.dcm"
        )
        path = out / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_dicom_radiograph(
    image: np.ndarray,
    path: str | os.PathLike,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    modality: str = "DX",
    imager_pixel_spacing=(0.143, 0.143),
    pixel_spacing=None,
    magnification: float | None = None,
    window=None,
    patient_id: str = "SYNTH0001",
    patient_name: str = "Synthetic^Radiograph",
    view: str = "PA",
    transfer_syntax: str | None = None,
) -> Path:
    """Write a greyscale image as a projection radiograph DICOM file, the way CR/DX archives store them.

    Args:
        image: (rows, columns) display grey levels in [0, 1], 1 = white (e.g. a phantom from
            :func:`meddiff_lab.data.generate_phantoms`).
        photometric: ``"MONOCHROME2"`` stores ``round(image * (2**bits_stored - 1))``; ``"MONOCHROME1"`` stores
            the complement (higher value = darker), as many CR archives do. Both show the same picture.
        imager_pixel_spacing, pixel_spacing, magnification: ImagerPixelSpacing, PixelSpacing (``None``:
            absent) and EstimatedRadiographicMagnificationFactor (``None``: absent).
        window: ``(center, width)`` in stored values for WindowCenter/WindowWidth (``None``: absent).
        transfer_syntax: a compressed transfer syntax UID to compress to with pydicom's encoders (RLE
            Lossless, JPEG-LS, JPEG 2000); ``None`` writes Explicit VR Little Endian.

    Returns:
        The written path.
    """
    from pydicom.uid import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation, generate_uid

    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
        raise ValueError(f"image must be (rows, columns) grey levels in [0, 1], got shape {image.shape}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be 'MONOCHROME1' or 'MONOCHROME2', got {photometric!r}")
    top = 2 ** int(bits_stored) - 1
    stored = np.rint((1.0 - image if photometric == "MONOCHROME1" else image) * top).astype(np.uint16)
    sop_class = ComputedRadiographyImageStorage if modality == "CR" else DigitalXRayImageStorageForPresentation
    ds = _new_dicom_image(sop_class, stored, photometric=photometric, bits_stored=int(bits_stored))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = patient_name, patient_id, modality
    ds.ViewPosition, ds.BodyPartExamined, ds.StudyDate = view, "CHEST", "20000101"
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "0", "US"
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = [f"{float(v):.6g}" for v in imager_pixel_spacing]
    if pixel_spacing is not None:
        ds.PixelSpacing = [f"{float(v):.6g}" for v in pixel_spacing]
    if magnification is not None:
        ds.EstimatedRadiographicMagnificationFactor = f"{float(magnification):.6g}"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{float(window[0]):.6g}", f"{float(window[1]):.6g}"
    if transfer_syntax is not None:
        ds.compress(transfer_syntax, stored)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


# --------------------------------------------------------------------------------------------- PNG
def load_png(path: str | os.PathLike, spacing: tuple[float, float] | None = None) -> Volume:
    """Read a greyscale PNG (e.g. a ChestX-ray14 radiograph) with its raw stored values.

    Returns a :class:`Volume` ``(rows, columns)`` float32 holding 0..255 (8-bit) or 0..65535 (16-bit)
    values (``meta["max_value"]`` says which; normalise with
    ``normalize_to_unit(v.array, 0, v.meta["max_value"])``). Colour or palette PNGs are converted to grey
    (a few ChestX-ray14 files are RGBA) and ``meta["converted_from"]`` says so. ``spacing`` is the given
    one, else the PNG's pHYs resolution, else 1 mm with ``meta["spacing_known"] = False``
    (ChestX-ray14 keeps the real spacing in ``Data_Entry_2017.csv``). PNG has no patient frame: the
    affine is a plain scaling.

    Raises:
        FileNotFoundError: no such file.
        MedicalFileError: the file is not a PNG (whatever its name says), or is truncated.
    """
    from PIL import Image

    p = _existing_file(path, "a PNG image")
    kind = describe_file(p)
    if kind.startswith("a truncated PNG"):
        raise MedicalFileError(f"{p}: {kind}; expected a complete PNG file")
    if kind != "a PNG image":
        raise MedicalFileError(
            f"{p} is not a PNG image: it looks like {kind}. Expected a PNG file "
            f"(starting with the bytes \\x89PNG)" + ("; for DICOM files use load_dicom" if "DICOM" in kind else "")
        )
    try:
        with Image.open(p) as image:
            image.load()
            mode = image.mode
            dpi = image.info.get("dpi")
            meta: dict[str, Any] = {"path": str(p), "format": "PNG", "mode": mode, "units": "stored value"}
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float32)
                max_value = 65535.0
            elif mode == "F":
                array, max_value = np.asarray(image, dtype=np.float32), float(np.asarray(image).max())
            else:
                if mode != "L":
                    meta["converted_from"] = mode
                    image = image.convert("L")
                array, max_value = np.asarray(image, dtype=np.float32), 255.0
    except (OSError, SyntaxError, ValueError) as exc:
        raise MedicalFileError(
            f"{p}: the PNG image could not be decoded ({_first_line(exc)}); the file looks truncated or damaged"
        ) from None
    if spacing is not None:
        row_spacing, col_spacing = (float(s) for s in spacing)
        spacing_known = True
    elif dpi and all(d and d > 1 for d in dpi):
        col_spacing, row_spacing = 25.4 / float(dpi[0]), 25.4 / float(dpi[1])
        spacing_known = True
    else:
        row_spacing = col_spacing = 1.0
        spacing_known = False
    meta.update(
        max_value=max_value,
        bit_depth=16 if max_value == 65535.0 else 8,
        spacing_known=spacing_known,
        orientation_known=False,
    )
    affine = np.diag([row_spacing, col_spacing, 1.0, 1.0])
    return Volume(array, (row_spacing, col_spacing), affine, meta)
