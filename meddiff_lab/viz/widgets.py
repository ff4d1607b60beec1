"""Interactive explorers (ipywidgets) for the diffusion notebooks.

* :func:`schedule_explorer` — pick a noise schedule, T and the β range, drag t: the noised radiograph
  and the β, ᾱ and log-SNR curves update together.
* :func:`trajectory_scrubber` — scrub through a sampling run: :math:`x_t` and the predicted
  :math:`\\hat x_0` at each step.

Each returns an object that shows itself in a notebook (``display(explorer)`` or as the last
expression of a cell) and exposes its controls (``explorer.t_slider`` ...) and the matplotlib
artists it draws into (``explorer.image_artist`` ...), so code and tests can drive it: set a
control's ``.value`` and the figure follows.

The figures are plain matplotlib :class:`~matplotlib.figure.Figure` objects re-drawn into an
``ipywidgets.Output`` (works with the default inline backend, in JupyterLab, classic Notebook,
VS Code and Binder; no ``%matplotlib widget`` needed).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from matplotlib.figure import Figure

from .plots import to_numpy_images


def _widgets():
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - ipywidgets is a dependency
        raise ImportError("the explorers need ipywidgets (pip install ipywidgets>=8)") from exc
    return ipywidgets


class _Explorer:
    """Shared plumbing: an Output that shows the figure, re-drawn after each control change."""

    figure: Figure

    def __init__(self) -> None:
        w = _widgets()
        self.output = w.Output()
        self.redraws = 0

    def _show(self) -> None:
        """Redraw the figure into the Output (only inside IPython; plain scripts just keep the figure)."""
        self.redraws += 1
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover - IPython comes with ipywidgets
            return
        if get_ipython() is None or _headless():
            return
        with self.output:
            self.output.clear_output(wait=True)
            display(self.figure)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if _headless():  # a headless run (course runner, CI): no browser to talk to, show the figure
            display(self.figure)
            return
        if self.redraws == 0:  # not drawn yet
            self._show()
        display(self.widget)


def _headless() -> bool:
    """True under the course runner (it sets MEDDIFF_HEADLESS): widgets render as static figures.

    A headless run has no browser to answer widget messages; static output keeps the executed
    notebook readable and avoids an Output widget that papermill's client has been seen to wait on.
    """
    return os.environ.get("MEDDIFF_HEADLESS", "") not in ("", "0")


# ---- schedule explorer -------------------------------------------------------------------------
class ScheduleExplorer(_Explorer):
    """The state behind :func:`schedule_explorer`.

    Controls: ``schedule_dropdown``, ``timesteps_slider`` (T), ``beta_range_slider`` ((β_start, β_end)),
    ``t_slider``. Artists: ``image_artist`` (the noised image), ``beta_line``, ``alpha_bar_line``,
    ``log_snr_line`` and ``t_markers`` (the vertical lines at t). ``schedule`` is the current
    :class:`~meddiff_lab.diffusion.NoiseSchedule`, ``noised`` the current noised image (H, W).
    """

    def __init__(
        self,
        image,
        schedule: str = "linear",
        num_train_timesteps: int = 1000,
        beta_range: tuple[float, float] = (1e-4, 0.02),
        t: int = 250,
        seed: int = 0,
    ) -> None:
        from meddiff_lab.diffusion import SCHEDULE_NAMES, NoiseSchedule

        super().__init__()
        w = _widgets()
        self.image = _one_image_in_minus_one_one(image)
        self.noise = torch.randn(self.image.shape, generator=torch.Generator().manual_seed(seed))
        self._NoiseSchedule = NoiseSchedule

        self.schedule_dropdown = w.Dropdown(options=list(SCHEDULE_NAMES), value=schedule, description="schedule")
        self.timesteps_slider = w.IntSlider(
            value=num_train_timesteps, min=10, max=2000, step=10, description="T", continuous_update=False
        )
        self.beta_range_slider = w.FloatRangeSlider(
            value=beta_range,
            min=1e-5,
            max=0.05,
            step=1e-5,
            readout_format=".5f",
            description="β range",
            continuous_update=False,
            layout=w.Layout(width="420px"),
        )
        self.t_slider = w.IntSlider(
            value=min(t, num_train_timesteps - 1),
            min=0,
            max=num_train_timesteps - 1,
            description="t",
            continuous_update=False,
            layout=w.Layout(width="420px"),
        )
        self.readout = w.HTML()

        self._build_figure()
        for control in (self.schedule_dropdown, self.timesteps_slider, self.beta_range_slider):
            control.observe(self._on_schedule_change, names="value")
        self.t_slider.observe(self._on_t_change, names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.schedule_dropdown, self.timesteps_slider]),
                w.HBox([self.beta_range_slider, self.t_slider]),
                self.readout,
                self.output,
            ]
        )
        self._recompute_schedule()
        self._update_t()

    # the figure: noised image on the left, three curves on the right
    def _build_figure(self) -> None:
        self.figure = Figure(figsize=(12, 3.2))
        axes = self.figure.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1.2, 1.2, 1.2]})
        self.image_axes, self.beta_axes, self.alpha_bar_axes, self.log_snr_axes = axes
        self.image_artist = self.image_axes.imshow(
            self.image.numpy(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest"
        )
        self.image_axes.set_xticks([])
        self.image_axes.set_yticks([])
        (self.beta_line,) = self.beta_axes.plot([], [])
        (self.alpha_bar_line,) = self.alpha_bar_axes.plot([], [])
        (self.log_snr_line,) = self.log_snr_axes.plot([], [])
        labels = (
            (self.beta_axes, r"$\beta_t$", r"$\beta_t$ (variance added per step)"),
            (self.alpha_bar_axes, r"$\bar\alpha_t$", r"$\bar\alpha_t$ (signal fraction left)"),
            (self.log_snr_axes, r"$\log\,\mathrm{SNR}(t)$", "log-SNR"),
        )
        self.t_markers = []
        for ax, ylabel, title in labels:
            ax.set_xlabel("timestep t")
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
            self.t_markers.append(ax.axvline(0, color="C3", lw=1.2, ls="--"))

    def _recompute_schedule(self) -> None:
        T = int(self.timesteps_slider.value)
        beta_start, beta_end = self.beta_range_slider.value
        name = self.schedule_dropdown.value
        self.beta_range_slider.disabled = name == "cosine"  # cosine is defined by ᾱ(t), not a β range
        self.schedule = self._NoiseSchedule.from_name(name, T, float(beta_start), float(max(beta_end, beta_start)))
        steps = np.arange(T)
        margin = max(1.0, 0.02 * T)  # so the t marker stays visible at t = 0 and t = T - 1
        for line, values in (
            (self.beta_line, self.schedule.betas),
            (self.alpha_bar_line, self.schedule.alphas_cumprod),
            (self.log_snr_line, self.schedule.log_snr),
        ):
            line.set_data(steps, values.numpy())
            line.axes.set_xlim(-margin, T - 1 + margin)
            line.axes.relim()
            line.axes.autoscale_view(scalex=False)
        if self.beta_axes.get_yscale() != "log":  # log scale only once there is positive data
            self.beta_axes.set_yscale("log")
            self.figure.tight_layout()
        self.t_slider.max = T - 1  # clamps t.value if needed (which triggers _on_t_change)

    def _update_t(self) -> None:
        from meddiff_lab.diffusion import add_noise

        t = int(self.t_slider.value)
        x0 = self.image[None, None]
        self.noised = add_noise(self.schedule, x0, self.noise[None, None], t)[0, 0]
        self.image_artist.set_data(self.noised.numpy())
        for marker in self.t_markers:
            marker.set_xdata([t, t])
        alpha_bar = float(self.schedule.alphas_cumprod[t])
        snr = float(self.schedule.snr[t])
        self.image_axes.set_title(
            f"{self.schedule.name}, t = {t}\n" + r"$\bar\alpha_t$" + f" = {alpha_bar:.3f}", fontsize=9
        )
        self.readout.value = (
            f"<b>t = {t}</b> of T = {self.schedule.num_train_timesteps}: "
            f"β<sub>t</sub> = {float(self.schedule.betas[t]):.2e}, ᾱ<sub>t</sub> = {alpha_bar:.4f}, "
            f"SNR = {snr:.3g} (log-SNR = {np.log(snr):.2f}); signal std √ᾱ·std(x₀) = "
            f"{alpha_bar**0.5 * float(self.image.std()):.3f} vs noise std √(1−ᾱ) = "
            f"{(1 - alpha_bar) ** 0.5:.3f}"
        )
        self._show()

    def _on_schedule_change(self, change) -> None:
        self._recompute_schedule()
        self._update_t()

    def _on_t_change(self, change) -> None:
        self._update_t()


def schedule_explorer(
    image,
    schedule: str = "linear",
    num_train_timesteps: int = 1000,
    beta_range: tuple[float, float] = (1e-4, 0.02),
    t: int = 250,
    seed: int = 0,
) -> ScheduleExplorer:
    """An explorer of noise schedules on one image.

    Args:
        image: one image (H, W) / (1, H, W) / (1, 1, H, W), array or tensor, in [-1, 1] (e.g. a radiograph
            from ``generate_phantoms`` mapped with ``2·x − 1``).
        schedule: the initial schedule name (``"linear"``, ``"scaled_linear"``, ``"cosine"``, ``"sigmoid"``).
        num_train_timesteps: the initial T.
        beta_range: the initial (β_start, β_end).
        t: the initial timestep.
        seed: the noise ε is drawn once from this seed, so moving t shows the same noise growing.

    Returns:
        A :class:`ScheduleExplorer`; show it with ``display(explorer)`` (or as a cell's last expression).
    """
    return ScheduleExplorer(image, schedule, num_train_timesteps, beta_range, t, seed)


def _one_image_in_minus_one_one(image) -> torch.Tensor:
    arr = to_numpy_images(image)
    if arr.shape[0] != 1:
        raise ValueError(f"schedule_explorer needs ONE image, got {arr.shape[0]} (pass images[0])")
    if arr.min() < -1.001 or arr.max() > 1.001:
        raise ValueError(
            f"image values must be in [-1, 1] (the diffusion range), got [{arr.min():.3g}, "
            f"{arr.max():.3g}]; map a [0, 1] image with 2 * x - 1"
        )
    return torch.from_numpy(arr[0].astype(np.float32))


# ---- trajectory scrubber -------------------------------------------------------------------------
class TrajectoryScrubber(_Explorer):
    """The state behind :func:`trajectory_scrubber`.

    Controls: ``step_slider`` (which sampling step, counted from 1 as in "step k of N"),
    ``item_slider`` (which image of the batch). Artists: ``x_t_artist``, ``x0_artist`` (the two
    images) and ``distance_line``/``marker`` (the RMS distance between the predicted x₀ and the final
    sample, per step, with the current step marked). ``step_index`` is the 0-based index into the
    trajectory of the step shown.
    """

    def __init__(self, trajectory, value_range=(-1.0, 1.0)) -> None:
        super().__init__()
        w = _widgets()
        if not hasattr(trajectory, "x_t") or not hasattr(trajectory, "predicted_x0"):
            raise TypeError(
                "trajectory_scrubber needs a Trajectory: sample(..., return_trajectory=True) "
                f"returns (images, trajectory); got {type(trajectory).__name__}"
            )
        self.trajectory = trajectory
        steps, batch = trajectory.x_t.shape[:2]
        self.value_range = value_range
        self.step_slider = w.IntSlider(
            value=1, min=1, max=steps, description="step", continuous_update=False, layout=w.Layout(width="420px")
        )
        self.item_slider = w.IntSlider(
            value=0, min=0, max=max(batch - 1, 0), description="image", continuous_update=False, disabled=batch == 1
        )
        self.readout = w.HTML()
        self._build_figure()
        self.step_slider.observe(lambda change: self._update(), names="value")
        self.item_slider.observe(lambda change: self._on_item_change(), names="value")
        self.widget = w.VBox([w.HBox([self.step_slider, self.item_slider]), self.readout, self.output])
        self._on_item_change()

    def _build_figure(self) -> None:
        self.figure = Figure(figsize=(10, 3.2))
        self.x_t_axes, self.x0_axes, self.distance_axes = self.figure.subplots(
            1, 3, gridspec_kw={"width_ratios": [1, 1, 1.4]}
        )
        vmin, vmax = self.value_range
        blank = np.zeros(self.trajectory.x_t.shape[-2:], dtype=np.float32)
        self.x_t_artist = self.x_t_axes.imshow(blank, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        self.x0_artist = self.x0_axes.imshow(blank, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        for ax in (self.x_t_axes, self.x0_axes):
            ax.set_xticks([])
            ax.set_yticks([])
        (self.distance_line,) = self.distance_axes.plot([], [], label=r"predicted $\hat x_0$")
        (self.marker,) = self.distance_axes.plot([], [], "o", color="C3")
        self.distance_axes.set_xlabel("sampling step")
        self.distance_axes.set_ylabel("RMS distance to the final sample")
        self.distance_axes.set_title(r"How far $\hat x_0$ still is from the result", fontsize=10)
        self.distance_axes.grid(alpha=0.3)
        self.figure.tight_layout()

    def _image(self, stack: torch.Tensor, step: int, item: int) -> np.ndarray:
        return to_numpy_images(stack[step, item])[0]

    def _on_item_change(self) -> None:
        item = int(self.item_slider.value)
        final = self.trajectory.final[item].float()
        pred = self.trajectory.predicted_x0[:, item].float()
        self.distances = (pred - final).flatten(1).pow(2).mean(1).sqrt().numpy()
        steps = np.arange(1, len(self.distances) + 1)
        self.distance_line.set_data(steps, self.distances)
        self.distance_axes.set_xlim(0.5, max(len(steps) + 0.5, 1.5))
        top = max(float(np.nanmax(self.distances)) * 1.1, 1e-3)
        self.distance_axes.set_ylim(-0.03 * top, top)
        self._update()

    @property
    def step_index(self) -> int:
        """The 0-based index into the trajectory of the step shown (``step_slider.value - 1``)."""
        return int(self.step_slider.value) - 1

    def _update(self) -> None:
        step, item = self.step_index, int(self.item_slider.value)
        number, total = step + 1, len(self.distances)
        t = int(self.trajectory.timesteps[step])
        self.x_t_artist.set_data(self._image(self.trajectory.x_t, step, item))
        self.x0_artist.set_data(self._image(self.trajectory.predicted_x0, step, item))
        self.x_t_axes.set_title(f"$x_t$ entering step {number} of {total} (t = {t})", fontsize=9)
        self.x0_axes.set_title(rf"predicted $\hat x_0$ at t = {t}", fontsize=9)
        self.marker.set_data([number], [self.distances[step]])
        self.readout.value = (
            f"<b>step {number} of {total}</b>, t = {t}: predicted x₀ is "
            f"{self.distances[step]:.3f} (RMS) from the final sample"
        )
        self._show()


def trajectory_scrubber(trajectory, value_range=(-1.0, 1.0)) -> TrajectoryScrubber:
    """Scrub through a sampling run: :math:`x_t` and the predicted :math:`\\hat x_0` at each step.

    Args:
        trajectory: from ``images, trajectory = sample(..., return_trajectory=True)``.
        value_range: the grey levels shown black..white (the diffusion range [-1, 1] by default).

    Returns:
        A :class:`TrajectoryScrubber`; show it with ``display(scrubber)``.
    """
    return TrajectoryScrubber(trajectory, value_range)
