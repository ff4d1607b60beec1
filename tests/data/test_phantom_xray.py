"""Tests of meddiff_lab/data/phantom_xray.py: the line integral, the detector and the scanners' processing."""

from __future__ import annotations

import numpy as np

from meddiff_lab.data.phantom_patients import sample_cases, stack_cases
from meddiff_lab.data.phantom_xray import (
    MU_BONE,
    MU_LUNG,
    MU_SOFT,
    TissueLayers,
    broad_blur,
    detect_and_process,
    gaussian_blur,
    line_integral,
    pixel_centres,
    pixel_size_mm,
)


def _layers(shape=(1, 4, 4), body=20.0, aerated=0.0):
    return TissueLayers.start(
        np.full(shape, body, np.float32), np.full(shape, aerated, np.float32), np.zeros(shape, np.float32)
    )


def test_pixel_grid_and_size():
    assert pixel_centres(4).tolist() == [-0.75, -0.25, 0.25, 0.75]
    assert pixel_size_mm(128) == 400.0 / 128


def test_line_integral_sums_mu_times_thickness():
    mu_lung = np.full((1, 1, 1), MU_LUNG, np.float32)
    soft = _layers()
    np.testing.assert_allclose(line_integral(soft, mu_lung), MU_SOFT * 20.0, rtol=1e-6)
    lung = _layers(aerated=10.0)  # 10 cm of the 20 are lung
    np.testing.assert_allclose(line_integral(lung, mu_lung), MU_SOFT * 10 + MU_LUNG * 10, rtol=1e-6)
    lung.lung_filled += 4.0  # 4 cm of it filled with fluid
    np.testing.assert_allclose(line_integral(lung, mu_lung), MU_SOFT * 14 + MU_LUNG * 6, rtol=1e-6)
    bone = _layers()
    bone.bone += 1.0
    np.testing.assert_allclose(line_integral(bone, mu_lung), MU_SOFT * 19 + MU_BONE, rtol=1e-6)
    assert line_integral(_layers(body=0.0), mu_lung).max() == 0.0  # air outside the body


def test_the_broad_blur_is_close_to_a_full_gaussian():
    rows, cols = np.mgrid[0:64, 0:64]
    disc = ((cols - 30) ** 2 + (rows - 34) ** 2 < 15**2).astype(np.float32)
    images = np.stack([disc, disc.T])
    fast, full = broad_blur(images, 0.18), gaussian_blur(images, 0.18 * 64)
    assert fast.dtype == np.float32 and fast.shape == images.shape
    assert np.abs(fast - full).max() < 0.05 * full.max()  # scatter has no fine detail to lose


def test_noiseless_processing_gives_a_display_image_in_range():
    stacked = stack_cases(sample_cases(4, seed=0))
    line = np.zeros((4, 32, 32), np.float32)
    line[:, 4:28, 4:28] = 3.0  # a block of "body"
    body = line > 0
    lung = np.zeros_like(body)
    lung[:, 10:20, 10:20] = True
    image = detect_and_process(line, stacked, None, 32, lung, body)
    assert image.dtype == np.float32 and image.shape == (4, 32, 32)
    assert image.min() >= 0 and image.max() <= 1
    assert (image[:, 16, 16] > image[:, 1, 1] + 0.3).all()  # the body is brighter than the air beside it
