"""Tests for meddiff_lab/metrics/edges.py: boundary precision/recall/F1 with a tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from meddiff_lab.metrics import edge_f1


def _line(col, size=16):
    edges = np.zeros((1, size, size), bool)
    edges[0, :, col] = True
    return edges


def test_identical_maps_score_one_and_disjoint_maps_zero():
    assert edge_f1(_line(5), _line(5))["f1"][0] == 1.0
    assert edge_f1(_line(2), _line(12))["f1"][0] == 0.0


def test_tolerance_forgives_a_one_pixel_shift_only():
    assert edge_f1(_line(5), _line(6), tolerance=1)["f1"][0] == 1.0
    assert edge_f1(_line(5), _line(6), tolerance=0)["f1"][0] == 0.0
    assert edge_f1(_line(5), _line(7), tolerance=1)["f1"][0] == 0.0


def test_precision_and_recall_are_what_they_count():
    target = _line(5) | _line(10)
    scores = edge_f1(_line(5), target, tolerance=0)
    assert scores["precision"][0] == 1.0 and scores["recall"][0] == 0.5
    assert scores["f1"][0] == pytest.approx(2 * 0.5 / 1.5)
    empty = np.zeros((1, 16, 16), bool)
    assert edge_f1(empty, empty)["f1"][0] == 1.0 and edge_f1(empty, target)["f1"][0] == 0.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="boolean"):
        edge_f1(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), bool))
    with pytest.raises(ValueError, match="same shape"):
        edge_f1(np.zeros((1, 4, 4), bool), np.zeros((1, 5, 5), bool))
    with pytest.raises(ValueError, match="tolerance"):
        edge_f1(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4), bool), tolerance=-1)
