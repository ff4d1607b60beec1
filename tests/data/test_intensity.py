"""Tests for meddiff_lab/data/intensity.py, against pydicom and MONAI where they compute the same thing."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import NormalizeIntensity, ScaleIntensityRangePercentiles
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_windowing

from meddiff_lab.data.intensity import (
    CT_WINDOWS,
    from_minus_one_one,
    hu_from_dicom,
    hu_from_pixels,
    normalize_to_unit,
    percentile_normalize,
    to_minus_one_one,
    window,
    zscore_normalize,
)


@pytest.fixture(scope="module")
def ct_dataset():
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def test_real_ct_slice_in_exact_hounsfield_units(ct_dataset):
    hu = hu_from_dicom(ct_dataset)
    raw = ct_dataset.pixel_array.astype(np.int64)
    assert float(ct_dataset.RescaleSlope) == 1.0 and float(ct_dataset.RescaleIntercept) == -1024.0
    assert hu.dtype == np.float32 and hu.shape == (128, 128)
    assert np.array_equal(hu, (raw * 1 - 1024).astype(np.float32))
    assert hu.min() == raw.min() - 1024 and hu.max() == raw.max() - 1024
    # soft tissue dominates this abdominal slice: the median is within the soft-tissue range
    assert -200 < np.median(hu) < 200


def test_hu_with_other_slope_and_a_modality_lut_sequence(ct_dataset):
    ds = copy.deepcopy(ct_dataset)
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1000
    assert np.allclose(hu_from_dicom(ds), ds.pixel_array * 0.5 - 1000)
    t = hu_from_pixels(torch.tensor([0, 1000, 2000], dtype=torch.int16), 2.0, -1024)
    assert t.dtype == torch.float32 and t.tolist() == [-1024.0, 976.0, 2976.0]
    with pytest.raises(ValueError, match="RescaleSlope"):
        hu_from_pixels(np.zeros(3), slope=0.0)


@pytest.mark.parametrize("voi_function, mode", [("LINEAR_EXACT", "linear_exact"), ("LINEAR", "linear")])
@pytest.mark.parametrize("center, width", [(40, 400), (-600, 1500), (400, 1800), (10.5, 1.0)])
def test_window_matches_pydicom_voi(ct_dataset, voi_function, mode, center, width):
    if mode == "linear_exact" and width == 1.0:
        width = 0.5
    hu = hu_from_dicom(ct_dataset).astype(np.float64)
    ds = copy.deepcopy(ct_dataset)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, voi_function
    ref = apply_windowing(hu.copy(), ds)
    y_min, y_max = -(2**15) - 1024, 2**15 - 1 - 1024  # the output range pydicom maps to
    expected = (ref - y_min) / (y_max - y_min)
    got = window(hu, center, width, mode=mode)
    assert got.dtype == np.float32 and got.min() >= 0 and got.max() <= 1
    assert np.allclose(got, expected, atol=1e-6)


def test_window_numpy_and_torch_agree_and_monotonic():
    x = np.linspace(-1200, 2000, 1000)
    for name, (c, w) in CT_WINDOWS.items():
        a = window(x, c, w)
        b = window(torch.from_numpy(x), c, w)
        assert isinstance(b, torch.Tensor) and b.dtype == torch.float32
        assert np.allclose(a, b.numpy())
        assert np.all(np.diff(a) >= 0), name
        assert np.all(a[x <= c - w / 2] == 0) and np.all(a[x >= c + w / 2] == 1)
        assert np.all(
            (a[(x > c - w / 2 + 1) & (x < c + w / 2 - 1)] > 0) & (a[(x > c - w / 2 + 1) & (x < c + w / 2 - 1)] < 1)
        )
    assert window(np.array([-1000.0, 40.0, 240.0]), 40, 400).tolist() == [0.0, 0.5, 1.0]


def test_window_rejects_bad_width():
    with pytest.raises(ValueError, match="width"):
        window(np.zeros(3), 40, 0)
    with pytest.raises(ValueError, match="mode"):
        window(np.zeros(3), 40, 400, mode="sigmoidal")


def test_unit_and_minus_one_one_round_trip():
    x = np.array([0, 63.75, 255])
    u = normalize_to_unit(x, 0, 255)
    assert np.allclose(u, [0, 0.25, 1])
    assert np.allclose(to_minus_one_one(u), [-1, -0.5, 1])
    assert np.allclose(from_minus_one_one(to_minus_one_one(u)), u)
    assert np.allclose(normalize_to_unit(np.array([3.0, 5.0, 7.0])), [0, 0.5, 1])
    assert np.all(normalize_to_unit(np.full(4, 2.0)) == 0)


def mri_like(seed=0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[-1:1:24j, -1:1:24j, -1:1:24j]
    head = (xx**2 + yy**2 + zz**2) < 0.7
    vol = np.where(head, 300 + 80 * rng.standard_normal(head.shape), 0.0)
    vol[2, 2, 2] = 5000  # one hot spot outside
    return vol.astype(np.float32), head


def test_percentile_normalize_matches_monai():
    vol, _ = mri_like()
    ours = percentile_normalize(vol, 1, 99)
    monai = ScaleIntensityRangePercentiles(lower=1, upper=99, b_min=0, b_max=1, clip=True)(vol[None])[0]
    assert np.allclose(ours, np.asarray(monai), atol=1e-5)
    assert ours.min() == 0 and ours.max() == 1


def test_zscore_inside_mask_matches_monai_nonzero():
    vol, head = mri_like()
    vol[2, 2, 2] = 0
    ours = zscore_normalize(vol, mask=vol != 0)
    assert abs(ours[vol != 0].mean()) < 1e-5 and abs(ours[vol != 0].std() - 1) < 1e-4
    monai = np.asarray(NormalizeIntensity(nonzero=True)(vol.copy()))
    assert np.allclose(np.where(vol != 0, ours, 0), monai, atol=1e-4)
    t = zscore_normalize(torch.from_numpy(vol), mask=torch.from_numpy(vol != 0))
    assert np.allclose(t.numpy(), ours, atol=1e-5)


def test_masks_must_fit_and_select_something():
    vol, head = mri_like()
    with pytest.raises(ValueError, match="mask shape"):
        zscore_normalize(vol, mask=head[:10])
    with pytest.raises(ValueError, match="selects no voxels"):
        percentile_normalize(vol, mask=np.zeros_like(head))


def test_to_model_batch_adds_the_channel_and_maps_to_minus_one_one():
    from meddiff_lab.data import generate_phantoms, to_model_batch

    phantoms = generate_phantoms(3, 16, seed=0, masks=())
    batch = to_model_batch(phantoms.images)
    assert isinstance(batch, torch.Tensor) and batch.shape == (3, 1, 16, 16) and batch.dtype == torch.float32
    assert torch.equal(batch, torch.from_numpy(phantoms.images)[:, None] * 2 - 1)  # what notebooks typed
    assert torch.equal(to_model_batch(torch.from_numpy(phantoms.images)), batch)
    assert to_model_batch(np.zeros((1, 2, 2), np.uint8)).flatten().tolist() == [-1.0] * 4
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        to_model_batch(phantoms.images[0])
