"""00_welcome runs in the ci profile and its environment check finds every required package."""

from meddiff_lab.course import NOTEBOOKS


def test_00_welcome(run_notebook):
    metrics = run_notebook("00_welcome").metrics
    assert metrics["packages_missing"] == 0, "a required package is missing from the environment"
    assert metrics["threads"] >= 1
    assert 1 <= metrics["notebooks_available"] <= len(NOTEBOOKS)
