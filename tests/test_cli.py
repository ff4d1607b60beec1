"""Tests for meddiff_lab/cli.py: the course commands and error handling."""

from __future__ import annotations

import subprocess
import sys

from meddiff_lab import cli, course


def test_course_list_prints_every_notebook(capsys):
    assert cli.main(["course", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in course.NOTEBOOKS)


def test_course_run_with_unknown_notebook_exits_2_with_a_message(tmp_path, capsys):
    assert cli.main(["course", "run", "--profile", "ci", "--out", str(tmp_path), "--only", "nope"]) == 2
    assert "unknown notebook" in capsys.readouterr().err


def test_console_script_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "meddiff_lab.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "course" in proc.stdout
