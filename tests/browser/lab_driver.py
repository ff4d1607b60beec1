"""Driving JupyterLab through the page, as a student does: open a notebook, Run All, wait, read the cells."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

#: the prompts of the open notebook's code cells ("[3]:", "[*]:", "[ ]:")
_PROMPTS = f"""() => [...document.querySelectorAll('{PANEL} .jp-CodeCell .jp-InputPrompt')]
                      .map(p => p.textContent.trim())"""


def open_notebook(page, lab, relative_path: str, timeout_s: float = 90) -> None:
    """Open ``relative_path`` (under the lab's root) and wait until its kernel is idle."""
    page.goto(lab.url(f"lab/tree/{relative_path}") + "&reset")  # reset: no tabs (and kernels) from earlier tests
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=timeout_s * 1000)
    wait_for_kernel(page, timeout_s)


def wait_for_kernel(page, timeout_s: float) -> None:
    """Wait until the notebook's kernel is connected and idle (toolbar indicator and status bar agree)."""
    page.wait_for_selector(f'{PANEL} .jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=timeout_s * 1000)
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle")).first.wait_for(timeout=timeout_s * 1000)


def menu(page, top: str, label: str) -> None:
    """Click a menu bar entry, then its item labelled ``label`` (e.g. Run > Run All Cells)."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^{re.escape(top)}$")).click()
    label_box = page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(label)}$"))
    page.locator(".lm-Menu-item", has=label_box).first.click()


def prompts(page) -> list[str]:
    return page.evaluate(_PROMPTS)


def run_all(page, timeout_s: float) -> float:
    """Run > Run All Cells, and wait until every code cell has run (none queued or running) and the kernel is idle.

    Returns the seconds it took. Raises AssertionError naming the cells still queued on timeout.
    """
    started = time.monotonic()
    menu(page, "Run", "Run All Cells")
    # Under load JupyterLab may take the click before its kernel connection is ready and drop it; then no
    # cell starts: click again (nothing has run, so nothing runs twice).
    for _ in range(3):
        try:
            wait_until(lambda: any(p != "[ ]:" and p for p in prompts(page)), 20, "the first cell to start")
            break
        except AssertionError:
            menu(page, "Run", "Run All Cells")
    deadline = started + timeout_s
    while True:
        shown = prompts(page)
        idle = page.locator(f'{PANEL} .jp-Notebook-ExecutionIndicator[data-status="idle"]').count() > 0
        # a cell with its source hidden (the solutions) shows no prompt: save() then checks its execution count
        if shown and all(re.fullmatch(r"\[\d+\]:", p) or p == "" for p in shown) and idle:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            waiting = [i for i, p in enumerate(shown) if not re.fullmatch(r"\[\d+\]:", p)]
            raise AssertionError(
                f"Run All not finished after {timeout_s:.0f} s: code cells {waiting} of "
                f"{len(shown)} still queued, running or not run ({[shown[i] for i in waiting]})"
            )
        time.sleep(0.5)


def save(page, path: Path, timeout_s: float = 180) -> dict:
    """Save the notebook (its toolbar's save button), wait until its tab is no longer dirty, read it from disk."""
    dirty = page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")
    page.locator(f'{PANEL} .jp-Toolbar [data-command="docmanager:save"]').first.click()
    wait_until(lambda: dirty.count() == 0, timeout_s, f"{path.name} to be saved")
    wait_until(lambda: _read(path), 30, f"{path.name} to be readable")
    return _read(path)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # being written
        return None


def not_run(notebook: dict) -> list[int]:
    """Indices of a saved notebook's code cells that have no execution count (never ran, or still queued)."""
    return [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and cell.get("execution_count") is None
    ]


def errors_and_stderr(notebook: dict) -> tuple[list[str], list[str]]:
    """(error outputs, stderr texts) of a saved notebook's code cells."""
    errors, stderr = [], []
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                stderr.append(f"cell {index}: {''.join(output.get('text', ''))[:300]}")
    return errors, stderr


def cell_containing(page, text: str):
    """The (first) code cell whose source contains ``text``."""
    return page.locator(f"{PANEL} .jp-CodeCell", has=page.locator(".jp-InputArea", has_text=text)).first


def slider(scope, description: str):
    """The ipywidgets slider (its container) labelled ``description``."""
    return scope.locator(
        ".widget-slider", has=scope.page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(description)}$"))
    ).first


def drag_handle(page, slider_box, dx: float) -> None:
    """Drag a slider's handle ``dx`` pixels to the right (left if negative), as with a mouse."""
    handle = slider_box.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x + dx * step / 10, y)
    page.mouse.up()


def readout(slider_box) -> str:
    return slider_box.locator(".widget-readout").first.inner_text().strip()


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
