"""nbval in lax mode on the notebooks whose live widgets the papermill runs do not reach.

The course runner sets ``MEDDIFF_HEADLESS=1``, so in the papermill tests the schedule and trajectory
explorers of 02 and 03 draw static figures. Here the same notebooks run under nbval *without* that
variable, as a student's kernel would: every cell must execute, including the ipywidgets ``Output``
callbacks. 00_welcome runs too (a few seconds): it is the first cell any student runs. The other
notebooks are left to the papermill tests, where nbval would only repeat them and double the time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from meddiff_lab import course

pytestmark = pytest.mark.notebook

LIVE_WIDGET_NOTEBOOKS = ["00_welcome", "02_forward_diffusion", "03_reverse_diffusion"]
CELL_TIMEOUT_S = 300


def code_cell_count(path) -> int:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return sum(1 for cell in cells if cell["cell_type"] == "code" and "".join(cell["source"]).strip())


@pytest.mark.parametrize("name", LIVE_WIDGET_NOTEBOOKS)
def test_notebook_passes_nbval_lax_with_live_widgets(name):
    path = course.notebooks_dir() / f"{name}.ipynb"
    env = {k: v for k, v in os.environ.items() if k != "MEDDIFF_HEADLESS"}
    env.setdefault("MEDDIFF_PROFILE", "ci")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        f"--nbval-cell-timeout={CELL_TIMEOUT_S}",
        str(path),
    ]
    done = subprocess.run(
        command, cwd=path.parent.parent, env=env, capture_output=True, text=True, timeout=CELL_TIMEOUT_S * 4
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"nbval --nbval-lax failed on {name}:\n{done.stdout[-3000:]}\n{done.stderr[-1500:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed, f"no pass count in nbval's summary: {summary!r}"
    assert int(passed.group(1)) == code_cell_count(path), f"{name}: {summary} (code cells: {code_cell_count(path)})"
    assert not re.search(r"failed|error|skipped", summary), summary
