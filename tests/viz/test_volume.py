"""Tests for meddiff_lab/viz/volume.py: the viewers react to their widget controls, and say which backend they use."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from meddiff_lab.data.intensity import CT_WINDOWS, window
from meddiff_lab.data.io import Volume, load_dicom, load_nifti
from meddiff_lab.viz.volume import SliceViewer, WindowLevelViewer, frontend_status, itkwidgets_status, view_volume

ANATOMICAL = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii")


@pytest.fixture(scope="module")
def brain():
    return load_nifti(ANATOMICAL)


def test_outside_a_kernel_the_matplotlib_viewer_is_used_and_says_why(brain, capsys):
    assert frontend_status()[0] is False
    assert itkwidgets_status()[0] is False
    view = view_volume(brain)
    assert view.backend == "matplotlib"
    assert "not running inside" in view.reason
    assert "matplotlib" in capsys.readouterr().out
    assert isinstance(view.viewer, SliceViewer)


def test_forcing_matplotlib_by_environment(monkeypatch, brain):
    monkeypatch.setenv("MEDDIFF_VIEWER", "matplotlib")
    assert itkwidgets_status() == (False, "MEDDIFF_VIEWER=matplotlib")
    assert view_volume(brain, verbose=False).backend == "matplotlib"


def test_slice_sliders_change_the_figure_data(brain):
    viewer = SliceViewer(brain)
    before = {p: np.array(im.get_array()) for p, im in viewer.images.items()}
    viewer.sliders["axial"].value = 3
    viewer.sliders["coronal"].value = 30
    viewer.show_slices(sagittal=5)
    for plane in SliceViewer.PLANES:
        after = np.array(viewer.images[plane].get_array())
        assert not np.array_equal(after, before[plane]), plane
    # axial slice 3 of the S-P-L reoriented volume is what is shown
    assert np.array_equal(viewer.images["axial"].get_array(), viewer.array[3])
    assert "slice 4/" in viewer.images["axial"].axes.get_title()


def test_slices_are_in_radiological_orientation():
    # a volume in RAS order with a marker in the patient's right, anterior, superior corner
    array = np.zeros((10, 12, 14), np.float32)
    array[9, 11, 13] = 1.0  # RAS+: x index 9 = most right, y 11 = most anterior, z 13 = most superior
    vol = Volume(array, (1.0, 1.0, 1.0), np.diag([1.0, 1.0, 1.0, 1.0]), {})
    assert vol.orientation == "RAS"
    viewer = SliceViewer(vol)
    assert viewer.array.shape == (14, 12, 10)  # S, P, L
    viewer.show_slices(axial=13)
    axial = np.asarray(viewer.images["axial"].get_array())
    r, c = np.argwhere(axial == 1.0)[0]
    assert r == 0, "anterior at the top row"
    assert c == 0, "patient's right on the viewer's left"


def test_aspect_follows_spacing():
    vol = Volume(np.random.default_rng(0).random((6, 20, 20)), (5.0, 0.5, 0.5),
                 np.array([[0, 0, -0.5, 0], [0, -0.5, 0, 0], [5.0, 0, 0, 0], [0, 0, 0, 1.0]]), {})
    viewer = SliceViewer(vol)
    assert viewer.images["coronal"].axes.get_aspect() == pytest.approx(10.0)
    assert viewer.images["axial"].axes.get_aspect() == pytest.approx(1.0)


def test_window_level_sliders_and_presets_update_the_image():
    ct = load_dicom(get_testdata_file("CT_small.dcm"))
    viewer = WindowLevelViewer(ct, center=40, width=400)
    first = np.array(viewer.image_artist.get_array())
    assert np.allclose(first, window(ct.array, 40, 400))
    viewer.center.value = -600
    viewer.width.value = 1500
    second = np.array(viewer.image_artist.get_array())
    assert not np.allclose(second, first)
    assert np.allclose(second, window(ct.array, -600, 1500))
    viewer.preset.value = "bone"
    assert (viewer.center.value, viewer.width.value) == CT_WINDOWS["bone"]
    assert np.allclose(viewer.image_artist.get_array(), window(ct.array, *CT_WINDOWS["bone"]))
    assert "400 HU" in viewer._ax_img.get_title()


def test_viewers_reject_wrong_dimensions():
    with pytest.raises(ValueError, match="3-D"):
        view_volume(load_dicom(get_testdata_file("CT_small.dcm")))
    with pytest.raises(ValueError, match="2-D"):
        WindowLevelViewer(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="backend"):
        view_volume(load_nifti(ANATOMICAL), backend="vtk")
