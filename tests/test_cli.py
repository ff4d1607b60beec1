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


def test_bench_unet_forwards_its_options_to_the_benchmark_script(monkeypatch, tmp_path):
    """`meddiff-lab bench unet --auto-precision ...` runs benchmarks/unet_throughput.py with the same flags."""
    import importlib.util

    from meddiff_lab import cli as cli_module

    fake = tmp_path / "unet_throughput.py"
    fake.write_text("SEEN = []\ndef main(argv):\n    SEEN.append(list(argv))\n    return 0\n")
    real_spec = importlib.util.spec_from_file_location
    monkeypatch.setattr(importlib.util, "spec_from_file_location", lambda name, path: real_spec(name, fake))
    import sys

    monkeypatch.delitem(sys.modules, "unet_throughput", raising=False)  # restored after the test
    assert cli_module.main(["bench", "unet", "--quick", "--threads", "1", "--auto-precision"]) == 0
    assert sys.modules["unet_throughput"].SEEN == [["--quick", "--threads", "1", "--auto-precision"]]
