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

Images are in radiological display: the patient's left is on the viewer's right, so the heart
bulges to the right of the image. Coordinates below are normalised: ``x`` and ``y`` run from -1
to 1 across the image (``y`` down), one unit is 20 cm; ``ax`` is the lateral distance from the
midline, positive toward the side's chest wall.

Example:
    >>> batch = generate_phantoms(16, image_size=64, seed=0)
    >>> batch.images.shape, batch.labels.shape        # (16, 64, 64), (16, 14)
    >>> batch.masks["heart"].shape, batch.cardiothoracic_ratio[:3]
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from meddiff_lab.data.splits import patient_split

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
    "phantom_gallery",
    "save_gallery",
]

#: The 14 ChestX-ray14 findings in the NIH order (ChestMNIST uses the same order). "No Finding" is
#: all zeros.
CXR_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
_LABEL_INDEX = {name: i for i, name in enumerate(CXR_LABELS)}

#: Masks of findings (key = label name in lower case). Cardiomegaly has none: its ground truth is
#: the ``heart`` mask and the cardiothoracic ratio.
FINDING_MASKS: tuple[str, ...] = tuple(name.lower() for name in CXR_LABELS if name != "Cardiomegaly")
#: Anatomy masks. Lung masks are the lung *fields* (hemithorax outlines, as lung segmentation sets
#: draw them): they exclude the heart and include any effusion or pneumothorax inside them.
ANATOMY_MASKS: tuple[str, ...] = ("body", "right_lung", "left_lung", "heart", "lesion")

#: Bumped whenever the generator's output changes, so written sets can tell they are stale.
PHANTOM_VERSION = "2"

# Linear attenuation coefficients (cm^-1) at an effective energy of about 60 keV.
MU_SOFT = 0.20      # soft tissue, blood, fluid
MU_LUNG = 0.05      # aerated lung (about 0.25 g/cm3)
MU_BONE = 0.48      # cortical bone
MU_SPONGY = 0.28    # vertebral bodies (trabecular bone)
CM_PER_UNIT = 20.0  # one normalised image unit is 20 cm (the field of view is 40 cm)

# Acute findings are drawn per image, chronic ones once per patient (they persist in follow-ups).
_ACUTE = ("Atelectasis", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
          "Consolidation", "Edema")
_CHRONIC = ("Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
_P_ABNORMAL_ACUTE = 0.5     # share of images with at least one acute finding
_P_ACUTE = 0.10             # prevalence of each acute finding among all images
_P_CHRONIC = 0.12           # prevalence of each chronic finding among patients
_P_CARDIOMEGALY_PATIENT = 0.18
_P_AP = 0.35                # ChestX-ray14 has ~40 % AP films
_AP_HEART_MAGNIFICATION = 1.12

# Four simulated scanners: dose (relative), detector blur (mm), scatter-to-primary ratio,
# characteristic-curve contrast, curve centre, edge enhancement.
_SCANNERS = (
    dict(dose=1.0, blur_mm=1.2, spr=0.12, contrast=2.2, centre=0.46, enhance=0.45),
    dict(dose=0.7, blur_mm=1.8, spr=0.18, contrast=1.6, centre=0.50, enhance=0.15),
    dict(dose=1.4, blur_mm=0.9, spr=0.08, contrast=2.8, centre=0.42, enhance=0.80),
    dict(dose=0.9, blur_mm=1.5, spr=0.15, contrast=1.9, centre=0.54, enhance=0.30),
)


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

    def subset(self, index) -> "PhantomBatch":
        """The images at ``index`` (an index array, a boolean mask or a slice) as a new batch."""
        index = np.arange(len(self))[index]
        return PhantomBatch(self.images[index], {k: v[index] for k, v in self.masks.items()},
                            self.labels[index], self.cardiothoracic_ratio[index],
                            [self.metadata[i] for i in index])

    @staticmethod
    def concatenate(batches: Sequence["PhantomBatch"]) -> "PhantomBatch":
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


def labels_to_string(multi_hot) -> str:
    """(14,) multi-hot → ChestX-ray14 ``Finding Labels`` string (``"No Finding"`` when empty)."""
    names = [CXR_LABELS[i] for i, v in enumerate(np.asarray(multi_hot).reshape(-1)) if v > 0.5]
    return "|".join(names) if names else "No Finding"


def labels_from_string(text: str) -> np.ndarray:
    """ChestX-ray14 ``Finding Labels`` string (``"Cardiomegaly|Emphysema"``) → (14,) float32 multi-hot.

    Accepts ``"No Finding"`` (all zeros), spaces around names, and ``Pleural Thickening`` for
    ``Pleural_Thickening``.

    Raises:
        ValueError: for a name that is not one of ``CXR_LABELS``.
    """
    out = np.zeros(len(CXR_LABELS), dtype=np.float32)
    for part in str(text).split("|"):
        name = part.strip().replace(" ", "_")
        if not name or name.lower() in ("no_finding", "nan"):
            continue
        match = _LABEL_INDEX.get(name)
        if match is None:
            match = {k.lower(): v for k, v in _LABEL_INDEX.items()}.get(name.lower())
        if match is None:
            raise ValueError(f"unknown finding {part!r} in Finding Labels {text!r}; expected names from "
                             f"{', '.join(CXR_LABELS)} or 'No Finding'")
        out[match] = 1.0
    return out


# ------------------------------------------------------------------------------------ small maths
def _smoothstep(x, lo, hi):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _chord(d2):
    """Chord through a unit sphere/cylinder at squared normalised distance d2: sqrt(1 - d2), 0 outside."""
    return np.sqrt(np.clip(1.0 - d2, 0.0, None))


def _segment_distance(x, y, x0, y0, x1, y1):
    """Distance from points (x, y) to the segment (x0, y0)–(x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.hypot(x - x0 - t * dx, y - y0 - t * dy)


# ------------------------------------------------------------------------------------- anatomy
# Every geometry function takes a parameter mapping ``p`` whose values broadcast against x and y:
# scalars when sampling one case, (n, 1, 1) arrays when rendering a chunk of n images.
_SIDES = (("r", -1.0), ("l", 1.0))   # patient's right lung is on the viewer's left (x < 0)


def _lateral_edge(lat, y):
    """Lateral lung border: widest (= ``lat``) at y = 0.2, curving in toward the apex, a little toward the base."""
    return lat - 0.20 * np.clip((0.2 - y) / 1.0, 0, 1) ** 2 - 0.04 * np.clip((y - 0.2) / 0.5, 0, 1) ** 2


def _lung_geometry(p, k, s, x, y):
    """Lung field of side ``k`` ('r'/'l', sign ``s``): (inside bool, lung depth in cm, lateral fraction u)."""
    cx = p["cx"]
    ax = s * (x - cx)
    lat, apex, dome, cp = p[f"lat_{k}"], p[f"apex_{k}"], p[f"dome_{k}"], p[f"cp_{k}"]
    med = p["med"]
    if k == "l":   # aortic knob and pulmonary trunk bulge into the left lung's medial border
        med = med + p["knob"] * np.exp(-((y - p["knob_y"]) / 0.075) ** 2) \
            + 0.35 * p["knob"] * np.exp(-((y - p["knob_y"] - 0.17) / 0.06) ** 2)
    a0 = 0.30 * lat / 0.8
    y_top = apex + 1.7 * (ax - a0) ** 2
    lat_y = _lateral_edge(lat, y)
    peak = 0.45 * lat
    kd = (cp - dome) / (lat - peak) ** 2
    y_dome = dome + kd * (ax - peak) ** 2
    inside = (y > y_top) & (ax < lat_y) & (ax > med) & (y < y_dome)
    u = np.clip((ax - med) / (lat_y - med), 0.0, 1.0)
    horizontal = np.sqrt(u) * (1.0 - u) ** 0.25 / 0.62
    vertical = np.sqrt(np.clip((y - y_top) / 0.22, 0.0, 1.0)) * np.sqrt(np.clip((y_dome - y) / 0.10, 0.0, 1.0))
    depth = p["lung_depth"] * horizontal * vertical * inside
    return inside, depth, u


def _heart_geometry(p, x, y):
    """Heart silhouette: (inside bool, depth in cm). A rotated ellipse, long axis toward the apex."""
    dx, dy = x - p["heart_x"], y - p["heart_y"]
    c, s_ = np.cos(p["heart_angle"]), np.sin(p["heart_angle"])
    u = dx * c + dy * s_
    v = -dx * s_ + dy * c
    q = (u / p["heart_a"]) ** 2 + (v / p["heart_b"]) ** 2
    return q < 1.0, p["heart_depth"] * _chord(q)


def _heart_half_width(a, b, angle):
    return math.sqrt((a * math.cos(angle)) ** 2 + (b * math.sin(angle)) ** 2)


# -------------------------------------------------------------------------------- case sampling
def _sample_patient(seed: int, patient_id: int, n_images: int) -> list[dict]:
    """Draw one patient's anatomy and ``n_images`` follow-up films (dicts of scalars)."""
    rng = np.random.default_rng([seed, patient_id])
    sex = "F" if rng.random() < 0.45 else "M"
    age0 = int(np.clip(rng.normal(50, 17), 18, 88))
    chronic = {name: rng.random() < _P_CHRONIC for name in _CHRONIC}
    if rng.random() < _P_CARDIOMEGALY_PATIENT:
        ctr0 = rng.uniform(0.50, 0.61)
    else:
        ctr0 = float(np.clip(rng.normal(0.425, 0.03), 0.34, 0.49))
    if chronic["Emphysema"]:
        ctr0 -= 0.025                                   # the long, narrow heart of hyperinflation
    build = rng.normal(0.0, 1.0)                         # habitus: negative slim, positive heavy
    base = dict(
        sex=sex, age0=age0, ctr0=ctr0,
        chest_w=float(np.clip(0.90 + 0.025 * build + 0.0006 * (age0 - 45) - (0.02 if sex == "F" else 0), 0.84, 0.97)),
        thickness=float(np.clip(22 + 2.5 * build + 0.04 * (age0 - 45) - (1.5 if sex == "F" else 0), 16, 31)),
        lat=float(np.clip(rng.normal(0.79, 0.02) - (0.02 if sex == "F" else 0), 0.72, 0.85)),
        apex=rng.normal(-0.80, 0.02), dome=rng.normal(0.38, 0.03), dome_diff=rng.normal(0.055, 0.02),
        cp_drop=rng.normal(0.20, 0.025), med=rng.normal(0.11, 0.01),
        knob=float(np.clip(0.035 + 0.0011 * (age0 - 30) + rng.normal(0, 0.008), 0.02, 0.11)),
        knob_y=rng.normal(-0.36, 0.03),
        bone_density=float(np.clip(1.0 - 0.006 * max(age0 - 35, 0) * (1.4 if sex == "F" else 1.0), 0.55, 1.0)),
        rib_spacing=rng.normal(0.145, 0.008), rib_top=rng.normal(-0.86, 0.02),
        breast=float(rng.uniform(0.6, 1.3)) if sex == "F" else 0.0,
        hilum_r=rng.normal(0.24, 0.02), hilum_l=rng.normal(0.23, 0.02),
        hilum_y=rng.normal(-0.12, 0.03), vessel_phase=rng.uniform(0, 2 * np.pi, 8),
        chronic=chronic,
    )
    # chronic finding parameters (fixed for the patient)
    base["pt_side"] = rng.choice([-1.0, 1.0])
    base["pt_apical"] = rng.random() < 0.3
    base["pt_width"] = rng.uniform(0.035, 0.07)
    base["hernia_r"] = rng.uniform(0.075, 0.12)
    base["fib_phase"] = rng.uniform(0, 2 * np.pi, 3)
    base["fib_angle"] = rng.uniform(0, np.pi)
    base["bullae"] = [(rng.choice([-1.0, 1.0]), rng.uniform(0.35, 0.65), rng.uniform(-0.55, -0.2),
                       rng.uniform(0.06, 0.11)) for _ in range(2)]
    base["n_bullae"] = int(rng.integers(1, 3))

    cases = []
    age = age0
    for follow_up in range(n_images):
        if follow_up:
            age += int(rng.integers(0, 3))
        cases.append(_sample_image(rng, base, patient_id, follow_up, age))
    return cases


def _sample_image(rng, base: dict, patient_id: int, follow_up: int, age: int) -> dict:
    view = "AP" if rng.random() < _P_AP else "PA"
    ap = view == "AP"
    c: dict = dict(patient_id=patient_id, follow_up=follow_up, age=age, sex=base["sex"], view=view,
                   scanner=int(rng.integers(0, len(_SCANNERS))))
    c["female"] = float(base["sex"] == "F")
    c["ap"] = float(ap)
    c["cx"] = rng.normal(0.0, 0.015)
    c["cy"] = rng.normal(0.0, 0.02)
    c["chest_w"] = base["chest_w"]
    c["thickness"] = base["thickness"]
    c["lung_depth"] = 0.58 * base["thickness"]
    inspiration = rng.normal(0.0, 0.025) + (0.06 if ap else 0.0)   # AP (supine, portable): poorer inspiration
    c["med"] = base["med"]
    c["knob"], c["knob_y"] = base["knob"], base["knob_y"] + c["cy"]
    c["bone_density"] = base["bone_density"]
    c["rib_spacing"], c["rib_top"] = base["rib_spacing"], base["rib_top"] + c["cy"] + 0.6 * inspiration
    c["breast"] = base["breast"]
    c["hilum_r"], c["hilum_l"], c["hilum_y"] = base["hilum_r"], base["hilum_l"], base["hilum_y"] + c["cy"]
    c["vessel_phase"] = base["vessel_phase"] + rng.normal(0, 0.15, 8)
    c["vessel_amp"] = 1.0
    c["mu_lung"] = MU_LUNG
    c["clav_y"] = -0.66 + c["cy"] - (0.08 if ap else 0.0) + rng.normal(0, 0.015)
    c["clav_tilt"] = (0.03 if ap else 0.11) + rng.normal(0, 0.015)
    c["scap_x"] = (0.66 if ap else 0.90) + rng.normal(0, 0.02)
    c["bubble"] = float(rng.random() < 0.75)
    c["bubble_r"] = rng.uniform(0.06, 0.11)
    for k, s in _SIDES:
        c[f"lat_{k}"] = base["lat"] + rng.normal(0, 0.006)
        c[f"apex_{k}"] = base["apex"] + c["cy"] + rng.normal(0, 0.01)
        c[f"dome_{k}"] = base["dome"] + c["cy"] + inspiration + (base["dome_diff"] if k == "l" else 0.0)
        c[f"cp_{k}"] = c[f"dome_{k}"] + base["cp_drop"]

    findings = {name: False for name in CXR_LABELS}
    for name, present in base["chronic"].items():
        findings[name] = bool(present)
    if rng.random() < _P_ABNORMAL_ACUTE:
        drawn = [name for name in _ACUTE if rng.random() < _P_ACUTE / _P_ABNORMAL_ACUTE]
        if not drawn:
            drawn = [_ACUTE[int(rng.integers(len(_ACUTE)))]]
        for name in drawn:
            findings[name] = True

    # --- findings that change the anatomy come first
    if findings["Emphysema"]:   # hyperinflation: low flat domes, lucent lungs, pruned vessels
        for k, _ in _SIDES:
            c[f"dome_{k}"] += 0.09
            c[f"cp_{k}"] = c[f"dome_{k}"] + 0.09
            c[f"lat_{k}"] += 0.02
        c["mu_lung"] = 0.032
        c["vessel_amp"] = 0.6
    if findings["Fibrosis"]:    # volume loss
        for k, _ in _SIDES:
            c[f"dome_{k}"] -= 0.05
            c[f"cp_{k}"] -= 0.05
    c["atel_side"] = rng.choice([-1.0, 1.0])
    if findings["Atelectasis"]:  # volume loss: the hemidiaphragm rises, the mediastinum shifts toward it
        k = "r" if c["atel_side"] < 0 else "l"
        elevation = rng.uniform(0.03, 0.07)
        c[f"dome_{k}"] -= elevation
        c[f"cp_{k}"] -= elevation
        c["cx"] += c["atel_side"] * rng.uniform(0.0, 0.02)

    # --- heart: the measured cardiothoracic ratio decides Cardiomegaly
    ctr = base["ctr0"] * (_AP_HEART_MAGNIFICATION if ap else 1.0) * rng.normal(1.0, 0.01)
    if abs(ctr - 0.5) < 0.01:   # keep a margin so the label is unambiguous at pixel resolution
        ctr = 0.5 + math.copysign(0.01, ctr - 0.5 if ctr != 0.5 else 1.0)
    thoracic_width = c["lat_r"] + c["lat_l"]
    half_w = 0.5 * ctr * thoracic_width
    c["heart_angle"] = rng.normal(0.45, 0.05)
    aspect = rng.uniform(0.58, 0.68)
    c["heart_a"] = half_w / math.sqrt(math.cos(c["heart_angle"]) ** 2 + (aspect * math.sin(c["heart_angle"])) ** 2)
    c["heart_b"] = aspect * c["heart_a"]
    half_h = math.sqrt((c["heart_a"] * math.sin(c["heart_angle"])) ** 2 + (c["heart_b"] * math.cos(c["heart_angle"])) ** 2)
    c["heart_x"] = c["cx"] + 0.38 * half_w + rng.normal(0, 0.01)
    c["heart_y"] = 0.5 * (c["dome_r"] + c["dome_l"]) + 0.06 - half_h
    c["heart_depth"] = 11.0 * (half_w / 0.36) ** 0.5
    c["ctr"] = 2 * _heart_half_width(c["heart_a"], c["heart_b"], c["heart_angle"]) / thoracic_width
    findings["Cardiomegaly"] = c["ctr"] > 0.5

    # --- focal findings
    c["nodule_n"] = 0
    c["nodules"] = np.zeros((2, 3))
    if findings["Nodule"]:
        c["nodule_n"] = 1 + int(rng.random() < 0.25)
        for j in range(c["nodule_n"]):
            c["nodules"][j] = _place_in_lung(rng, c, radius=rng.uniform(0.03, 0.065))
    c["mass"] = np.zeros(5)
    if findings["Mass"]:
        c["mass"][:3] = _place_in_lung(rng, c, radius=rng.uniform(0.08, 0.13))
        c["mass"][3:] = rng.uniform(0, 2 * np.pi, 2)
    c["eff_side"] = rng.choice([-1.0, 1.0])
    c["eff_height"] = rng.uniform(0.12, 0.40)
    c["eff_bilateral"] = float(rng.random() < 0.25)
    c["ptx_side"] = rng.choice([-1.0, 1.0])
    c["ptx_gap"] = rng.uniform(0.07, 0.18)
    c["con_side"] = rng.choice([-1.0, 1.0])
    c["con_upper"] = float(rng.random() < 0.35)
    c["con_u"], c["con_r"] = rng.uniform(0.4, 0.7), rng.uniform(0.14, 0.22)
    c["con_phase"] = rng.uniform(0, 2 * np.pi, 2)
    c["atel_y"], c["atel_len"] = rng.uniform(0.08, 0.2), rng.uniform(0.18, 0.32)
    c["atel_tilt"], c["atel_w"] = rng.normal(0.0, 0.12), rng.uniform(0.018, 0.03)
    c["pna_side"] = rng.choice([-1.0, 1.0, 0.0], p=[0.4, 0.4, 0.2])   # 0 = both lungs
    c["pna_blobs"] = np.stack([rng.uniform(0.35, 0.75, 3), rng.uniform(-0.2, 0.3, 3), rng.uniform(0.07, 0.13, 3)], 1)
    c["pna_phase"] = rng.uniform(0, 2 * np.pi, 2)
    c["inf_side"] = rng.choice([-1.0, 1.0, 0.0], p=[0.35, 0.35, 0.3])
    c["inf_y"], c["inf_r"] = rng.uniform(-0.35, 0.15), rng.uniform(0.18, 0.28)
    c["inf_phase"] = rng.uniform(0, 2 * np.pi, 3)
    c["edema_amp"] = rng.uniform(0.35, 0.6)
    c["pt_side"], c["pt_apical"], c["pt_width"] = base["pt_side"], float(base["pt_apical"]), base["pt_width"]
    c["hernia_r"] = base["hernia_r"]
    c["fib_phase"], c["fib_angle"] = base["fib_phase"], base["fib_angle"]
    c["bullae"] = np.asarray(base["bullae"])
    c["n_bullae"] = base["n_bullae"]
    c["findings"] = findings
    return c


def _place_in_lung(rng, c: dict, radius: float) -> np.ndarray:
    """(x, y, r) of a disc that lies inside a lung field, clear of the heart (rejection sampling)."""
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    for attempt in range(4):
        r = radius * (0.8 ** attempt)
        xs = rng.uniform(-0.85, 0.85, 96)
        ys = rng.uniform(-0.75, 0.45, 96)
        px = xs[:, None] + 1.15 * r * np.concatenate([[0.0], np.cos(angles)])[None]
        py = ys[:, None] + 1.15 * r * np.concatenate([[0.0], np.sin(angles)])[None]
        ok = np.zeros(96, bool)
        for k, s in _SIDES:
            inside, _, _ = _lung_geometry(c, k, s, px, py)
            ok |= inside.all(1)
        heart, _ = _heart_geometry(c, px, py)
        ok &= ~heart.any(1)
        hits = np.nonzero(ok)[0]
        if len(hits):
            return np.array([xs[hits[0]], ys[hits[0]], r])
    return np.array([c["cx"] - 0.45, -0.2 + c["cy"], 0.03])   # a safe spot in the right mid zone


def _stack_cases(cases: list[dict]) -> dict[str, np.ndarray]:
    """List of per-image dicts → dict of arrays (first axis = image)."""
    keys = [k for k, v in cases[0].items() if k not in ("findings", "sex", "view")]
    out = {k: np.asarray([c[k] for c in cases]) for k in keys}
    out = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in out.items()}
    out["labels"] = np.asarray([[c["findings"][name] for name in CXR_LABELS] for c in cases], dtype=np.float32)
    return out


def _take(P: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Parameters of the images ``idx``, shaped (len(idx), 1, 1) for broadcasting over (H, W)."""
    return {k: v[idx].reshape((len(idx), 1, 1) + v.shape[1:]) for k, v in P.items()}


def _col(v: np.ndarray) -> np.ndarray:
    return v.reshape(-1, 1, 1)


# ----------------------------------------------------------------------------------- rendering
def _render(P: dict[str, np.ndarray], size: int, noise: np.ndarray | None, dose: float = 1.0):
    """Render a chunk. P: stacked parameters of n images; noise: (n, H, W) standard normal or None
    (noiseless); dose: relative photon fluence.

    Returns (images (n, H, W) float32 in [0, 1], masks dict of (n, H, W) bool).
    """
    L, masks = _attenuation(P, size)
    lung_field = masks["right_lung"] | masks["left_lung"] | (masks["heart"] & masks.pop("_lung_field"))
    return _detect_and_process(L, P, noise, size, lung_field, masks["body"], dose), masks


def _attenuation(P: dict[str, np.ndarray], size: int):
    """The line integral L = Σ μ·t (n, H, W) float32 (cm⁻¹·cm) of a chunk, and its masks."""
    n = len(P["cx"])
    coords = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0)
    x = coords[None, None, :]
    y = coords[None, :, None]
    p = _take(P, np.arange(n))
    f32 = np.float32
    H = W = size
    px_mm = 2.0 * CM_PER_UNIT * 10.0 / size

    # --- body: torso (elliptical cross-section), shoulders and neck
    chest_w = p["chest_w"] - 0.04 * np.clip(y - 0.6, 0, None)
    half_w = chest_w + (1.3 - chest_w) * _smoothstep(-y, 0.55, 0.72)
    ax_abs = np.abs(x - p["cx"])
    shoulder = -1.02 + 0.28 * np.clip((ax_abs - 0.22) / 0.65, 0, 1) ** 0.7 + 0.12 * np.clip(ax_abs - 0.87, 0, None)
    body_fade = _smoothstep(y - shoulder, 0.0, 0.05)
    body_t = p["thickness"] * _chord((x - p["cx"]) ** 2 / half_w ** 2) * body_fade
    body_t = body_t * (1.0 - 0.35 * _smoothstep(-y, 0.7, 0.95))          # the neck is thinner
    body = body_t > 0.5

    # --- lungs, heart
    inside, depth, lat_frac = {}, {}, {}
    for k, s in _SIDES:
        inside[k], depth[k], lat_frac[k] = _lung_geometry(p, k, s, x, y)
    heart, heart_d = _heart_geometry(p, x, y)
    lung_depth = depth["r"] + depth["l"]
    lung_field = inside["r"] | inside["l"]
    lung_eff = np.clip(lung_depth - 0.9 * heart_d, 0.0, None)

    replace = np.zeros((n, H, W), f32)      # cm of lung air replaced by soft tissue / fluid
    extra = np.zeros((n, H, W), f32)        # cm of soft tissue added along the beam
    air = np.zeros((n, H, W), f32)          # cm of soft tissue replaced by air (trachea, bubble)
    bone = np.zeros((n, H, W), f32)         # cm of cortical-bone equivalent
    lung_removed = np.zeros((n, H, W), f32)  # cm of lung parenchyma replaced by free air (pneumothorax, bullae)
    vessel_keep = np.ones((n, H, W), f32)

    # --- pulmonary vessels, branching out of the hila and fading toward the periphery
    #     (computed on lung pixels only: gather, evaluate, scatter back)
    vessels = np.zeros((n, H, W), f32)
    for k, s in _SIDES:
        b, i, j = np.nonzero(inside[k])
        xv, yv = coords[j], coords[i]
        ph = P["vessel_phase"][b, (0 if k == "r" else 4):].astype(f32)
        hx = P["cx"][b] + s * P[f"hilum_{k}"][b]
        dx, dy = s * (xv - hx), yv - P["hilum_y"][b]
        r = np.sqrt(dx * dx + dy * dy) + f32(1e-3)
        theta = np.arctan2(dy, dx)
        warped = theta + 0.22 * np.sin(6.0 * r + ph[:, 0]) + 0.08 * np.sin(17.0 * r + ph[:, 1])
        sharp = 2.5 * (1.0 + 5.0 * r)                        # exp(-sharp (1 - cos)) ~ (½ + ½cos)^(2 sharp)
        tree = (np.exp(-sharp * (1.0 - np.cos(7.0 * warped + ph[:, 2])))
                + 0.8 * _smoothstep(r, 0.12, 0.28) * np.exp(-1.6 * sharp * (1.0 - np.cos(13.0 * warped + ph[:, 3])))
                + 0.6 * _smoothstep(r, 0.28, 0.45) * np.exp(-2.2 * sharp * (1.0 - np.cos(23.0 * warped + 1.3 * ph[:, 3]))))
        zone = 1.0 + 0.5 * np.clip(dy, -0.6, 0.6)            # more flow to the bases when upright
        vessels[b, i, j] += (2.4 * np.exp(-r / 0.28) * tree * zone + 2.2 * np.exp(-(r / 0.075) ** 2)).astype(f32)
    vessels *= p["vessel_amp"] * np.clip(lung_eff / 5.0, 0, 1)

    # --- bones: posterior ribs (tubes with a cortical shell), anterior ribs, clavicles, scapulae,
    #     humeral heads, spine. Each is evaluated only in the rows/columns it can reach.
    def rows(lo, hi):
        return slice(int(np.searchsorted(coords, lo)), int(np.searchsorted(coords, hi)))

    def cols(s, lo, hi):          # columns whose lateral distance s*x lies in [lo, hi]
        return rows(lo, hi) if s > 0 else rows(-hi, -lo)

    for k, s in _SIDES:
        ax = s * (x - p["cx"])
        lat = p[f"lat_{k}"]
        curve = 0.85 * ((ax - 0.25) ** 2 - 0.0625) + 2.0 * np.clip(ax - (lat - 0.06), 0, None) ** 2
        yy = y - curve - p["rib_top"]
        sp = p["rib_spacing"]
        kk = (-sp + np.sqrt(np.clip(sp * sp + 0.16 * sp * yy, 0, None))) / (0.08 * sp)   # spacing grows downward
        idx = np.floor(kk)
        frac = kk - idx
        local_sp = sp * (1.0 + 0.08 * np.clip(kk, 0, None))
        half = (0.028 + 0.0025 * idx) / local_sp
        z2 = ((frac - 0.5) / half) ** 2
        tube = _chord(z2) - 0.72 * _chord(z2 / 0.72 ** 2) * 0.85
        valid = (idx >= 0) & (idx <= 9) & (ax > 0.06)
        extent = _smoothstep(ax, 0.05, 0.11) * (1.0 - _smoothstep(ax, lat + 0.05, lat + 0.16))
        bone += 1.5 * tube * valid * extent * (1.0 - 0.06 * np.clip(idx, 0, 9))
        # anterior ribs: fainter, sloping down toward the sternum, invisible medially (cartilage)
        cs = cols(s, 0.25, 1.0)
        axc = ax[:, :, cs]
        latc = lat
        ya = y - p["rib_top"] - 0.12 - 0.45 * (latc - axc) + 0.15 * (latc - axc) ** 2
        ka = ya / (1.2 * sp)
        ia = np.floor(ka)
        za = ((ka - ia - 0.5) * 1.2 * sp / 0.024) ** 2
        bone[:, :, cs] += 0.25 * _chord(za) * ((ia >= 0) & (ia <= 5)) * _smoothstep(axc, 0.3, 0.45) \
            * (1.0 - _smoothstep(axc, latc - 0.02, latc + 0.06))
        # clavicle: an S-shaped tube from the sternum to the acromion
        rs = rows(-1.0, -0.35)
        ys = y[:, rs]
        t = (ax - 0.06) / 0.66
        yc = p["clav_y"] - p["clav_tilt"] * t + 0.03 * np.sin(2 * np.pi * t)
        zc = ((ys - yc) / 0.03) ** 2
        ends = _smoothstep(t, -0.02, 0.05) * (1.0 - _smoothstep(t, 0.95, 1.05))
        bone[:, rs] += 2.2 * (_chord(zc) - 0.5 * _chord(zc / 0.6)) * ends
        # scapula: a thin plate whose medial border crosses the lung on AP films
        rs = rows(-0.85, 0.1)
        ys = y[:, rs]
        border = p["scap_x"] + 0.10 * ((ys + 0.3) / 0.5) ** 2
        span = _smoothstep(ys, -0.82, -0.74) * (1 - _smoothstep(ys, -0.05, 0.08))
        scap = _smoothstep(ax - border, 0.0, 0.02) * span
        rim = np.exp(-((ax - border) / 0.012) ** 2) * span
        bone[:, rs] += 0.45 * scap + 0.6 * rim
        # humeral head in the upper corner
        rs, cs = rows(-0.9, -0.4), cols(s, 0.8, 1.0)
        hh = ((ax[:, :, cs] - 1.0) ** 2 + (y[:, rs] + 0.66) ** 2) / 0.14 ** 2
        bone[:, rs, cs] += 2.5 * (_chord(hh) - 0.6 * _chord(hh / 0.75))
    # spine: vertebral bodies with discs and pedicles, behind the mediastinum
    cs = rows(-0.2, 0.2)
    sx = x[:, :, cs] - p["cx"]
    period = 0.118
    phase = (y - p["rib_top"] + 0.02) / period
    vert = 1.0 - 0.7 * np.exp(-((phase - np.round(phase)) / 0.12) ** 2)           # disc spaces
    spine = 3.0 * _chord((sx / 0.075) ** 2) * vert * (MU_SPONGY - MU_SOFT) / (MU_BONE - MU_SOFT)
    ped_y = (phase - np.floor(phase) - 0.45) * period
    for side in (-1.0, 1.0):
        pd2 = ((sx - side * 0.055) / 0.016) ** 2 + (ped_y / 0.024) ** 2
        spine = spine + 0.9 * (_chord(pd2) - 0.7 * _chord(pd2 / 0.5))
    bone[:, :, cs] += spine * _smoothstep(y, -1.0, -0.9)
    bone *= p["bone_density"]

    # --- airways: trachea and main bronchi; gastric bubble under the left dome
    carina_y = p["hilum_y"] - 0.1
    cs = rows(-0.2, 0.2)
    d_tr = np.abs(x[:, :, cs] - p["cx"] - 0.01 * (y - carina_y))
    air[:, :, cs] += 2.0 * 0.05 * CM_PER_UNIT * _chord((d_tr / 0.05) ** 2) * (y < carina_y) * _smoothstep(y, -1.0, -0.9)
    rs, cs = rows(-0.5, 0.1), rows(-0.4, 0.4)
    for k, s in _SIDES:
        hx = p["cx"] + s * (p[f"hilum_{k}"] - 0.05)
        dist = _segment_distance(x[:, :, cs], y[:, rs], p["cx"], carina_y, hx, p["hilum_y"] + (0.03 if k == "r" else -0.01))
        air[:, rs, cs] += 1.4 * _chord((dist / 0.028) ** 2) * (y[:, rs] > carina_y - 0.01)
    rs, cs = rows(0.1, 0.95), rows(0.0, 0.8)
    bx, by = p["cx"] + 0.40, p["dome_l"] + 0.10
    bd2 = ((x[:, :, cs] - bx) / (1.4 * p["bubble_r"])) ** 2 + ((y[:, rs] - by) / p["bubble_r"]) ** 2
    air[:, rs, cs] += p["bubble"] * 5.0 * _chord(bd2) * (y[:, rs] < by + 0.25 * p["bubble_r"])

    # --- breast shadows (female): soft tissue over the lower zones whose thickness tapers to zero at
    #     the rim ((1 - q)^1.5 rather than a hemi-ellipsoid's vertical wall), densest at the inferior fold
    for k, s in _SIDES:
        ax = s * (x - p["cx"])
        cy = p[f"dome_{k}"] - 0.02
        q = ((ax - 0.50) / 0.34) ** 2 + ((y - cy) / 0.27) ** 2
        extra += p["breast"] * 6.5 * _chord(q) ** 3 * _smoothstep(y, cy - 0.34, cy + 0.02)

    # --- findings
    fmask = {name: np.zeros((n, H, W), bool) for name in FINDING_MASKS}
    L = P["labels"]
    has = {name: np.nonzero(L[:, _LABEL_INDEX[name]] > 0.5)[0] for name in CXR_LABELS}

    def side_mask(sel, side):                 # lung field of ``side`` (per image, -1/+1/0 = both)
        out = np.zeros((len(sel), H, W), bool)
        for k, s in _SIDES:
            out |= inside[k][sel] & ((side == s) | (side == 0))
        return out

    def side_depth(sel, side):
        out = np.zeros((len(sel), H, W), f32)
        for k, s in _SIDES:
            out += depth[k][sel] * ((side == s) | (side == 0))
        return out

    for name in ("Nodule",):
        sel = has[name]
        if len(sel):
            q = _take(P, sel)
            for j in range(2):
                nx, ny, nr = (q["nodules"][..., j, i] for i in range(3))
                d2 = ((x - nx) ** 2 + (y - ny) ** 2) / np.maximum(nr, 1e-3) ** 2
                active = (j < q["nodule_n"]).astype(f32)
                replace[sel] += active * 2 * nr * CM_PER_UNIT * _chord(d2)
                fmask["nodule"][sel] |= (d2 < 1.0) & (active > 0)
    sel = has["Mass"]
    if len(sel):
        q = _take(P, sel)
        mx, my, mr, ph1, ph2 = (q["mass"][..., i] for i in range(5))
        ang = np.arctan2(y - my, x - mx)
        rr = mr * (1.0 + 0.12 * np.cos(3 * ang + ph1) + 0.06 * np.cos(5 * ang + ph2))
        d2 = ((x - mx) ** 2 + (y - my) ** 2) / rr ** 2
        replace[sel] += 2 * mr * CM_PER_UNIT * _chord(d2)
        fmask["mass"][sel] = d2 < 1.0
    sel = has["Effusion"]
    if len(sel):
        q = _take(P, sel)
        for k, s in _SIDES:
            main = q["eff_side"] == s
            amount = np.where(main, 1.0, 0.55 * q["eff_bilateral"])
            level = q[f"cp_{k}"] - q["eff_height"] * amount
            # the meniscus: concave upward, the fluid climbing the lateral chest wall; the fluid layer
            # thins toward its upper edge, so the opacity fades upward over ~3 cm instead of ending
            # in a ruler-straight line (that would be an air-fluid level, i.e. a hydropneumothorax)
            u = lat_frac[k][sel]
            meniscus = level - amount * (0.03 + 0.10 * u ** 2 + 0.18 * u ** 6)
            wet = _smoothstep(y - meniscus, -0.07, 0.07) * (amount > 0)
            region = inside[k][sel] & (y > meniscus) & (amount > 0)   # where the fluid is ≥ half its full thickness
            replace[sel] += q["lung_depth"] * 0.95 * wet * inside[k][sel]
            fmask["effusion"][sel] |= region
    sel = has["Pneumothorax"]
    if len(sel):
        q = _take(P, sel)
        for k, s in _SIDES:
            on = q["ptx_side"] == s
            ax = s * (x - q["cx"])
            a0 = 0.30 * q[f"lat_{k}"] / 0.8
            y_top = q[f"apex_{k}"] + 1.7 * (ax - a0) ** 2
            # the collapsed lung's edge runs parallel to the chest wall: a rim of free air, widest at
            # the apex and along the upper lateral wall, vanishing toward the costophrenic angle
            gap_w = q["ptx_gap"] * (1.0 - _smoothstep(y, q["hilum_y"], q[f"cp_{k}"]))
            rim = ((_lateral_edge(q[f"lat_{k}"], y) - ax) < gap_w) | ((y - y_top) < 1.3 * q["ptx_gap"])
            gap = inside[k][sel] & rim & on
            retracted = inside[k][sel] & ~gap & on
            fmask["pneumothorax"][sel] |= gap
            lung_removed[sel] += np.where(gap, depth[k][sel], 0.0)
            vessel_keep[sel] *= np.where(gap, 0.0, 1.0)
            replace[sel] += 0.12 * depth[k][sel] * retracted          # the collapsed lung is a little denser
            # the visceral pleural line: the edge of the collapsed lung
            edge = retracted & ~_erode(~gap)
            extra[sel] += 1.2 * edge * (px_mm / 3.0)
    sel = has["Consolidation"]
    if len(sel):
        q = _take(P, sel)
        s = q["con_side"]
        k_is_r = s < 0
        lat = np.where(k_is_r, q["lat_r"], q["lat_l"])
        cx_c = q["cx"] + s * (q["med"] + q["con_u"] * (lat - q["med"]))
        cy_c = np.where(q["con_upper"] > 0, q["hilum_y"] - 0.28, np.where(k_is_r, q["dome_r"], q["dome_l"]) - 0.17)
        ang = np.arctan2(y - cy_c, x - cx_c)
        rr = q["con_r"] * (1.0 + 0.18 * np.cos(2 * ang + q["con_phase"][..., 0]) + 0.1 * np.cos(5 * ang + q["con_phase"][..., 1]))
        d = np.sqrt((x - cx_c) ** 2 + ((y - cy_c) / 0.85) ** 2) / rr
        fissure = np.where(q["con_upper"] > 0, y < q["hilum_y"] - 0.08, True)   # the horizontal fissure gives a sharp edge
        lobe = (1.0 - _smoothstep(d, 0.55, 1.1)) * fissure
        lungs = side_mask(sel, s)
        bronchogram = np.clip(vessels[sel] / 2.4, 0, 1)                           # air in the bronchi stays dark
        replace[sel] += side_depth(sel, s) * lobe * (0.75 - 0.35 * bronchogram)
        fmask["consolidation"][sel] = (lobe > 0.5) & lungs
    sel = has["Atelectasis"]
    if len(sel):
        q = _take(P, sel)
        s = q["atel_side"]
        lat = np.where(s < 0, q["lat_r"], q["lat_l"])
        base_y = np.where(s < 0, q["dome_r"], q["dome_l"]) - q["atel_y"]
        xm = q["cx"] + s * (q["med"] + 0.55 * (lat - q["med"]))
        hl = 0.5 * q["atel_len"]
        x0, x1 = xm - hl, xm + hl
        y0, y1 = base_y - hl * np.tan(q["atel_tilt"]), base_y + hl * np.tan(q["atel_tilt"])
        dist = _segment_distance(x, y, x0, y0, x1, y1)
        plate = 1.0 - _smoothstep(dist / q["atel_w"], 0.6, 1.2)
        lungs = side_mask(sel, s)
        replace[sel] += side_depth(sel, s) * 0.35 * plate
        fmask["atelectasis"][sel] = (dist < q["atel_w"]) & lungs
    sel = has["Pneumonia"]
    if len(sel):
        q = _take(P, sel)
        field = np.zeros((len(sel), H, W), f32)
        for k, s in _SIDES:
            use = (q["pna_side"] == s) | (q["pna_side"] == 0)
            lat = q[f"lat_{k}"]
            for j in range(3):
                bu, by_, br = (q["pna_blobs"][..., j, i] for i in range(3))
                bx_ = q["cx"] + s * (q["med"] + bu * (lat - q["med"]))
                field += use * np.exp(-((x - bx_) ** 2 + (y - by_ - q["cy"]) ** 2) / br ** 2) * inside[k][sel]
        patchy = 0.65 + 0.35 * np.sin(21 * x + 13 * y + q["pna_phase"][..., 0]) * np.sin(9 * x - 19 * y + q["pna_phase"][..., 1])
        opacity = np.clip(1.6 * field * patchy - 0.15, 0, 1)
        replace[sel] += (depth["r"][sel] + depth["l"][sel]) * 0.75 * opacity
        fmask["pneumonia"][sel] = opacity > 0.3
    sel = has["Infiltration"]
    if len(sel):
        q = _take(P, sel)
        field = np.zeros((len(sel), H, W), f32)
        for k, s in _SIDES:
            use = (q["inf_side"] == s) | (q["inf_side"] == 0)
            cxk = q["cx"] + s * (q["med"] + 0.5 * (q[f"lat_{k}"] - q["med"]))
            field += use * np.exp(-((x - cxk) ** 2 / 1.4 + (y - q["inf_y"] - q["cy"]) ** 2) / q["inf_r"] ** 2) * inside[k][sel]
        texture = 0.55 + 0.45 * np.sin(31 * x + 7 * y + q["inf_phase"][..., 0]) * np.sin(11 * x + 29 * y + q["inf_phase"][..., 1])
        opacity = np.clip(field * texture, 0, 1)
        replace[sel] += (depth["r"][sel] + depth["l"][sel]) * 0.42 * opacity
        fmask["infiltration"][sel] = field > 0.45
    sel = has["Edema"]
    if len(sel):
        q = _take(P, sel)
        haze = np.zeros((len(sel), H, W), f32)
        for k, s in _SIDES:                                   # perihilar "bat-wing" haze
            ax = s * (x - q["cx"])
            haze += np.exp(-((ax - q[f"hilum_{k}"] - 0.08) / 0.30) ** 2 - ((y - q["hilum_y"] - 0.05) / 0.30) ** 2) * inside[k][sel]
            # Kerley B lines: short horizontal lines at the lateral bases
            for j in range(4):
                yk = q[f"cp_{k}"] - 0.06 - 0.045 * j
                line = np.exp(-((y - yk) / 0.007) ** 2) * _smoothstep(ax, q[f"lat_{k}"] - 0.11, q[f"lat_{k}"] - 0.07)
                replace[sel] += 0.8 * line * inside[k][sel] * (px_mm / 3.0) ** 0.5
        replace[sel] += q["edema_amp"] * (depth["r"][sel] + depth["l"][sel]) * haze
        vessels[sel] *= 1.0 + 0.6 * (y < q["hilum_y"])              # upper-lobe diversion
        fmask["edema"][sel] = (haze > 0.45) & (inside["r"][sel] | inside["l"][sel])
    sel = has["Emphysema"]
    if len(sel):
        q = _take(P, sel)
        for j in range(2):
            bs, bu, byy, br = (q["bullae"][..., j, i] for i in range(4))
            active = j < q["n_bullae"]
            lat = np.where(bs < 0, q["lat_r"], q["lat_l"])
            bx_ = q["cx"] + bs * (q["med"] + bu * (lat - q["med"]))
            d2 = ((x - bx_) ** 2 + (y - byy - q["cy"]) ** 2) / br ** 2
            lungs = side_mask(sel, bs)
            bulla = (d2 < 1.0) & lungs & active
            lung_removed[sel] += np.where(bulla, 0.9 * (depth["r"][sel] + depth["l"][sel]), 0.0)
            vessel_keep[sel] *= np.where(bulla, 0.1, 1.0)
            extra[sel] += 0.6 * np.exp(-((np.sqrt(d2) - 1.0) / 0.08) ** 2) * lungs * active    # thin wall
            fmask["emphysema"][sel] |= bulla
    sel = has["Fibrosis"]
    if len(sel):
        q = _take(P, sel)
        freq = min(40.0, size / 5.0)            # keep the reticulation above the Nyquist limit
        net = np.zeros((len(sel), H, W), f32)
        for j in range(3):
            a = q["fib_angle"] + j * np.pi / 3
            wave = np.sin(freq * (x * np.cos(a) + y * np.sin(a)) + q["fib_phase"][..., j])
            net = np.maximum(net, np.exp(-(wave / 0.35) ** 2))
        weight = np.zeros((len(sel), H, W), f32)
        for k, s in _SIDES:
            weight += inside[k][sel] * _smoothstep(lat_frac[k][sel], 0.5, 0.8) * _smoothstep(y - q["hilum_y"], -0.15, 0.3)
        replace[sel] += (depth["r"][sel] + depth["l"][sel]) * weight * (0.12 + 0.3 * net)
        fmask["fibrosis"][sel] = weight > 0.5
    sel = has["Pleural_Thickening"]
    if len(sel):
        q = _take(P, sel)
        band = np.zeros((len(sel), H, W), f32)
        for k, s in _SIDES:
            on = q["pt_side"] == s
            ax = s * (x - q["cx"])
            lat_y = _lateral_edge(q[f"lat_{k}"], y)
            lateral = (1 - _smoothstep(lat_y - ax, 0.6 * q["pt_width"], q["pt_width"])) * _smoothstep(y, -0.35 + q["cy"], -0.2 + q["cy"])
            a0 = 0.30 * q[f"lat_{k}"] / 0.8
            y_top = q[f"apex_{k}"] + 1.7 * (ax - a0) ** 2
            apical = (1 - _smoothstep(y - y_top, 0.6 * q["pt_width"], q["pt_width"])) * (y < q["hilum_y"] - 0.2)
            band += on * np.where(q["pt_apical"] > 0, apical, lateral) * inside[k][sel]
        replace[sel] += 0.5 * (depth["r"][sel] + depth["l"][sel]) * band
        extra[sel] += 1.5 * band
        fmask["pleural_thickening"][sel] = band > 0.5
    sel = has["Hernia"]
    if len(sel):
        q = _take(P, sel)
        hx, hy, hr = q["cx"] + 0.05, q["dome_l"] - 0.06, q["hernia_r"]
        d2 = ((x - hx) ** 2 + (y - hy) ** 2) / hr ** 2
        chord = 2 * hr * CM_PER_UNIT * _chord(d2)
        level = hy - 0.25 * hr
        extra[sel] += 0.5 * chord * (y >= level)
        air[sel] += 0.45 * chord * (y < level)                  # gas above an air-fluid level
        fmask["hernia"][sel] = d2 < 1.0

    # --- the line integral  L = Σ μ·t
    replace = np.clip(replace + vessels * vessel_keep, 0.0, None)
    lung_eff_air = np.clip(lung_eff - np.minimum(replace, lung_eff), 0.0, None)
    L = (MU_SOFT * (body_t + extra - np.minimum(air, body_t))
         - (MU_SOFT - p["mu_lung"]) * np.minimum(lung_eff, body_t)
         + (MU_SOFT - p["mu_lung"]) * (lung_eff - lung_eff_air)
         - p["mu_lung"] * np.minimum(lung_removed, lung_eff_air)
         + (MU_BONE - MU_SOFT) * bone * (body_t > 0.2))
    L = np.clip(L, 0.0, None).astype(f32)

    masks = {"body": body, "right_lung": inside["r"] & ~heart, "left_lung": inside["l"] & ~heart, "heart": heart}
    lesion = np.zeros((n, H, W), bool)
    for name in FINDING_MASKS:
        lesion |= fmask[name]
    masks["lesion"] = lesion
    masks.update(fmask)
    masks["_lung_field"] = lung_field
    return L, masks


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion over the last two axes (edges count as outside)."""
    out = mask.copy()
    out[..., 1:, :] &= mask[..., :-1, :]
    out[..., :-1, :] &= mask[..., 1:, :]
    out[..., :, 1:] &= mask[..., :, :-1]
    out[..., :, :-1] &= mask[..., :, 1:]
    out[..., 0, :] = out[..., -1, :] = False
    out[..., :, 0] = out[..., :, -1] = False
    return out


def _gaussian(images: np.ndarray, sigma_px: float) -> np.ndarray:
    """Blur every (H, W) image of a (n, H, W) stack with one Gaussian (sigma in pixels)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(images, sigma=(0.0, sigma_px, sigma_px), mode="nearest", truncate=3.0)


def _broad_blur(images: np.ndarray, sigma_frac: float) -> np.ndarray:
    """A broad Gaussian blur (sigma = sigma_frac × image side), computed on a 16× coarser grid and
    interpolated back bilinearly (scatter has no fine detail)."""
    from scipy.ndimage import gaussian_filter

    n, H, W = images.shape
    f = max(1, H // 16)
    if H % f or W % f or H != W:
        return _gaussian(images, sigma_frac * H)
    small = images.reshape(n, H // f, f, W // f, f).mean(axis=(2, 4))
    small = gaussian_filter(small, sigma=(0.0, sigma_frac * H / f, sigma_frac * W / f), mode="nearest")
    up = _upsample_matrix(H // f, H)
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


#: The anode heel effect: the beam is weaker on the anode side (the top of a PA chest film) by about
#: this fraction, stronger at the bottom by as much (a smooth gradient, visible in the air).
_HEEL = 0.07
#: Where the scanner's window puts direct exposure (air beside the body), as a fraction of the lung-to-
#: body range below the lung minimum. Histogram analysis keeps the direct-exposure peak inside the
#: display range instead of clipping it, so air is dark but never a constant: its quantum noise and
#: the heel gradient stay visible.
_AIR_MARGIN = 0.04


def _detect_and_process(L: np.ndarray, P, noise: np.ndarray | None, size: int, lung_field, body,
                        dose: float = 1.0) -> np.ndarray:
    """Line integral → photons (scatter, quantum noise, detector blur) → log → scanner processing.

    ``noise`` (n, H, W) standard normal, or ``None`` for the noiseless image (the expected photon
    counts: the ground truth of denoising). ``dose`` scales the photon fluence (0.25 = quarter dose:
    the relative quantum noise grows by 1/√dose); the processing does not depend on it.
    """
    n = len(L)
    scanner = P["scanner"].astype(int)
    sc = {key: np.asarray([_SCANNERS[s][key] for s in scanner], np.float32) for key in _SCANNERS[0]}
    ap = P["ap"].astype(np.float32)
    px_mm = 2.0 * CM_PER_UNIT * 10.0 / size
    # photons per pixel without the patient: fixed fluence per mm², so smaller images are less noisy
    i0 = 4000.0 * (128.0 / size) ** 2 * sc["dose"] * (1.0 - 0.3 * ap) * float(dose)
    rows = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0)[None, :, None]
    heel = 1.0 + _HEEL * rows                                # (1, H, 1): fewer photons at the top
    primary = np.exp(-L)
    spr = sc["spr"] * (1.0 + 1.2 * ap)                    # portable AP films are often taken without a grid
    detected = (primary + _broad_blur(primary, 0.18) * _col(spr)) * heel
    expected = _col(i0) * detected
    counts = expected if noise is None else expected + np.sqrt(expected) * noise  # Poisson variance = mean
    for scanner_id in np.unique(scanner):               # detector blur (MTF), one per scanner
        sel = scanner == scanner_id
        sigma = math.sqrt((_SCANNERS[scanner_id]["blur_mm"] / px_mm) ** 2 + 0.35 ** 2)
        counts[sel] = _gaussian(counts[sel], sigma)
    log_signal = np.log(_col(i0) / np.maximum(counts, 0.5))
    log_expected = -np.log(detected)
    # window from the darkest lung to the brightest body pixel (the scanner's histogram analysis),
    # widened downward so that direct exposure (air) stays just inside the display range
    lung_min = np.where(lung_field, log_expected, np.inf).reshape(n, -1).min(1)
    lung_min = np.where(np.isfinite(lung_min), lung_min, np.percentile(log_expected.reshape(n, -1), 20, axis=1))
    body_max = np.where(body, log_expected, -np.inf).reshape(n, -1).max(1)
    body_max = np.where(np.isfinite(body_max), body_max, log_expected.reshape(n, -1).max(1))
    air_min = np.where(body, np.inf, log_expected).reshape(n, -1).min(1)
    air_min = np.where(np.isfinite(air_min), air_min, lung_min)
    lo = np.minimum(lung_min - 0.10 * (body_max - lung_min), air_min - _AIR_MARGIN * (body_max - air_min))
    hi = body_max + 0.02 * (body_max - lung_min)
    v = (log_signal - _col(lo)) / _col(np.maximum(hi - lo, 1e-3))
    # characteristic curve (an S-curve, scanner-specific) normalised so 0 → 0 and 1 → 1
    g, c0 = _col(sc["contrast"]), _col(sc["centre"])
    curve = lambda t: np.tanh(g * (t - c0))
    v = (curve(np.clip(v, -0.2, 1.2)) - curve(0.0)) / (curve(1.0) - curve(0.0))
    # edge enhancement (unsharp masking), as every digital radiography system applies
    v = v.astype(np.float32)
    v = v + _col(sc["enhance"]) * (v - _gaussian(v, 0.025 * size + 0.5))
    return np.clip(v, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------ public API
def _check_args(n, image_size, seed):
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (number of images), got {n!r}")
    if not isinstance(image_size, (int, np.integer)) or not 16 <= image_size <= 1024:
        raise ValueError(f"image_size must be an integer between 16 and 1024 pixels, got {image_size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _check_dose(dose, quantum_noise):
    if isinstance(dose, bool) or not isinstance(dose, (int, float, np.integer, np.floating)) \
            or not math.isfinite(dose) or not 0.0 < dose <= 100.0:
        raise ValueError(f"dose must be a relative photon fluence in (0, 100] (1.0 = full dose), got {dose!r}")
    if not isinstance(quantum_noise, (bool, np.bool_)):
        raise ValueError(f"quantum_noise must be True or False, got {quantum_noise!r}")


def _sample_cases(n: int, seed: int) -> list[dict]:
    cases: list[dict] = []
    patient_id = 0
    while len(cases) < n:
        patient_id += 1
        count_rng = np.random.default_rng([seed, patient_id, 7])
        n_images = 1 + min(int(count_rng.poisson(1.3)), 5)
        cases.extend(_sample_patient(seed, patient_id, n_images))
    return cases[:n]


def _metadata(c: dict) -> dict:
    return dict(patient_id=int(c["patient_id"]), follow_up=int(c["follow_up"]),
                image_index=f"{int(c['patient_id']):08d}_{int(c['follow_up']):03d}.png",
                age=int(c["age"]), sex=c["sex"], view=c["view"], scanner=int(c["scanner"]))


def iter_phantoms(n: int, image_size: int = 64, seed: int = 0, chunk_size: int = 64,
                  masks: bool | Sequence[str] = True, *, dose: float = 1.0,
                  quantum_noise: bool = True) -> Iterator[PhantomBatch]:
    """Yield ``generate_phantoms(n, image_size, seed)`` in chunks of ``chunk_size`` images.

    The bytes do not depend on ``chunk_size``: each image's noise comes from its own generator.
    Use it to write large sets without holding every mask in memory.
    """
    _check_args(n, image_size, seed)
    _check_dose(dose, quantum_noise)
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    cases = _sample_cases(int(n), int(seed))
    for start in range(0, len(cases), chunk_size):
        part = cases[start:start + chunk_size]
        P = _stack_cases(part)
        noise = np.stack([np.random.default_rng([seed, c["patient_id"], c["follow_up"], 1])
                          .standard_normal((image_size, image_size), dtype=np.float32) for c in part])
        images, all_masks = _render(P, int(image_size), noise if quantum_noise else None, float(dose))
        if masks is not True:
            keep = set(masks or ())
            unknown = keep - set(all_masks)
            if unknown:
                raise ValueError(f"unknown mask names {sorted(unknown)}; expected some of {sorted(all_masks)}")
            all_masks = {k: v for k, v in all_masks.items() if k in keep}
        yield PhantomBatch(images=images, masks=all_masks, labels=P["labels"].astype(np.float32),
                           cardiothoracic_ratio=P["ctr"].astype(np.float32),
                           metadata=[_metadata(c) for c in part])


def generate_phantoms(n: int, image_size: int = 64, seed: int = 0, *,
                      masks: bool | Sequence[str] = True, dose: float = 1.0,
                      quantum_noise: bool = True) -> PhantomBatch:
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
    return PhantomBatch.concatenate(list(iter_phantoms(n, image_size, seed, masks=masks, dose=dose,
                                                       quantum_noise=quantum_noise)))


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
    for h, r, l in zip(heart, right_lung, left_lung):
        hc = np.nonzero(h.any(0))[0]
        lc = np.nonzero((r | l | h).any(0))[0]
        if len(hc) == 0 or len(lc) == 0:
            out.append(np.nan)
            continue
        out.append((hc[-1] - hc[0] + 1) / (lc[-1] - lc[0] + 1))
    res = np.asarray(out, np.float32)
    return res[0] if single else res


# --------------------------------------------------------------------------------- NIH layout
#: The header of the NIH ``Data_Entry_2017.csv`` (with its bracketed names, whose commas split them
#: into two columns each, and the trailing comma that gives an unnamed 12th column).
NIH_2017_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                   "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")


def write_synthetic_cxr(root, n: int = 2000, image_size: int = 128, seed: int = 0, *,
                        test_fraction: float = 0.2, images_per_folder: int = 10000,
                        with_masks: bool = True, progress: bool = True) -> Path:
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
        ``root`` as a Path.
    """
    _check_args(n, image_size, seed)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    from PIL import Image

    root = Path(root)
    _prepare_output_folder(root)
    (root / "masks").mkdir(exist_ok=True) if with_masks else None
    start_time = time.perf_counter()
    rows, truth, patient_ids, names = [], [], [], []
    bar = _progress(n, progress, "writing phantoms")
    spacing_mm = 2.0 * CM_PER_UNIT * 10.0 / image_size
    written = 0
    for batch in iter_phantoms(n, image_size, seed, chunk_size=64, masks=True if with_masks else ()):
        pixels = np.round(batch.images * 255.0).astype(np.uint8)
        for i, meta in enumerate(batch.metadata):
            folder = root / f"images_{written // images_per_folder + 1:03d}" / "images"
            folder.mkdir(parents=True, exist_ok=True)
            name = meta["image_index"]
            Image.fromarray(pixels[i], mode="L").save(folder / name, optimize=False, compress_level=6)
            if with_masks:
                _save_masks(root / "masks" / name.replace(".png", ".npz"), {k: v[i] for k, v in batch.masks.items()})
            rows.append([name, labels_to_string(batch.labels[i]), meta["follow_up"], meta["patient_id"],
                         meta["age"], meta["sex"], meta["view"], image_size, image_size,
                         f"{spacing_mm:.3f}", f"{spacing_mm:.3f}", ""])
            truth.append([name, f"{batch.cardiothoracic_ratio[i]:.4f}", meta["scanner"], meta["sex"],
                          meta["age"], meta["view"]])
            patient_ids.append(meta["patient_id"])
            names.append(name)
            written += 1
        bar.update(len(batch))
    bar.close()
    with open(root / "Data_Entry_2017.csv", "w", newline="") as fh:
        fh.write(NIH_2017_HEADER + "\n")
        csv.writer(fh, lineterminator="\n").writerows(rows)
    with open(root / "phantom_truth.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["Image Index", "Cardiothoracic Ratio", "Scanner", "Patient Sex", "Patient Age", "View Position"])
        w.writerows(truth)
    train_idx, test_idx = patient_split(patient_ids, (1.0 - test_fraction, test_fraction), seed)
    (root / "train_val_list.txt").write_text("".join(names[i] + "\n" for i in sorted(train_idx)))
    (root / "test_list.txt").write_text("".join(names[i] + "\n" for i in sorted(test_idx)))
    (root / "README.txt").write_text(
        "Synthetic chest radiographs (meddiff-lab phantom) in the NIH ChestX-ray14 layout.\n"
        f"n={n} image_size={image_size} seed={seed} phantom_version={PHANTOM_VERSION}.\n"
        "Not patient data; labels are true by construction.\n"
        "masks/<image>.npz holds the organ and finding masks; phantom_truth.csv the cardiothoracic ratio.\n"
        "Regenerate with: meddiff-lab data write --out <this folder>\n")
    if progress:
        print(f"wrote {n} images ({image_size} px) to {root} in {time.perf_counter() - start_time:.1f} s")
    return root


def _prepare_output_folder(root: Path) -> None:
    """Create ``root``; clear an earlier synthetic set there; refuse to write over anything else."""
    import shutil

    if root.exists() and not root.is_dir():
        raise ValueError(f"output {root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / "README.txt"
    ours = stamp.is_file() and "meddiff-lab phantom" in stamp.read_text(errors="ignore")
    if ours:
        for sub in list(root.glob("images_*")) + [root / "masks"]:
            if sub.is_dir():
                shutil.rmtree(sub)
    elif any(root.iterdir()):
        raise ValueError(f"{root} is not empty and does not hold a synthetic set written here; refusing to write "
                         f"over it (a real ChestX-ray14 folder?). Choose an empty or new folder.")


def load_phantom_masks(root, image_index: str, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Read the masks written by :func:`write_synthetic_cxr` for one image (dict of (H, W) bool).

    Raises:
        FileNotFoundError: naming the mask file when it is missing.
    """
    path = Path(root) / "masks" / Path(image_index).with_suffix(".npz").name
    if not path.is_file():
        raise FileNotFoundError(f"no masks for {image_index!r}: expected {path} (written by write_synthetic_cxr "
                                f"with with_masks=True)")
    with np.load(path) as data:
        stored = [str(v) for v in data["names"]]
        bits = data["bits"]
    keys = stored if names is None else list(names)
    missing = [k for k in keys if k not in stored]
    if missing:
        raise KeyError(f"mask(s) {missing} not in {path}; it has {stored}")
    return {k: ((bits >> np.uint32(stored.index(k))) & np.uint32(1)).astype(bool) for k in keys}


def _save_masks(path: Path, masks: dict[str, np.ndarray]) -> None:
    """Store up to 32 (H, W) bool masks as one compressed uint32 bit field (bit i = ``names[i]``)."""
    names = list(masks)
    bits = np.zeros(next(iter(masks.values())).shape, np.uint32)
    for i, name in enumerate(names):
        bits |= masks[name].astype(np.uint32) << np.uint32(i)
    np.savez_compressed(path, bits=bits, names=np.asarray(names))


def _progress(total: int, enabled: bool, desc: str):
    if enabled:
        try:
            from tqdm.auto import tqdm
            return tqdm(total=total, desc=desc, unit="img")
        except ImportError:  # pragma: no cover
            pass

    class _Silent:
        def update(self, k):
            pass

        def close(self):
            pass
    return _Silent()


# ------------------------------------------------------------------------------------- gallery
_OUTLINES = (("right_lung", "#35b7ff"), ("left_lung", "#35b7ff"), ("heart", "#ff5a5a"), ("lesion", "#ffd23f"))


def phantom_gallery(batch: PhantomBatch, cols: int = 4, size: float = 3.0, outlines: bool = True):
    """A grid of phantoms with lungs (blue), heart (red) and findings (yellow) outlined and labels written.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n = len(batch)
    cols = max(1, min(cols, n))
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.9), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(batch.images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="bilinear")
        if outlines:
            for name, colour in _OUTLINES:
                if name in batch.masks and batch.masks[name][i].any():
                    ax.contour(batch.masks[name][i].astype(float), levels=[0.5], colors=[colour], linewidths=0.8)
        m = batch.metadata[i]
        ax.set_title(f"{m['image_index']}  {m['view']} {m['sex']} {m['age']} y  CTR {batch.cardiothoracic_ratio[i]:.2f}\n"
                     f"{labels_to_string(batch.labels[i]).replace('|', ', ')}", fontsize=7.5)
    if outlines:
        handles = [Line2D([], [], color=c, label=l) for l, c in (("lung fields", "#35b7ff"), ("heart", "#ff5a5a"),
                                                                  ("findings", "#ffd23f"))]
        fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=9)
    fig.suptitle("Synthetic chest radiographs (radiological display: patient's left on the viewer's right)", fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def save_gallery(path, n: int = 12, image_size: int = 256, seed: int = 0, cols: int = 4, dpi: int = 110) -> Path:
    """Generate ``n`` phantoms and save :func:`phantom_gallery` as a PNG at ``path``."""
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"gallery path must end in .png, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = phantom_gallery(generate_phantoms(n, image_size, seed), cols=cols)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
