"""Without Chromium the browser tests fail, naming the command that installs it (never a skip that passes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_a_missing_browser_fails_with_the_install_command(tmp_path):
    env = dict(os.environ, MEDDIFF_CHROMIUM=str(tmp_path / "no-chromium"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "run"),
            str(HERE / "test_course_in_browser.py"),
            "-k",
            "00_welcome",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode != 0, done.stdout[-2000:]
    assert "apt-get install -y chromium" in done.stdout, done.stdout[-2000:]
    assert "1 error" in done.stdout or "1 failed" in done.stdout, done.stdout[-2000:]
    assert "skipped" not in done.stdout
