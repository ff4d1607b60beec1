"""Fixtures for the notebook integration tests: each course notebook runs with papermill, ci profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from meddiff_lab import course


@pytest.fixture(scope="session")
def course_out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("course_ci")


@pytest.fixture(scope="session")
def run_notebook(course_out):
    """Run one notebook in the ci profile; fail with the notebook's cell and error when it fails.

    Returns the :class:`meddiff_lab.course.NotebookResult` (``.metrics`` holds what it recorded).
    """
    cache: dict[str, course.NotebookResult] = {}

    def _run(name: str) -> course.NotebookResult:
        if name not in cache:
            cache[name] = course.run_notebook(name, "ci", course_out)
        result = cache[name]
        if result.status != "passed":
            err = result.error or {}
            pytest.fail(
                f"{name} failed in cell {err.get('cell_index', '?')}: {err.get('ename')}: "
                f"{err.get('evalue')}\n--- cell source ---\n{err.get('source', '')}\n{result.output[-1500:]}"
            )
        return result

    return _run


@pytest.fixture(scope="module")
def metrics(request, run_notebook) -> dict:
    """What the test module's notebook (its ``NOTEBOOK`` name) recorded, run once per session."""
    name = getattr(request.module, "NOTEBOOK", None)
    if name is None:
        raise pytest.UsageError(f"{request.module.__name__} uses `metrics` but sets no NOTEBOOK = '<name>'")
    return run_notebook(name).metrics
