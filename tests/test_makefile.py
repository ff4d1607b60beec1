"""The Makefile's commands, as `make -n` prints them (nothing is run): course, test, lab."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(*args: str) -> str:
    done = subprocess.run(["make", "-n", "-C", str(REPO), *args], capture_output=True, text=True, check=True)
    return done.stdout


def test_course_runs_the_classroom_profile_into_build_course():
    commands = dry_run("course")
    assert "course run --profile classroom --out build/course" in commands
    assert "data write --out data/synthetic_cxr" in commands


def test_test_runs_pytest_in_the_ci_profile():
    assert "MEDDIFF_PROFILE=ci .venv/bin/python -m pytest -q tests" in dry_run("test")


def test_test_lints_the_package_tests_and_notebooks_before_pytest():
    commands = dry_run("test")
    check = commands.index(".venv/bin/ruff check meddiff_lab tests benchmarks scripts notebooks")
    fmt = commands.index(".venv/bin/ruff format --check meddiff_lab tests benchmarks scripts")
    assert check < fmt < commands.index("-m pytest -q tests")


def test_lab_opens_the_welcome_notebook_and_starts_as_root_in_a_container():
    commands = dry_run("lab", "LAB_ARGS=--no-browser")
    lab = next(line for line in commands.splitlines() if "jupyter lab" in line)
    assert lab.endswith("--no-browser notebooks/00_welcome.ipynb")
    assert ("--allow-root" in lab) == (os.geteuid() == 0)
