"""Simulate Binder: build an environment from binder/ alone, then run the classroom course within Binder's limits.

    python3 binder/simulate.py [--out build/binder-sim] [--only 00_welcome ...] [--cpu 0] [--memory-gb 2]

(`make binder-sim`; standard library only, run with the machine's Python 3.11.)

1. A copy of the committed repository (`git archive HEAD`: what Binder clones), outside the working tree.
2. A fresh virtual environment with nothing but binder/environment.yml's pip section installed
   (`python=3.11` is this machine's Python; conda itself is not used). The PyTorch index line is left
   out: this machine is offline and the pinned CPU build of torch is on its local mirror.
3. binder/postBuild, run in the copy as Binder runs it.
4. Each notebook through binder/start (`MEDDIFF_PROFILE=classroom`, one thread) with the course runner,
   pinned to ONE CPU (`taskset`), in a memory cgroup limited to 2 GB: above that the kernel's OOM killer
   ends it, as Binder does. Reported per notebook: status, wall seconds, the cgroup's peak memory (all
   processes: runner, papermill and kernel, page cache included) and the kernel's own peak RSS.

The report goes to OUT/report.md. Exits 1 when a notebook fails or is killed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3
#: beside the environment: the binder/environment.yml it was built from (``--reuse`` compares it with HEAD's)
BUILT_FROM = "binder-environment.yml"


def log(message: str) -> None:
    print(f"[binder-sim] {message}", flush=True)


def run(command: list[str] | str, **kwargs) -> None:
    shown = command if isinstance(command, str) else " ".join(command)
    log(f"$ {shown}")
    subprocess.run(command, check=True, **kwargs)


# ---- memory limit: a cgroup (v2 or v1), else systemd-run -------------------------------------------
class MemoryCgroup:
    """A memory cgroup with a hard limit; ``prefix`` puts a command in it; ``peak_bytes``/``oom_kills`` after."""

    def __init__(self, name: str, limit_bytes: int):
        self.limit = limit_bytes
        v2 = Path("/sys/fs/cgroup")
        v1 = Path("/sys/fs/cgroup/memory")
        if (v2 / "cgroup.controllers").exists() and "memory" in (v2 / "cgroup.controllers").read_text():
            self.version, self.path = 2, v2 / name
        elif v1.is_dir():
            self.version, self.path = 1, v1 / name
        else:
            raise OSError("no memory cgroup found under /sys/fs/cgroup")
        if self.path.exists():
            self.path.rmdir()
        self.path.mkdir()  # needs root (or a delegated cgroup)
        if self.version == 2:
            (self.path / "memory.max").write_text(str(limit_bytes))
            if (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            swap = self.path / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(limit_bytes))

    def prefix(self) -> list[str]:
        # the shell joins the cgroup, then becomes the command
        return ["sh", "-c", f'echo $$ > "{self.path}/cgroup.procs" && exec "$@"', "sh"]

    def peak_bytes(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        file = self.path / name
        return int(file.read_text()) if file.exists() else None

    def oom_kills(self) -> int:
        file = self.path / ("memory.events" if self.version == 2 else "memory.oom_control")
        if not file.exists():
            return 0
        match = re.search(r"oom_kill (\d+)", file.read_text())
        return int(match.group(1)) if match else 0

    def remove(self) -> None:
        for _ in range(20):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.25)


class SystemdScope:
    """Fallback where cgroups cannot be made by hand: ``systemd-run --scope -p MemoryMax=...``."""

    def __init__(self, name: str, limit_bytes: int):
        if shutil.which("systemd-run") is None or not Path("/run/systemd/system").exists():
            raise OSError("systemd is not running")
        self.limit = limit_bytes

    def prefix(self) -> list[str]:
        return ["systemd-run", "--scope", "--quiet", "-p", f"MemoryMax={self.limit}", "-p", "MemorySwapMax=0"]

    def peak_bytes(self) -> None:
        return None

    def oom_kills(self) -> int:
        return 0

    def remove(self) -> None:
        pass


def memory_limit(name: str, limit_bytes: int):
    errors = []
    for kind in (MemoryCgroup, SystemdScope):
        try:
            return kind(name, limit_bytes)
        except OSError as exc:
            errors.append(f"{kind.__name__}: {exc}")
    raise SystemExit("cannot limit memory here (" + "; ".join(errors) + "). Run as root, where /sys/fs/cgroup "
                     "is writable, or where systemd-run works. prlimit --as is no substitute: it caps virtual "
                     "memory, which PyTorch reserves far beyond what it uses.")


# ---- the steps -------------------------------------------------------------------------------------
def pip_requirements(environment_yml: Path | str) -> list[str]:
    """The pip section of environment.yml (a path, or its text), without the index line (offline here)."""
    text = environment_yml.read_text(encoding="utf-8") if isinstance(environment_yml, Path) else environment_yml
    lines, inside = [], False
    for raw in text.splitlines():
        if re.match(r"^\s+- pip:\s*$", raw):
            inside = True
            continue
        if inside:
            match = re.match(r"^\s+- (.+)$", raw)
            if not match:
                if raw.strip() and not raw.lstrip().startswith("#"):
                    inside = False
                continue
            lines.append(match.group(1).strip())
    return [line for line in lines if not line.startswith("--extra-index-url")]


def copy_repository(out: Path) -> Path:
    """The committed repository (``git archive HEAD``: what Binder clones) in OUT/repo, replacing an older copy."""
    repo = out / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    head = subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], text=True).strip()
    log(f"repository at HEAD ({head}) copied to {repo}")
    (out / "repo-commit.txt").write_text(head + "\n")
    return repo


def post_build(repo: Path, venv: Path) -> None:
    started = time.perf_counter()
    run(["bash", "binder/postBuild"], cwd=repo, env=binder_env(venv))
    log(f"postBuild done in {time.perf_counter() - started:.0f} s")


def build(out: Path, python: str) -> tuple[Path, Path]:
    venv = out / "venv"
    if venv.exists():
        shutil.rmtree(venv)
    repo = copy_repository(out)
    started = time.perf_counter()
    run([python, "-m", "venv", str(venv)])
    requirements = pip_requirements(repo / "binder" / "environment.yml")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(requirements) + "\n")
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", handle.name])
    os.unlink(handle.name)
    log(f"{len(requirements)} pinned packages installed in {time.perf_counter() - started:.0f} s")
    shutil.copyfile(repo / "binder" / "environment.yml", venv / BUILT_FROM)
    post_build(repo, venv)
    return repo, venv


def reusable(out: Path) -> bool:
    """OUT's environment was built from the same pins as HEAD's binder/environment.yml (reusing it changes no
    package; comments may differ)."""
    built_from = out / "venv" / BUILT_FROM
    if not (out / "venv" / "bin" / "python").exists() or not built_from.exists():
        return False
    head = subprocess.run(["git", "-C", str(REPO), "show", "HEAD:binder/environment.yml"], capture_output=True,
                          text=True)
    return head.returncode == 0 and pip_requirements(head.stdout) == pip_requirements(built_from)


def binder_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "MEDDIFF_PROFILE")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def notebooks(repo: Path) -> list[str]:
    text = (repo / "meddiff_lab" / "course.py").read_text(encoding="utf-8")
    block = re.search(r"NOTEBOOKS[^=]*=\s*\((.*?)\)", text, re.S).group(1)
    return re.findall(r'"([^"]+)"', block)


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of the finished child processes (and theirs), the kernel's included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_notebook(name: str, repo: Path, venv: Path, out: Path, cpu: int, limit_bytes: int) -> dict:
    course_out = out / "course" / name
    if course_out.exists():
        shutil.rmtree(course_out)
    limit = memory_limit(f"meddiff-binder-sim-{os.getpid()}", limit_bytes)
    command = limit.prefix() + ["taskset", "-c", str(cpu), "bash", "binder/start", "meddiff-lab", "course", "run",
                                "--profile", "classroom", "--out", str(course_out), "--only", name]
    log(f"{name}: " + " ".join(command))
    started, cpu_before = time.perf_counter(), _children_cpu_seconds()
    try:
        done = subprocess.run(command, cwd=repo, env=binder_env(venv), capture_output=True, text=True)
        seconds = time.perf_counter() - started
        cpu_seconds = _children_cpu_seconds() - cpu_before
        peak, kills = limit.peak_bytes(), limit.oom_kills()
    finally:
        limit.remove()
    metrics = {}
    if (course_out / "metrics.json").exists():
        metrics = json.loads((course_out / "metrics.json").read_text()).get("notebooks", {}).get(name, {})
    status = metrics.get("status") or ("killed (out of memory)" if kills else f"failed (exit {done.returncode})")
    if kills and status == "passed":
        status = "passed, but a process was OOM-killed"
    if done.returncode != 0:
        (out / f"{name}.log").write_text(done.stdout + done.stderr)
    return {"notebook": name, "status": status, "exit": done.returncode, "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1),
            "notebook_seconds": metrics.get("seconds"), "cgroup_peak_mb": None if peak is None else round(peak / 2**20),
            "kernel_peak_mb": metrics.get("peak_memory_mb"), "oom_kills": kills,
            "over_budget": ", ".join(metrics.get("over_budget") or []) or "no"}


def write_report(rows: list[dict], out: Path, cpu: int, limit_bytes: int, build_seconds: float | None) -> Path:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "unknown CPU")
    load = os.getloadavg()
    lines = [
        "# Binder simulation: the classroom course in an environment built from binder/ alone",
        "",
        f"One CPU (taskset -c {cpu}: {cpu_model}; load average at the end {load[0]:.1f}, shared machine), "
        f"memory limited to {limit_bytes / GIB:.1f} GiB (cgroup: over it the OOM killer ends the run, as on "
        "Binder), "
        "OMP_NUM_THREADS=1 and MEDDIFF_PROFILE=classroom from binder/start."
        + (f" Environment built (pip install of the pins + postBuild) in {build_seconds:.0f} s."
           if build_seconds else " Environment reused (built earlier from the same pins; postBuild rerun).")
        + (f" Commit {commit.read_text().strip()}." if (commit := out / "repo-commit.txt").exists() else ""),
        "",
        "CPU s: the CPU time of every process of the run (a notebook on a core of its own takes about this long;"
        " wall s above it is time lost to other work on the shared core).",
        "",
        "| notebook | status | wall s | notebook s | CPU s | peak MB (cgroup, incl. page cache) | kernel peak RSS MB "
        "| OOM kills | over the classroom budget |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['notebook']} | {r['status']} | {r['seconds']} | {r['notebook_seconds']} | {r['cpu_seconds']} | "
                     f"{r['cgroup_peak_mb']} | {r['kernel_peak_mb']} | {r['oom_kills']} | {r['over_budget']} |")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "report.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "build" / "binder-sim"))
    parser.add_argument("--only", nargs="*", help="notebook names (default: the whole course)")
    parser.add_argument("--cpu", type=int, default=int(os.environ.get("BINDER_SIM_CPU", "0")))
    parser.add_argument("--memory-gb", type=float, default=2.0)
    parser.add_argument("--python", default=shutil.which("python3.11") or sys.executable)
    parser.add_argument("--reuse", action="store_true",
                        help="keep OUT's environment when HEAD's binder/environment.yml is the one it was built "
                             "from; the repository is copied from HEAD again and postBuild rerun")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    limit_bytes = int(args.memory_gb * GIB)
    memory_limit(f"meddiff-binder-sim-probe-{os.getpid()}", limit_bytes).remove()  # fail early, before building
    started = time.perf_counter()
    if args.reuse and reusable(out):
        log("reusing the environment (built from the same pins as HEAD's binder/environment.yml)")
        repo, venv, build_seconds = copy_repository(out), out / "venv", None
        post_build(repo, venv)
    else:
        if args.reuse:
            log("cannot reuse the environment (none, or built from other pins than HEAD's): building")
        repo, venv = build(out, args.python)
        build_seconds = time.perf_counter() - started
    names = args.only or notebooks(repo)
    rows = []
    for name in names:
        rows.append(run_notebook(name, repo, venv, out, args.cpu, limit_bytes))
        r = rows[-1]
        log(f"{name}: {r['status']} in {r['seconds']} s, peak {r['cgroup_peak_mb']} MB (cgroup), "
            f"kernel {r['kernel_peak_mb']} MB")
    report = write_report(rows, out, args.cpu, limit_bytes, build_seconds)
    print(report.read_text())
    return 0 if all(r["status"] == "passed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
