"""binder/: the lock pins every package of the tested environment, and agrees with pyproject.toml.

`make binder-lock` regenerates binder/environment.yml from the tested environment (binder/lock.py);
`make binder-sim` builds an environment from binder/ alone and runs the classroom course under Binder's
limits (binder/simulate.py).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"

_spec = importlib.util.spec_from_file_location("binder_lock", BINDER / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)

FIX = "regenerate the lock: make binder-lock (after make setup)"


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in lock.EXTRAS + lock.TEST_ONLY_EXTRAS:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return requirements


def test_every_pyproject_requirement_is_pinned_at_a_version_it_accepts():
    pins = {**lock.read_pins(), **lock.read_test_only_pins()}
    problems = []
    for requirement in _pyproject_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = lock.canonical(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not pinned")
        elif not requirement.specifier.contains(Version(pins[name]), prereleases=True):
            problems.append(f"{requirement} does not accept the pinned {name}=={pins[name]}")
    assert not problems, f"binder/environment.yml drifted from pyproject.toml ({FIX}): {problems}"


def test_the_lock_is_the_tested_environment():
    expected, _ = lock.locked_packages()
    test_only = lock.test_only_packages(expected)
    expected = {
        name: version + ("+cpu" if name == "torch" and "+" not in version else "") for name, version in expected.items()
    }
    for pins, tested, what in (
        (lock.read_pins(), expected, "Binder's pins"),
        (lock.read_test_only_pins(), test_only, "the test-only pins"),
    ):
        differ = sorted(
            f"{n}: lock {pins.get(n)}, tested {tested.get(n)}"
            for n in set(pins) | set(tested)
            if pins.get(n) != tested.get(n)
        )
        assert not differ, f"binder/environment.yml ({what}) is not the tested environment ({FIX}): {differ}"


def test_the_browser_tests_driver_is_pinned_but_not_installed_on_binder():
    """Playwright is pinned for `make setup` (test-only comment lines) and stays out of Binder's pip section."""
    assert "playwright" in lock.read_test_only_pins() and "playwright" not in lock.read_pins()
    constraints = subprocess.run(
        [sys.executable, str(BINDER / "lock.py"), "constraints"], check=True, capture_output=True, text=True
    ).stdout.split()
    assert f"playwright=={lock.read_test_only_pins()['playwright']}" in constraints
    assert f"torch=={lock.read_pins()['torch']}" in constraints


def test_torch_is_the_cpu_build_from_the_cpu_index():
    text = (BINDER / "environment.yml").read_text(encoding="utf-8")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
    assert re.search(r"^\s+- torch==[\d.]+\+cpu$", text, re.M)
    assert "python=3.11" in text


def test_binder_scripts_fail_loudly_and_install_nothing_unpinned():
    post_build = (BINDER / "postBuild").read_text(encoding="utf-8")
    assert re.search(r"^set -e", post_build, re.M), "without set -e Binder ignores postBuild's errors"
    assert "--no-deps -e ." in post_build and "pip check" in post_build
    start = (BINDER / "start").read_text(encoding="utf-8").strip().splitlines()
    assert start[-1] == 'exec "$@"'
    assert any("MEDDIFF_PROFILE=classroom" in line for line in start)


@pytest.mark.parametrize("target", ["binder-lock", "binder-sim"])
def test_makefile_has_the_binder_targets(target):
    assert re.search(rf"^{target}:", (REPO / "Makefile").read_text(encoding="utf-8"), re.M)


def test_binder_sim_installs_exactly_binders_pins():
    """binder/simulate.py installs the pip section as Binder does: every pin, no test-only line, no index line."""
    spec = importlib.util.spec_from_file_location("binder_simulate", BINDER / "simulate.py")
    simulate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(simulate)
    requirements = simulate.pip_requirements(BINDER / "environment.yml")
    assert {lock.canonical(r.split("==")[0]): r.split("==")[1] for r in requirements} == lock.read_pins()
    text = (BINDER / "environment.yml").read_text(encoding="utf-8")
    assert simulate.pip_requirements(text + "# a comment changes no pin\n") == requirements
