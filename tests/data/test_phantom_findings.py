"""Tests of meddiff_lab/data/phantom_findings.py: what each finding does to the tissue, and its mask."""

from __future__ import annotations

import numpy as np

from meddiff_lab.data import phantom
from meddiff_lab.data.cxr_labels import CXR_LABELS
from meddiff_lab.data.phantom_findings import FINDINGS_IN_ORDER, erode
from meddiff_lab.data.phantom_patients import sample_cases, stack_cases


def _cases_with_and_without(case_filter, change, n=80, seed=7):
    """The first case selected by ``case_filter``, as drawn and after ``change``."""
    cases = sample_cases(n, seed)
    case = next(c for c in cases if case_filter(c))
    other = dict(case, findings=dict(case["findings"]))
    change(other)
    return case, other


def test_every_finding_but_cardiomegaly_is_drawn_once():
    names = [name for name, _ in FINDINGS_IN_ORDER]
    assert sorted(names) == sorted(set(CXR_LABELS) - {"Cardiomegaly"})
    # consolidation reads the vessels before edema changes them
    assert names.index("Consolidation") < names.index("Edema")


def test_erode_peels_one_pixel_and_the_border():
    mask = np.zeros((1, 7, 7), bool)
    mask[0, 1:6, 1:6] = True
    eroded = erode(mask)
    assert eroded[0, 2:5, 2:5].all() and eroded.sum() == 9
    assert not erode(np.ones((5, 5), bool))[[0, -1]].any()


def test_pneumothorax_is_free_air_without_vessels():
    def remove(c):
        c["findings"]["Pneumothorax"] = False

    case, other = _cases_with_and_without(lambda c: c["findings"]["Pneumothorax"], remove)
    with_ptx, masks, lung_field = phantom.attenuation(stack_cases([case]), 64)
    without, _, _ = phantom.attenuation(stack_cases([other]), 64)
    gap = masks["pneumothorax"][0]
    assert gap.sum() > 10
    # lung tissue and vessels are gone beyond the pleural line: less attenuation there ...
    assert np.mean((with_ptx - without)[0][gap] < 0) > 0.95
    # ... and no vascular markings: the vessels change nothing in the gap, but do in the collapsed lung
    no_vessels, _, _ = phantom.attenuation(stack_cases([dict(case, vessel_amp=0.0)]), 64)
    vessel_part = (with_ptx - no_vessels)[0]
    collapsed = (masks["left_lung"][0] | masks["right_lung"][0]) & ~gap
    assert np.abs(vessel_part[gap]).max() < 1e-5
    assert vessel_part[collapsed].max() > 0.05
    assert np.abs(with_ptx - without)[0][~lung_field[0]].max() < 1e-5  # outside the lungs nothing changes
    # the image (after the scanner's processing) is darker in the gap than in the collapsed lung beside it
    noise = np.zeros((1, 64, 64), np.float32)
    image, _ = phantom.render_chunk(stack_cases([case]), 64, noise)
    lung = (masks["left_lung"][0] | masks["right_lung"][0]) & ~gap & ~masks["lesion"][0]
    assert image[0][gap].mean() < image[0][lung].mean() + 0.05


def test_effusion_has_a_meniscus_not_a_straight_level():
    """The fluid's upper edge climbs the lateral chest wall (concave upward)."""
    cases = [c for c in sample_cases(300, 5) if c["findings"]["Effusion"]][:12]
    _, masks, _ = phantom.attenuation(stack_cases(cases), 128)
    rises = []
    for effusion in masks["effusion"]:
        cols = np.nonzero(effusion.any(0))[0]
        if len(cols) < 8:
            continue
        top = np.array([np.nonzero(effusion[:, c])[0].min() for c in cols])
        left_end, right_end = top[:3].mean(), top[-3:].mean()
        middle = top[len(top) // 2 - 1 : len(top) // 2 + 2].mean()
        rises.append(middle - min(left_end, right_end))  # rows: the lateral end sits higher (smaller row)
    rises = np.array(rises)
    assert len(rises) >= 5
    assert np.median(rises) >= 3, f"the edge rises toward the chest wall by a few pixels, got {rises}"
