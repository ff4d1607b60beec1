r"""What the numbers in a medical image mean, and how they become network inputs.

* CT stores integers; ``RescaleSlope`` and ``RescaleIntercept`` turn them into Hounsfield units,
  :math:`\mathrm{HU} = \text{pixel} \cdot \text{slope} + \text{intercept}` (air -1000, water 0,
  bone several hundred and more): :func:`hu_from_pixels`, :func:`hu_from_dicom`.
* A display (or a network) sees a *window* of that range: centre :math:`c`, width :math:`w`,
  :math:`y = \operatorname{clip}\big((x - (c - w/2)) / w,\ 0,\ 1\big)`: :func:`window`,
  with the usual CT windows in :data:`CT_WINDOWS`.
* MRI intensities have no physical unit and vary between scanners and sequences: normalise each
  sequence on its own, by percentiles (:func:`percentile_normalize`) or to zero mean and unit
  variance inside the body (:func:`zscore_normalize`).
* Diffusion models want [-1, 1]: :func:`normalize_to_unit` then :func:`to_minus_one_one`;
  :func:`to_model_batch` also adds the channel axis and makes a tensor of (N, H, W) images.

Every function accepts a NumPy array or a torch tensor and returns the same kind, float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "CT_WINDOWS",
    "hu_from_pixels",
    "hu_from_dicom",
    "window",
    "normalize_to_unit",
    "to_minus_one_one",
    "from_minus_one_one",
    "to_model_batch",
    "percentile_normalize",
    "zscore_normalize",
]

#: (centre, width) in HU of the windows radiologists use
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "soft tissue": (40.0, 400.0),
    "brain": (40.0, 80.0),
}


def _to_float(array: Any, name: str = "array"):
    """Return (float32 array or tensor, is_torch)."""
    if isinstance(array, torch.Tensor):
        return array.to(torch.float32), True
    try:
        arr = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a NumPy array or torch tensor of numbers, got {type(array).__name__}"
        ) from None
    return arr, False


def hu_from_pixels(pixels, slope: float = 1.0, intercept: float = 0.0):
    """Stored pixel values to Hounsfield units: ``pixels * slope + intercept`` (float32, same shape)."""
    _, is_torch = _to_float(pixels, "pixels")
    if not np.isfinite(slope) or not np.isfinite(intercept) or slope == 0:
        raise ValueError(
            f"RescaleSlope must be finite and non-zero and RescaleIntercept finite, "
            f"got slope={slope!r}, intercept={intercept!r}"
        )
    if is_torch:
        # float64 for the product keeps integer HU exact for any 16-bit input
        return (pixels.to(torch.float64) * float(slope) + float(intercept)).to(torch.float32)
    return (np.asarray(pixels, dtype=np.float64) * float(slope) + float(intercept)).astype(np.float32)


def hu_from_dicom(dataset) -> np.ndarray:
    """The pixel data of a pydicom ``Dataset`` in its modality's units (HU for CT), float32.

    Uses ``RescaleSlope`` / ``RescaleIntercept`` when present (slope 1, intercept 0 otherwise) and the
    Modality LUT Sequence when the file uses one instead (through pydicom's ``apply_modality_lut``).
    """
    if "PixelData" not in dataset:
        raise ValueError("the DICOM dataset has no pixel data (PixelData (7FE0,0010) is missing)")
    pixels = dataset.pixel_array
    if "ModalityLUTSequence" in dataset and "RescaleSlope" not in dataset:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float32)
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    return hu_from_pixels(pixels, slope, intercept)


def window(array, center: float, width: float, mode: str = "linear_exact"):
    r"""Map the window ``[center - width/2, center + width/2]`` to [0, 1], clipping outside it.

    .. math:: y = \operatorname{clip}\Big(\frac{x - (c - w/2)}{w},\ 0,\ 1\Big)

    Args:
        array: values in the image's units (HU for CT), any shape.
        center, width: the window (``width > 0``), e.g. ``CT_WINDOWS["lung"]``.
        mode: ``"linear_exact"`` (the formula above; DICOM's LINEAR_EXACT) or ``"linear"`` (DICOM's
            default LINEAR VOI function for integer data: :math:`c - 0.5` and :math:`w - 1` in place of
            :math:`c` and :math:`w`, so a window of width 1 is a threshold).

    Returns:
        float32 array (or tensor) in [0, 1], same shape.
    """
    if not np.isfinite(center) or not np.isfinite(width) or width <= 0:
        raise ValueError(f"window needs a finite center and a width > 0, got center={center!r}, width={width!r}")
    if mode == "linear":
        if width < 1:
            raise ValueError(f"DICOM's LINEAR window needs width >= 1, got {width!r}")
        center, width = center - 0.5, width - 1.0
        if width == 0:
            arr, is_torch = _to_float(array)
            return (arr > center).to(torch.float32) if is_torch else (arr > center).astype(np.float32)
    elif mode != "linear_exact":
        raise ValueError(f"unknown window mode {mode!r}; expected 'linear_exact' or 'linear'")
    arr, is_torch = _to_float(array)
    low = float(center) - float(width) / 2.0
    scaled = (arr - low) / float(width)
    return scaled.clamp(0.0, 1.0) if is_torch else np.clip(scaled, 0.0, 1.0).astype(np.float32)


def normalize_to_unit(array, vmin: float | None = None, vmax: float | None = None):
    """Linearly map ``[vmin, vmax]`` to [0, 1] and clip (``None``: the array's own min / max).

    A constant array maps to zeros. For 8-bit PNGs pass ``vmin=0, vmax=255``.
    """
    arr, is_torch = _to_float(array)
    lo = float(arr.min()) if vmin is None else float(vmin)
    hi = float(arr.max()) if vmax is None else float(vmax)
    if hi < lo:
        raise ValueError(f"normalize_to_unit needs vmin <= vmax, got vmin={lo}, vmax={hi}")
    if hi == lo:
        return torch.zeros_like(arr) if is_torch else np.zeros_like(arr)
    scaled = (arr - lo) / (hi - lo)
    return scaled.clamp(0.0, 1.0) if is_torch else np.clip(scaled, 0.0, 1.0).astype(np.float32)


def to_minus_one_one(array_in_unit):
    """[0, 1] -> [-1, 1] (``2 x - 1``), the range the diffusion code works in."""
    arr, _ = _to_float(array_in_unit)
    return arr * 2.0 - 1.0


def to_model_batch(images_in_unit) -> torch.Tensor:
    """(N, H, W) images in [0, 1] (e.g. a ``PhantomBatch``'s ``.images``) -> the batch the diffusion code
    takes: an (N, 1, H, W) float32 tensor in [-1, 1] (:func:`to_minus_one_one` plus a channel axis).

    Accepts a NumPy array or a tensor; a NumPy array's memory is shared until the ``2 x - 1``.
    """
    images, is_torch = _to_float(images_in_unit, "images")
    if images.ndim != 3:
        raise ValueError(
            f"images must be (N, H, W) in [0, 1], got shape {tuple(images.shape)}; a single image is images[None]"
        )
    return to_minus_one_one((images if is_torch else torch.from_numpy(images))[:, None])


def from_minus_one_one(array):
    """[-1, 1] -> [0, 1] (``(x + 1) / 2``), clipped; for display and saving."""
    arr, is_torch = _to_float(array)
    out = (arr + 1.0) / 2.0
    return out.clamp(0.0, 1.0) if is_torch else np.clip(out, 0.0, 1.0).astype(np.float32)


def _mask_values(arr, mask, is_torch):
    if mask is None:
        return arr.reshape(-1)
    m = mask.to(torch.bool) if isinstance(mask, torch.Tensor) else np.asarray(mask, dtype=bool)
    if tuple(m.shape) != tuple(arr.shape):
        raise ValueError(f"mask shape {tuple(m.shape)} does not match the image shape {tuple(arr.shape)}")
    if is_torch and not isinstance(m, torch.Tensor):
        m = torch.from_numpy(m)
    values = arr[m]
    if (values.numel() if is_torch else values.size) == 0:
        raise ValueError("the mask selects no voxels: expected a foreground mask with at least one True value")
    return values


def percentile_normalize(array, lower: float = 1.0, upper: float = 99.0, mask=None, clip: bool = True):
    r"""Map the ``lower``-th..``upper``-th percentiles to [0, 1] (MRI; robust to a few very bright voxels).

    .. math:: y = \frac{x - p_{\text{lower}}}{p_{\text{upper}} - p_{\text{lower}}}

    Percentiles are taken over ``mask`` (e.g. the head) when given, else over every voxel. Same
    numbers as MONAI's ``ScaleIntensityRangePercentiles(lower, upper, 0, 1, clip=True)`` without a mask.
    """
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    arr, is_torch = _to_float(array)
    values = _mask_values(arr, mask, is_torch)
    values_np = values.detach().cpu().numpy() if is_torch else values
    p_low, p_high = (float(v) for v in np.percentile(values_np, [lower, upper]))
    if p_high == p_low:
        return torch.zeros_like(arr) if is_torch else np.zeros_like(arr)
    out = (arr - p_low) / (p_high - p_low)
    if clip:
        out = out.clamp(0.0, 1.0) if is_torch else np.clip(out, 0.0, 1.0)
    return out if is_torch else out.astype(np.float32)


def zscore_normalize(array, mask=None, eps: float = 1e-8):
    r"""Zero mean and unit standard deviation over ``mask`` (e.g. ``array > 0``, the head), applied everywhere.

    .. math:: y = \frac{x - \mu_{\text{mask}}}{\sigma_{\text{mask}}}

    Uses the population standard deviation (as MONAI's ``NormalizeIntensity``). Voxels outside the
    mask are transformed too (use ``np.where(mask, y, 0)`` to zero the background, as MONAI's
    ``nonzero=True`` does).
    """
    arr, is_torch = _to_float(array)
    values = _mask_values(arr, mask, is_torch)
    if is_torch:
        mean, std = values.to(torch.float64).mean(), values.to(torch.float64).std(unbiased=False)
        return ((arr.to(torch.float64) - mean) / (std + eps)).to(torch.float32)
    values = values.astype(np.float64)
    mean, std = values.mean(), values.std()
    return ((arr.astype(np.float64) - mean) / (std + eps)).astype(np.float32)
