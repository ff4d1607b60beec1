"""Looking at 3-D volumes and CT intensities: itkwidgets when it can render, matplotlib otherwise.

* :func:`view_volume` shows a :class:`~meddiff_lab.data.io.Volume` in itkwidgets' 3-D viewer when
  the notebook runs in a Jupyter kernel with a browser attached and itkwidgets is installed; otherwise
  (headless runs such as papermill or CI, a terminal, itkwidgets missing) in :class:`SliceViewer`, a
  matplotlib three-plane viewer with one ipywidgets slider per plane. It returns a
  :class:`VolumeView` whose ``backend`` says which was used, and why.
* :class:`WindowLevelViewer`: a CT slice with centre/width sliders and the usual presets
  (lung, mediastinum, bone...), the window drawn on the HU histogram beside it.

Slices are shown the way radiologists read them: axial and coronal with the patient's right on the
viewer's left, anterior up on axial slices, superior up on coronal and sagittal ones. The volume is
reoriented (axes permuted and flipped, no resampling) so this holds whatever the file's orientation;
pixel aspect follows the voxel spacing.

Set ``MEDDIFF_VIEWER=matplotlib`` (or ``itkwidgets``) to force a backend, and ``MEDDIFF_HEADLESS=1``
to tell the viewers no browser is attached. itkwidgets loads its JavaScript from the internet: if its
cell stays blank (offline, or IPFS blocked), call ``view_volume(volume, backend="matplotlib")``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["view_volume", "VolumeView", "SliceViewer", "WindowLevelViewer", "frontend_status", "itkwidgets_status"]

_HEADLESS_MARKERS = ("papermill", "nbclient", "nbconvert", "pytest", "meddiff_lab.course", "nbval", "jupyter-execute")


def frontend_status() -> tuple[bool, str]:
    """Whether this code runs in a Jupyter kernel with a browser attached, and why (not).

    A kernel started by a headless runner (papermill, nbclient, nbconvert, pytest/nbval, the course
    runner) has no browser to draw widgets in; it is recognised by the process that started the kernel.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False, "IPython is not installed"
    shell = get_ipython()
    if shell is None:
        return False, "not running inside IPython/Jupyter"
    if getattr(shell, "kernel", None) is None:
        return False, "IPython without a Jupyter kernel (a terminal): nothing can draw widgets"
    if os.environ.get("MEDDIFF_HEADLESS"):
        return False, "MEDDIFF_HEADLESS is set: headless run"
    try:
        import psutil

        parent = psutil.Process().parent()
        command = " ".join(parent.cmdline()) if parent is not None else ""
    except Exception:  # no permission to look: assume a browser is there
        command = ""
    for marker in _HEADLESS_MARKERS:
        if marker in command:
            return False, f"headless run ({marker} started this kernel): no browser to draw in"
    return True, "Jupyter kernel with a browser attached"


def itkwidgets_status() -> tuple[bool, str]:
    """Whether itkwidgets can render here, and why (not). Does not import itkwidgets."""
    forced = os.environ.get("MEDDIFF_VIEWER", "").lower()
    if forced == "matplotlib":
        return False, "MEDDIFF_VIEWER=matplotlib"
    if importlib.util.find_spec("itkwidgets") is None:
        return False, "itkwidgets is not installed (pip install 'meddiff-lab[lab]')"
    if forced == "itkwidgets":
        return True, "MEDDIFF_VIEWER=itkwidgets"
    ok, reason = frontend_status()
    return ok, reason if not ok else "itkwidgets installed and a browser attached"


@dataclass
class VolumeView:
    """What :func:`view_volume` showed.

    Attributes:
        backend: ``"itkwidgets"`` or ``"matplotlib"``.
        reason: why this backend (e.g. ``"headless run (papermill started this kernel): no browser..."``).
        widget: the displayable object (itkwidgets viewer or the ipywidgets box).
        viewer: the :class:`SliceViewer` (matplotlib backend) or the itkwidgets viewer.
    """

    backend: str
    reason: str
    widget: Any
    viewer: Any

    def _ipython_display_(self) -> None:
        # itkwidgets' view() puts its viewer in the output of the cell that created it: nothing to add here
        if self.backend == "matplotlib":
            self.viewer._ipython_display_()

    def __repr__(self) -> str:
        return f"VolumeView(backend={self.backend!r}, reason={self.reason!r})"


def _display_window(array: np.ndarray, window: tuple[float, float] | None) -> tuple[float, float]:
    if window is not None:
        center, width = (float(v) for v in window)
        if width <= 0:
            raise ValueError(f"window width must be > 0, got {width}")
        return center - width / 2, center + width / 2
    lo, hi = (float(v) for v in np.percentile(array, [1, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


class SliceViewer:
    """Axial, coronal and sagittal slices of a 3-D volume with one ipywidgets slider per plane.

    Args:
        volume: a 3-D :class:`~meddiff_lab.data.io.Volume` (any orientation).
        window: ``(center, width)`` in the volume's units (e.g. ``CT_WINDOWS["soft tissue"]``); ``None``
            maps the 1st..99.5th percentile to black..white.
        title: the figure title.

    Attributes:
        figure: the matplotlib ``Figure`` (not managed by pyplot; it is drawn inside ``widget``).
        images: ``{"axial"|"coronal"|"sagittal": AxesImage}``; ``images[p].get_array()`` is the slice shown.
        sliders: ``{plane: ipywidgets.IntSlider}``; setting ``.value`` moves through the volume.
        widget: the ``ipywidgets.VBox`` to display.
    """

    PLANES = ("axial", "coronal", "sagittal")

    def __init__(self, volume, window: tuple[float, float] | None = None, title: str | None = None, size: float = 3.2):
        import ipywidgets as widgets
        from matplotlib.figure import Figure

        if getattr(volume, "ndim", None) != 3:
            raise ValueError(f"SliceViewer needs a 3-D Volume, got {type(volume).__name__} with shape "
                             f"{getattr(volume, 'shape', None)}")
        # S-P-L: axis 0 grows toward Superior, 1 toward Posterior, 2 toward the patient's Left
        self.volume = volume.reoriented("SPL")
        self.array = self.volume.array
        s_sp, p_sp, l_sp = self.volume.spacing
        self.vmin, self.vmax = _display_window(self.array, window)
        self.figure = Figure(figsize=(3 * size, size + 0.6), layout="constrained")
        axes = self.figure.subplots(1, 3)
        centre = [n // 2 for n in self.array.shape]
        # plane -> (array axis sliced, aspect = row spacing / column spacing, origin, x label, y label)
        self._planes = {
            "axial": (0, p_sp / l_sp, "upper", "patient right → left (columns)", "anterior → posterior (rows)"),
            "coronal": (1, s_sp / l_sp, "lower", "patient right → left (columns)", "inferior → superior (rows)"),
            "sagittal": (2, s_sp / p_sp, "lower", "anterior → posterior (columns)", "inferior → superior (rows)"),
        }
        self.images, self.sliders = {}, {}
        for ax, plane in zip(axes, self.PLANES):
            axis, aspect, origin, xlabel, ylabel = self._planes[plane]
            self.images[plane] = ax.imshow(self._slice(plane, centre[axis]), cmap="gray", vmin=self.vmin,
                                           vmax=self.vmax, aspect=aspect, origin=origin, interpolation="nearest")
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            self.sliders[plane] = widgets.IntSlider(value=centre[axis], min=0, max=self.array.shape[axis] - 1,
                                                    description=plane, continuous_update=False)
            self.sliders[plane].observe(self._on_slider, names="value")
        self._set_titles()
        source = Path(str(self.volume.meta.get("path") or self.volume.meta.get("folder") or "volume")).name
        self.figure.suptitle(title or f"{source}: {self.array.shape} voxels of "
                             f"{' x '.join(f'{s:.2g}' for s in self.volume.spacing)} mm (S x P x L)", fontsize=9)
        self.output = widgets.Output()
        self.widget = widgets.VBox([widgets.HBox(list(self.sliders.values())), self.output])
        self._shown = False

    def _slice(self, plane: str, index: int) -> np.ndarray:
        axis = self._planes[plane][0] if hasattr(self, "_planes") else 0
        return np.take(self.array, int(index), axis=axis)

    def _set_titles(self) -> None:
        for plane, image in self.images.items():
            axis = self._planes[plane][0]
            index = self.sliders[plane].value
            mm = index * self.volume.spacing[axis]
            image.axes.set_title(f"{plane}: slice {index + 1}/{self.array.shape[axis]} ({mm:.1f} mm from the first)",
                                 fontsize=9)

    def _on_slider(self, change) -> None:
        plane = next(p for p, s in self.sliders.items() if s is change["owner"])
        self.images[plane].set_data(self._slice(plane, change["new"]))
        self._set_titles()
        self._refresh()

    def show_slices(self, axial: int | None = None, coronal: int | None = None, sagittal: int | None = None) -> None:
        """Move the sliders from code (same effect as dragging them)."""
        for plane, value in (("axial", axial), ("coronal", coronal), ("sagittal", sagittal)):
            if value is not None:
                self.sliders[plane].value = int(value)

    def _refresh(self) -> None:
        if not self._shown or not frontend_status()[0]:  # headless: nothing listens to the Output widget
            return
        from IPython.display import clear_output, display

        with self.output:
            clear_output(wait=True)
            display(self.figure)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._shown = True
        if not frontend_status()[0]:
            display(self.figure)  # headless: a static picture for the saved notebook, no widget messages
            return
        display(self.widget)
        self._refresh()


def view_volume(volume, backend: str = "auto", window: tuple[float, float] | None = None,
                title: str | None = None, verbose: bool = True) -> VolumeView:
    """Show a 3-D volume: itkwidgets when it can render, else the matplotlib three-plane viewer.

    Args:
        volume: a 3-D :class:`~meddiff_lab.data.io.Volume`.
        backend: ``"auto"``, ``"itkwidgets"`` or ``"matplotlib"``.
        window: ``(center, width)`` for the matplotlib viewer (see :class:`SliceViewer`).
        verbose: print which backend was used and why.

    Returns:
        A :class:`VolumeView` (display it, or let it be a cell's last value); ``.backend`` says which.
    """
    if backend not in ("auto", "itkwidgets", "matplotlib"):
        raise ValueError(f"backend must be 'auto', 'itkwidgets' or 'matplotlib', got {backend!r}")
    if getattr(volume, "ndim", None) != 3:
        raise ValueError(f"view_volume needs a 3-D Volume, got shape {getattr(volume, 'shape', None)}")
    if backend == "matplotlib":
        use_itk, reason = False, "asked for matplotlib"
    else:
        use_itk, reason = itkwidgets_status()
        if backend == "itkwidgets" and importlib.util.find_spec("itkwidgets") is not None:
            use_itk, reason = True, "asked for itkwidgets"
        elif backend == "itkwidgets":
            raise ImportError("itkwidgets is not installed: pip install 'meddiff-lab[lab]' (or use backend='matplotlib')")
    if use_itk:
        try:
            import itkwidgets
            from itkwasm import image_from_array

            image = image_from_array(np.ascontiguousarray(volume.array))
            image.spacing = [float(s) for s in reversed(volume.spacing)]  # itk orders axes x, y, z
            viewer = itkwidgets.view(image=image)
            if verbose:
                print(f"3-D viewer: itkwidgets ({reason}). If the cell stays blank (offline or IPFS blocked), "
                      f"use view_volume(volume, backend='matplotlib').")
            return VolumeView("itkwidgets", reason, viewer, viewer)
        except Exception as exc:  # itkwidgets present but broken here: fall back, and say so
            reason = f"itkwidgets failed ({type(exc).__name__}: {str(exc)[:120]})"
    viewer = SliceViewer(volume, window=window, title=title)
    if verbose:
        print(f"3-D viewer: matplotlib three-plane slices with sliders (itkwidgets not used: {reason}).")
    return VolumeView("matplotlib", reason, viewer.widget, viewer)


class WindowLevelViewer:
    """A CT slice under an adjustable window: centre and width sliders, presets, and the HU histogram.

    Args:
        image: a 2-D array in HU, or a 2-D :class:`~meddiff_lab.data.io.Volume`.
        center, width: the starting window in HU.
        presets: name -> (center, width); defaults to :data:`~meddiff_lab.data.intensity.CT_WINDOWS`.

    Attributes:
        image_artist: the ``AxesImage``; ``get_array()`` is ``window(image, center, width)`` in [0, 1].
        center, width: ipywidgets ``FloatSlider`` (HU); ``preset``: a ``Dropdown``.
        figure, widget: the matplotlib figure and the ipywidgets box to display.
    """

    def __init__(self, image, center: float = 40.0, width: float = 400.0,
                 presets: dict[str, tuple[float, float]] | None = None, title: str = "CT window / level"):
        import ipywidgets as widgets
        from matplotlib.figure import Figure

        from meddiff_lab.data.intensity import CT_WINDOWS, window

        spacing = getattr(image, "spacing", (1.0, 1.0))
        hu = np.asarray(getattr(image, "array", image), dtype=np.float32)
        if hu.ndim != 2:
            raise ValueError(f"WindowLevelViewer needs one 2-D slice in HU, got shape {hu.shape}")
        self.hu = hu
        self._window = window
        self.presets = dict(CT_WINDOWS if presets is None else presets)
        self.figure = Figure(figsize=(8.0, 3.6), layout="constrained")
        ax_img, ax_hist = self.figure.subplots(1, 2, width_ratios=(1, 1.2))
        self.image_artist = ax_img.imshow(window(hu, center, width), cmap="gray", vmin=0, vmax=1,
                                          aspect=spacing[0] / spacing[1], interpolation="nearest")
        ax_img.set_xlabel("column (pixels)")
        ax_img.set_ylabel("row (pixels)")
        ax_hist.hist(hu.ravel(), bins=120, color="0.4")
        ax_hist.set_yscale("log")
        ax_hist.set_xlabel("Hounsfield units (HU)")
        ax_hist.set_ylabel("pixels (log scale)")
        ax_hist.set_title("histogram; shaded: the window", fontsize=9)
        self._band = ax_hist.axvspan(center - width / 2, center + width / 2, color="tab:orange", alpha=0.3)
        self._ax_img = ax_img
        self.figure.suptitle(title, fontsize=10)
        lo, hi = float(min(hu.min(), -1100)), float(max(hu.max(), 2000))
        self.center = widgets.FloatSlider(value=center, min=lo, max=hi, step=5, description="center (HU)",
                                          continuous_update=False)
        self.width = widgets.FloatSlider(value=width, min=1, max=hi - lo, step=5, description="width (HU)",
                                         continuous_update=False)
        self.preset = widgets.Dropdown(options=["custom"] + list(self.presets), value="custom", description="preset")
        self.center.observe(self._on_change, names="value")
        self.width.observe(self._on_change, names="value")
        self.preset.observe(self._on_preset, names="value")
        self.output = widgets.Output()
        self.widget = widgets.VBox([widgets.HBox([self.preset, self.center, self.width]), self.output])
        self._shown = False
        self._update_title()

    def set_window(self, center: float, width: float) -> None:
        """Set both sliders from code (one redraw)."""
        self._batch = True
        try:
            self.center.value, self.width.value = float(center), float(width)
        finally:
            self._batch = False
        self._redraw()

    def _on_preset(self, change) -> None:
        if change["new"] in self.presets:
            self.set_window(*self.presets[change["new"]])

    def _on_change(self, change) -> None:
        if not getattr(self, "_batch", False):
            self._redraw()

    def _redraw(self) -> None:
        c, w = float(self.center.value), float(self.width.value)
        self.image_artist.set_data(self._window(self.hu, c, w))
        self._band.remove()
        self._band = self.figure.axes[1].axvspan(c - w / 2, c + w / 2, color="tab:orange", alpha=0.3)
        self._update_title()
        if self._shown and frontend_status()[0]:
            from IPython.display import clear_output, display

            with self.output:
                clear_output(wait=True)
                display(self.figure)

    def _update_title(self) -> None:
        c, w = float(self.center.value), float(self.width.value)
        self._ax_img.set_title(f"window: center {c:.0f} HU, width {w:.0f} HU\n"
                               f"black ≤ {c - w / 2:.0f} HU, white ≥ {c + w / 2:.0f} HU", fontsize=9)

    def _ipython_display_(self) -> None:
        from IPython.display import clear_output, display

        self._shown = True
        if not frontend_status()[0]:
            display(self.figure)  # headless: a static picture for the saved notebook, no widget messages
            return
        display(self.widget)
        with self.output:
            clear_output(wait=True)
            display(self.figure)
