"""Looking at 3-D volumes and CT intensities: a viewer that never blocks, and a window/level explorer.

* :func:`view_volume` shows a :class:`~meddiff_lab.data.io.Volume` in :class:`SliceViewer`, a matplotlib
  three-plane viewer with one ipywidgets slider per plane, and says which viewer it used and why.
  itkwidgets' 3-D viewer (rotate, volume rendering) is **opt-in**: ``backend="itkwidgets"`` or
  ``MEDDIFF_VIEWER=itkwidgets``. Its JavaScript comes from a CDN and IPFS when the page loads, and until
  its viewer reports ready, itkwidgets holds back every later cell of the notebook (it replaces the
  kernel's ``execute_request`` handler). Offline, or where a CDN is blocked, it never reports ready, so
  the notebook would hang. Even when asked for, it is given ``timeout`` seconds
  (``MEDDIFF_ITK_TIMEOUT``, default :data:`ITK_TIMEOUT`) to report ready; then the held cells are
  released and the matplotlib viewer is shown in its place, with the reason.
* :class:`WindowLevelViewer`: a CT slice with centre/width sliders and the usual presets
  (lung, mediastinum, bone...), the window drawn on the HU histogram beside it.

Slices are shown the way radiologists read them: axial and coronal with the patient's right on the
viewer's left, anterior up on axial slices, superior up on coronal and sagittal ones. The volume is
reoriented (axes permuted and flipped, no resampling) so this holds whatever the file's orientation;
pixel aspect follows the voxel spacing.

``MEDDIFF_VIEWER=matplotlib`` forces the slice viewer; ``MEDDIFF_HEADLESS=1`` tells the viewers that no
browser is attached (they then show static figures).
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "view_volume",
    "VolumeView",
    "SliceViewer",
    "WindowLevelViewer",
    "frontend_status",
    "itkwidgets_status",
    "ITK_TIMEOUT",
    "release_when_not_ready",
]

_HEADLESS_MARKERS = ("papermill", "nbclient", "nbconvert", "pytest", "meddiff_lab.course", "nbval", "jupyter-execute")

#: seconds itkwidgets' viewer gets to report ready before the matplotlib viewer replaces it
ITK_TIMEOUT = 20.0

_ITK_OPT_IN = (
    "itkwidgets is opt-in: its viewer loads JavaScript from a CDN and IPFS and, until it reports "
    "ready, holds every later cell (offline or with a CDN blocked it never does); to try it, pass "
    "backend='itkwidgets' or set MEDDIFF_VIEWER=itkwidgets"
)


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
        # the program, not its arguments: a JupyterLab serving /tmp/pytest-of-.../ is not pytest
        command = " ".join(parent.cmdline()[:3]) if parent is not None else ""
    except Exception:  # no permission to look: assume a browser is there
        command = ""
    for marker in _HEADLESS_MARKERS:
        if marker in command:
            return False, f"headless run ({marker} started this kernel): no browser to draw in"
    return True, "Jupyter kernel with a browser attached"


def itkwidgets_status() -> tuple[bool, str]:
    """Whether :func:`view_volume` (``backend="auto"``) uses itkwidgets here, and why (not).

    Only when asked for with ``MEDDIFF_VIEWER=itkwidgets`` and installed (see the module docstring).
    Does not import itkwidgets.
    """
    forced = os.environ.get("MEDDIFF_VIEWER", "").lower()
    if forced == "matplotlib":
        return False, "MEDDIFF_VIEWER=matplotlib"
    if forced == "itkwidgets":
        if importlib.util.find_spec("itkwidgets") is None:
            return False, "MEDDIFF_VIEWER=itkwidgets but itkwidgets is not installed (pip install 'meddiff-lab[lab]')"
        return True, "MEDDIFF_VIEWER=itkwidgets"
    return False, _ITK_OPT_IN


def _itk_timeout(timeout: float | None) -> float:
    if timeout is None:
        value = os.environ.get("MEDDIFF_ITK_TIMEOUT", "")
        try:
            timeout = float(value) if value else ITK_TIMEOUT
        except ValueError:
            raise ValueError(f"MEDDIFF_ITK_TIMEOUT must be a number of seconds, got {value!r}") from None
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    return float(timeout)


def _show_in(output, obj) -> None:
    """Make an ``ipywidgets.Output`` show ``obj`` (replacing what it showed).

    Sets the widget's ``outputs`` directly instead of ``with output: display(obj)``: that works from a
    slider callback or a timer alike, whatever cell the kernel last ran.
    """
    from IPython import get_ipython
    from matplotlib.figure import Figure

    shell = get_ipython()
    if shell is None:
        return
    if isinstance(obj, Figure):  # as a PNG, whether or not the inline backend is active yet
        import base64
        import io

        buffer = io.BytesIO()
        obj.savefig(buffer, format="png", bbox_inches="tight")
        data = {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"), "text/plain": repr(obj)}
        metadata = {}
    else:
        data, metadata = shell.display_formatter.format(obj)
    output.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)


@dataclass
class VolumeView:
    """What :func:`view_volume` showed.

    Attributes:
        backend: ``"itkwidgets"`` or ``"matplotlib"`` (it becomes ``"matplotlib"`` if itkwidgets does not
            report ready in time).
        reason: why this backend (e.g. ``"itkwidgets is opt-in: ..."``).
        widget: the displayable object (the ipywidgets box; for itkwidgets, the status box under its viewer).
        viewer: the :class:`SliceViewer` (matplotlib backend) or the itkwidgets viewer.
    """

    backend: str
    reason: str
    widget: Any
    viewer: Any

    def _ipython_display_(self) -> None:
        # itkwidgets' view() and the status box below it were displayed by view_volume: nothing to add here
        if isinstance(self.viewer, SliceViewer):
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


class _FigureWidget:
    """What :class:`SliceViewer` and :class:`WindowLevelViewer` share: a matplotlib ``figure`` drawn into
    the ``output`` widget of ``widget``, redrawn only once shown in a browser (headless: a static figure)."""

    figure: Any
    widget: Any
    output: Any
    _shown: bool

    def _refresh(self) -> None:
        """Redraw ``figure`` into ``output`` (only after display, and only with a browser attached)."""
        if not self._shown or not frontend_status()[0]:  # headless: nothing listens to the Output widget
            return
        _show_in(self.output, self.figure)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._shown = True
        if not frontend_status()[0]:
            display(self.figure)  # headless: a static picture for the saved notebook, no widget messages
            return
        display(self.widget)
        self._refresh()


class SliceViewer(_FigureWidget):
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
            raise ValueError(
                f"SliceViewer needs a 3-D Volume, got {type(volume).__name__} with shape "
                f"{getattr(volume, 'shape', None)}"
            )
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
            self.images[plane] = ax.imshow(
                self._slice(plane, centre[axis]),
                cmap="gray",
                vmin=self.vmin,
                vmax=self.vmax,
                aspect=aspect,
                origin=origin,
                interpolation="nearest",
            )
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            self.sliders[plane] = widgets.IntSlider(
                value=centre[axis], min=0, max=self.array.shape[axis] - 1, description=plane, continuous_update=False
            )
            self.sliders[plane].observe(self._on_slider, names="value")
        self._set_titles()
        source = Path(str(self.volume.meta.get("path") or self.volume.meta.get("folder") or "volume")).name
        self.figure.suptitle(
            title
            or f"{source}: {self.array.shape} voxels of "
            f"{' x '.join(f'{s:.2g}' for s in self.volume.spacing)} mm (S x P x L)",
            fontsize=9,
        )
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
            image.axes.set_title(
                f"{plane}: slice {index + 1}/{self.array.shape[axis]} ({mm:.1f} mm from the first)", fontsize=9
            )

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


def release_when_not_ready(
    viewer_name: str,
    timeout: float,
    on_ready: Callable[[], None] | None = None,
    on_timeout: Callable[[], None] | None = None,
    poll: float = 0.25,
) -> bool:
    """Let the cells that itkwidgets holds back run if its viewer has not reported ready after ``timeout`` s.

    itkwidgets queues every ``execute_request`` until each of its viewers reports ready. A timer on the
    kernel's event loop (it runs between cells, while the cells wait) checks the viewer; on timeout it
    marks the viewer ready in itkwidgets' ``CellWatcher``, which runs the queued cells, and calls
    ``on_timeout``. Returns False, doing nothing, when there is no running event loop or no CellWatcher
    (then itkwidgets holds nothing either).
    """
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    try:
        from itkwidgets.cell_watcher import CellWatcher
    except ImportError:
        return False
    if not hasattr(CellWatcher, "_instance"):
        return False
    watcher = CellWatcher()
    deadline = time.monotonic() + timeout

    def check() -> None:
        if watcher.viewer_ready(viewer_name):
            if on_ready is not None:
                on_ready()
        elif time.monotonic() >= deadline:
            watcher.update_viewer_status(viewer_name, True)  # runs the queued cells
            if on_timeout is not None:
                on_timeout()
        else:
            loop.call_later(poll, check)

    loop.call_later(poll, check)
    return True


def _view_with_itkwidgets(volume, view: VolumeView, timeout: float, window, title, verbose: bool) -> None:
    """Show ``volume`` in itkwidgets with a status line under it; fall back to the slices after ``timeout``."""
    import ipywidgets as widgets
    import itkwidgets
    from IPython.display import display
    from itkwasm import image_from_array

    image = image_from_array(np.ascontiguousarray(volume.array))
    image.spacing = [float(s) for s in reversed(volume.spacing)]  # itk orders axes x, y, z
    status = widgets.HTML(
        f"3-D viewer: itkwidgets ({view.reason}); waiting up to {timeout:.0f} s for it to report ready…"
    )
    fallback = widgets.Output()
    view.widget = widgets.VBox([status, fallback])
    viewer = itkwidgets.view(image=image)  # displays itself in this cell
    view.backend, view.viewer = "itkwidgets", viewer

    def on_ready() -> None:
        status.value = f"3-D viewer: itkwidgets ({view.reason}); ready."

    def on_timeout() -> None:
        view.reason = (
            f"itkwidgets did not report ready within {timeout:.0f} s; its JavaScript comes from a CDN "
            f"and IPFS: offline, or blocked here?"
        )
        slices = SliceViewer(volume, window=window, title=title)
        view.backend, view.viewer = "matplotlib", slices
        status.value = (
            f"3-D viewer: matplotlib three-plane slices instead ({view.reason}). The cells held back "
            f"meanwhile have run."
        )
        slices._shown = True
        _show_in(fallback, slices.widget if frontend_status()[0] else slices.figure)
        slices._refresh()

    if not release_when_not_ready(viewer.name, timeout, on_ready, on_timeout):
        status.value = f"3-D viewer: itkwidgets ({view.reason})."
    display(view.widget)
    if verbose:
        print(
            f"3-D viewer: itkwidgets ({view.reason}). If it does not report ready within {timeout:.0f} s "
            f"(offline, or its CDN blocked), the matplotlib slices replace it and the cells after this run."
        )


def view_volume(
    volume,
    backend: str = "auto",
    window: tuple[float, float] | None = None,
    title: str | None = None,
    verbose: bool = True,
    timeout: float | None = None,
) -> VolumeView:
    """Show a 3-D volume in the matplotlib three-plane viewer, or in itkwidgets when asked for; say which.

    Args:
        volume: a 3-D :class:`~meddiff_lab.data.io.Volume`.
        backend: ``"auto"`` (matplotlib unless ``MEDDIFF_VIEWER=itkwidgets``), ``"itkwidgets"`` or
            ``"matplotlib"``.
        window: ``(center, width)`` for the matplotlib viewer (see :class:`SliceViewer`).
        verbose: print which backend was used and why.
        timeout: seconds itkwidgets gets to report ready before the matplotlib viewer replaces it and
            the cells it holds back run (default ``MEDDIFF_ITK_TIMEOUT`` or :data:`ITK_TIMEOUT`).

    Returns:
        A :class:`VolumeView` (display it, or let it be a cell's last value); ``.backend`` says which.
    """
    if backend not in ("auto", "itkwidgets", "matplotlib"):
        raise ValueError(f"backend must be 'auto', 'itkwidgets' or 'matplotlib', got {backend!r}")
    if getattr(volume, "ndim", None) != 3:
        raise ValueError(f"view_volume needs a 3-D Volume, got shape {getattr(volume, 'shape', None)}")
    timeout = _itk_timeout(timeout)
    if backend == "matplotlib":
        use_itk, reason = False, "asked for matplotlib"
    elif backend == "itkwidgets":
        if importlib.util.find_spec("itkwidgets") is None:
            raise ImportError(
                "itkwidgets is not installed: pip install 'meddiff-lab[lab]' (or use backend='matplotlib')"
            )
        use_itk, reason = True, "asked for itkwidgets"
    else:
        use_itk, reason = itkwidgets_status()
    if use_itk:
        view = VolumeView("itkwidgets", reason, None, None)
        try:
            _view_with_itkwidgets(volume, view, timeout, window, title, verbose)
            return view
        except Exception as exc:  # itkwidgets present but broken here: fall back, and say so
            reason = f"itkwidgets failed ({type(exc).__name__}: {str(exc)[:120]})"
    viewer = SliceViewer(volume, window=window, title=title)
    if verbose:
        print(f"3-D viewer: matplotlib three-plane slices with sliders (not itkwidgets: {reason}).")
    return VolumeView("matplotlib", reason, viewer.widget, viewer)


class WindowLevelViewer(_FigureWidget):
    """A CT slice under an adjustable window: centre and width sliders, presets, and the HU histogram.

    Args:
        image: a 2-D array in HU, or a 2-D :class:`~meddiff_lab.data.io.Volume`.
        center, width: the starting window in HU.
        presets: name -> (center, width); defaults to :data:`~meddiff_lab.data.intensity.CT_WINDOWS`.

    Attributes:
        image_artist: the ``AxesImage``; ``get_array()`` is ``window(image, center, width)`` in [0, 1].
        center, width: ipywidgets ``FloatSlider`` (HU); ``preset``: a ``Dropdown`` that names the preset
            the sliders are on, or ``"custom"`` once a slider moves off it.
        figure, widget: the matplotlib figure and the ipywidgets box to display.

    The sliders span the windows radiologists use (centre -1000..1000 HU, width 1..2500 HU, widened
    to fit the presets and the starting window), each :data:`SLIDER_WIDTH` wide: about 5 HU of centre
    per pixel of drag. The value beside a slider can be typed into.
    """

    #: CSS width of each slider (with its label and value)
    SLIDER_WIDTH = "600px"
    #: HU ranges the sliders span at least: (min, max) for the centre and for the width
    CENTER_RANGE = (-1000.0, 1000.0)
    WIDTH_RANGE = (1.0, 2500.0)

    def __init__(
        self,
        image,
        center: float = 40.0,
        width: float = 400.0,
        presets: dict[str, tuple[float, float]] | None = None,
        title: str = "CT window / level",
    ):
        import ipywidgets as widgets
        from matplotlib.figure import Figure

        from meddiff_lab.data.intensity import CT_WINDOWS, window

        spacing = getattr(image, "spacing", (1.0, 1.0))
        hu = np.asarray(getattr(image, "array", image), dtype=np.float32)
        if hu.ndim != 2:
            raise ValueError(f"WindowLevelViewer needs one 2-D slice in HU, got shape {hu.shape}")
        if width <= 0:
            raise ValueError(f"window width must be > 0 HU, got {width}")
        self.hu = hu
        self._window = window
        self.presets = dict(CT_WINDOWS if presets is None else presets)
        self.figure = Figure(figsize=(8.0, 3.6), layout="constrained")
        ax_img, ax_hist = self.figure.subplots(1, 2, width_ratios=(1, 1.2))
        self.image_artist = ax_img.imshow(
            window(hu, center, width),
            cmap="gray",
            vmin=0,
            vmax=1,
            aspect=spacing[0] / spacing[1],
            interpolation="nearest",
        )
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
        centers = [c for c, _ in self.presets.values()] + [float(center)]
        widths = [w for _, w in self.presets.values()] + [float(width)]
        layout, style = widgets.Layout(width=self.SLIDER_WIDTH), {"description_width": "90px"}
        self.center = widgets.FloatSlider(
            value=center,
            min=min(self.CENTER_RANGE[0], *centers),
            max=max(self.CENTER_RANGE[1], *centers),
            step=5,
            readout_format=".0f",
            description="center (HU)",
            continuous_update=False,
            layout=layout,
            style=style,
        )
        self.width = widgets.FloatSlider(
            value=width,
            min=min(self.WIDTH_RANGE[0], *widths),
            max=max(self.WIDTH_RANGE[1], *widths),
            step=5,
            readout_format=".0f",
            description="width (HU)",
            continuous_update=False,
            layout=layout,
            style=style,
        )
        self.preset = widgets.Dropdown(
            options=["custom"] + list(self.presets), value=self._preset_name(), description="preset", style=style
        )
        self.center.observe(self._on_change, names="value")
        self.width.observe(self._on_change, names="value")
        self.preset.observe(self._on_preset, names="value")
        self.output = widgets.Output()
        self.widget = widgets.VBox([self.preset, self.center, self.width, self.output])
        self._shown = False
        self._batch = False
        self._update_title()

    def _preset_name(self) -> str:
        """The preset the sliders are on, or ``"custom"``."""
        c, w = float(self.center.value), float(self.width.value)
        return next(
            (name for name, (pc, pw) in self.presets.items() if abs(pc - c) < 0.5 and abs(pw - w) < 0.5), "custom"
        )

    def set_window(self, center: float, width: float) -> None:
        """Set both sliders from code (one redraw); the preset label follows."""
        self._batch = True
        try:
            self.center.value, self.width.value = float(center), float(width)
        finally:
            self._batch = False
        self._redraw()

    def _on_preset(self, change) -> None:
        if change["new"] in self.presets and not self._batch:
            self.set_window(*self.presets[change["new"]])

    def _on_change(self, change) -> None:
        if not self._batch:
            self._redraw()

    def _redraw(self) -> None:
        c, w = float(self.center.value), float(self.width.value)
        name = self._preset_name()
        if self.preset.value != name:  # a slider moved off the preset: say "custom" (and not re-apply it)
            self._batch = True
            try:
                self.preset.value = name
            finally:
                self._batch = False
        self.image_artist.set_data(self._window(self.hu, c, w))
        self._band.remove()
        self._band = self.figure.axes[1].axvspan(c - w / 2, c + w / 2, color="tab:orange", alpha=0.3)
        self._update_title()
        self._refresh()

    def _update_title(self) -> None:
        c, w = float(self.center.value), float(self.width.value)
        self._ax_img.set_title(
            f"window: center {c:.0f} HU, width {w:.0f} HU\nblack ≤ {c - w / 2:.0f} HU, white ≥ {c + w / 2:.0f} HU",
            fontsize=9,
        )
