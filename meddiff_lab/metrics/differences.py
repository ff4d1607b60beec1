r"""Is a difference larger than chance? Differences of means with two standard errors, and their verdicts.

**Paired** (:func:`paired_difference`): the two settings share everything else (the same noise, seed
or patient), so each pair gives one difference :math:`\Delta_i = a_i - b_i` and

.. math:: \bar\Delta \pm 2\,s_\Delta/\sqrt{n}.

**Unpaired** (:func:`unpaired_difference`): two independent groups (women and men among real
patients), Welch's standard error:

.. math:: \bar a - \bar b \pm 2\sqrt{s_a^2/n_a + s_b^2/n_b}.

Two verdicts, two questions. :func:`chance_verdict` asks whether the *mean* difference is real
(``|mean| > 2 SE``). :func:`spread_verdict` asks whether it is larger than what *one* run varies by
(``|mean| > 2 s``, the spread of single differences across seeds), a stricter question that
few-seed experiments ask.

**With few pairs** (three draws of an experiment, say), two standard errors understate the
uncertainty: :func:`paired_t_interval` gives the Student-t interval of the paired differences instead,

.. math:: \bar\Delta \pm t_{(1+c)/2,\,m-1}\, s_\Delta/\sqrt{m}.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

__all__ = [
    "Difference",
    "paired_difference",
    "paired_t_interval",
    "unpaired_difference",
    "chance_verdict",
    "spread_verdict",
]


class Difference(NamedTuple):
    """A difference of means and two standard errors (``nan`` when fewer than two values say nothing)."""

    mean: float
    two_se: float

    def verdict(self) -> str:
        """:func:`chance_verdict` of this difference."""
        return chance_verdict(self.mean, self.two_se)


def _finite_1d(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one value per sample (1-D), got shape {array.shape}")
    return array


def paired_difference(a, b) -> Difference:
    """Mean of ``a[i] - b[i]`` with two standard errors; pairs with a non-finite value are left out.

    Args:
        a, b: ``(N,)`` arrays or tensors, one value per pair (the same noise under two settings).
    """
    a, b = _finite_1d(a, "a"), _finite_1d(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired values need one a and one b per pair, got {len(a)} and {len(b)}")
    delta = a - b
    delta = delta[np.isfinite(delta)]
    mean = float(delta.mean()) if len(delta) else math.nan
    two_se = float(2 * delta.std(ddof=1) / math.sqrt(len(delta))) if len(delta) > 1 else math.nan
    return Difference(mean, two_se)


def paired_t_interval(differences, confidence: float = 0.95) -> dict[str, float | int | None]:
    """Mean of paired differences and its Student-t interval at ``confidence`` (the module's formula).

    Args:
        differences: ``(m,)`` finite values, one per pair (e.g. arm minus baseline per draw and seed).
    Returns:
        ``{"mean", "low", "high", "count"}``; ``low``/``high`` are ``None`` with fewer than two differences.
    """
    values = np.asarray(differences, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"differences must be a non-empty 1-D list of finite numbers, got {differences!r}")
    mean = float(values.mean())
    if len(values) < 2:
        return {"mean": mean, "low": None, "high": None, "count": 1}
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "count": len(values)}


def unpaired_difference(a, b) -> Difference:
    """``mean(a) - mean(b)`` of two independent groups with two (Welch) standard errors; non-finite values left out."""
    a, b = _finite_1d(a, "a"), _finite_1d(b, "b")
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    mean = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Difference(mean, math.nan)
    return Difference(mean, float(2 * math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))))


def chance_verdict(mean: float, two_se: float) -> str:
    """``"larger than chance"`` when ``|mean| > two_se``, else ``"not distinguishable from chance"``;
    ``"too few samples to tell"`` when ``two_se`` is not finite."""
    if not np.isfinite(two_se):
        return "too few samples to tell"
    return "larger than chance" if abs(mean) > two_se else "not distinguishable from chance"


def spread_verdict(mean: float, std: float) -> str:
    """``"larger than the seed-to-seed spread"`` when ``|mean| > 2 std`` (``std``: of single differences
    across seeds), else ``"within the seed-to-seed spread"``; ``"one seed: no estimate of the noise"``
    when ``std`` is not finite."""
    if not np.isfinite(std):
        return "one seed: no estimate of the noise"
    return "larger than the seed-to-seed spread" if abs(mean) > 2 * std else "within the seed-to-seed spread"
