"""The checks of notebook 09's exercises (meddiff_lab/exercises.py): the reference passes, a wrong answer fails."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from meddiff_lab import exercises


def _matched(alphas_cumprod, sigma):
    ratio = (1 - alphas_cumprod) / alphas_cumprod
    return int(torch.nonzero(ratio >= sigma**2)[0])


def _correction(x0, y, factor):
    residual = F.avg_pool2d(x0, factor) - y
    return x0 - residual.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def test_correct_answers_pass():
    assert exercises.check_matched_timestep(_matched)
    assert exercises.check_null_space_correction(_correction)


def test_wrong_answers_fail_and_unattempted_ones_say_so():
    assert not exercises.check_matched_timestep(lambda alphas_cumprod, sigma: _matched(alphas_cumprod, sigma) + 1)
    assert not exercises.check_null_space_correction(lambda x0, y, factor: x0)  # no correction at all

    def not_yet(**kwargs):
        raise NotImplementedError

    result = exercises.check_null_space_correction(not_yet)
    assert not result and "not attempted" in result.message
