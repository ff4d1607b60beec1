"""Tests of meddiff_lab/data/phantom_anatomy.py: the normal anatomy as tissue thicknesses."""

from __future__ import annotations

import numpy as np

from meddiff_lab.data import phantom
from meddiff_lab.data.phantom_anatomy import (
    Grid,
    add_bones,
    add_breast_shadows,
    chord,
    draw_body,
    draw_thorax,
    smoothstep,
)
from meddiff_lab.data.phantom_patients import sample_cases, select_params, stack_cases


def _cases_with_and_without(case_filter, change, n=80, seed=7):
    """The first case selected by ``case_filter``, as drawn and after ``change``."""
    cases = sample_cases(n, seed)
    case = next(c for c in cases if case_filter(c))
    other = dict(case, findings=dict(case["findings"]))
    change(other)
    return case, other


def _params(n=4, seed=0):
    stacked = stack_cases(sample_cases(n, seed))
    return select_params(stacked, np.arange(n))


def test_small_maths():
    assert smoothstep(np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), 0.0, 1.0).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert chord(np.array([0.0, 0.75, 1.0, 4.0])).tolist() == [1.0, 0.5, 0.0, 0.0]


def test_grid_spans_cover_the_coordinates_asked_for():
    grid = Grid.for_size(8)  # centres -0.875, -0.625, ..., 0.875
    assert grid.x.shape == (1, 1, 8) and grid.y.shape == (1, 8, 1) and grid.pixel_mm == 50.0
    assert grid.span(-0.2, 0.2) == slice(3, 5) and grid.span(-0.7, 0.7) == slice(1, 7)
    assert grid.lateral_span(1.0, 0.5, 1.0) == slice(6, 8)
    assert grid.lateral_span(-1.0, 0.5, 1.0) == slice(0, 2)


def test_body_and_lungs_are_where_a_chest_is():
    params, grid = _params(), Grid.for_size(64)
    body_cm, body = draw_body(params, grid)
    thorax = draw_thorax(params, grid)
    assert body_cm.shape == (4, 64, 64) and body_cm.min() >= 0 and 16 <= body_cm.max() <= 31
    assert not body[:, 40, 0].any() and body[:, 40, 32].all()  # air beside the chest, body in the middle
    right, left = thorax.lung_inside["r"], thorax.lung_inside["l"]
    assert right[:, :, 32:].sum() == 0 and left[:, :, :32].sum() == 0  # right lung on the viewer's left
    assert (thorax.aerated_lung >= 0).all() and not (thorax.lung_field & ~body).any()


def test_bones_scale_with_bone_density():
    params, grid = _params(), Grid.for_size(32)
    dense, thin = np.zeros((4, 32, 32), np.float32), np.zeros((4, 32, 32), np.float32)
    add_bones(dense, dict(params, bone_density=np.ones((4, 1, 1), np.float32)), grid)
    add_bones(thin, dict(params, bone_density=np.full((4, 1, 1), 0.5, np.float32)), grid)
    assert dense.max() > 1.0 and (dense >= 0).all()
    np.testing.assert_allclose(thin, 0.5 * dense, rtol=1e-6)


def test_no_breast_shadow_for_men():
    params, grid = _params(8), Grid.for_size(32)
    shadows = np.zeros((8, 32, 32), np.float32)
    add_breast_shadows(shadows, params, grid)
    men = params["female"][:, 0, 0] == 0
    assert men.any() and not men.all()
    assert shadows[men].max() == 0 and shadows[~men].max() > 1.0


def _breast_shadow(size):
    """The line integral a healthy female case's breast shadows add (the same case made male), and its masks."""

    def make_male(c):
        c["sex"], c["female"], c["breast"] = "M", 0.0, 0.0

    female, male = _cases_with_and_without(lambda c: c["sex"] == "F" and not any(c["findings"].values()), make_male)
    line_female, masks, _ = phantom.attenuation(stack_cases([female]), size)
    line_male, _, _ = phantom.attenuation(stack_cases([male]), size)
    return line_female - line_male, masks


def test_breast_shadows_brighten_the_lower_zones_of_female_patients():
    shadow, masks = _breast_shadow(64)
    lower = (masks["left_lung"][0] | masks["right_lung"][0]).copy()
    lower[:40] = False
    upper = (masks["left_lung"][0] | masks["right_lung"][0]).copy()
    upper[26:] = False
    assert shadow[0][lower].mean() > 0.2
    assert np.abs(shadow)[0][upper].mean() < 0.05


def test_breast_shadow_tapers_at_its_rim():
    """Soft tissue thickness falls to zero smoothly at the rim: no step in the line integral."""
    shadow = _breast_shadow(128)[0][0]
    step = max(np.abs(np.diff(shadow, axis=0)).max(), np.abs(np.diff(shadow, axis=1)).max())
    assert step < 0.1 * shadow.max(), "no pixel-to-pixel jump larger than 10 % of the shadow's peak"
