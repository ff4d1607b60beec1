"""meddiff_lab/applications/lowdose.py: the same patients at every dose, noise growing as 1/sqrt(dose)."""

from __future__ import annotations

import numpy as np
import pytest

from meddiff_lab.applications import simulate_low_dose, to_model_range
from meddiff_lab.data import generate_phantoms


@pytest.fixture(scope="module")
def low_dose():
    return simulate_low_dose(12, 32, 3, doses=(1.0, 0.25, 0.04))


def test_truth_is_the_noiseless_phantom_in_model_range(low_dose):
    clean = generate_phantoms(12, 32, 3, quantum_noise=False)
    assert low_dose.truth.shape == (12, 1, 32, 32)
    assert np.array_equal(low_dose.truth.numpy(), to_model_range(clean.images).numpy())
    assert np.array_equal(low_dose.masks["lesion"], clean.masks["lesion"])
    assert float(low_dose.truth.min()) >= -1 and float(low_dose.truth.max()) <= 1


def test_noise_std_grows_as_one_over_sqrt_dose(low_dose):
    # quantum noise: variance of the counts equals their mean, so std(noise) ∝ 1/sqrt(dose) (to first order:
    # the log and the display curve bend it slightly, and clipping at 0 and 1 trims the largest values)
    full = low_dose.noise_std(1.0)
    assert full > 0
    assert low_dose.noise_std(0.25) / full == pytest.approx(2.0, rel=0.06)
    assert low_dose.noise_std(0.04) / full == pytest.approx(5.0, rel=0.1)


def test_the_noise_is_the_same_draw_at_every_dose(low_dose):
    a = (low_dose.noisy[1.0] - low_dose.truth).flatten()
    b = (low_dose.noisy[0.25] - low_dose.truth).flatten()
    assert float(np.corrcoef(a, b)[0, 1]) > 0.95


def test_no_dose_is_an_error():
    with pytest.raises(ValueError, match="dose"):
        simulate_low_dose(2, 32, 0, doses=())
