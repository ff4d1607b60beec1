"""meddiff_lab/viz/widgets.py: the explorers respond to their controls (driven from Python)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meddiff_lab.diffusion import DDIMScheduler, GaussianDenoiser, sample
from meddiff_lab.viz.widgets import schedule_explorer, trajectory_scrubber


@pytest.fixture(scope="module")
def image():
    y, x = np.mgrid[-1:1:32j, -1:1:32j]
    return (np.exp(-(x**2 + y**2) * 3) * 1.6 - 0.8).astype(np.float32)  # a bright disc, in [-1, 1]


def test_schedule_explorer_t_slider_updates_image_and_markers(image):
    explorer = schedule_explorer(image, t=10)
    before = np.array(explorer.image_artist.get_array(), copy=True)
    assert np.abs(before - image).mean() < 0.1, "little noise at t = 10"
    explorer.t_slider.value = 900
    after = np.array(explorer.image_artist.get_array())
    assert not np.allclose(before, after)
    assert np.abs(after - image).mean() > 0.5, "mostly noise at t = 900"
    assert all(list(m.get_xdata()) == [900, 900] for m in explorer.t_markers)
    assert "t = 900" in explorer.readout.value


@pytest.mark.parametrize("t", [0, 999])
def test_schedule_explorer_t_marker_stays_inside_the_plots_at_the_ends(image, t):
    explorer = schedule_explorer(image, t=t)
    for marker in explorer.t_markers:
        low, high = marker.axes.get_xlim()
        assert low < t < high, f"t = {t} on the edge of xlim {low, high}: the marker is clipped away"


def test_schedule_explorer_schedule_controls_update_the_curves(image):
    explorer = schedule_explorer(image, t=500)
    alpha_bar_linear = np.array(explorer.alpha_bar_line.get_ydata(), copy=True)
    noised_linear = np.array(explorer.image_artist.get_array(), copy=True)
    explorer.schedule_dropdown.value = "cosine"
    alpha_bar_cosine = np.array(explorer.alpha_bar_line.get_ydata())
    assert alpha_bar_cosine[500] > alpha_bar_linear[500] + 0.1, "cosine keeps more signal at mid t"
    assert not np.allclose(noised_linear, explorer.image_artist.get_array())
    assert explorer.beta_range_slider.disabled
    explorer.schedule_dropdown.value = "linear"
    explorer.beta_range_slider.value = (1e-4, 0.04)
    assert float(explorer.beta_line.get_ydata()[-1]) == pytest.approx(0.04, rel=1e-4)
    explorer.timesteps_slider.value = 200
    assert len(explorer.log_snr_line.get_xdata()) == 200
    assert explorer.t_slider.max == 199 and explorer.t_slider.value == 199
    assert explorer.schedule.num_train_timesteps == 200


def test_schedule_explorer_rejects_images_outside_the_diffusion_range(image):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        schedule_explorer(image * 5)
    with pytest.raises(ValueError, match="ONE image"):
        schedule_explorer(np.stack([image, image]))


@pytest.fixture(scope="module")
def trajectory():
    scheduler = DDIMScheduler(clip_sample=False)
    model = GaussianDenoiser(0.0, 0.5, scheduler)
    _, traj = sample(
        model,
        scheduler,
        (2, 1, 8, 8),
        num_inference_steps=10,
        return_trajectory=True,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    return traj


def test_trajectory_scrubber_follows_its_sliders(trajectory):
    scrubber = trajectory_scrubber(trajectory)
    first_x_t = np.array(scrubber.x_t_artist.get_array(), copy=True)
    first_x0 = np.array(scrubber.x0_artist.get_array(), copy=True)
    assert np.allclose(first_x_t, trajectory.x_t[0, 0, 0].numpy())
    assert (scrubber.step_slider.min, scrubber.step_slider.max) == (1, 10)
    scrubber.step_slider.value = 10  # the last of 10 steps: index 9
    assert scrubber.step_index == 9
    assert np.allclose(scrubber.x_t_artist.get_array(), trajectory.x_t[9, 0, 0].numpy())
    assert not np.allclose(first_x0, scrubber.x0_artist.get_array())
    assert list(scrubber.marker.get_xdata()) == [10]
    distances = np.array(scrubber.distance_line.get_ydata(), copy=True)
    assert distances[-1] < distances[0]
    scrubber.item_slider.value = 1
    assert np.allclose(scrubber.x0_artist.get_array(), trajectory.predicted_x0[9, 1, 0].numpy())
    assert not np.allclose(distances, scrubber.distance_line.get_ydata())
    assert scrubber.redraws >= 3


def test_trajectory_scrubber_needs_a_trajectory():
    with pytest.raises(TypeError, match="return_trajectory"):
        trajectory_scrubber(torch.zeros(3, 1, 8, 8))


def test_static_diffusion_plots_label_their_axes(trajectory):
    """viz/plots.py's schedule and trajectory helpers (the static versions of the two explorers)."""
    import matplotlib.pyplot as plt

    from meddiff_lab.diffusion import NoiseSchedule
    from meddiff_lab.viz.plots import plot_schedules, plot_trajectory

    fig = plot_schedules({n: NoiseSchedule.from_name(n, 100) for n in ("linear", "cosine")}, mark_t=40)
    assert len(fig.axes) == 3 and all(ax.get_xlabel() == "timestep t" and ax.get_title() for ax in fig.axes)
    assert len(fig.axes[1].get_lines()) == 3  # two schedules and the marker
    fig2 = plot_trajectory(trajectory, frames=4)
    assert len(fig2.axes) == 8 and fig2.axes[0].get_title().startswith("t = ")
    plt.close(fig)
    plt.close(fig2)


def test_trajectory_scrubber_slider_and_text_number_steps_alike(trajectory):
    scrubber = trajectory_scrubber(trajectory)
    scrubber.step_slider.value = 4
    assert "step 4 of 10" in scrubber.readout.value
    assert "step 4 of 10" in scrubber.x_t_axes.get_title()
    assert scrubber.step_slider.description == "step"
