"""Normal chest anatomy of the phantom, as centimetres of tissue along the X-ray beam.

Each function here draws one anatomical part for a chunk of n images at once and gives its
thickness map: how many centimetres of that tissue the beam crosses at every detector pixel.

==========================  ==================================================================
function                    draws → into which field of ``TissueLayers``
==========================  ==================================================================
:func:`draw_body`           torso (elliptical cross-section), shoulders, neck → ``body``
:func:`draw_thorax`         lung fields (domes, mediastinal borders), heart → ``aerated_lung``
:func:`draw_vessels`        pulmonary vessels from the hila → ``vessels``
:func:`add_bones`           ribs, clavicles, scapulae, humeral heads, spine → ``bone``
:func:`add_airways`         trachea, main bronchi, gastric bubble → ``air``
:func:`add_breast_shadows`  breast shadows (female patients) → ``soft_tissue_added``
==========================  ==================================================================

``draw_*`` functions return new arrays; ``add_*`` functions add into an existing (n, H, W) float32
layer in place (several parts share one layer, and the order of the additions is part of the
phantom's bytes). The mediastinum is the soft tissue left between the two lungs' medial borders;
the aortic knob and the pulmonary trunk bulge into the left lung's border (:func:`lung_geometry`).

Conventions:
    * ``params``: the patient and film parameters (see :mod:`meddiff_lab.data.phantom_patients`),
      each value an (n, 1, 1) array (or a scalar for one case) that broadcasts over (n, H, W).
    * Coordinates are normalised (:class:`Grid`): ``x`` and ``y`` run from -1 to 1 across the image
      (``y`` down), one unit is 20 cm. Images are in radiological display: the patient's right lung
      is on the viewer's left (``x < 0``).
    * ``side`` is ``"r"`` or ``"l"`` (the patient's right or left), ``sign`` is -1 or +1 (the
      direction of that side in ``x``), and ``lateral = sign * (x - params["cx"])`` is the distance
      from the midline, positive toward that side's chest wall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meddiff_lab.data.phantom_xray import CM_PER_UNIT, MU_BONE, MU_SOFT, MU_SPONGY, pixel_centres, pixel_size_mm

__all__ = [
    "SIDES",
    "Grid",
    "Thorax",
    "smoothstep",
    "chord",
    "segment_distance",
    "lateral_edge",
    "lung_top",
    "lung_geometry",
    "heart_geometry",
    "heart_half_width",
    "draw_body",
    "draw_thorax",
    "draw_vessels",
    "add_bones",
    "add_airways",
    "add_breast_shadows",
]

#: (side, sign): the patient's right lung is on the viewer's left (x < 0)
SIDES = (("r", -1.0), ("l", 1.0))


# ------------------------------------------------------------------------------------ small maths
def smoothstep(value, lo, hi):
    """0 below ``lo``, 1 above ``hi``, a smooth S-curve (3t² - 2t³) between."""
    t = np.clip((value - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def chord(d2):
    """Chord through a unit sphere/cylinder at squared normalised distance d2: sqrt(1 - d2), 0 outside."""
    return np.sqrt(np.clip(1.0 - d2, 0.0, None))


def segment_distance(x, y, x0, y0, x1, y1):
    """Distance from points (x, y) to the segment (x0, y0)–(x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.hypot(x - x0 - t * dx, y - y0 - t * dy)


@dataclass(frozen=True)
class Grid:
    """The pixel grid of a square image in normalised coordinates.

    Attributes:
        size: image side in pixels.
        coords: (size,) float32 pixel centres in (-1, 1), the same along both axes.
        x: (1, 1, W) column coordinates; y: (1, H, 1) row coordinates (down).
        pixel_mm: side of one pixel in mm.
    """

    size: int
    coords: np.ndarray
    x: np.ndarray
    y: np.ndarray
    pixel_mm: float

    @classmethod
    def for_size(cls, size: int) -> Grid:
        coords = pixel_centres(size)
        return cls(
            size=size, coords=coords, x=coords[None, None, :], y=coords[None, :, None], pixel_mm=pixel_size_mm(size)
        )

    def span(self, lo: float, hi: float) -> slice:
        """The pixels (rows or columns) whose centre lies in [lo, hi): a part is drawn only where it can reach."""
        return slice(int(np.searchsorted(self.coords, lo)), int(np.searchsorted(self.coords, hi)))

    def lateral_span(self, sign: float, lo: float, hi: float) -> slice:
        """The columns whose lateral distance ``sign * x`` lies in [lo, hi) (midline at x = 0)."""
        return self.span(lo, hi) if sign > 0 else self.span(-hi, -lo)


def lateral_distance(params, sign: float, x):
    """Distance from the patient's midline toward the chest wall of the side with ``sign``."""
    return sign * (x - params["cx"])


# ----------------------------------------------------------------------------- lungs and heart
def lateral_edge(widest, y):
    """Lateral lung border: widest (= ``widest``) at y = 0.2, curving in toward the apex, a little toward the base."""
    return widest - 0.20 * np.clip((0.2 - y) / 1.0, 0, 1) ** 2 - 0.04 * np.clip((y - 0.2) / 0.5, 0, 1) ** 2


def lung_top(widest, apex_y, lateral):
    """Upper border of a lung (y of the apex curve) at the lateral distance ``lateral``."""
    return apex_y + 1.7 * (lateral - 0.30 * widest / 0.8) ** 2


def lung_geometry(params, side: str, sign: float, x, y):
    """The lung field of one side.

    Returns:
        (inside, depth_cm, lateral_fraction): ``inside`` bool, the hemithorax outline bounded by the
        apex, the lateral chest wall, the mediastinum and the diaphragm dome; ``depth_cm`` the lung's
        depth along the beam (largest mid-lung, 0 at its borders); ``lateral_fraction`` in [0, 1]
        from the medial (0) to the lateral (1) border. Shapes broadcast from ``params``, x and y.
    """
    lateral = lateral_distance(params, sign, x)
    widest, apex_y, dome_y = params[f"lat_{side}"], params[f"apex_{side}"], params[f"dome_{side}"]
    costophrenic_y = params[f"cp_{side}"]
    medial = params["med"]
    if side == "l":  # aortic knob and pulmonary trunk bulge into the left lung's medial border
        medial = (
            medial
            + params["knob"] * np.exp(-(((y - params["knob_y"]) / 0.075) ** 2))
            + 0.35 * params["knob"] * np.exp(-(((y - params["knob_y"] - 0.17) / 0.06) ** 2))
        )
    top_y = lung_top(widest, apex_y, lateral)
    lateral_border = lateral_edge(widest, y)
    dome_peak = 0.45 * widest
    dome_curvature = (costophrenic_y - dome_y) / (widest - dome_peak) ** 2
    diaphragm_y = dome_y + dome_curvature * (lateral - dome_peak) ** 2
    inside = (y > top_y) & (lateral < lateral_border) & (lateral > medial) & (y < diaphragm_y)
    lateral_fraction = np.clip((lateral - medial) / (lateral_border - medial), 0.0, 1.0)
    horizontal = np.sqrt(lateral_fraction) * (1.0 - lateral_fraction) ** 0.25 / 0.62
    vertical = np.sqrt(np.clip((y - top_y) / 0.22, 0.0, 1.0)) * np.sqrt(np.clip((diaphragm_y - y) / 0.10, 0.0, 1.0))
    depth_cm = params["lung_depth"] * horizontal * vertical * inside
    return inside, depth_cm, lateral_fraction


def heart_geometry(params, x, y):
    """Heart silhouette: (inside bool, depth in cm). A rotated ellipse, long axis toward the apex."""
    dx, dy = x - params["heart_x"], y - params["heart_y"]
    cos_angle, sin_angle = np.cos(params["heart_angle"]), np.sin(params["heart_angle"])
    along = dx * cos_angle + dy * sin_angle
    across = -dx * sin_angle + dy * cos_angle
    ellipse_r2 = (along / params["heart_a"]) ** 2 + (across / params["heart_b"]) ** 2
    return ellipse_r2 < 1.0, params["heart_depth"] * chord(ellipse_r2)


def heart_half_width(semi_axis_a: float, semi_axis_b: float, angle: float) -> float:
    """Half the horizontal width of an ellipse with semi-axes a, b rotated by ``angle`` (radians)."""
    return math.sqrt((semi_axis_a * math.cos(angle)) ** 2 + (semi_axis_b * math.sin(angle)) ** 2)


@dataclass
class Thorax:
    """Lung fields and heart of a chunk of n images; every array is (n, H, W).

    Attributes:
        lung_inside: side ("r"/"l") -> bool lung field of that side (including the part behind the heart).
        lung_depth: side -> float32 lung depth along the beam (cm).
        lateral_fraction: side -> float32 in [0, 1], medial (0) to lateral (1) border.
        heart_inside: bool heart silhouette.
        heart_depth: heart depth along the beam (cm).
        aerated_lung: cm of lung the beam crosses, once the heart has pushed lung aside (≥ 0).
        lung_field: bool, both lung fields (right | left).
    """

    lung_inside: dict[str, np.ndarray]
    lung_depth: dict[str, np.ndarray]
    lateral_fraction: dict[str, np.ndarray]
    heart_inside: np.ndarray
    heart_depth: np.ndarray
    aerated_lung: np.ndarray
    lung_field: np.ndarray

    def side_mask(self, sel: np.ndarray, side_sign) -> np.ndarray:
        """(len(sel), H, W) bool lung field of the images ``sel`` on ``side_sign`` per image
        ((len(sel), 1, 1) of -1, +1, or 0 for both lungs)."""
        out = np.zeros((len(sel),) + self.lung_field.shape[1:], bool)
        for side, sign in SIDES:
            out |= self.lung_inside[side][sel] & ((side_sign == sign) | (side_sign == 0))
        return out

    def side_depth(self, sel: np.ndarray, side_sign) -> np.ndarray:
        """(len(sel), H, W) float32 lung depth (cm) of the images ``sel`` on ``side_sign`` (as :meth:`side_mask`)."""
        out = np.zeros((len(sel),) + self.lung_field.shape[1:], np.float32)
        for side, sign in SIDES:
            out += self.lung_depth[side][sel] * ((side_sign == sign) | (side_sign == 0))
        return out

    def both_depths(self, sel: np.ndarray) -> np.ndarray:
        """(len(sel), H, W) lung depth of both lungs (cm) of the images ``sel``."""
        return self.lung_depth["r"][sel] + self.lung_depth["l"][sel]


# ------------------------------------------------------------------------------------- drawing
def draw_body(params, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """The torso (an elliptical cross-section), shoulders and neck.

    Returns:
        (body_cm, body_mask): (n, H, W) float32 soft-tissue thickness in cm (0 to the patient's
        thickness, about 16–31 cm, thinner at the neck) and (n, H, W) bool where it exceeds 0.5 cm.
    """
    x, y = grid.x, grid.y
    chest_half_width = params["chest_w"] - 0.04 * np.clip(y - 0.6, 0, None)
    body_half_width = chest_half_width + (1.3 - chest_half_width) * smoothstep(-y, 0.55, 0.72)
    from_midline = np.abs(x - params["cx"])
    shoulder_y = (
        -1.02 + 0.28 * np.clip((from_midline - 0.22) / 0.65, 0, 1) ** 0.7 + 0.12 * np.clip(from_midline - 0.87, 0, None)
    )
    below_shoulder = smoothstep(y - shoulder_y, 0.0, 0.05)
    body_cm = params["thickness"] * chord((x - params["cx"]) ** 2 / body_half_width**2) * below_shoulder
    body_cm = body_cm * (1.0 - 0.35 * smoothstep(-y, 0.7, 0.95))  # the neck is thinner
    return body_cm, body_cm > 0.5


def draw_thorax(params, grid: Grid) -> Thorax:
    """Both lung fields (apex, chest wall, mediastinum, diaphragm domes) and the heart, which pushes lung aside."""
    lung_inside, lung_depth, lateral_fraction = {}, {}, {}
    for side, sign in SIDES:
        lung_inside[side], lung_depth[side], lateral_fraction[side] = lung_geometry(params, side, sign, grid.x, grid.y)
    heart_inside, heart_depth = heart_geometry(params, grid.x, grid.y)
    aerated_lung = np.clip(lung_depth["r"] + lung_depth["l"] - 0.9 * heart_depth, 0.0, None)
    return Thorax(
        lung_inside=lung_inside,
        lung_depth=lung_depth,
        lateral_fraction=lateral_fraction,
        heart_inside=heart_inside,
        heart_depth=heart_depth,
        aerated_lung=aerated_lung,
        lung_field=lung_inside["r"] | lung_inside["l"],
    )


def draw_vessels(stacked: dict[str, np.ndarray], params, grid: Grid, thorax: Thorax) -> np.ndarray:
    """Pulmonary vessels branching out of the hila and fading toward the periphery.

    A tree in polar coordinates around each hilum: lobes of ``cos(k·angle)`` that sharpen with the
    distance and split (7, 13, 23 branches), warped so they curve. Computed on lung pixels only
    (gather, evaluate, scatter back).

    Args:
        stacked: per-image parameters (n,) of the chunk; params: the same as (n, 1, 1).

    Returns:
        (n, H, W) float32 soft tissue in cm (0 to about 5 near the hila), 0 outside the lungs,
        scaled by ``vessel_amp`` (pruned in emphysema) and by the aerated lung depth.
    """
    n = len(stacked["cx"])
    vessels = np.zeros((n, grid.size, grid.size), np.float32)
    for side, sign in SIDES:
        image_idx, row_idx, col_idx = np.nonzero(thorax.lung_inside[side])
        pixel_x, pixel_y = grid.coords[col_idx], grid.coords[row_idx]
        phases = stacked["vessel_phase"][image_idx, (0 if side == "r" else 4) :].astype(np.float32)
        hilum_x = stacked["cx"][image_idx] + sign * stacked[f"hilum_{side}"][image_idx]
        outward, below = sign * (pixel_x - hilum_x), pixel_y - stacked["hilum_y"][image_idx]
        distance = np.sqrt(outward * outward + below * below) + np.float32(1e-3)
        angle = np.arctan2(below, outward)
        warped = angle + 0.22 * np.sin(6.0 * distance + phases[:, 0]) + 0.08 * np.sin(17.0 * distance + phases[:, 1])
        sharpness = 2.5 * (1.0 + 5.0 * distance)  # exp(-sharp (1 - cos)) ~ (½ + ½cos)^(2 sharp)
        tree = (
            np.exp(-sharpness * (1.0 - np.cos(7.0 * warped + phases[:, 2])))
            + 0.8
            * smoothstep(distance, 0.12, 0.28)
            * np.exp(-1.6 * sharpness * (1.0 - np.cos(13.0 * warped + phases[:, 3])))
            + 0.6
            * smoothstep(distance, 0.28, 0.45)
            * np.exp(-2.2 * sharpness * (1.0 - np.cos(23.0 * warped + 1.3 * phases[:, 3])))
        )
        zone = 1.0 + 0.5 * np.clip(below, -0.6, 0.6)  # more flow to the bases when upright
        vessels[image_idx, row_idx, col_idx] += (
            2.4 * np.exp(-distance / 0.28) * tree * zone + 2.2 * np.exp(-((distance / 0.075) ** 2))
        ).astype(np.float32)
    vessels *= params["vessel_amp"] * np.clip(thorax.aerated_lung / 5.0, 0, 1)
    return vessels


# --------------------------------------------------------------------------------------- bones
def add_posterior_ribs(bone_cm: np.ndarray, params, side: str, sign: float, grid: Grid) -> None:
    """Ten posterior ribs of one side: curved tubes with a cortical shell, spacing growing downward.

    Adds up to about 1.5 cm of bone per rib to ``bone_cm`` (n, H, W).
    """
    x, y = grid.x, grid.y
    lateral = lateral_distance(params, sign, x)
    widest = params[f"lat_{side}"]
    curve = 0.85 * ((lateral - 0.25) ** 2 - 0.0625) + 2.0 * np.clip(lateral - (widest - 0.06), 0, None) ** 2
    below_first_rib = y - curve - params["rib_top"]
    spacing = params["rib_spacing"]
    # rib number as a continuous value: solves below = spacing·k + 0.04·spacing·k² (spacing grows downward)
    rib_position = (-spacing + np.sqrt(np.clip(spacing * spacing + 0.16 * spacing * below_first_rib, 0, None))) / (
        0.08 * spacing
    )
    rib_number = np.floor(rib_position)
    within_rib = rib_position - rib_number
    local_spacing = spacing * (1.0 + 0.08 * np.clip(rib_position, 0, None))
    half_height = (0.028 + 0.0025 * rib_number) / local_spacing
    across2 = ((within_rib - 0.5) / half_height) ** 2
    tube = chord(across2) - 0.72 * chord(across2 / 0.72**2) * 0.85
    valid = (rib_number >= 0) & (rib_number <= 9) & (lateral > 0.06)
    extent = smoothstep(lateral, 0.05, 0.11) * (1.0 - smoothstep(lateral, widest + 0.05, widest + 0.16))
    bone_cm += 1.5 * tube * valid * extent * (1.0 - 0.06 * np.clip(rib_number, 0, 9))


def add_anterior_ribs(bone_cm: np.ndarray, params, side: str, sign: float, grid: Grid) -> None:
    """Anterior ribs of one side: fainter, sloping down toward the sternum, invisible medially (cartilage).

    Adds up to 0.25 cm of bone to ``bone_cm`` (n, H, W), in the lateral half of the side only.
    """
    cols = grid.lateral_span(sign, 0.25, 1.0)
    lateral = lateral_distance(params, sign, grid.x)[:, :, cols]
    widest = params[f"lat_{side}"]
    spacing = params["rib_spacing"]
    below_first_rib = grid.y - params["rib_top"] - 0.12 - 0.45 * (widest - lateral) + 0.15 * (widest - lateral) ** 2
    rib_position = below_first_rib / (1.2 * spacing)
    rib_number = np.floor(rib_position)
    across2 = ((rib_position - rib_number - 0.5) * 1.2 * spacing / 0.024) ** 2
    bone_cm[:, :, cols] += (
        0.25
        * chord(across2)
        * ((rib_number >= 0) & (rib_number <= 5))
        * smoothstep(lateral, 0.3, 0.45)
        * (1.0 - smoothstep(lateral, widest - 0.02, widest + 0.06))
    )


def add_clavicle(bone_cm: np.ndarray, params, sign: float, grid: Grid) -> None:
    """One clavicle: an S-shaped tube from the sternum to the acromion (higher on AP films).

    Adds up to about 2.2 cm of bone to ``bone_cm`` (n, H, W), in the upper rows only.
    """
    rows = grid.span(-1.0, -0.35)
    row_y = grid.y[:, rows]
    along = (lateral_distance(params, sign, grid.x) - 0.06) / 0.66  # 0 at the sternum, 1 at the acromion
    centre_y = params["clav_y"] - params["clav_tilt"] * along + 0.03 * np.sin(2 * np.pi * along)
    across2 = ((row_y - centre_y) / 0.03) ** 2
    ends = smoothstep(along, -0.02, 0.05) * (1.0 - smoothstep(along, 0.95, 1.05))
    bone_cm[:, rows] += 2.2 * (chord(across2) - 0.5 * chord(across2 / 0.6)) * ends


def add_scapula(bone_cm: np.ndarray, params, sign: float, grid: Grid) -> None:
    """One scapula: a thin plate whose medial border crosses the lung on AP films.

    Adds 0.45 cm of plate and up to 0.6 cm at its rim to ``bone_cm`` (n, H, W).
    """
    rows = grid.span(-0.85, 0.1)
    row_y = grid.y[:, rows]
    lateral = lateral_distance(params, sign, grid.x)
    border = params["scap_x"] + 0.10 * ((row_y + 0.3) / 0.5) ** 2
    height = smoothstep(row_y, -0.82, -0.74) * (1 - smoothstep(row_y, -0.05, 0.08))
    plate = smoothstep(lateral - border, 0.0, 0.02) * height
    rim = np.exp(-(((lateral - border) / 0.012) ** 2)) * height
    bone_cm[:, rows] += 0.45 * plate + 0.6 * rim


def add_humeral_head(bone_cm: np.ndarray, params, sign: float, grid: Grid) -> None:
    """One humeral head: a ball with a cortical shell in the upper corner. Adds up to 2.5 cm of bone."""
    rows, cols = grid.span(-0.9, -0.4), grid.lateral_span(sign, 0.8, 1.0)
    lateral = lateral_distance(params, sign, grid.x)[:, :, cols]
    d2 = ((lateral - 1.0) ** 2 + (grid.y[:, rows] + 0.66) ** 2) / 0.14**2
    bone_cm[:, rows, cols] += 2.5 * (chord(d2) - 0.6 * chord(d2 / 0.75))


def add_spine(bone_cm: np.ndarray, params, grid: Grid) -> None:
    """The thoracic spine behind the mediastinum: vertebral bodies with disc spaces, and pedicles.

    Vertebral bodies are trabecular bone, counted as their cortical-bone equivalent
    ``(μ_spongy - μ_soft) / (μ_bone - μ_soft)``. Adds up to about 2 cm to the central columns of
    ``bone_cm`` (n, H, W).
    """
    cols = grid.span(-0.2, 0.2)
    y = grid.y
    from_midline = grid.x[:, :, cols] - params["cx"]
    period = 0.118  # one vertebra (about 2.4 cm)
    phase = (y - params["rib_top"] + 0.02) / period
    discs = 1.0 - 0.7 * np.exp(-(((phase - np.round(phase)) / 0.12) ** 2))
    spine = 3.0 * chord((from_midline / 0.075) ** 2) * discs * (MU_SPONGY - MU_SOFT) / (MU_BONE - MU_SOFT)
    pedicle_y = (phase - np.floor(phase) - 0.45) * period
    for pedicle_side in (-1.0, 1.0):
        d2 = ((from_midline - pedicle_side * 0.055) / 0.016) ** 2 + (pedicle_y / 0.024) ** 2
        spine = spine + 0.9 * (chord(d2) - 0.7 * chord(d2 / 0.5))
    bone_cm[:, :, cols] += spine * smoothstep(y, -1.0, -0.9)


def add_bones(bone_cm: np.ndarray, params, grid: Grid) -> None:
    """All bones into ``bone_cm`` (n, H, W) float32 cm of cortical-bone equivalent, scaled by the
    patient's ``bone_density`` (in [0.55, 1], lower with age)."""
    for side, sign in SIDES:
        add_posterior_ribs(bone_cm, params, side, sign, grid)
        add_anterior_ribs(bone_cm, params, side, sign, grid)
        add_clavicle(bone_cm, params, sign, grid)
        add_scapula(bone_cm, params, sign, grid)
        add_humeral_head(bone_cm, params, sign, grid)
    add_spine(bone_cm, params, grid)
    bone_cm *= params["bone_density"]


# ------------------------------------------------------------------------- airways, soft tissue
def add_airways(air_cm: np.ndarray, params, grid: Grid) -> None:
    """Trachea (2 cm wide, down to the carina), the two main bronchi, and the gastric air bubble
    under the left dome (in 75 % of films). Adds cm of air (up to about 5) to ``air_cm`` (n, H, W)."""
    x, y = grid.x, grid.y
    carina_y = params["hilum_y"] - 0.1
    cols = grid.span(-0.2, 0.2)
    from_trachea = np.abs(x[:, :, cols] - params["cx"] - 0.01 * (y - carina_y))
    air_cm[:, :, cols] += (
        2.0 * 0.05 * CM_PER_UNIT * chord((from_trachea / 0.05) ** 2) * (y < carina_y) * smoothstep(y, -1.0, -0.9)
    )
    rows, cols = grid.span(-0.5, 0.1), grid.span(-0.4, 0.4)
    for side, sign in SIDES:
        bronchus_end_x = params["cx"] + sign * (params[f"hilum_{side}"] - 0.05)
        bronchus_end_y = params["hilum_y"] + (0.03 if side == "r" else -0.01)
        from_bronchus = segment_distance(
            x[:, :, cols], y[:, rows], params["cx"], carina_y, bronchus_end_x, bronchus_end_y
        )
        air_cm[:, rows, cols] += 1.4 * chord((from_bronchus / 0.028) ** 2) * (y[:, rows] > carina_y - 0.01)
    rows, cols = grid.span(0.1, 0.95), grid.span(0.0, 0.8)
    bubble_x, bubble_y = params["cx"] + 0.40, params["dome_l"] + 0.10
    bubble_r = params["bubble_r"]
    d2 = ((x[:, :, cols] - bubble_x) / (1.4 * bubble_r)) ** 2 + ((y[:, rows] - bubble_y) / bubble_r) ** 2
    air_cm[:, rows, cols] += params["bubble"] * 5.0 * chord(d2) * (y[:, rows] < bubble_y + 0.25 * bubble_r)


def add_breast_shadows(soft_tissue_cm: np.ndarray, params, grid: Grid) -> None:
    """Breast shadows (female patients; ``params["breast"]`` is 0 for men): soft tissue over the lower
    zones whose thickness tapers to zero at the rim ((1 - q)^1.5 rather than a hemi-ellipsoid's
    vertical wall), densest at the inferior fold. Adds up to about 8 cm to ``soft_tissue_cm`` (n, H, W)."""
    x, y = grid.x, grid.y
    for side, sign in SIDES:
        lateral = lateral_distance(params, sign, x)
        centre_y = params[f"dome_{side}"] - 0.02
        ellipse_r2 = ((lateral - 0.50) / 0.34) ** 2 + ((y - centre_y) / 0.27) ** 2
        soft_tissue_cm += (
            params["breast"] * 6.5 * chord(ellipse_r2) ** 3 * smoothstep(y, centre_y - 0.34, centre_y + 0.02)
        )
