"""Tests for meddiff_lab/course.py: metric recording and the papermill runner with its report."""

from __future__ import annotations

import json

import nbformat
import pytest

from meddiff_lab import course


def _write_notebook(path, *sources):
    cells = [nbformat.v4.new_code_cell("PROFILE = 'classroom'", metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_record_returns_value_and_writes_jsonl(tmp_path, monkeypatch):
    target = tmp_path / "m.jsonl"
    monkeypatch.setenv(course.METRICS_ENV, str(target))
    assert course.record("loss", 0.5) == 0.5
    course.record("curve", [1.0, float("nan")])
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines == [{"name": "loss", "value": 0.5}, {"name": "curve", "value": [1.0, "nan"]}]
    assert course.recorded()["loss"] == 0.5
    with pytest.raises(ValueError, match="metric name"):
        course.record("", 1)


def test_notebook_list_is_the_ordered_course():
    assert course.NOTEBOOKS[0] == "00_welcome" and "08_evaluation" in course.NOTEBOOKS
    assert list(course.NOTEBOOKS) == sorted(course.NOTEBOOKS)


def test_runner_records_metrics_and_reports_the_failing_cell(tmp_path, monkeypatch):
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    _write_notebook(
        nb_dir / "00_welcome.ipynb",
        "from meddiff_lab.course import record\nrecord('profile_seen', PROFILE)\nrecord('answer', 42)",
    )
    _write_notebook(nb_dir / "01_preprocessing.ipynb", "x = 1", "raise RuntimeError('planted failure')")
    monkeypatch.setenv("MEDDIFF_NOTEBOOKS", str(nb_dir))
    monkeypatch.chdir(tmp_path)  # a relative output folder, as `make course` passes
    out = tmp_path / "out"
    results = course.run("ci", "out", progress=False)
    ok, bad = results
    assert ok.status == "passed" and ok.metrics == {"profile_seen": "ci", "answer": 42}
    assert ok.peak_memory_mb and ok.peak_memory_mb > 10, "the kernel's peak memory must be measured"
    assert bad.status == "failed" and bad.error["ename"] == "RuntimeError"
    assert "planted failure" in bad.error["evalue"] and "raise RuntimeError" in bad.error["source"]
    report = (out / "report.md").read_text()
    assert "01_preprocessing failed" in report and "planted failure" in report
    assert "01_preprocessing" in (out / "report.html").read_text()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["notebooks"]["00_welcome"]["metrics"]["answer"] == 42
    assert (out / "00_welcome.ipynb").exists()
    assert ok.over_budget == [] and "| ok |" in report  # a one-line notebook fits the ci budget (60 s)


def test_budgets_name_what_a_notebook_exceeds(tmp_path):
    from meddiff_lab.runtime import BUDGETS, Budget

    classroom = BUDGETS["classroom"]
    assert classroom == Budget(seconds=300, memory_mb=1536)
    assert classroom.overruns(120.0, 800.0) == []
    assert classroom.overruns(312.4, 1600.0) == ["312 s > 300 s", "1600 MB > 1536 MB"]
    assert BUDGETS["full"].overruns(1e6, 1e6) == []
    slow = course.NotebookResult(
        "05_training_chestxray", "passed", 312.4, 800.0, over_budget=classroom.overruns(312.4, 800.0)
    )
    fine = course.NotebookResult("00_welcome", "passed", 7.0, 300.0)
    course.write_report([fine, slow], "classroom", tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "**over budget: 05_training_chestxray**" in report and "over: 312 s > 300 s" in report
    assert "300 s and 1536 MB" in report
    assert "over: 312 s &gt; 300 s" in (tmp_path / "report.html").read_text()


def test_runner_rejects_unknown_notebook_and_profile(tmp_path):
    with pytest.raises(ValueError, match="unknown notebook"):
        course.run("ci", tmp_path, only=["99_nope"], progress=False)
    with pytest.raises(ValueError, match="unknown profile"):
        course.run_notebook("00_welcome", "huge", tmp_path)


def test_a_recorded_metric_counts_as_a_number_only_when_real_and_finite():
    assert course.is_finite_number(0) and course.is_finite_number(-2.5)
    for value in (float("nan"), float("inf"), "nan", True, None, [1.0]):
        assert not course.is_finite_number(value), value


def test_claim_checks_its_condition_against_its_numbers(tmp_path, monkeypatch, capsys):
    target = tmp_path / "m.jsonl"
    monkeypatch.setenv(course.METRICS_ENV, str(target))
    assert course.claim(
        "Non-local means kept {nlm:.0%} of the edges, the Gaussian {gauss:.0%}.", "nlm > gauss", nlm=0.8, gauss=0.4
    )
    assert not course.claim("The model beats its floor.", "model < floor", model=2.0, floor=1.0)
    assert not course.claim("A NaN supports nothing.", True, value=float("nan"))
    assert not course.claim("A broken condition supports nothing.", "missing > 1", show=False, value=1.0)
    assert course.claim("A plain bool works too.", 3 > 2, show=False)
    printed = capsys.readouterr().out
    assert "Non-local means kept 80% of the edges, the Gaussian 40%." in printed
    assert "Not supported by this run's numbers" in printed and "model < floor" in printed
    lines = [json.loads(line)["claim"] for line in target.read_text().splitlines()]
    assert [c["holds"] for c in lines] == [True, False, False, False, True]
    assert lines[0]["numbers"] == {"nlm": 0.8, "gauss": 0.4} and lines[0]["condition"] == "nlm > gauss"
    assert "NameError" in lines[3]["error"] and "value" in lines[2]["error"]
    with pytest.raises(ValueError, match="names a number"):
        course.claim("{absent} is not given", True)


def test_report_lists_unsupported_claims_by_notebook_and_sentence(tmp_path):
    true = {"text": "Dice rose.", "holds": True, "condition": "a > b", "numbers": {"a": 2, "b": 1}}
    false = {
        "text": "Readers could not tell.",
        "holds": False,
        "condition": "accuracy < 0.6",
        "numbers": {"accuracy": 1.0},
    }
    results = [
        course.NotebookResult("07_segmentation_augmentation", "passed", 1.0, 100.0, claims=[true]),
        course.NotebookResult("08_evaluation", "passed", 1.0, 100.0, claims=[true, false]),
    ]
    course.write_report(results, "classroom", tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "## Claims: 1 unsupported of 3 checked" in report
    assert "**08_evaluation**: “Readers could not tell.”" in report and "accuracy = 1" in report
    assert "Dice rose." not in report
    assert "Readers could not tell." in (tmp_path / "report.html").read_text()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["notebooks"]["08_evaluation"]["claims"][1]["holds"] is False


def test_runner_flags_a_planted_false_claim(tmp_path, monkeypatch):
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    _write_notebook(
        nb_dir / "08_evaluation.ipynb",
        "from meddiff_lab.course import claim, record\naccuracy = record('reader_accuracy', 1.0)",
        "claim('Readers could not tell real from synthetic ({accuracy:.0%} correct).',\n"
        "      'accuracy < 0.6', accuracy=accuracy)",
        "claim('The reader answered every question.', True, show=False)",
    )
    monkeypatch.setenv("MEDDIFF_NOTEBOOKS", str(nb_dir))
    out = tmp_path / "out"
    (result,) = course.run("ci", out, only=["08_evaluation"], progress=False)
    assert result.status == "passed" and result.metrics == {"reader_accuracy": 1.0}
    assert [c["holds"] for c in result.claims] == [False, True]
    report = (out / "report.md").read_text()
    assert "## Claims: 1 unsupported of 2 checked" in report
    assert "**08_evaluation**: “Readers could not tell real from synthetic (100% correct).”" in report
    executed = (out / "08_evaluation.ipynb").read_text()
    assert "Not supported by this run's numbers" in executed


def test_executed_copies_keep_the_final_state_of_progress_bars(tmp_path, monkeypatch):
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    _write_notebook(
        nb_dir / "00_welcome.ipynb", "from tqdm.auto import tqdm\nfor _ in tqdm(range(7), desc='work'):\n    pass"
    )
    monkeypatch.setenv("MEDDIFF_NOTEBOOKS", str(nb_dir))
    (result,) = course.run("ci", tmp_path / "out", only=["00_welcome"], progress=False)
    assert result.status == "passed", result.error
    outputs = nbformat.read(tmp_path / "out" / "00_welcome.ipynb", as_version=4).cells[-1].outputs
    text = "".join(o.get("text", "") for o in outputs)
    assert "7/7" in text, outputs
    assert not any(o.output_type == "display_data" for o in outputs), "a widget bar cannot be saved headless"
