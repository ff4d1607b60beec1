"""Tests for the 08_evaluation exercise checks in meddiff_lab/exercises.py: right answers pass, wrong ones fail."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from meddiff_lab import exercises


def _textbook_fid(real_features, generated_features):
    r, g = real_features.numpy(), generated_features.numpy()
    cov_r, cov_g = np.cov(r, rowvar=False), np.cov(g, rowvar=False)
    return float(
        ((r.mean(0) - g.mean(0)) ** 2).sum() + np.trace(cov_r + cov_g - 2 * scipy.linalg.sqrtm(cov_r @ cov_g).real)
    )


def test_check_fid_accepts_the_textbook_formula_and_rejects_a_mean_only_distance():
    assert exercises.check_fid(_textbook_fid)

    def mean_only(real_features, generated_features):
        return float(((real_features.mean(0) - generated_features.mean(0)) ** 2).sum())

    result = exercises.check_fid(mean_only)
    assert not result and result.attempted


def test_check_precision_accepts_knn_balls_and_rejects_an_off_by_one_neighbour():
    def precision(real_features, generated_features, k, offset=0):
        radii = torch.cdist(real_features, real_features).sort(dim=1).values[:, k + offset]
        return float((torch.cdist(generated_features, real_features) <= radii[None]).any(1).double().mean())

    assert exercises.check_precision(precision)
    assert not exercises.check_precision(
        lambda real_features, generated_features, k: precision(real_features, generated_features, k, offset=-1)
    )


def test_unattempted_exercise_is_reported_not_raised():
    def todo(real_features, generated_features):
        raise NotImplementedError

    result = exercises.check_fid(todo)
    assert not result and not result.attempted
