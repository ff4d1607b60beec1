"""The phantom's findings: what each ChestX-ray14 finding does to the tissue along the beam, and its mask.

Each ``add_<finding>`` function draws one finding on the images of a chunk that have it: it adds
its tissue to the shared :class:`~meddiff_lab.data.phantom_xray.TissueLayers` (in place, at the
rows ``sel``) and returns its mask. Most findings fill lung with soft tissue or fluid
(``lung_filled``); a pneumothorax and emphysema's bullae replace lung by free air
(``lung_removed``) and remove the vessels there; pleural thickening and bulla walls add soft
tissue; a hiatal hernia adds soft tissue and gas.

Findings that change the anatomy itself (emphysema's low flat domes, the volume loss of fibrosis and
atelectasis, cardiomegaly's large heart) are drawn as parameters of the case, in
:mod:`meddiff_lab.data.phantom_patients`; Cardiomegaly has no mask of its own (its ground truth is
the heart mask and the cardiothoracic ratio).

Every ``add_*`` function has the same arguments:
    params: the parameters of the selected images, each (len(sel), 1, 1) (or wider for arrays).
    sel: (len(sel),) int indices of those images in the chunk.
    grid: the pixel grid (:class:`~meddiff_lab.data.phantom_anatomy.Grid`).
    thorax: lung fields and heart of the whole chunk (:class:`~meddiff_lab.data.phantom_anatomy.Thorax`).
    layers: the tissue layers of the whole chunk, each (n, H, W) float32 cm.
and returns the finding's mask, (len(sel), H, W) bool.

:data:`FINDINGS_IN_ORDER` fixes the order in which the findings are drawn: several add to the same
layer, and the order of the additions is part of the phantom's bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from meddiff_lab.data.cxr_labels import FINDING_MASKS, LABEL_INDEX
from meddiff_lab.data.phantom_anatomy import (
    SIDES,
    Grid,
    Thorax,
    chord,
    lateral_distance,
    lateral_edge,
    lung_top,
    segment_distance,
    smoothstep,
)
from meddiff_lab.data.phantom_patients import select_params
from meddiff_lab.data.phantom_xray import CM_PER_UNIT, TissueLayers

__all__ = ["FINDINGS_IN_ORDER", "add_findings", "erode"]


def erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion over the last two axes (edges count as outside)."""
    out = mask.copy()
    out[..., 1:, :] &= mask[..., :-1, :]
    out[..., :-1, :] &= mask[..., 1:, :]
    out[..., :, 1:] &= mask[..., :, :-1]
    out[..., :, :-1] &= mask[..., :, 1:]
    out[..., 0, :] = out[..., -1, :] = False
    out[..., :, 0] = out[..., :, -1] = False
    return out


# ------------------------------------------------------------------------------ focal opacities
def add_nodules(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """One or two round opacities (< 3 cm) inside a lung, clear of the heart: spheres of soft tissue."""
    x, y = grid.x, grid.y
    mask = np.zeros((len(sel), grid.size, grid.size), bool)
    for j in range(2):
        centre_x, centre_y, radius = (params["nodules"][..., j, i] for i in range(3))
        d2 = ((x - centre_x) ** 2 + (y - centre_y) ** 2) / np.maximum(radius, 1e-3) ** 2
        drawn = (j < params["nodule_n"]).astype(np.float32)
        layers.lung_filled[sel] += drawn * 2 * radius * CM_PER_UNIT * chord(d2)
        mask |= (d2 < 1.0) & (drawn > 0)
    return mask


def add_mass(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """A lobulated opacity (3–5 cm) inside a lung, clear of the heart."""
    x, y = grid.x, grid.y
    centre_x, centre_y, radius, phase_3, phase_5 = (params["mass"][..., i] for i in range(5))
    angle = np.arctan2(y - centre_y, x - centre_x)
    lobulated_radius = radius * (1.0 + 0.12 * np.cos(3 * angle + phase_3) + 0.06 * np.cos(5 * angle + phase_5))
    d2 = ((x - centre_x) ** 2 + (y - centre_y) ** 2) / lobulated_radius**2
    layers.lung_filled[sel] += 2 * radius * CM_PER_UNIT * chord(d2)
    return d2 < 1.0


# ------------------------------------------------------------------------------------- pleura
def add_effusion(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """Fluid filling a lung base up to a meniscus that climbs the lateral chest wall (25 % bilateral).

    The fluid layer thins toward its upper edge, so the opacity fades upward over ~3 cm instead of
    ending in a ruler-straight line (that would be an air-fluid level, i.e. a hydropneumothorax).
    The mask is where the fluid is at least half its full thickness.
    """
    y = grid.y
    mask = np.zeros((len(sel), grid.size, grid.size), bool)
    for side, sign in SIDES:
        amount = np.where(params["eff_side"] == sign, 1.0, 0.55 * params["eff_bilateral"])  # 0 on a dry side
        level = params[f"cp_{side}"] - params["eff_height"] * amount
        lateral_fraction = thorax.lateral_fraction[side][sel]
        meniscus_y = level - amount * (0.03 + 0.10 * lateral_fraction**2 + 0.18 * lateral_fraction**6)
        wet = smoothstep(y - meniscus_y, -0.07, 0.07) * (amount > 0)
        lung = thorax.lung_inside[side][sel]
        layers.lung_filled[sel] += params["lung_depth"] * 0.95 * wet * lung
        mask |= lung & (y > meniscus_y) & (amount > 0)
    return mask


def add_pneumothorax(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """Free air between the chest wall and the collapsed lung: no lung tissue and no vessels there.

    The collapsed lung's edge runs parallel to the chest wall: a rim of free air, widest at the apex
    and along the upper lateral wall, vanishing toward the costophrenic angle. The collapsed lung
    is a little denser, and the visceral pleural line (its edge) is drawn as a thin line. The mask is
    the free air.
    """
    y = grid.y
    mask = np.zeros((len(sel), grid.size, grid.size), bool)
    for side, sign in SIDES:
        on_this_side = params["ptx_side"] == sign
        lateral = lateral_distance(params, sign, grid.x)
        top_y = lung_top(params[f"lat_{side}"], params[f"apex_{side}"], lateral)
        gap_width = params["ptx_gap"] * (1.0 - smoothstep(y, params["hilum_y"], params[f"cp_{side}"]))
        rim = ((lateral_edge(params[f"lat_{side}"], y) - lateral) < gap_width) | ((y - top_y) < 1.3 * params["ptx_gap"])
        lung = thorax.lung_inside[side][sel]
        lung_depth = thorax.lung_depth[side][sel]
        free_air = lung & rim & on_this_side
        collapsed = lung & ~free_air & on_this_side
        mask |= free_air
        layers.lung_removed[sel] += np.where(free_air, lung_depth, 0.0)
        layers.vessels_visible[sel] *= np.where(free_air, 0.0, 1.0)
        layers.lung_filled[sel] += 0.12 * lung_depth * collapsed
        pleural_line = collapsed & ~erode(~free_air)
        layers.soft_tissue_added[sel] += 1.2 * pleural_line * (grid.pixel_mm / 3.0)
    return mask


def add_pleural_thickening(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """A band of soft tissue along the lateral chest wall, or an apical cap (30 % of patients)."""
    y = grid.y
    band = np.zeros((len(sel), grid.size, grid.size), np.float32)
    width = params["pt_width"]
    for side, sign in SIDES:
        on_this_side = params["pt_side"] == sign
        lateral = lateral_distance(params, sign, grid.x)
        lateral_border = lateral_edge(params[f"lat_{side}"], y)
        along_wall = (1 - smoothstep(lateral_border - lateral, 0.6 * width, width)) * smoothstep(
            y, -0.35 + params["cy"], -0.2 + params["cy"]
        )
        top_y = lung_top(params[f"lat_{side}"], params[f"apex_{side}"], lateral)
        apical_cap = (1 - smoothstep(y - top_y, 0.6 * width, width)) * (y < params["hilum_y"] - 0.2)
        band += on_this_side * np.where(params["pt_apical"] > 0, apical_cap, along_wall) * thorax.lung_inside[side][sel]
    layers.lung_filled[sel] += 0.5 * thorax.both_depths(sel) * band
    layers.soft_tissue_added[sel] += 1.5 * band
    return band > 0.5


# --------------------------------------------------------------------------- airspace disease
def add_consolidation(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """A dense lobar opacity with air bronchograms; an upper-lobe one stops at the horizontal fissure.

    Reads ``layers.vessels`` (the bronchi beside the vessels stay dark), so it is drawn before edema
    changes them.
    """
    x, y = grid.x, grid.y
    side_sign = params["con_side"]  # -1: right lung, +1: left lung
    in_right_lung = side_sign < 0
    widest = np.where(in_right_lung, params["lat_r"], params["lat_l"])
    centre_x = params["cx"] + side_sign * (params["med"] + params["con_u"] * (widest - params["med"]))
    centre_y = np.where(
        params["con_upper"] > 0,
        params["hilum_y"] - 0.28,
        np.where(in_right_lung, params["dome_r"], params["dome_l"]) - 0.17,
    )
    angle = np.arctan2(y - centre_y, x - centre_x)
    radius = params["con_r"] * (
        1.0
        + 0.18 * np.cos(2 * angle + params["con_phase"][..., 0])
        + 0.1 * np.cos(5 * angle + params["con_phase"][..., 1])
    )
    distance = np.sqrt((x - centre_x) ** 2 + ((y - centre_y) / 0.85) ** 2) / radius
    below_fissure = np.where(params["con_upper"] > 0, y < params["hilum_y"] - 0.08, True)  # a sharp edge
    lobe = (1.0 - smoothstep(distance, 0.55, 1.1)) * below_fissure
    lungs = thorax.side_mask(sel, side_sign)
    bronchogram = np.clip(layers.vessels[sel] / 2.4, 0, 1)  # air in the bronchi stays dark
    layers.lung_filled[sel] += thorax.side_depth(sel, side_sign) * lobe * (0.75 - 0.35 * bronchogram)
    return (lobe > 0.5) & lungs


def add_atelectasis(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """A plate-like band of collapsed lung in a lower zone (the raised hemidiaphragm and the shifted
    mediastinum are drawn as case parameters)."""
    side_sign = params["atel_side"]  # -1: right lung, +1: left lung
    widest = np.where(side_sign < 0, params["lat_r"], params["lat_l"])
    band_y = np.where(side_sign < 0, params["dome_r"], params["dome_l"]) - params["atel_y"]
    middle_x = params["cx"] + side_sign * (params["med"] + 0.55 * (widest - params["med"]))
    half_length = 0.5 * params["atel_len"]
    x0, x1 = middle_x - half_length, middle_x + half_length
    y0 = band_y - half_length * np.tan(params["atel_tilt"])
    y1 = band_y + half_length * np.tan(params["atel_tilt"])
    distance = segment_distance(grid.x, grid.y, x0, y0, x1, y1)
    plate = 1.0 - smoothstep(distance / params["atel_w"], 0.6, 1.2)
    lungs = thorax.side_mask(sel, side_sign)
    layers.lung_filled[sel] += thorax.side_depth(sel, side_sign) * 0.35 * plate
    return (distance < params["atel_w"]) & lungs


def add_pneumonia(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """Patchy airspace opacities (three blobs per lung) in one or both lungs."""
    x, y = grid.x, grid.y
    field = np.zeros((len(sel), grid.size, grid.size), np.float32)
    for side, sign in SIDES:
        in_this_lung = (params["pna_side"] == sign) | (params["pna_side"] == 0)
        widest = params[f"lat_{side}"]
        for j in range(3):
            fraction, blob_y, blob_r = (params["pna_blobs"][..., j, i] for i in range(3))
            blob_x = params["cx"] + sign * (params["med"] + fraction * (widest - params["med"]))
            field += (
                in_this_lung
                * np.exp(-((x - blob_x) ** 2 + (y - blob_y - params["cy"]) ** 2) / blob_r**2)
                * thorax.lung_inside[side][sel]
            )
    patchy = 0.65 + 0.35 * np.sin(21 * x + 13 * y + params["pna_phase"][..., 0]) * np.sin(
        9 * x - 19 * y + params["pna_phase"][..., 1]
    )
    opacity = np.clip(1.6 * field * patchy - 0.15, 0, 1)
    layers.lung_filled[sel] += thorax.both_depths(sel) * 0.75 * opacity
    return opacity > 0.3


def add_infiltration(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """An ill-defined, textured haze in the mid zone of one or both lungs."""
    x, y = grid.x, grid.y
    field = np.zeros((len(sel), grid.size, grid.size), np.float32)
    for side, sign in SIDES:
        in_this_lung = (params["inf_side"] == sign) | (params["inf_side"] == 0)
        centre_x = params["cx"] + sign * (params["med"] + 0.5 * (params[f"lat_{side}"] - params["med"]))
        field += (
            in_this_lung
            * np.exp(-((x - centre_x) ** 2 / 1.4 + (y - params["inf_y"] - params["cy"]) ** 2) / params["inf_r"] ** 2)
            * thorax.lung_inside[side][sel]
        )
    texture = 0.55 + 0.45 * np.sin(31 * x + 7 * y + params["inf_phase"][..., 0]) * np.sin(
        11 * x + 29 * y + params["inf_phase"][..., 1]
    )
    opacity = np.clip(field * texture, 0, 1)
    layers.lung_filled[sel] += thorax.both_depths(sel) * 0.42 * opacity
    return field > 0.45


def add_edema(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """Perihilar "bat-wing" haze, Kerley B lines at the lateral bases, and upper-lobe diversion
    (the vessels above the hila get 60 % fuller). The mask is the dense part of the haze."""
    y = grid.y
    haze = np.zeros((len(sel), grid.size, grid.size), np.float32)
    for side, sign in SIDES:
        lateral = lateral_distance(params, sign, grid.x)
        lung = thorax.lung_inside[side][sel]
        haze += (
            np.exp(
                -(((lateral - params[f"hilum_{side}"] - 0.08) / 0.30) ** 2)
                - ((y - params["hilum_y"] - 0.05) / 0.30) ** 2
            )
            * lung
        )
        for j in range(4):  # Kerley B lines: short horizontal lines at the lateral bases
            line_y = params[f"cp_{side}"] - 0.06 - 0.045 * j
            line = np.exp(-(((y - line_y) / 0.007) ** 2)) * smoothstep(
                lateral, params[f"lat_{side}"] - 0.11, params[f"lat_{side}"] - 0.07
            )
            layers.lung_filled[sel] += 0.8 * line * lung * (grid.pixel_mm / 3.0) ** 0.5
    layers.lung_filled[sel] += params["edema_amp"] * thorax.both_depths(sel) * haze
    layers.vessels[sel] *= 1.0 + 0.6 * (y < params["hilum_y"])
    return (haze > 0.45) & (thorax.lung_inside["r"][sel] | thorax.lung_inside["l"][sel])


# ------------------------------------------------------------------------------ chronic disease
def add_emphysema_bullae(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """One or two bullae: round spaces of free air with a thin wall, almost without vessels.

    (Emphysema's hyperinflation, lucent lungs and pruned vessels are case parameters.) The mask is
    the bullae.
    """
    x, y = grid.x, grid.y
    mask = np.zeros((len(sel), grid.size, grid.size), bool)
    for j in range(2):
        side_sign, fraction, bulla_y, radius = (params["bullae"][..., j, i] for i in range(4))
        drawn = j < params["n_bullae"]
        widest = np.where(side_sign < 0, params["lat_r"], params["lat_l"])
        bulla_x = params["cx"] + side_sign * (params["med"] + fraction * (widest - params["med"]))
        d2 = ((x - bulla_x) ** 2 + (y - bulla_y - params["cy"]) ** 2) / radius**2
        lungs = thorax.side_mask(sel, side_sign)
        bulla = (d2 < 1.0) & lungs & drawn
        layers.lung_removed[sel] += np.where(bulla, 0.9 * thorax.both_depths(sel), 0.0)
        layers.vessels_visible[sel] *= np.where(bulla, 0.1, 1.0)
        layers.soft_tissue_added[sel] += 0.6 * np.exp(-(((np.sqrt(d2) - 1.0) / 0.08) ** 2)) * lungs * drawn  # wall
        mask |= bulla
    return mask


def add_fibrosis(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """Peripheral basal reticulation: a net of three crossing wave patterns in the outer lower lungs.

    (The volume loss is a case parameter.) The net's frequency stays below the Nyquist limit.
    """
    x, y = grid.x, grid.y
    frequency = min(40.0, grid.size / 5.0)
    net = np.zeros((len(sel), grid.size, grid.size), np.float32)
    for j in range(3):
        direction = params["fib_angle"] + j * np.pi / 3
        wave = np.sin(frequency * (x * np.cos(direction) + y * np.sin(direction)) + params["fib_phase"][..., j])
        net = np.maximum(net, np.exp(-((wave / 0.35) ** 2)))
    weight = np.zeros((len(sel), grid.size, grid.size), np.float32)
    for side, _ in SIDES:
        weight += (
            thorax.lung_inside[side][sel]
            * smoothstep(thorax.lateral_fraction[side][sel], 0.5, 0.8)
            * smoothstep(y - params["hilum_y"], -0.15, 0.3)
        )
    layers.lung_filled[sel] += thorax.both_depths(sel) * weight * (0.12 + 0.3 * net)
    return weight > 0.5


def add_hernia(params, sel, grid: Grid, thorax: Thorax, layers: TissueLayers) -> np.ndarray:
    """A retrocardiac hiatal hernia: a sphere of soft tissue with gas above an air-fluid level."""
    x, y = grid.x, grid.y
    centre_x, centre_y, radius = params["cx"] + 0.05, params["dome_l"] - 0.06, params["hernia_r"]
    d2 = ((x - centre_x) ** 2 + (y - centre_y) ** 2) / radius**2
    thickness = 2 * radius * CM_PER_UNIT * chord(d2)
    fluid_level = centre_y - 0.25 * radius
    layers.soft_tissue_added[sel] += 0.5 * thickness * (y >= fluid_level)
    layers.air[sel] += 0.45 * thickness * (y < fluid_level)  # gas above the level
    return d2 < 1.0


# ------------------------------------------------------------------------------------- all of them
Drawer = Callable[..., np.ndarray]

#: (finding, function that draws it), in drawing order.
FINDINGS_IN_ORDER: tuple[tuple[str, Drawer], ...] = (
    ("Nodule", add_nodules),
    ("Mass", add_mass),
    ("Effusion", add_effusion),
    ("Pneumothorax", add_pneumothorax),
    ("Consolidation", add_consolidation),
    ("Atelectasis", add_atelectasis),
    ("Pneumonia", add_pneumonia),
    ("Infiltration", add_infiltration),
    ("Edema", add_edema),
    ("Emphysema", add_emphysema_bullae),
    ("Fibrosis", add_fibrosis),
    ("Pleural_Thickening", add_pleural_thickening),
    ("Hernia", add_hernia),
)


def add_findings(
    stacked: dict[str, np.ndarray], grid: Grid, thorax: Thorax, layers: TissueLayers
) -> dict[str, np.ndarray]:
    """Draw every labelled finding of a chunk into ``layers``.

    Args:
        stacked: per-image parameters (n,) of the chunk, with ``labels`` (n, 14) multi-hot.

    Returns:
        One (n, H, W) bool mask per name in ``FINDING_MASKS`` (all False where the finding is absent).
    """
    n = len(stacked["cx"])
    masks = {name: np.zeros((n, grid.size, grid.size), bool) for name in FINDING_MASKS}
    labels = stacked["labels"]
    for name, draw in FINDINGS_IN_ORDER:
        sel = np.nonzero(labels[:, LABEL_INDEX[name]] > 0.5)[0]
        if len(sel):
            masks[name.lower()][sel] = draw(select_params(stacked, sel), sel, grid, thorax, layers)
    return masks
