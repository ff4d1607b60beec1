"""Patients and films of the phantom: every number that describes one radiograph, drawn at random.

A *patient* has a sex, an age, a build, a heart size, chronic findings and the shape of their
chest; a patient has 1–6 *films* (follow-ups), each with its own view (PA or AP), scanner,
inspiration and acute findings. :func:`sample_cases` draws them; a *case* is the dict of one film's
parameters. The drawing is reproducible: patient ``i`` of seed ``s`` always gets the same random
numbers (``np.random.default_rng([s, i])``), so the first k images do not depend on how many are
drawn.

Case parameters (normalised units: one unit is 20 cm; ``y`` down; ``_r``/``_l`` = patient's right/left):

=================================  ==============================================================
``cx``, ``cy``                     offset of the patient's midline / of the chest from the image centre
``chest_w``, ``thickness``         half width of the chest; body thickness along the beam (cm)
``lung_depth``                     lung depth at mid-lung (cm)
``lat_*``, ``apex_*``              lateral lung border at its widest; y of the lung apex
``dome_*``, ``cp_*``               y of the diaphragm dome and of the costophrenic angle
``med``, ``knob``, ``knob_y``      medial lung border; aortic knob bulge and its height
``heart_x/y/a/b/angle/depth``      heart ellipse: centre, semi-axes, rotation, depth (cm)
``ctr``                            cardiothoracic ratio (widest heart / thoracic width)
``rib_spacing``, ``rib_top``       spacing of the posterior ribs; y of the first rib
``clav_y``, ``clav_tilt``          clavicle height and tilt; ``scap_x``: scapula's medial border
``hilum_r/l``, ``hilum_y``         hila (lateral distance, height); ``vessel_phase``, ``vessel_amp``
``bone_density``, ``breast``       bone scale (lower with age); breast size (0 for men)
``bubble``, ``bubble_r``           gastric bubble present (0/1) and its radius
``mu_lung``                        lung attenuation (cm⁻¹; lower in emphysema)
``female``, ``ap``, ``scanner``    0/1 flags and the scanner index
``nodule_n``, ``nodules``, ...     parameters of each finding (``mass``, ``eff_*``, ``ptx_*``, ``con_*``,
                                   ``atel_*``, ``pna_*``, ``inf_*``, ``edema_amp``, ``pt_*``,
                                   ``hernia_r``, ``fib_*``, ``bullae``), drawn whether or not the
                                   film has the finding (so each draw stays in step)
``findings``                       dict finding name -> bool (true by construction)
=================================  ==============================================================
"""

from __future__ import annotations

import math

import numpy as np

from meddiff_lab.data.cxr_labels import CXR_LABELS
from meddiff_lab.data.phantom_anatomy import SIDES, heart_geometry, heart_half_width, lung_geometry
from meddiff_lab.data.phantom_xray import MU_LUNG, SCANNERS

__all__ = ["sample_cases", "sample_patient", "sample_film", "place_in_lung", "stack_cases", "select_params"]

# Acute findings are drawn per image, chronic ones once per patient (they persist in follow-ups).
ACUTE = (
    "Atelectasis",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
)
CHRONIC = ("Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
P_ABNORMAL_ACUTE = 0.5  # share of images with at least one acute finding
P_ACUTE = 0.10  # prevalence of each acute finding among all images
P_CHRONIC = 0.12  # prevalence of each chronic finding among patients
P_CARDIOMEGALY_PATIENT = 0.18
P_AP = 0.35  # ChestX-ray14 has ~40 % AP films
AP_HEART_MAGNIFICATION = 1.12


def sample_cases(n: int, seed: int) -> list[dict]:
    """The first ``n`` films of patients 1, 2, ... (each with 1–6 films): a list of case dicts."""
    cases: list[dict] = []
    patient_id = 0
    while len(cases) < n:
        patient_id += 1
        count_rng = np.random.default_rng([seed, patient_id, 7])
        n_images = 1 + min(int(count_rng.poisson(1.3)), 5)
        cases.extend(sample_patient(seed, patient_id, n_images))
    return cases[:n]


def sample_patient(seed: int, patient_id: int, n_images: int) -> list[dict]:
    """Draw one patient's anatomy and ``n_images`` follow-up films (dicts of scalars)."""
    rng = np.random.default_rng([seed, patient_id])
    sex = "F" if rng.random() < 0.45 else "M"
    first_age = int(np.clip(rng.normal(50, 17), 18, 88))
    chronic = {name: rng.random() < P_CHRONIC for name in CHRONIC}
    if rng.random() < P_CARDIOMEGALY_PATIENT:
        heart_ratio = rng.uniform(0.50, 0.61)
    else:
        heart_ratio = float(np.clip(rng.normal(0.425, 0.03), 0.34, 0.49))
    if chronic["Emphysema"]:
        heart_ratio -= 0.025  # the long, narrow heart of hyperinflation
    build = rng.normal(0.0, 1.0)  # habitus: negative slim, positive heavy
    female = sex == "F"
    patient = dict(
        sex=sex,
        age0=first_age,
        ctr0=heart_ratio,
        chest_w=float(np.clip(0.90 + 0.025 * build + 0.0006 * (first_age - 45) - (0.02 if female else 0), 0.84, 0.97)),
        thickness=float(np.clip(22 + 2.5 * build + 0.04 * (first_age - 45) - (1.5 if female else 0), 16, 31)),
        lat=float(np.clip(rng.normal(0.79, 0.02) - (0.02 if female else 0), 0.72, 0.85)),
        apex=rng.normal(-0.80, 0.02),
        dome=rng.normal(0.38, 0.03),
        dome_diff=rng.normal(0.055, 0.02),
        cp_drop=rng.normal(0.20, 0.025),
        med=rng.normal(0.11, 0.01),
        knob=float(np.clip(0.035 + 0.0011 * (first_age - 30) + rng.normal(0, 0.008), 0.02, 0.11)),
        knob_y=rng.normal(-0.36, 0.03),
        bone_density=float(np.clip(1.0 - 0.006 * max(first_age - 35, 0) * (1.4 if female else 1.0), 0.55, 1.0)),
        rib_spacing=rng.normal(0.145, 0.008),
        rib_top=rng.normal(-0.86, 0.02),
        breast=float(rng.uniform(0.6, 1.3)) if female else 0.0,
        hilum_r=rng.normal(0.24, 0.02),
        hilum_l=rng.normal(0.23, 0.02),
        hilum_y=rng.normal(-0.12, 0.03),
        vessel_phase=rng.uniform(0, 2 * np.pi, 8),
        chronic=chronic,
    )
    # chronic finding parameters (fixed for the patient)
    patient["pt_side"] = rng.choice([-1.0, 1.0])
    patient["pt_apical"] = rng.random() < 0.3
    patient["pt_width"] = rng.uniform(0.035, 0.07)
    patient["hernia_r"] = rng.uniform(0.075, 0.12)
    patient["fib_phase"] = rng.uniform(0, 2 * np.pi, 3)
    patient["fib_angle"] = rng.uniform(0, np.pi)
    patient["bullae"] = [
        (rng.choice([-1.0, 1.0]), rng.uniform(0.35, 0.65), rng.uniform(-0.55, -0.2), rng.uniform(0.06, 0.11))
        for _ in range(2)
    ]
    patient["n_bullae"] = int(rng.integers(1, 3))

    cases = []
    age = first_age
    for follow_up in range(n_images):
        if follow_up:
            age += int(rng.integers(0, 3))
        cases.append(sample_film(rng, patient, patient_id, follow_up, age))
    return cases


def sample_film(rng: np.random.Generator, patient: dict, patient_id: int, follow_up: int, age: int) -> dict:
    """One film of ``patient``: view, scanner, positioning, inspiration, findings; returns its case dict."""
    view = "AP" if rng.random() < P_AP else "PA"
    ap = view == "AP"
    case: dict = dict(
        patient_id=patient_id,
        follow_up=follow_up,
        age=age,
        sex=patient["sex"],
        view=view,
        scanner=int(rng.integers(0, len(SCANNERS))),
    )
    case["female"] = float(patient["sex"] == "F")
    case["ap"] = float(ap)
    case["cx"] = rng.normal(0.0, 0.015)
    case["cy"] = rng.normal(0.0, 0.02)
    case["chest_w"] = patient["chest_w"]
    case["thickness"] = patient["thickness"]
    case["lung_depth"] = 0.58 * patient["thickness"]
    inspiration = rng.normal(0.0, 0.025) + (0.06 if ap else 0.0)  # AP (supine, portable): poorer inspiration
    case["med"] = patient["med"]
    case["knob"], case["knob_y"] = patient["knob"], patient["knob_y"] + case["cy"]
    case["bone_density"] = patient["bone_density"]
    case["rib_spacing"], case["rib_top"] = patient["rib_spacing"], patient["rib_top"] + case["cy"] + 0.6 * inspiration
    case["breast"] = patient["breast"]
    case["hilum_r"], case["hilum_l"] = patient["hilum_r"], patient["hilum_l"]
    case["hilum_y"] = patient["hilum_y"] + case["cy"]
    case["vessel_phase"] = patient["vessel_phase"] + rng.normal(0, 0.15, 8)
    case["vessel_amp"] = 1.0
    case["mu_lung"] = MU_LUNG
    case["clav_y"] = -0.66 + case["cy"] - (0.08 if ap else 0.0) + rng.normal(0, 0.015)
    case["clav_tilt"] = (0.03 if ap else 0.11) + rng.normal(0, 0.015)
    case["scap_x"] = (0.66 if ap else 0.90) + rng.normal(0, 0.02)
    case["bubble"] = float(rng.random() < 0.75)
    case["bubble_r"] = rng.uniform(0.06, 0.11)
    for side, _ in SIDES:
        case[f"lat_{side}"] = patient["lat"] + rng.normal(0, 0.006)
        case[f"apex_{side}"] = patient["apex"] + case["cy"] + rng.normal(0, 0.01)
        left_lower = patient["dome_diff"] if side == "l" else 0.0  # the left dome sits lower
        case[f"dome_{side}"] = patient["dome"] + case["cy"] + inspiration + left_lower
        case[f"cp_{side}"] = case[f"dome_{side}"] + patient["cp_drop"]

    findings = {name: False for name in CXR_LABELS}
    for name, present in patient["chronic"].items():
        findings[name] = bool(present)
    if rng.random() < P_ABNORMAL_ACUTE:
        drawn = [name for name in ACUTE if rng.random() < P_ACUTE / P_ABNORMAL_ACUTE]
        if not drawn:
            drawn = [ACUTE[int(rng.integers(len(ACUTE)))]]
        for name in drawn:
            findings[name] = True

    # --- findings that change the anatomy come first
    if findings["Emphysema"]:  # hyperinflation: low flat domes, lucent lungs, pruned vessels
        for side, _ in SIDES:
            case[f"dome_{side}"] += 0.09
            case[f"cp_{side}"] = case[f"dome_{side}"] + 0.09
            case[f"lat_{side}"] += 0.02
        case["mu_lung"] = 0.032
        case["vessel_amp"] = 0.6
    if findings["Fibrosis"]:  # volume loss
        for side, _ in SIDES:
            case[f"dome_{side}"] -= 0.05
            case[f"cp_{side}"] -= 0.05
    case["atel_side"] = rng.choice([-1.0, 1.0])
    if findings["Atelectasis"]:  # volume loss: the hemidiaphragm rises, the mediastinum shifts toward it
        side = "r" if case["atel_side"] < 0 else "l"
        elevation = rng.uniform(0.03, 0.07)
        case[f"dome_{side}"] -= elevation
        case[f"cp_{side}"] -= elevation
        case["cx"] += case["atel_side"] * rng.uniform(0.0, 0.02)

    _sample_heart(rng, patient, case, ap)
    findings["Cardiomegaly"] = case["ctr"] > 0.5

    # --- focal findings
    case["nodule_n"] = 0
    case["nodules"] = np.zeros((2, 3))
    if findings["Nodule"]:
        case["nodule_n"] = 1 + int(rng.random() < 0.25)
        for j in range(case["nodule_n"]):
            case["nodules"][j] = place_in_lung(rng, case, radius=rng.uniform(0.03, 0.065))
    case["mass"] = np.zeros(5)
    if findings["Mass"]:
        case["mass"][:3] = place_in_lung(rng, case, radius=rng.uniform(0.08, 0.13))
        case["mass"][3:] = rng.uniform(0, 2 * np.pi, 2)
    case["eff_side"] = rng.choice([-1.0, 1.0])
    case["eff_height"] = rng.uniform(0.12, 0.40)
    case["eff_bilateral"] = float(rng.random() < 0.25)
    case["ptx_side"] = rng.choice([-1.0, 1.0])
    case["ptx_gap"] = rng.uniform(0.07, 0.18)
    case["con_side"] = rng.choice([-1.0, 1.0])
    case["con_upper"] = float(rng.random() < 0.35)
    case["con_u"], case["con_r"] = rng.uniform(0.4, 0.7), rng.uniform(0.14, 0.22)
    case["con_phase"] = rng.uniform(0, 2 * np.pi, 2)
    case["atel_y"], case["atel_len"] = rng.uniform(0.08, 0.2), rng.uniform(0.18, 0.32)
    case["atel_tilt"], case["atel_w"] = rng.normal(0.0, 0.12), rng.uniform(0.018, 0.03)
    case["pna_side"] = rng.choice([-1.0, 1.0, 0.0], p=[0.4, 0.4, 0.2])  # 0 = both lungs
    case["pna_blobs"] = np.stack([rng.uniform(0.35, 0.75, 3), rng.uniform(-0.2, 0.3, 3), rng.uniform(0.07, 0.13, 3)], 1)
    case["pna_phase"] = rng.uniform(0, 2 * np.pi, 2)
    case["inf_side"] = rng.choice([-1.0, 1.0, 0.0], p=[0.35, 0.35, 0.3])
    case["inf_y"], case["inf_r"] = rng.uniform(-0.35, 0.15), rng.uniform(0.18, 0.28)
    case["inf_phase"] = rng.uniform(0, 2 * np.pi, 3)
    case["edema_amp"] = rng.uniform(0.35, 0.6)
    case["pt_side"], case["pt_apical"], case["pt_width"] = (
        patient["pt_side"],
        float(patient["pt_apical"]),
        patient["pt_width"],
    )
    case["hernia_r"] = patient["hernia_r"]
    case["fib_phase"], case["fib_angle"] = patient["fib_phase"], patient["fib_angle"]
    case["bullae"] = np.asarray(patient["bullae"])
    case["n_bullae"] = patient["n_bullae"]
    case["findings"] = findings
    return case


def _sample_heart(rng: np.random.Generator, patient: dict, case: dict, ap: bool) -> None:
    """The heart ellipse of a film (``heart_*`` and ``ctr`` in ``case``): the patient's cardiothoracic
    ratio, magnified on AP films, kept at least 0.01 away from 0.5 so the Cardiomegaly label is
    unambiguous at pixel resolution."""
    ratio = patient["ctr0"] * (AP_HEART_MAGNIFICATION if ap else 1.0) * rng.normal(1.0, 0.01)
    if abs(ratio - 0.5) < 0.01:
        ratio = 0.5 + math.copysign(0.01, ratio - 0.5 if ratio != 0.5 else 1.0)
    thoracic_width = case["lat_r"] + case["lat_l"]
    heart_half_w = 0.5 * ratio * thoracic_width
    angle = case["heart_angle"] = rng.normal(0.45, 0.05)
    aspect = rng.uniform(0.58, 0.68)
    case["heart_a"] = heart_half_w / math.sqrt(math.cos(angle) ** 2 + (aspect * math.sin(angle)) ** 2)
    case["heart_b"] = aspect * case["heart_a"]
    heart_half_h = math.sqrt((case["heart_a"] * math.sin(angle)) ** 2 + (case["heart_b"] * math.cos(angle)) ** 2)
    case["heart_x"] = case["cx"] + 0.38 * heart_half_w + rng.normal(0, 0.01)
    case["heart_y"] = 0.5 * (case["dome_r"] + case["dome_l"]) + 0.06 - heart_half_h
    case["heart_depth"] = 11.0 * (heart_half_w / 0.36) ** 0.5
    case["ctr"] = 2 * heart_half_width(case["heart_a"], case["heart_b"], angle) / thoracic_width


def place_in_lung(rng: np.random.Generator, case: dict, radius: float) -> np.ndarray:
    """(x, y, r) of a disc that lies inside a lung field, clear of the heart (rejection sampling;
    the radius shrinks by 20 % after each of 4 failed rounds, then a safe spot in the right mid zone)."""
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    for attempt in range(4):
        r = radius * (0.8**attempt)
        xs = rng.uniform(-0.85, 0.85, 96)
        ys = rng.uniform(-0.75, 0.45, 96)
        px = xs[:, None] + 1.15 * r * np.concatenate([[0.0], np.cos(angles)])[None]
        py = ys[:, None] + 1.15 * r * np.concatenate([[0.0], np.sin(angles)])[None]
        fits = np.zeros(96, bool)
        for side, sign in SIDES:
            inside, _, _ = lung_geometry(case, side, sign, px, py)
            fits |= inside.all(1)
        heart, _ = heart_geometry(case, px, py)
        fits &= ~heart.any(1)
        hits = np.nonzero(fits)[0]
        if len(hits):
            return np.array([xs[hits[0]], ys[hits[0]], r])
    return np.array([case["cx"] - 0.45, -0.2 + case["cy"], 0.03])


def stack_cases(cases: list[dict]) -> dict[str, np.ndarray]:
    """List of case dicts → dict of arrays, first axis = image (floats as float32), plus ``labels``
    (n, 14) float32 multi-hot over ``CXR_LABELS``."""
    keys = [k for k, v in cases[0].items() if k not in ("findings", "sex", "view")]
    out = {k: np.asarray([c[k] for c in cases]) for k in keys}
    out = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in out.items()}
    out["labels"] = np.asarray([[c["findings"][name] for name in CXR_LABELS] for c in cases], dtype=np.float32)
    return out


def select_params(stacked: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """Parameters of the images ``index``, shaped (len(index), 1, 1, ...) to broadcast over (H, W)."""
    return {k: v[index].reshape((len(index), 1, 1) + v.shape[1:]) for k, v in stacked.items()}
