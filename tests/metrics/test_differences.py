"""Tests for meddiff_lab/metrics/differences.py: differences of means, their standard errors and verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from meddiff_lab.metrics import (
    Difference,
    chance_verdict,
    paired_difference,
    paired_t_interval,
    spread_verdict,
    unpaired_difference,
)


def test_paired_difference_is_the_mean_of_the_pairs_with_two_standard_errors():
    a, b = np.array([1.0, 2.0, 4.0, np.nan]), np.array([0.5, 1.0, 2.0, 3.0])
    delta = np.array([0.5, 1.0, 2.0])  # the pair holding NaN is left out
    result = paired_difference(a, b)
    assert isinstance(result, Difference)
    assert result.mean == pytest.approx(delta.mean())
    assert result.two_se == pytest.approx(2 * delta.std(ddof=1) / math.sqrt(3))
    mean, two_se = paired_difference(torch.tensor(a), torch.tensor(b))  # tensors too, and it unpacks
    assert (mean, two_se) == pytest.approx(tuple(result))
    with pytest.raises(ValueError, match="one a and one b per pair"):
        paired_difference([1.0, 2.0], [1.0])


def test_too_few_pairs_give_nan_not_a_warning():
    one = paired_difference([1.0], [0.0])
    assert one.mean == 1.0 and math.isnan(one.two_se) and one.verdict() == "too few samples to tell"
    assert math.isnan(paired_difference([np.nan], [0.0]).mean)


def test_unpaired_difference_uses_welchs_standard_error():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 2.0, 10)
    result = unpaired_difference(a, b)
    assert result.mean == pytest.approx(a.mean() - b.mean())
    assert result.two_se == pytest.approx(2 * math.sqrt(a.var(ddof=1) / 40 + b.var(ddof=1) / 10))
    assert math.isnan(unpaired_difference([1.0], [0.0, 1.0]).two_se)


def test_the_two_verdicts_ask_different_questions():
    assert chance_verdict(0.3, 0.2) == "larger than chance" == Difference(-0.3, 0.2).verdict()
    assert chance_verdict(0.1, 0.2) == "not distinguishable from chance"
    assert spread_verdict(0.3, 0.2) == "within the seed-to-seed spread"  # 0.3 < 2 x 0.2
    assert spread_verdict(0.5, 0.2) == "larger than the seed-to-seed spread"
    assert spread_verdict(0.5, float("nan")) == "one seed: no estimate of the noise"


def test_paired_t_interval_is_the_student_t_interval():
    result = paired_t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(m), s = 1
    assert result["count"] == 3 and result["mean"] == pytest.approx(2.0)
    assert (result["low"], result["high"]) == pytest.approx((2.0 - half, 2.0 + half))
    assert paired_t_interval([0.5]) == {"mean": 0.5, "low": None, "high": None, "count": 1}
    with pytest.raises(ValueError, match="finite"):
        paired_t_interval([1.0, float("nan")])
