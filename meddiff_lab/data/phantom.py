"""A synthetic chest radiograph phantom with ground truth: the course's embedded default dataset.

Real chest radiograph collections cannot be downloaded everywhere, and none of them tells you the
exact outline of the heart or where a nodule is. This phantom does: its anatomy is built from
shapes whose parameters we know, so every image comes with organ and lesion masks, the exact
cardiothoracic ratio and finding labels that are true by construction.

The image is made the way an X-ray image is made, not painted:

1. **Anatomy as thicknesses.** For every detector pixel we compute how many centimetres of each
   tissue the beam crosses: the body's soft tissue (an elliptical torso), air-filled lungs whose
   depth is largest in the middle of each lung and vanishes at its edges, the heart (which pushes
   lung aside), mediastinum, spine, posterior and anterior ribs (curved tubes with a cortical
   shell), clavicles, scapulae, humeral heads, diaphragm domes, trachea and main bronchi, the
   gastric air bubble, breast shadows for female patients, pulmonary vessels that branch out
   from the hila and fade toward the periphery, and the findings.
2. **Line integral.** ``L = Σ_tissue μ_tissue · thickness_tissue`` with linear attenuation
   coefficients (cm⁻¹) for soft tissue, lung, air and bone at an effective energy of ~60 keV.
3. **Transmission and detection.** ``I = I₀ · exp(-L)`` photons reach the detector, plus scatter
   (a broad blur of the primary beam whose share depends on the anti-scatter grid), with quantum
   noise of Poisson variance (``N ~ I + √I·z``), then the detector's blur (its MTF).
4. **Processing.** ``p = log(I₀ / N)`` is windowed from the lung minimum to the body maximum
   (as a scanner's histogram analysis does), passed through the scanner's characteristic curve
   and edge enhancement. Four simulated scanners differ in dose, blur, scatter, curve and
   enhancement.

Where each step lives (this module is the public entry and ties them together in :func:`render_chunk`):

==============================================  ================================================
module                                          holds
==============================================  ================================================
:mod:`meddiff_lab.data.cxr_labels`              the 14 findings, label strings ↔ multi-hot
:mod:`meddiff_lab.data.phantom_patients`        drawing patients and films (the parameters)
:mod:`meddiff_lab.data.phantom_anatomy`         step 1, normal anatomy, one function per part
:mod:`meddiff_lab.data.phantom_findings`        step 1, the findings, one function each
:mod:`meddiff_lab.data.phantom_xray`            steps 2–4: line integral, detector, scanners
:mod:`meddiff_lab.data.phantom_files`           writing a set in the NIH layout, packed masks
:mod:`meddiff_lab.viz.gallery`                  a figure of phantoms with their masks outlined
==============================================  ================================================

Images are in radiological display: the patient's left is on the viewer's right, so the heart
bulges to the right of the image. Coordinates are normalised: ``x`` and ``y`` run from -1
to 1 across the image (``y`` down), one unit is 20 cm.

Example:
    >>> batch = generate_phantoms(16, image_size=64, seed=0)
    >>> batch.images.shape, batch.labels.shape        # (16, 64, 64), (16, 14)
    >>> batch.masks["heart"].shape, batch.cardiothoracic_ratio[:3]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meddiff_lab.data.cxr_labels import CXR_LABELS, FINDING_MASKS, labels_from_string, labels_to_string
from meddiff_lab.data.phantom_anatomy import (
    Grid,
    add_airways,
    add_bones,
    add_breast_shadows,
    draw_body,
    draw_thorax,
    draw_vessels,
)
from meddiff_lab.data.phantom_files import NIH_2017_HEADER, load_phantom_masks, write_nih_layout
from meddiff_lab.data.phantom_findings import add_findings
from meddiff_lab.data.phantom_patients import sample_cases, select_params, stack_cases
from meddiff_lab.data.phantom_xray import (
    CM_PER_UNIT,
    MU_BONE,
    MU_LUNG,
    MU_SOFT,
    MU_SPONGY,
    TissueLayers,
    detect_and_process,
    line_integral,
    pixel_size_mm,
)

__all__ = [
    "CXR_LABELS",
    "PHANTOM_VERSION",
    "FINDING_MASKS",
    "ANATOMY_MASKS",
    "PhantomBatch",
    "generate_phantoms",
    "iter_phantoms",
    "write_synthetic_cxr",
    "load_phantom_masks",
    "cardiothoracic_ratio_from_masks",
    "labels_to_string",
    "labels_from_string",
    # kept importable from here for older code; they live in the modules named in the table above
    "NIH_2017_HEADER",
    "CM_PER_UNIT",
    "MU_SOFT",
    "MU_LUNG",
    "MU_BONE",
    "MU_SPONGY",
]

#: Anatomy masks. Lung masks are the lung *fields* (hemithorax outlines, as lung segmentation sets
#: draw them): they exclude the heart and include any effusion or pneumothorax inside them.
ANATOMY_MASKS: tuple[str, ...] = ("body", "right_lung", "left_lung", "heart", "lesion")

#: Bumped whenever the generator's output changes, so written sets can tell they are stale.
PHANTOM_VERSION = "2"


# ----------------------------------------------------------------------------------------- result
@dataclass
class PhantomBatch:
    """A batch of phantom radiographs with their ground truth.

    Attributes:
        images: (N, H, W) float32 in [0, 1], radiological display (patient's left on the right).
        masks: dict of (N, H, W) bool: ``body``, ``right_lung``, ``left_lung``, ``heart``, ``lesion``
            (union of all finding masks) and one per finding (``nodule``, ``effusion``, ... see
            ``FINDING_MASKS``).
        labels: (N, 14) float32 multi-hot over ``CXR_LABELS``.
        cardiothoracic_ratio: (N,) float32, widest heart width / widest thoracic (lung field) width,
            as measured on the image (AP films magnify the heart).
        metadata: one dict per image: ``patient_id`` (int), ``follow_up`` (int), ``image_index``
            (str, NIH style ``00000001_000.png``), ``age`` (years), ``sex`` (``"M"``/``"F"``),
            ``view`` (``"PA"``/``"AP"``), ``scanner`` (int).
    """

    images: np.ndarray
    masks: dict[str, np.ndarray]
    labels: np.ndarray
    cardiothoracic_ratio: np.ndarray
    metadata: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def patient_ids(self) -> np.ndarray:
        """(N,) int64 patient ID of every image."""
        return np.asarray([m["patient_id"] for m in self.metadata], dtype=np.int64)

    @property
    def label_strings(self) -> list[str]:
        """ChestX-ray14 ``Finding Labels`` strings, e.g. ``"Cardiomegaly|Effusion"`` or ``"No Finding"``."""
        return [labels_to_string(row) for row in self.labels]

    def subset(self, index) -> PhantomBatch:
        """The images at ``index`` (an index array, a boolean mask or a slice) as a new batch."""
        index = np.arange(len(self))[index]
        return PhantomBatch(
            self.images[index],
            {k: v[index] for k, v in self.masks.items()},
            self.labels[index],
            self.cardiothoracic_ratio[index],
            [self.metadata[i] for i in index],
        )

    @staticmethod
    def concatenate(batches: Sequence[PhantomBatch]) -> PhantomBatch:
        """One batch from several, in order (the masks they all have)."""
        batches = list(batches)
        if len(batches) == 1:
            return batches[0]
        return PhantomBatch(
            np.concatenate([b.images for b in batches]),
            {k: np.concatenate([b.masks[k] for b in batches]) for k in batches[0].masks},
            np.concatenate([b.labels for b in batches]),
            np.concatenate([b.cardiothoracic_ratio for b in batches]),
            [m for b in batches for m in b.metadata],
        )


# ----------------------------------------------------------------------------------- rendering
def attenuation(stacked: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Anatomy and findings of a chunk as tissue layers, and the X-ray line integral through them.

    Args:
        stacked: per-image parameters of n images (:func:`~meddiff_lab.data.phantom_patients.stack_cases`).
        size: image side in pixels.

    Returns:
        (line, masks, lung_field): the line integral ``L = Σ μ·t`` (n, H, W) float32 ≥ 0; the masks
        (n, H, W) bool (``ANATOMY_MASKS`` and one per finding); and both hemithoraces including the
        part behind the heart (n, H, W) bool, which sets the display window.
    """
    grid = Grid.for_size(size)
    params = select_params(stacked, np.arange(len(stacked["cx"])))
    body_cm, body_mask = draw_body(params, grid)
    thorax = draw_thorax(params, grid)
    layers = TissueLayers.start(body_cm, thorax.aerated_lung, draw_vessels(stacked, params, grid, thorax))
    add_bones(layers.bone, params, grid)
    add_airways(layers.air, params, grid)
    add_breast_shadows(layers.soft_tissue_added, params, grid)
    finding_masks = add_findings(stacked, grid, thorax, layers)
    line = line_integral(layers, params["mu_lung"])

    heart = thorax.heart_inside
    masks = {
        "body": body_mask,
        "right_lung": thorax.lung_inside["r"] & ~heart,
        "left_lung": thorax.lung_inside["l"] & ~heart,
        "heart": heart,
    }
    lesion = np.zeros_like(heart)
    for name in FINDING_MASKS:
        lesion |= finding_masks[name]
    masks["lesion"] = lesion
    masks.update(finding_masks)
    return line, masks, thorax.lung_field


def render_chunk(
    stacked: dict[str, np.ndarray], size: int, noise: np.ndarray | None, dose: float = 1.0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render a chunk of n images: :func:`attenuation`, then the detector and the scanner's processing.

    Args:
        stacked: per-image parameters of the n images.
        size: image side in pixels.
        noise: (n, H, W) float32 standard normal for the quantum noise, or ``None`` (noiseless).
        dose: relative photon fluence.

    Returns:
        (images (n, H, W) float32 in [0, 1], masks dict of (n, H, W) bool).
    """
    line, masks, lung_field = attenuation(stacked, size)
    return detect_and_process(line, stacked, noise, size, lung_field, masks["body"], dose), masks


# ------------------------------------------------------------------------------------ public API
def _check_args(n, image_size, seed):
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (number of images), got {n!r}")
    if not isinstance(image_size, (int, np.integer)) or not 16 <= image_size <= 1024:
        raise ValueError(f"image_size must be an integer between 16 and 1024 pixels, got {image_size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _check_dose(dose, quantum_noise):
    if (
        isinstance(dose, bool)
        or not isinstance(dose, (int, float, np.integer, np.floating))
        or not math.isfinite(dose)
        or not 0.0 < dose <= 100.0
    ):
        raise ValueError(f"dose must be a relative photon fluence in (0, 100] (1.0 = full dose), got {dose!r}")
    if not isinstance(quantum_noise, (bool, np.bool_)):
        raise ValueError(f"quantum_noise must be True or False, got {quantum_noise!r}")


def _metadata(case: dict) -> dict:
    return dict(
        patient_id=int(case["patient_id"]),
        follow_up=int(case["follow_up"]),
        image_index=f"{int(case['patient_id']):08d}_{int(case['follow_up']):03d}.png",
        age=int(case["age"]),
        sex=case["sex"],
        view=case["view"],
        scanner=int(case["scanner"]),
    )


def iter_phantoms(
    n: int,
    image_size: int = 64,
    seed: int = 0,
    chunk_size: int = 64,
    masks: bool | Sequence[str] = True,
    *,
    dose: float = 1.0,
    quantum_noise: bool = True,
) -> Iterator[PhantomBatch]:
    """Yield ``generate_phantoms(n, image_size, seed)`` in chunks of ``chunk_size`` images.

    The bytes do not depend on ``chunk_size``: each image's noise comes from its own generator.
    Use it to write large sets without holding every mask in memory.
    """
    _check_args(n, image_size, seed)
    _check_dose(dose, quantum_noise)
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    cases = sample_cases(int(n), int(seed))
    for start in range(0, len(cases), chunk_size):
        part = cases[start : start + chunk_size]
        stacked = stack_cases(part)
        noise = np.stack(
            [
                np.random.default_rng([seed, c["patient_id"], c["follow_up"], 1]).standard_normal(
                    (image_size, image_size), dtype=np.float32
                )
                for c in part
            ]
        )
        images, all_masks = render_chunk(stacked, int(image_size), noise if quantum_noise else None, float(dose))
        if masks is not True:
            keep = set(masks or ())
            unknown = keep - set(all_masks)
            if unknown:
                raise ValueError(f"unknown mask names {sorted(unknown)}; expected some of {sorted(all_masks)}")
            all_masks = {k: v for k, v in all_masks.items() if k in keep}
        yield PhantomBatch(
            images=images,
            masks=all_masks,
            labels=stacked["labels"].astype(np.float32),
            cardiothoracic_ratio=stacked["ctr"].astype(np.float32),
            metadata=[_metadata(c) for c in part],
        )


def generate_phantoms(
    n: int,
    image_size: int = 64,
    seed: int = 0,
    *,
    masks: bool | Sequence[str] = True,
    dose: float = 1.0,
    quantum_noise: bool = True,
) -> PhantomBatch:
    """Generate ``n`` synthetic chest radiographs with ground truth.

    Patients get 1–6 films each (follow-ups share the patient's anatomy and chronic findings, so a
    split by image leaks patients). Each acute finding appears in about 10 % of images, each chronic
    one in about 12 %, Cardiomegaly in about 20 %, and about a quarter of images have no finding.

    Args:
        n: number of images.
        image_size: side in pixels (square images), 16–1024.
        seed: same seed, same bytes. The first k images do not depend on n.
        masks: ``True`` for every mask, or the names to keep (``("left_lung", "heart")``), or ``()``.
        dose: relative photon fluence (1.0 = the simulated scanner's usual dose; 0.25 = quarter dose).
            Lower dose means more quantum noise (relative noise ∝ 1/√dose); anatomy, processing and
            ground truth do not change, and the noise pattern is the same draw scaled, so the same
            seed at several doses gives the same patients.
        quantum_noise: ``False`` renders the expected photon counts (the noiseless image), the
            ground truth for denoising.

    Returns:
        A :class:`PhantomBatch`: ``.images`` (N, H, W) float32 in [0, 1], ``.masks`` dict of
        (N, H, W) bool, ``.labels`` (N, 14) multi-hot over ``CXR_LABELS``,
        ``.cardiothoracic_ratio`` (N,), ``.metadata`` (list of dicts).
    """
    return PhantomBatch.concatenate(
        list(iter_phantoms(n, image_size, seed, masks=masks, dose=dose, quantum_noise=quantum_noise))
    )


def cardiothoracic_ratio_from_masks(heart: np.ndarray, right_lung: np.ndarray, left_lung: np.ndarray) -> np.ndarray:
    """Cardiothoracic ratio measured on masks: widest heart width / widest lung-field width.

    Args:
        heart, right_lung, left_lung: (N, H, W) or (H, W) bool masks.

    Returns:
        (N,) float32 (a scalar array for one image). The heart width is the number of columns the
        heart mask spans; the thoracic width spans from the leftmost to the rightmost lung column.
    """
    heart, right_lung, left_lung = (np.asarray(m, bool) for m in (heart, right_lung, left_lung))
    single = heart.ndim == 2
    if single:
        heart, right_lung, left_lung = heart[None], right_lung[None], left_lung[None]
    out = []
    for heart_i, right_i, left_i in zip(heart, right_lung, left_lung):
        heart_cols = np.nonzero(heart_i.any(0))[0]
        thorax_cols = np.nonzero((right_i | left_i | heart_i).any(0))[0]
        if len(heart_cols) == 0 or len(thorax_cols) == 0:
            out.append(np.nan)
            continue
        out.append((heart_cols[-1] - heart_cols[0] + 1) / (thorax_cols[-1] - thorax_cols[0] + 1))
    ratios = np.asarray(out, np.float32)
    return ratios[0] if single else ratios


def write_synthetic_cxr(
    root,
    n: int = 2000,
    image_size: int = 128,
    seed: int = 0,
    *,
    test_fraction: float = 0.2,
    images_per_folder: int = 10000,
    with_masks: bool = True,
    progress: bool = True,
) -> Path:
    """Write ``n`` phantoms in the NIH ChestX-ray14 layout, with their masks beside it.

    Layout under ``root``::

        Data_Entry_2017.csv                 the NIH metadata columns and label strings
        images_001/images/00000001_000.png  8-bit grey PNGs (images_002/ ... every images_per_folder)
        train_val_list.txt, test_list.txt   split by patient (no patient in both)
        masks/00000001_000.npz              every mask of that image (read with load_phantom_masks)
        phantom_truth.csv                   ground truth: cardiothoracic ratio, scanner, sex, age, view
        README.txt                          what this is and how it was generated

    Args:
        root: output folder (created).
        n, image_size, seed: as :func:`generate_phantoms`.
        test_fraction: share of images (whole patients) in ``test_list.txt``.
        images_per_folder: images per ``images_NNN`` folder (the NIH release uses 10,000).
        with_masks: write ``masks/*.npz``.
        progress: show a progress bar and the time taken.

    Returns:
        ``root`` as a Path. The files are written by :func:`meddiff_lab.data.phantom_files.write_nih_layout`.
    """
    _check_args(n, image_size, seed)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    batches = iter_phantoms(n, image_size, seed, chunk_size=64, masks=True if with_masks else ())
    return write_nih_layout(
        root,
        batches,
        n=n,
        image_size=image_size,
        seed=seed,
        pixel_spacing_mm=pixel_size_mm(image_size),
        phantom_version=PHANTOM_VERSION,
        test_fraction=test_fraction,
        images_per_folder=images_per_folder,
        with_masks=with_masks,
        progress=progress,
    )
