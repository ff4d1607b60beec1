"""Tests for meddiff_lab/metrics/readers.py: readers that can tell, intervals that are right."""

from __future__ import annotations

import math

import pytest
import torch

from meddiff_lab import metrics
from meddiff_lab.metrics import readers


def _chests(n, seed, air_noise=0.0, blur=False):
    """Toy 'radiographs' (n, 1, 32, 32) in [-1, 1]: a bright ellipse on black air, optional noise in the air."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    scale = 0.6 + 0.1 * torch.rand(n, 1, 1, generator=g)
    body = ((x / scale) ** 2 + (y / (scale + 0.1)) ** 2 < 1).float()
    images = -1 + 1.5 * body + 0.05 * torch.randn(n, 32, 32, generator=g) * body
    images = images + air_noise * torch.randn(n, 32, 32, generator=g) * (1 - body)
    if blur:
        images = torch.nn.functional.avg_pool2d(images[:, None], 3, 1, 1)[:, 0]
    return images.clamp(-1, 1)[:, None]


def test_wilson_interval_matches_the_textbook_values():
    low, high = readers.wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-3) and high == pytest.approx(0.7634, abs=1e-3)
    low, high = readers.wilson_interval(40, 40)
    assert high == 1.0 and low == pytest.approx(0.9124, abs=1e-3)
    assert readers.wilson_interval(0, 40)[0] == 0.0
    with pytest.raises(ValueError, match="correct"):
        readers.wilson_interval(11, 10)


def test_roc_auc_orders_and_ties():
    assert readers.roc_auc([0, 1], [2, 3]) == 1.0
    assert readers.roc_auc([2, 3], [0, 1]) == 0.0
    assert readers.roc_auc([1, 1], [1, 1]) == 0.5


def test_air_corner_std_sees_noise_in_the_air_only():
    clean, noisy = _chests(6, 0), _chests(6, 0, air_noise=0.1)
    assert torch.all(readers.air_corner_std(clean) == 0)
    assert torch.all(readers.air_corner_std(noisy) > 0.02)  # half the noise is clipped at -1
    assert readers.air_corner_std(clean[:, 0]).shape == (6,)  # (N, H, W) works too


def test_high_pass_energy_rises_with_noise_and_falls_with_blur():
    base = readers.high_pass_energy(_chests(8, 1)).mean()
    assert readers.high_pass_energy(_chests(8, 1, air_noise=0.2)).mean() > base
    assert readers.high_pass_energy(_chests(8, 1, blur=True)).mean() < base


def test_readers_tell_noisy_air_and_not_identical_distributions():
    real, fake = _chests(40, 2), _chests(40, 3, air_noise=0.05)
    study = readers.reader_study(real, fake, seed=0, classifier_steps=60)
    assert set(study) == {"air-corner std", "high-pass energy", "trained classifier"}
    corner = study["air-corner std"]
    assert corner.questions == 40 and corner.accuracy == 1.0 and corner.distinguishable and corner.auc == 1.0
    same = readers.reader_study(_chests(40, 4), _chests(40, 5), seed=0, classifier_steps=60)
    for result in same.values():
        assert result.interval[0] <= 0.5 + 1e-9 or result.accuracy < 0.8, str(result)
    sentence = readers.describe_study(study)
    assert "easily distinguishable" in sentence and "40" in sentence


def test_trained_classifier_finds_a_tell_on_held_out_images():
    real, fake = _chests(48, 6), _chests(48, 7, blur=True)
    r_fit, r_test = readers.split_halves(real, 0)
    g_fit, g_test = readers.split_halves(fake, 1)
    result = readers.classifier_two_sample_test(r_fit, g_fit, r_test, g_test, steps=150, seed=0)
    assert result.questions == 48 and result.accuracy > 0.8 and result.distinguishable


def test_describe_study_says_plainly_when_no_reader_could_tell():
    chance = readers.ReaderResult("air-corner std", 21, 40, 0.525, readers.wilson_interval(21, 40), 0.5)
    sentence = readers.describe_study({"air-corner std": chance})
    assert sentence.startswith("No reader told") and "no proof" in sentence


def test_reader_study_is_exported_and_checks_its_input():
    assert metrics.reader_study is readers.reader_study and metrics.wilson_interval is readers.wilson_interval
    with pytest.raises(ValueError, match="at least 4"):
        readers.reader_study(_chests(2, 0), _chests(2, 1))
    assert math.isclose(readers.ReaderResult("x", 1, 2, 0.5, (0.1, 0.9), 0.5).as_dict()["accuracy"], 0.5)
