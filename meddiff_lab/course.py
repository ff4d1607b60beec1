"""The course as a whole: the ordered notebooks, the headless runner, and metric recording.

A teacher (or CI) runs every notebook with papermill::

    meddiff-lab course run --profile classroom --out build/course

Each notebook runs in its own kernel with ``PROFILE`` injected into its ``parameters`` cell. The
runner writes the executed notebooks, ``metrics.json`` (per notebook: status, seconds, the kernel's
peak memory, every number the notebook recorded with :func:`record`, and every sentence it stated
with :func:`claim` beside the numbers it depends on) and ``report.md`` / ``report.html`` into the
output folder, and exits non-zero when a notebook fails. The report lists every claim that the
notebook's own numbers do not support, naming notebook and sentence.
"""

from __future__ import annotations

import html
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from meddiff_lab._json import to_jsonable as _jsonable

NOTEBOOKS: tuple[str, ...] = (
    "00_welcome",
    "01_preprocessing",
    "02_forward_diffusion",
    "03_reverse_diffusion",
    "04_building_the_unet",
    "05_training_chestxray",
    "06_conditioning",
    "07_segmentation_augmentation",
    "08_evaluation",
    "09_applications",
    "10_latent_diffusion",
)

#: where a notebook's recorded numbers go while the course runner executes it
METRICS_ENV = "MEDDIFF_METRICS_FILE"

#: seconds one cell may run before the runner gives up on it (a hung kernel fails instead of blocking)
CELL_TIMEOUT = {"ci": 300, "classroom": 900, "full": None}

_RECORDED: dict[str, Any] = {}


def notebooks_dir() -> Path:
    """The folder holding the course notebooks (``notebooks/`` beside the package)."""
    env = os.environ.get("MEDDIFF_NOTEBOOKS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "notebooks"


def available_notebooks(folder: Path | None = None) -> list[str]:
    """Names from :data:`NOTEBOOKS` whose ``.ipynb`` file exists, in course order."""
    folder = folder or notebooks_dir()
    return [name for name in NOTEBOOKS if (folder / f"{name}.ipynb").exists()]


def record(name: str, value: Any) -> Any:
    """Record one of the notebook's key numbers (returned unchanged, so it can end a cell).

    Under the course runner the value goes into the run's ``metrics.json``; in an interactive
    session it is kept in memory (see :func:`recorded`).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"record() needs a non-empty metric name, got {name!r}")
    value_json = _jsonable(value)
    _RECORDED[name] = value_json
    path = os.environ.get(METRICS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"name": name, "value": value_json}) + "\n")
    return value


def is_finite_number(value: Any) -> bool:
    """True for a real, finite number: what a recorded metric must be to count as measured.

    (``record`` stores NaN and infinity as the strings ``"nan"``/``"inf"``, and booleans stay booleans.)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def recorded() -> dict[str, Any]:
    """Everything recorded in this session so far."""
    return dict(_RECORDED)


# ------------------------------------------------------------------------------------------- claims
#: names a claim's condition may use besides its own numbers
_CLAIM_BUILTINS = {
    "abs": abs,
    "min": min,
    "max": max,
    "all": all,
    "any": any,
    "len": len,
    "round": round,
    "sum": sum,
    "bool": bool,
    "float": float,
    "int": int,
}

_CLAIMS: list[dict[str, Any]] = []


def claim(text: str, condition: bool | str, *, show: bool = True, **numbers: Any) -> bool:
    """State a sentence about the notebook's results, tied to the numbers that must support it.

    ``text`` is the sentence; ``{name}`` fields (with format specs, ``{fid:.1f}``) are filled from
    ``numbers``. ``condition`` says when the sentence is true: a bool, or an expression over
    ``numbers`` such as ``"psnr_nlm > psnr_noisy"`` (kept in the record, so the report can say what
    failed). A claim whose numbers include NaN or infinity, or whose condition cannot be evaluated, is
    unsupported. Under the course runner each claim goes into ``metrics.json`` with its numbers, and
    the run's report lists every unsupported one, naming notebook and sentence.

    With ``show`` (the default) the sentence is displayed (Markdown in Jupyter), marked when this
    run's numbers do not support it; use ``show=False`` for a sentence the notebook's Markdown
    already says. Returns whether the claim holds.

        claim("Non-local means kept {nlm_edges:.0%} of the edge energy, the Gaussian {gauss_edges:.0%}.",
              "nlm_edges > gauss_edges", nlm_edges=0.81, gauss_edges=0.42)
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"claim() needs the sentence it checks, got {text!r}")
    values = {name: _jsonable(value) for name, value in numbers.items()}
    expression = condition if isinstance(condition, str) else None
    error = None
    try:
        sentence = text.format(**numbers)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"claim sentence {text!r} names a number that was not given or a bad format: {exc}") from exc
    try:
        if expression is not None:
            holds = bool(eval(expression, {"__builtins__": _CLAIM_BUILTINS}, dict(numbers)))  # noqa: S307
        else:
            holds = bool(condition)
    except Exception as exc:  # a condition that cannot be evaluated supports nothing
        holds, error = False, f"{type(exc).__name__}: {exc}"
    not_finite = sorted(name for name, value in values.items() if _has_non_finite(value))
    if not_finite:
        holds = False
        error = error or f"not a finite number: {', '.join(not_finite)}"
    entry = {"text": sentence, "holds": holds, "condition": expression, "numbers": values}
    if error:
        entry["error"] = error
    _CLAIMS.append(entry)
    path = os.environ.get(METRICS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"claim": entry}) + "\n")
    if show:
        _show_claim(entry)
    return holds


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, str):
        return value in ("nan", "inf", "-inf")
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def _show_claim(entry: dict[str, Any]) -> None:
    text = (
        entry["text"]
        if entry["holds"]
        else (f"⚠ **Not supported by this run's numbers:** {entry['text']} ({_claim_reason(entry)})")
    )
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(text))
            return
    except ImportError:
        pass
    print(text)


def _claim_reason(entry: dict[str, Any]) -> str:
    """What a claim depended on, in words: its condition, its numbers, and any error."""
    numbers = ", ".join(f"{k} = {_short(v)}" for k, v in entry.get("numbers", {}).items())
    parts = (
        ([f"condition `{entry['condition']}`"] if entry.get("condition") else [])
        + ([f"with {numbers}"] if numbers else [])
        + ([entry["error"]] if entry.get("error") else [])
    )
    return " ".join(parts) if parts else "stated as false"


def claims() -> list[dict[str, Any]]:
    """Every claim made in this session so far (text, holds, condition, numbers)."""
    return [dict(c) for c in _CLAIMS]


def unsupported_claims(results: Iterable[NotebookResult]) -> list[tuple[str, dict[str, Any]]]:
    """(notebook, claim) for every claim of a run that its own numbers do not support."""
    return [(r.name, c) for r in results for c in r.claims if not c.get("holds")]


@dataclass
class NotebookResult:
    """What the runner measured for one notebook."""

    name: str
    status: str  # "passed" | "failed"
    seconds: float
    peak_memory_mb: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    output: str = ""
    over_budget: list[str] = field(default_factory=list)  # e.g. ["312 s > 300 s"]; see runtime.BUDGETS
    claims: list[dict[str, Any]] = field(default_factory=list)  # see claim(): text, holds, condition, numbers


def _read_metrics(path: Path) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                if "name" in item:
                    metrics[item["name"]] = item["value"]
    return metrics


def _read_claims(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return [item["claim"] for item in lines if "claim" in item]


def use_text_progress_bars(mininterval: float = 5.0) -> None:
    """Make ``tqdm.auto`` give text progress bars on stdout (the runner does this in every kernel).

    A headless run cannot save the state of tqdm's notebook widgets, so an executed copy would show
    every bar frozen at "0/N". Text bars are stored as they end; ``mininterval`` (seconds between
    redraws) keeps the stored text short.
    """
    import tqdm.auto
    import tqdm.std

    class TextProgress(tqdm.std.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("mininterval", mininterval)
            kwargs.setdefault("file", sys.stdout)
            super().__init__(*args, **kwargs)

    tqdm.auto.tqdm = TextProgress
    tqdm.auto.trange = lambda *args, **kwargs: TextProgress(range(*args), **kwargs)


#: run in each kernel before the notebook's first cell
_KERNEL_SETUP = "from meddiff_lab.course import use_text_progress_bars; use_text_progress_bars()"


def _execute_one(notebook: Path, output: Path, profile: str, status_file: Path, kernel: str) -> int:
    """Worker: run one notebook with papermill and write its status and the kernel's peak memory.

    Runs in its own process, so ``RUSAGE_CHILDREN`` after papermill returns is the kernel's peak RSS.
    """
    import papermill as pm

    status: dict[str, Any] = {"status": "passed", "error": None}
    started = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters={"PROFILE": profile},
            kernel_name=kernel,
            cwd=str(notebook.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=CELL_TIMEOUT.get(profile),
            extra_arguments=[f"--InteractiveShellApp.exec_lines={_KERNEL_SETUP}"],
        )
    except pm.PapermillExecutionError as exc:
        status = {
            "status": "failed",
            "error": {
                "cell_index": exc.cell_index,
                "execution_count": exc.exec_count,
                "source": exc.source,
                "ename": exc.ename,
                "evalue": exc.evalue,
            },
        }
    except Exception as exc:  # kernel died, notebook unreadable...
        status = {"status": "failed", "error": {"ename": type(exc).__name__, "evalue": str(exc)}}
    status["seconds"] = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    status["peak_memory_mb"] = peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20
    status_file.write_text(json.dumps(status), encoding="utf-8")
    return 0 if status["status"] == "passed" else 1


def run_notebook(name: str, profile: str, out_dir: Path, kernel: str = "python3") -> NotebookResult:
    """Execute one course notebook in a fresh kernel and return what was measured."""
    from meddiff_lab.runtime import get_profile

    get_profile(profile)  # fails early with a clear message on an unknown profile
    source = notebooks_dir() / f"{name}.ipynb"
    if not source.exists():
        raise FileNotFoundError(f"notebook {name!r} not found: expected {source}")
    out_dir = Path(out_dir).resolve()  # the kernel runs in notebooks/, so relative paths would point elsewhere
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = out_dir / f".{name}.metrics.jsonl"
    status_file = out_dir / f".{name}.status.json"
    for stale in (metrics_file, status_file):
        stale.unlink(missing_ok=True)
    env = dict(os.environ, **{METRICS_ENV: str(metrics_file), "MEDDIFF_PROFILE": profile, "MEDDIFF_HEADLESS": "1"})
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "meddiff_lab.course",
            "_execute",
            str(source),
            str(out_dir / f"{name}.ipynb"),
            profile,
            str(status_file),
            kernel,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if status_file.exists():
        status = json.loads(status_file.read_text(encoding="utf-8"))
    else:
        status = {
            "status": "failed",
            "seconds": time.perf_counter() - started,
            "peak_memory_mb": None,
            "error": {"ename": "RunnerError", "evalue": (proc.stderr or proc.stdout)[-2000:]},
        }
    from meddiff_lab.runtime import BUDGETS

    seconds, peak = status["seconds"], status["peak_memory_mb"]
    result = NotebookResult(
        name=name,
        status=status["status"],
        seconds=round(seconds, 2),
        peak_memory_mb=None if peak is None else round(peak, 1),
        metrics=_read_metrics(metrics_file),
        error=status.get("error"),
        output=(proc.stderr or "")[-4000:],
        over_budget=BUDGETS[profile].overruns(seconds, peak),
        claims=_read_claims(metrics_file),
    )
    metrics_file.unlink(missing_ok=True)
    status_file.unlink(missing_ok=True)
    return result


def run(
    profile: str, out_dir: str | Path, only: Sequence[str] | None = None, kernel: str = "python3", progress: bool = True
) -> list[NotebookResult]:
    """Run the course (or the notebooks named in ``only``) headless and write the report.

    Returns one :class:`NotebookResult` per notebook; see ``out_dir/report.md``.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    folder = notebooks_dir()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"the course notebooks folder {folder} does not exist; run from a source checkout "
            f"or set MEDDIFF_NOTEBOOKS to the folder holding 00_welcome.ipynb ..."
        )
    names = list(only) if only else available_notebooks()
    if not names:
        raise FileNotFoundError(
            f"no course notebooks in {folder} (expected {NOTEBOOKS[0]}.ipynb ... "
            f"{NOTEBOOKS[-1]}.ipynb); set MEDDIFF_NOTEBOOKS to the right folder"
        )
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; expected names from {list(NOTEBOOKS)}")
    missing = [n for n in names if not (notebooks_dir() / f"{n}.ipynb").exists()]
    if missing:
        raise FileNotFoundError(f"notebook file(s) missing in {notebooks_dir()}: {missing}")
    results = []
    bar = tqdm(names, desc=f"course ({profile})", unit="notebook", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        results.append(run_notebook(name, profile, out_dir, kernel))
        if progress:
            r = results[-1]
            over = f" (over the {profile} budget: {', '.join(r.over_budget)})" if r.over_budget else ""
            unsupported = sum(not c.get("holds") for c in r.claims)
            claimed = f", {unsupported} unsupported claim(s)" if unsupported else ""
            bar.write(f"{r.name}: {r.status} in {r.seconds:.1f} s, peak {r.peak_memory_mb} MB{over}{claimed}")
    write_report(results, profile, out_dir)
    return results


def write_report(results: Iterable[NotebookResult], profile: str, out_dir: Path) -> Path:
    """Write ``metrics.json``, ``report.md`` and ``report.html``; return the path of ``report.md``."""
    results = list(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"profile": profile, "notebooks": {r.name: asdict(r) for r in results}}
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")

    from meddiff_lab.runtime import BUDGETS

    budget = BUDGETS[profile]
    rows = ["| notebook | status | seconds | peak memory (MB) | budget | key metrics |", "|---|---|---|---|---|---|"]
    for r in results:
        shown = ", ".join(f"{k} = {_short(v)}" for k, v in list(r.metrics.items())[:6])
        rows.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.peak_memory_mb} | {_budget_cell(r)} | {shown} |")
    over = [r.name for r in results if r.over_budget]
    lines = [
        f"# Course run: profile `{profile}`",
        "",
        f"{sum(r.status == 'passed' for r in results)} of {len(results)} notebooks passed; "
        f"total {sum(r.seconds for r in results):.0f} s. Budget per notebook: {_budget_text(budget)}; "
        + (f"**over budget: {', '.join(over)}**." if over else "all within it."),
        "",
        *rows,
        "",
    ]
    lines += _claims_markdown(results)
    for r in results:
        if r.error:
            e = r.error
            lines += [
                f"## {r.name} failed",
                "",
                f"Cell {e.get('cell_index', '?')} (execution count {e.get('execution_count', '?')}): "
                f"**{e.get('ename')}**: {e.get('evalue')}",
                "",
            ]
            if e.get("source"):
                lines += ["```python", e["source"], "```", ""]
    md = "\n".join(lines)
    (out_dir / "report.md").write_text(md, encoding="utf-8")

    table = "".join(
        f"<tr class='{r.status}'><td><a href='{r.name}.ipynb'>{r.name}</a></td><td>{r.status}</td>"
        f"<td>{r.seconds:.1f}</td><td>{r.peak_memory_mb}</td><td>{html.escape(_budget_cell(r))}</td>"
        f"<td>{html.escape(', '.join(f'{k} = {_short(v)}' for k, v in r.metrics.items()))}</td></tr>"
        for r in results
    )
    failures = "".join(
        f"<h2>{r.name} failed</h2><p>Cell {r.error.get('cell_index', '?')}: <b>{html.escape(str(r.error.get('ename')))}"
        f"</b>: {html.escape(str(r.error.get('evalue')))}</p><pre>{html.escape(r.error.get('source') or '')}</pre>"
        for r in results
        if r.error
    )
    failures = _claims_html(results) + failures
    (out_dir / "report.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>meddiff-lab course run</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        ".failed{background:#fdd}.passed{background:#efe}</style>"
        f"<h1>Course run: profile {html.escape(profile)}</h1><table><tr><th>notebook</th><th>status</th>"
        f"<th>seconds</th><th>peak memory (MB)</th><th>budget ({html.escape(_budget_text(budget))})</th>"
        f"<th>key metrics</th></tr>{table}</table>{failures}",
        encoding="utf-8",
    )
    return out_dir / "report.md"


def _claims_markdown(results: list[NotebookResult]) -> list[str]:
    """The report's claims section: how many were checked, and every unsupported one by notebook."""
    checked = sum(len(r.claims) for r in results)
    bad = unsupported_claims(results)
    lines = [f"## Claims: {len(bad)} unsupported of {checked} checked", ""]
    if not bad:
        lines += [
            "Every claim the notebooks made is supported by their own recorded numbers."
            if checked
            else "No notebook made a checked claim.",
            "",
        ]
    for name, c in bad:
        lines.append(f"- **{name}**: “{c['text']}” ({_claim_reason(c)})")
    return lines + ([""] if bad else [])


def _claims_html(results: list[NotebookResult]) -> str:
    bad = unsupported_claims(results)
    items = "".join(
        f"<li><b>{html.escape(name)}</b>: “{html.escape(c['text'])}” ({html.escape(_claim_reason(c))})</li>"
        for name, c in bad
    )
    return f"<h2>Claims: {len(bad)} unsupported of {sum(len(r.claims) for r in results)} checked</h2>" + (
        f"<ul class='unsupported'>{items}</ul>" if bad else ""
    )


def _budget_cell(result: NotebookResult) -> str:
    return "over: " + ", ".join(result.over_budget) if result.over_budget else "ok"


def _budget_text(budget) -> str:
    parts = ([f"{budget.seconds:.0f} s"] if budget.seconds is not None else []) + (
        [f"{budget.memory_mb:.0f} MB"] if budget.memory_mb is not None else []
    )
    return " and ".join(parts) if parts else "none"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_execute":
    _, _, nb, out, prof, status_path, kernel_name = sys.argv
    sys.exit(_execute_one(Path(nb), Path(out), prof, Path(status_path), kernel_name))
