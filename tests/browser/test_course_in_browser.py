"""The course in a real browser: JupyterLab + Chromium, no internet (every external request aborted).

Each test opens a notebook (ci profile), runs Run All through the menu, waits until no cell is queued or
running, saves it and checks that every code cell ran without an error output and that the page logged
no console error beyond the blocked external requests; then it operates the notebook's widgets through
the page (drag, keyboard, typed values, dropdowns, buttons) and checks that what they draw changes.
Screenshots go to each test's temporary folder (``pytest --basetemp DIR`` keeps them in DIR).

`make test` (so CI) runs Run All of 00-08 with every widget operated: 01's window/level and slice viewer,
02's schedule explorer, 03's trajectory scrubber, 08's quiz in place (and a small quiz alone), and
itkwidgets with its CDN blocked followed by a cell that must run: about 5 minutes on the 2-core machine.
The ``browser_all`` ones (Run All of 09 and 10, the longest notebooks, which the course's headless
tests run too) are added with ``MEDDIFF_BROWSER_ALL=1`` (`make test-browser`).
"""

from __future__ import annotations

import json
import re

import pytest

RUN_ALL_TIMEOUT = 600  # seconds; ci notebooks take 10-60 s headless on a quiet machine, 5x that at load 10
UPDATE_TIMEOUT = 30  # seconds for a widget's figure to follow a control (under 1 s on a quiet machine)


def run_notebook(page, lab, driver, name: str) -> dict:
    driver.open_notebook(page, lab, f"notebooks/{name}.ipynb")
    seconds = driver.run_all(page, RUN_ALL_TIMEOUT)
    page.screenshot(path=str(page.screenshots / f"{name}-after-run-all.png"))
    saved = driver.save(page, lab.root / "notebooks" / f"{name}.ipynb")
    assert not driver.not_run(saved), f"{name}: code cells never ran: {driver.not_run(saved)}"
    errors, stderr = driver.errors_and_stderr(saved)
    assert not errors, f"{name}: error outputs after Run All: {errors}"
    unexpected = page.log.unexpected_errors()
    assert not unexpected, f"{name}: console errors: {unexpected}"
    print(
        f"\n{name}: Run All {seconds:.0f} s; {len(page.log.blocked)} external requests blocked "
        f"({sorted({u.split('/')[2] for u in page.log.blocked})}); stderr outputs: {len(stderr)}"
    )
    return saved


def figure_src(scope) -> str:
    """The data URI of the (first) figure drawn in a widget's Output."""
    return scope.locator(".widget-output img").first.get_attribute("src") or ""


def wait_for_new_figure(driver, scope, before: str, what: str) -> str:
    return driver.wait_until(lambda: (src := figure_src(scope)) != before and src, UPDATE_TIMEOUT, what)


def test_00_welcome_runs_all(page, lab, driver):
    run_notebook(page, lab, driver, "00_welcome")


def test_01_window_level_and_the_3d_viewer(page, lab, driver):
    run_notebook(page, lab, driver, "01_preprocessing")
    # the 3-D viewer cell said which viewer and why, and (Run All finished) did not hold the cells after it
    viewer_cell = driver.cell_containing(page, "view_volume(brain)")
    text = viewer_cell.locator(".jp-Cell-outputArea").inner_text()
    assert "matplotlib three-plane" in text and "opt-in" in text, text
    axial = driver.slider(viewer_cell, "axial")
    before = figure_src(viewer_cell)
    driver.drag_handle(page, axial, -40)
    wait_for_new_figure(driver, viewer_cell, before, "the axial slice to follow its slider")

    cell = driver.cell_containing(page, "WindowLevelViewer(ct")
    preset = cell.locator(".widget-dropdown select").first
    center = driver.slider(cell, "center (HU)")
    assert preset.input_value() in ("custom", "soft tissue", "lung", "mediastinum", "brain"), preset.input_value()
    before = figure_src(cell)
    preset.select_option("bone")
    driver.wait_until(lambda: driver.readout(center) == "400", UPDATE_TIMEOUT, "the bone preset's centre")
    before = wait_for_new_figure(driver, cell, before, "the image under the bone window")
    driver.drag_handle(page, center, 60)
    driver.wait_until(lambda: driver.readout(center) != "400", UPDATE_TIMEOUT, "the centre to follow the drag")
    moved = abs(float(driver.readout(center)) - 400)
    assert preset.input_value() == "custom", "a moved slider is no longer the bone preset"
    assert 0 < moved <= 500, f"60 px of drag moved the centre {moved:.0f} HU"
    wait_for_new_figure(driver, cell, before, "the image under the dragged window")
    print(f"01: 60 px of drag moved the window centre {moved:.0f} HU")
    page.screenshot(path=str(page.screenshots / "01-window-level.png"))


ITK_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": [
                "import os\n",
                "import nibabel\n",
                "from meddiff_lab.data.io import load_nifti\n",
                "from meddiff_lab.viz.volume import view_volume\n",
                "test_data = os.path.join(os.path.dirname(nibabel.__file__), 'tests', 'data')\n",
                "brain = load_nifti(os.path.join(test_data, 'anatomical.nii'))",
            ],
        },
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": ["view = view_volume(brain, backend='itkwidgets', timeout=8)"],
        },
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": ["print('the next cell ran; viewer:', view.backend)"],
        },
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_itkwidgets_offline_falls_back_and_releases_the_next_cell(page, lab, driver):
    """itkwidgets asked for, its CDN blocked: within the timeout the next cell runs and the slices show."""
    path = lab.root / "notebooks" / "itkwidgets_offline.ipynb"
    path.write_text(json.dumps(ITK_NOTEBOOK))
    driver.open_notebook(page, lab, "notebooks/itkwidgets_offline.ipynb")
    seconds = driver.run_all(page, 180)
    after = driver.cell_containing(page, "the next cell ran")
    assert "the next cell ran; viewer: matplotlib" in after.locator(".jp-Cell-outputArea").inner_text()
    viewer_cell = driver.cell_containing(page, "backend='itkwidgets'")
    driver.wait_until(
        lambda: "did not report ready" in viewer_cell.inner_text(),
        UPDATE_TIMEOUT,
        "the viewer cell to say why it fell back",
    )
    driver.wait_until(lambda: figure_src(viewer_cell), UPDATE_TIMEOUT, "the matplotlib slices in its place")
    page.screenshot(path=str(page.screenshots / "itkwidgets-offline.png"))
    print(f"\nitkwidgets offline: Run All {seconds:.0f} s; blocked: {sorted(set(page.log.blocked))[:5]}")


def test_02_schedule_explorer(page, lab, driver):
    run_notebook(page, lab, driver, "02_forward_diffusion")
    cell = driver.cell_containing(page, "schedule_explorer(images[0]")
    t = driver.slider(cell, "t")
    html = cell.locator(".widget-html-content").first

    def shown_t():
        match = re.search(r"t = (\d+)\s*of T = (\d+)", html.inner_text())
        return (int(match.group(1)), int(match.group(2))) if match else None

    before = figure_src(cell)
    driver.drag_handle(page, t, 2000)  # past the end: the last timestep
    value, T = driver.wait_until(lambda: (s := shown_t()) and s[0] == s[1] - 1 and s, UPDATE_TIMEOUT, "t = T - 1")
    assert driver.readout(t) == str(T - 1)
    before = wait_for_new_figure(driver, cell, before, "the noised image at the last timestep")
    readout = t.locator(".widget-readout").first
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("100")
    page.keyboard.press("Enter")
    driver.wait_until(lambda: (shown_t() or (0,))[0] == 100, UPDATE_TIMEOUT, "a typed t = 100")
    before = wait_for_new_figure(driver, cell, before, "the image at a typed t")
    cell.locator(".widget-dropdown select").first.select_option("cosine")
    wait_for_new_figure(driver, cell, before, "the image under the cosine schedule")
    page.screenshot(path=str(page.screenshots / "02-schedule-explorer.png"))


def test_03_trajectory_scrubber(page, lab, driver):
    run_notebook(page, lab, driver, "03_reverse_diffusion")
    cell = driver.cell_containing(page, "trajectory_scrubber(trajectory)")
    step = driver.slider(cell, "step")
    html = cell.locator(".widget-html-content").first

    def shown_step():
        match = re.search(r"step (\d+) of (\d+)", html.inner_text())
        return (int(match.group(1)), int(match.group(2))) if match else None

    assert shown_step()[0] == 1 and driver.readout(step) == "1", "the slider and its text count from 1"
    before = figure_src(cell)
    driver.drag_handle(page, step, 2000)
    number, total = driver.wait_until(
        lambda: (s := shown_step()) and s[0] == s[1] and s, UPDATE_TIMEOUT, "the last step"
    )
    assert driver.readout(step) == str(total), "slider and text number the step alike"
    before = wait_for_new_figure(driver, cell, before, "the last step's images")
    step.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowLeft")
    driver.wait_until(lambda: (shown_step() or (0,))[0] == total - 1, UPDATE_TIMEOUT, "one step back (keyboard)")
    assert driver.readout(step) == str(total - 1)
    wait_for_new_figure(driver, cell, before, "the previous step's images")
    page.screenshot(path=str(page.screenshots / "03-trajectory-scrubber.png"))


def operate_quiz(page, driver, cell) -> None:
    real = cell.locator("button", has_text=re.compile(r"^Real$")).first
    synthetic = cell.locator("button", has_text=re.compile(r"^Synthetic$")).first
    total = int(re.search(r"Image 1 of (\d+)", cell.inner_text()).group(1))
    first_image = cell.locator(".widget-image").first.get_attribute("src")
    real.click()
    driver.wait_until(
        lambda: re.search(r"Image 1: you said real; (right|wrong), it was", cell.inner_text()),
        UPDATE_TIMEOUT,
        "feedback on the first answer",
    )
    driver.wait_until(
        lambda: cell.locator(".widget-image").first.get_attribute("src") != first_image,
        UPDATE_TIMEOUT,
        "the second image",
    )
    for question in range(2, total + 1):
        (synthetic if question % 2 else real).click()
        driver.wait_until(
            lambda q=question: f"Image {q}: you said" in cell.inner_text(),
            UPDATE_TIMEOUT,
            f"feedback on answer {question}",
        )
    driver.wait_until(lambda: "Finished." in cell.inner_text(), UPDATE_TIMEOUT, "the score")
    assert "Answer key" in cell.inner_text() and real.is_disabled()
    cell.locator("button", has_text="Start again").first.click()
    driver.wait_until(
        lambda: "Image 1 of" in cell.inner_text() and not real.is_disabled(), UPDATE_TIMEOUT, "a fresh quiz"
    )


QUIZ_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": [
                "import numpy as np\n",
                "from meddiff_lab.viz.quiz import RealOrSyntheticQuiz\n",
                "rng = np.random.default_rng(0)\n",
                "quiz = RealOrSyntheticQuiz(rng.uniform(-1, 0, (6, 32, 32)), rng.uniform(0, 1, (6, 32, 32)), 4)\n",
                "quiz.widget()",
            ],
        },
    ],
    "metadata": ITK_NOTEBOOK["metadata"],
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_quiz_widget(page, lab, driver):
    """08's quiz widget (a small quiz, so it runs in seconds): feedback per answer, score, start again."""
    (lab.root / "notebooks" / "quiz.ipynb").write_text(json.dumps(QUIZ_NOTEBOOK))
    driver.open_notebook(page, lab, "notebooks/quiz.ipynb")
    driver.run_all(page, 120)
    operate_quiz(page, driver, driver.cell_containing(page, "quiz.widget()"))
    page.screenshot(path=str(page.screenshots / "quiz.png"))


def test_08_quiz_in_place(page, lab, driver):
    run_notebook(page, lab, driver, "08_evaluation")
    operate_quiz(page, driver, driver.cell_containing(page, "quiz.widget()"))
    page.screenshot(path=str(page.screenshots / "08-quiz.png"))


@pytest.mark.parametrize(
    "name",
    [
        "04_building_the_unet",
        "05_training_chestxray",
        "06_conditioning",
        "07_segmentation_augmentation",
        pytest.param("09_applications", marks=pytest.mark.browser_all),
        pytest.param("10_latent_diffusion", marks=pytest.mark.browser_all),
    ],
)
def test_run_all(page, lab, driver, name):
    run_notebook(page, lab, driver, name)
