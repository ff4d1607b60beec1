"""Tests of meddiff_lab/data/phantom_patients.py: drawing patients, films and their parameters."""

from __future__ import annotations

import numpy as np

from meddiff_lab.data.cxr_labels import CXR_LABELS
from meddiff_lab.data.phantom_anatomy import SIDES, heart_geometry, lung_geometry
from meddiff_lab.data.phantom_patients import place_in_lung, sample_cases, select_params, stack_cases


def test_the_first_cases_do_not_depend_on_how_many_are_drawn():
    few, more = sample_cases(5, seed=2), sample_cases(40, seed=2)
    for a, b in zip(few, more):
        assert a["findings"] == b["findings"] and a["patient_id"] == b["patient_id"] and a["cx"] == b["cx"]


def test_ap_view_enlarges_the_heart_of_the_same_patient():
    cases = sample_cases(200, 11)
    by_patient = {}
    for c in cases:
        by_patient.setdefault(c["patient_id"], []).append(c)
    pairs = [
        (min(cs, key=lambda c: c["view"] == "PA"), max(cs, key=lambda c: c["view"] == "PA"))
        for cs in by_patient.values()
        if {c["view"] for c in cs} == {"AP", "PA"}
    ]
    assert pairs
    ratio = np.mean([ap["ctr"] / pa["ctr"] for ap, pa in pairs])
    assert 1.08 < ratio < 1.16


def test_a_placed_disc_lies_inside_a_lung_and_clear_of_the_heart():
    case = sample_cases(1, seed=0)[0]
    rng = np.random.default_rng(1)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    for _ in range(10):
        x, y, r = place_in_lung(rng, case, radius=0.05)
        px, py = x + r * np.cos(angles), y + r * np.sin(angles)
        inside = np.zeros(16, bool)
        for side, sign in SIDES:
            inside |= lung_geometry(case, side, sign, px, py)[0]
        assert inside.all() and not heart_geometry(case, px, py)[0].any()


def test_stacked_parameters_broadcast_over_the_image():
    stacked = stack_cases(sample_cases(6, seed=0))
    assert stacked["labels"].shape == (6, len(CXR_LABELS)) and stacked["labels"].dtype == np.float32
    assert stacked["cx"].dtype == np.float32 and stacked["nodules"].shape == (6, 2, 3)
    chosen = select_params(stacked, np.array([1, 4]))
    assert chosen["cx"].shape == (2, 1, 1) and chosen["nodules"].shape == (2, 1, 1, 2, 3)
    assert chosen["cx"][1, 0, 0] == stacked["cx"][4]
