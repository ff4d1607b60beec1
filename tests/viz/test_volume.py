"""Tests for meddiff_lab/viz/volume.py: the viewers react to their widget controls, say which backend they use,
and itkwidgets never holds a notebook's later cells longer than its timeout."""

from __future__ import annotations

import importlib.util
import os
import time

import matplotlib

matplotlib.use("Agg")

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from meddiff_lab.data.intensity import CT_WINDOWS, window
from meddiff_lab.data.io import Volume, load_dicom, load_nifti
from meddiff_lab.viz.volume import (
    ITK_TIMEOUT,
    SliceViewer,
    WindowLevelViewer,
    frontend_status,
    itkwidgets_status,
    view_volume,
)

ANATOMICAL = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii")


@pytest.fixture(scope="module")
def brain():
    return load_nifti(ANATOMICAL)


def test_outside_a_kernel_the_matplotlib_viewer_is_used_and_says_why(brain, capsys):
    assert frontend_status()[0] is False
    assert itkwidgets_status()[0] is False
    view = view_volume(brain)
    assert view.backend == "matplotlib"
    assert "opt-in" in view.reason and "MEDDIFF_VIEWER=itkwidgets" in view.reason
    printed = capsys.readouterr().out
    assert "matplotlib" in printed and "opt-in" in printed
    assert isinstance(view.viewer, SliceViewer)


def test_itkwidgets_is_used_only_when_asked_for(monkeypatch):
    monkeypatch.delenv("MEDDIFF_VIEWER", raising=False)
    assert itkwidgets_status() == (False, itkwidgets_status()[1])
    assert "opt-in" in itkwidgets_status()[1]
    monkeypatch.setenv("MEDDIFF_VIEWER", "itkwidgets")
    installed = importlib.util.find_spec("itkwidgets") is not None
    assert itkwidgets_status()[0] is installed


def test_asked_for_outside_a_kernel_itkwidgets_falls_back_and_says_why(monkeypatch, brain, capsys):
    pytest.importorskip("itkwidgets")
    monkeypatch.setenv("MEDDIFF_VIEWER", "itkwidgets")
    view = view_volume(brain)
    assert view.backend == "matplotlib"
    assert "itkwidgets failed" in view.reason
    assert "itkwidgets failed" in capsys.readouterr().out


def test_itkwidgets_timeout_is_checked(monkeypatch, brain):
    monkeypatch.setenv("MEDDIFF_ITK_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MEDDIFF_ITK_TIMEOUT"):
        view_volume(brain, verbose=False)
    with pytest.raises(ValueError, match="timeout"):
        view_volume(brain, verbose=False, timeout=0)
    assert ITK_TIMEOUT > 0


def test_the_program_that_started_the_kernel_decides_headless_not_its_arguments(monkeypatch):
    import types

    import IPython
    import psutil

    monkeypatch.delenv("MEDDIFF_HEADLESS", raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object()))

    def started_by(*command):
        parent = types.SimpleNamespace(cmdline=lambda: list(command))
        monkeypatch.setattr(psutil, "Process", lambda *args: types.SimpleNamespace(parent=lambda: parent))

    started_by("python", "-m", "jupyter", "lab", "--ServerApp.root_dir=/tmp/pytest-of-root/pytest-3/lab0")
    assert frontend_status()[0] is True
    started_by("python", "-m", "pytest", "-q", "tests")
    assert frontend_status()[0] is False and "pytest" in frontend_status()[1]
    started_by("/env/bin/python", "/env/bin/papermill", "in.ipynb", "out.ipynb")
    assert frontend_status()[0] is False


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
    vol = Volume(
        np.random.default_rng(0).random((6, 20, 20)),
        (5.0, 0.5, 0.5),
        np.array([[0, 0, -0.5, 0], [0, -0.5, 0, 0], [5.0, 0, 0, 0], [0, 0, 0, 1.0]]),
        {},
    )
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


def test_window_level_preset_label_follows_the_sliders():
    ct = load_dicom(get_testdata_file("CT_small.dcm"))
    viewer = WindowLevelViewer(ct, *CT_WINDOWS["soft tissue"])
    assert viewer.preset.value == "soft tissue"
    viewer.preset.value = "bone"
    viewer.center.value = 300  # the student drags centre: no longer the bone window
    assert viewer.preset.value == "custom"
    assert viewer.center.value == 300 and viewer.width.value == CT_WINDOWS["bone"][1], "the slider is not undone"
    assert np.allclose(viewer.image_artist.get_array(), window(ct.array, 300, CT_WINDOWS["bone"][1]))
    viewer.set_window(*CT_WINDOWS["lung"])
    assert viewer.preset.value == "lung"
    viewer.width.value = 1000
    assert viewer.preset.value == "custom"
    viewer.preset.value = "mediastinum"
    assert (viewer.center.value, viewer.width.value) == CT_WINDOWS["mediastinum"]


def test_window_level_sliders_have_a_sane_drag_sensitivity():
    viewer = WindowLevelViewer(load_dicom(get_testdata_file("CT_small.dcm")))
    for slider in (viewer.center, viewer.width):
        assert slider.step == 5
        assert slider.max - slider.min <= 2500, "a slider spanning ~3000 HU moved 1500 HU in 60 px of drag"
        assert int(slider.layout.width.rstrip("px")) >= 500
    for center, width in CT_WINDOWS.values():
        assert viewer.center.min <= center <= viewer.center.max and viewer.width.min <= width <= viewer.width.max


def test_viewers_reject_wrong_dimensions():
    with pytest.raises(ValueError, match="3-D"):
        view_volume(load_dicom(get_testdata_file("CT_small.dcm")))
    with pytest.raises(ValueError, match="2-D"):
        WindowLevelViewer(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="backend"):
        view_volume(load_nifti(ANATOMICAL), backend="vtk")


KERNEL_CELL = """
import os
from meddiff_lab.data.io import load_nifti
from meddiff_lab.viz.volume import view_volume
view = view_volume(load_nifti({path!r}), backend="itkwidgets", timeout={timeout})
"""


@pytest.mark.slow
def test_itkwidgets_never_holds_the_next_cell_longer_than_its_timeout():
    """In a real kernel with no browser, itkwidgets' viewer never reports ready: without the release,
    the next cell would wait forever (as it did in JupyterLab with its CDN blocked)."""
    pytest.importorskip("itkwidgets")
    jupyter_client = pytest.importorskip("jupyter_client.manager")
    timeout = 3
    manager, client = jupyter_client.start_new_kernel(kernel_name="python3", env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        outputs = []

        def collect(message):
            if message["msg_type"] == "stream":
                outputs.append(message["content"]["text"])

        reply = client.execute_interactive(
            KERNEL_CELL.format(path=ANATOMICAL, timeout=timeout), timeout=120, output_hook=collect
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "itkwidgets" in "".join(outputs)
        started = time.monotonic()
        # the held cell's output may come after its queued 'idle'; the reply's user_expressions do not
        reply = client.execute_interactive(
            "after = 'ran'",
            timeout=timeout + 30,
            output_hook=collect,
            user_expressions={"backend": "view.backend", "reason": "view.reason"},
        )
        waited = time.monotonic() - started
        assert reply["content"]["status"] == "ok"
        assert waited < timeout + 30
        shown = {k: v["data"]["text/plain"].strip("'") for k, v in reply["content"]["user_expressions"].items()}
        assert shown["backend"] == "matplotlib"
        assert f"did not report ready within {timeout} s" in shown["reason"]
    finally:
        manager.shutdown_kernel(now=True)
