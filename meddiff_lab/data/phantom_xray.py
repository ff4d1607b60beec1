"""X-ray physics of the phantom: from centimetres of tissue to a processed radiograph.

The anatomy (:mod:`meddiff_lab.data.phantom_anatomy`) and the findings
(:mod:`meddiff_lab.data.phantom_findings`) fill :class:`TissueLayers`: how many centimetres of each
tissue the beam crosses at every detector pixel. This module turns those layers into an image, as
an X-ray system does:

1. **Line integral.** ``L = Σ_tissue μ_tissue · t_tissue`` (:func:`line_integral`), with linear
   attenuation coefficients μ (cm⁻¹) at an effective energy of about 60 keV.
2. **Transmission and detection.** ``I = I₀ · exp(-L)`` photons reach the detector, plus scatter (a
   broad blur of the primary beam), the anode heel effect, quantum noise of Poisson variance
   (``N ~ I + √I·z``) and the detector's blur (:func:`detect_and_process`).
3. **Processing.** ``p = log(I₀ / N)`` is windowed from the lung minimum to the body maximum, passed
   through the scanner's characteristic curve and edge enhancement. Four simulated scanners
   (:data:`SCANNERS`) differ in dose, blur, scatter, curve and enhancement.

Coordinates: ``x`` and ``y`` run from -1 to 1 across the image (``y`` down); one unit is
``CM_PER_UNIT`` = 20 cm, so the field of view is 40 cm at every image size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = [
    "CM_PER_UNIT",
    "MU_SOFT",
    "MU_LUNG",
    "MU_BONE",
    "MU_SPONGY",
    "SCANNERS",
    "pixel_centres",
    "pixel_size_mm",
    "TissueLayers",
    "line_integral",
    "detect_and_process",
]

CM_PER_UNIT = 20.0  # one normalised image unit is 20 cm (the field of view is 40 cm)

# Linear attenuation coefficients (cm^-1) at an effective energy of about 60 keV.
MU_SOFT = 0.20  # soft tissue, blood, fluid
MU_LUNG = 0.05  # aerated lung (about 0.25 g/cm3)
MU_BONE = 0.48  # cortical bone
MU_SPONGY = 0.28  # vertebral bodies (trabecular bone)

#: Four simulated scanners: dose (relative), detector blur (mm), scatter-to-primary ratio,
#: characteristic-curve contrast, curve centre, edge enhancement.
SCANNERS = (
    dict(dose=1.0, blur_mm=1.2, spr=0.12, contrast=2.2, centre=0.46, enhance=0.45),
    dict(dose=0.7, blur_mm=1.8, spr=0.18, contrast=1.6, centre=0.50, enhance=0.15),
    dict(dose=1.4, blur_mm=0.9, spr=0.08, contrast=2.8, centre=0.42, enhance=0.80),
    dict(dose=0.9, blur_mm=1.5, spr=0.15, contrast=1.9, centre=0.54, enhance=0.30),
)

#: The anode heel effect: the beam is weaker on the anode side (the top of a PA chest film) by about
#: this fraction, stronger at the bottom by as much (a smooth gradient, visible in the air).
HEEL = 0.07
#: Where the scanner's window puts direct exposure (air beside the body), as a fraction of the lung-to-
#: body range below the lung minimum. Histogram analysis keeps the direct-exposure peak inside the
#: display range instead of clipping it, so air is dark but never a constant: its quantum noise and
#: the heel gradient stay visible.
AIR_MARGIN = 0.04


def pixel_centres(size: int) -> np.ndarray:
    """(size,) float32 normalised coordinates of the pixel centres, in (-1, 1)."""
    return (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0


def pixel_size_mm(size: int) -> float:
    """Side of one pixel in mm for an image of ``size`` pixels (the field of view is 40 cm)."""
    return 2.0 * CM_PER_UNIT * 10.0 / size


def _per_image(values: np.ndarray) -> np.ndarray:
    """(n,) per-image values → (n, 1, 1), to broadcast over (n, H, W)."""
    return values.reshape(-1, 1, 1)


# ------------------------------------------------------------------------------- line integral
@dataclass
class TissueLayers:
    """Centimetres of each tissue the beam crosses, per pixel of a chunk of n images.

    Every field is (n, H, W) float32 and ≥ 0 (cm) unless said otherwise.

    Attributes:
        body: soft tissue of the torso, shoulders and neck (the body outline).
        aerated_lung: lung the beam crosses, minus what the heart pushes aside.
        lung_filled: lung air replaced by soft tissue or fluid (opacities, effusion, nodules).
        soft_tissue_added: soft tissue added on top of the body (breasts, pleura, bulla walls).
        air: soft tissue replaced by air (trachea, bronchi, gastric bubble, hernia gas).
        bone: cortical-bone equivalent (ribs, clavicles, scapulae, humeral heads, spine).
        lung_removed: lung parenchyma replaced by free air (pneumothorax, bullae).
        vessels: pulmonary vessels inside the lungs (soft tissue that fills lung).
        vessels_visible: multiplier in [0, 1] on ``vessels`` (0 where no lung tissue is left).
    """

    body: np.ndarray
    aerated_lung: np.ndarray
    lung_filled: np.ndarray
    soft_tissue_added: np.ndarray
    air: np.ndarray
    bone: np.ndarray
    lung_removed: np.ndarray
    vessels: np.ndarray
    vessels_visible: np.ndarray

    @classmethod
    def start(cls, body: np.ndarray, aerated_lung: np.ndarray, vessels: np.ndarray) -> TissueLayers:
        """The layers of normal anatomy before bones, airways and findings are added (those start at 0)."""
        shape = body.shape
        return cls(
            body=body,
            aerated_lung=aerated_lung,
            lung_filled=np.zeros(shape, np.float32),
            soft_tissue_added=np.zeros(shape, np.float32),
            air=np.zeros(shape, np.float32),
            bone=np.zeros(shape, np.float32),
            lung_removed=np.zeros(shape, np.float32),
            vessels=vessels,
            vessels_visible=np.ones(shape, np.float32),
        )


def line_integral(layers: TissueLayers, mu_lung) -> np.ndarray:
    """``L = Σ μ·t`` over the tissues, per pixel: (n, H, W) float32 ≥ 0 (dimensionless, cm⁻¹·cm).

    Lung is counted as soft tissue minus the air it holds, so every replacement of lung air (by
    fluid, by free air) changes only the lung term.

    Args:
        layers: the tissue thicknesses.
        mu_lung: attenuation of aerated lung (cm⁻¹), per image: (n, 1, 1) (lower in emphysema).
    """
    lung_filled = np.clip(layers.lung_filled + layers.vessels * layers.vessels_visible, 0.0, None)
    aerated = layers.aerated_lung
    body = layers.body
    lung_still_aerated = np.clip(aerated - np.minimum(lung_filled, aerated), 0.0, None)
    total = (
        MU_SOFT * (body + layers.soft_tissue_added - np.minimum(layers.air, body))
        - (MU_SOFT - mu_lung) * np.minimum(aerated, body)
        + (MU_SOFT - mu_lung) * (aerated - lung_still_aerated)
        - mu_lung * np.minimum(layers.lung_removed, lung_still_aerated)
        + (MU_BONE - MU_SOFT) * layers.bone * (body > 0.2)
    )
    return np.clip(total, 0.0, None).astype(np.float32)


# ------------------------------------------------------------------------ detection, processing
def gaussian_blur(images: np.ndarray, sigma_px: float) -> np.ndarray:
    """Blur every (H, W) image of a (n, H, W) stack with one Gaussian (sigma in pixels)."""
    return gaussian_filter(images, sigma=(0.0, sigma_px, sigma_px), mode="nearest", truncate=3.0)


def broad_blur(images: np.ndarray, sigma_frac: float) -> np.ndarray:
    """A broad Gaussian blur (sigma = sigma_frac × image side) of a (n, H, W) stack, computed on a
    16× coarser grid and interpolated back bilinearly (scatter has no fine detail)."""
    n, height, width = images.shape
    factor = max(1, height // 16)
    if height % factor or width % factor or height != width:
        return gaussian_blur(images, sigma_frac * height)
    small = images.reshape(n, height // factor, factor, width // factor, factor).mean(axis=(2, 4))
    small = gaussian_filter(
        small, sigma=(0.0, sigma_frac * height / factor, sigma_frac * width / factor), mode="nearest"
    )
    up = _upsample_matrix(height // factor, height)
    return np.einsum("ij,njk,lk->nil", up, small.astype(np.float32), up, optimize=True).astype(np.float32)


def _upsample_matrix(n_small: int, n_big: int) -> np.ndarray:
    """(n_big, n_small) bilinear interpolation weights between cell centres (edges clamped)."""
    pos = (np.arange(n_big) + 0.5) * n_small / n_big - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, n_small - 1)
    hi = np.clip(lo + 1, 0, n_small - 1)
    w = np.clip(pos - lo, 0.0, 1.0)
    m = np.zeros((n_big, n_small), np.float32)
    m[np.arange(n_big), lo] += 1.0 - w
    m[np.arange(n_big), hi] += w
    return m


def detect_and_process(
    line: np.ndarray,
    stacked: dict[str, np.ndarray],
    noise: np.ndarray | None,
    size: int,
    lung_field: np.ndarray,
    body: np.ndarray,
    dose: float = 1.0,
) -> np.ndarray:
    """Line integral → photons (scatter, quantum noise, detector blur) → log → scanner processing.

    Args:
        line: (n, H, W) float32 line integral from :func:`line_integral`.
        stacked: per-image parameters (n,) of the chunk; uses ``scanner`` and ``ap``.
        noise: (n, H, W) standard normal, or ``None`` for the noiseless image (the expected photon
            counts: the ground truth of denoising).
        size: image side in pixels.
        lung_field, body: (n, H, W) bool; they set the display window (darkest lung, densest body).
        dose: scales the photon fluence (0.25 = quarter dose: the relative quantum noise grows by
            1/√dose); the processing does not depend on it.

    Returns:
        (n, H, W) float32 in [0, 1], the displayed radiograph.
    """
    n = len(line)
    scanner = stacked["scanner"].astype(int)
    settings = {key: np.asarray([SCANNERS[s][key] for s in scanner], np.float32) for key in SCANNERS[0]}
    ap = stacked["ap"].astype(np.float32)
    px_mm = pixel_size_mm(size)
    # photons per pixel without the patient: fixed fluence per mm², so smaller images are less noisy
    i0 = 4000.0 * (128.0 / size) ** 2 * settings["dose"] * (1.0 - 0.3 * ap) * float(dose)
    row_coords = pixel_centres(size)[None, :, None]
    heel = 1.0 + HEEL * row_coords  # (1, H, 1): fewer photons at the top
    primary = np.exp(-line)
    spr = settings["spr"] * (1.0 + 1.2 * ap)  # portable AP films are often taken without a grid
    detected = (primary + broad_blur(primary, 0.18) * _per_image(spr)) * heel
    expected = _per_image(i0) * detected
    counts = expected if noise is None else expected + np.sqrt(expected) * noise  # Poisson variance = mean
    for scanner_id in np.unique(scanner):  # detector blur (MTF), one per scanner
        sel = scanner == scanner_id
        sigma = math.sqrt((SCANNERS[scanner_id]["blur_mm"] / px_mm) ** 2 + 0.35**2)
        counts[sel] = gaussian_blur(counts[sel], sigma)
    log_signal = np.log(_per_image(i0) / np.maximum(counts, 0.5))
    log_expected = -np.log(detected)
    # window from the darkest lung to the brightest body pixel (the scanner's histogram analysis),
    # widened downward so that direct exposure (air) stays just inside the display range
    lung_min = np.where(lung_field, log_expected, np.inf).reshape(n, -1).min(1)
    lung_min = np.where(np.isfinite(lung_min), lung_min, np.percentile(log_expected.reshape(n, -1), 20, axis=1))
    body_max = np.where(body, log_expected, -np.inf).reshape(n, -1).max(1)
    body_max = np.where(np.isfinite(body_max), body_max, log_expected.reshape(n, -1).max(1))
    air_min = np.where(body, np.inf, log_expected).reshape(n, -1).min(1)
    air_min = np.where(np.isfinite(air_min), air_min, lung_min)
    window_low = np.minimum(lung_min - 0.10 * (body_max - lung_min), air_min - AIR_MARGIN * (body_max - air_min))
    window_high = body_max + 0.02 * (body_max - lung_min)
    display = (log_signal - _per_image(window_low)) / _per_image(np.maximum(window_high - window_low, 1e-3))
    # characteristic curve (an S-curve, scanner-specific) normalised so 0 → 0 and 1 → 1
    contrast, centre = _per_image(settings["contrast"]), _per_image(settings["centre"])

    def curve(value):
        return np.tanh(contrast * (value - centre))

    display = (curve(np.clip(display, -0.2, 1.2)) - curve(0.0)) / (curve(1.0) - curve(0.0))
    # edge enhancement (unsharp masking), as every digital radiography system applies
    display = display.astype(np.float32)
    display = display + _per_image(settings["enhance"]) * (display - gaussian_blur(display, 0.025 * size + 0.5))
    return np.clip(display, 0.0, 1.0).astype(np.float32)
