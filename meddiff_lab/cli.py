"""The ``meddiff-lab`` command line: ``course``, ``data``, ``train``, ``sample``, ``bench``, ``metrics``.

Each group's arguments are declared in its own ``_add_*`` function below; the work itself lives in
the package module named there, so the CLI and the notebooks run the same code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


# ----------------------------------------------------------------------------------------- course
def _add_course_commands(sub: argparse._SubParsersAction) -> None:
    course = sub.add_parser("course", help="list or run the course notebooks headless (papermill)")
    csub = course.add_subparsers(dest="course_command", required=True)
    csub.add_parser("list", help="print the notebooks in course order").set_defaults(func=_course_list)
    run = csub.add_parser("run", help="run notebooks; writes executed notebooks, metrics.json, report.md/html")
    run.add_argument("--profile", default=None, help="ci | classroom | full (default: $MEDDIFF_PROFILE or classroom)")
    run.add_argument("--out", required=True, type=Path, help="output folder")
    run.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these notebooks")
    run.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    run.set_defaults(func=_course_run)


def _course_list(args: argparse.Namespace) -> int:
    from meddiff_lab import course

    present = set(course.available_notebooks())
    for name in course.NOTEBOOKS:
        print(f"{name}{'' if name in present else '  (not written yet)'}")
    return 0


def _course_run(args: argparse.Namespace) -> int:
    from meddiff_lab import course
    from meddiff_lab.runtime import default_profile_name

    profile = args.profile or default_profile_name()
    results = course.run(profile, args.out, only=args.only, kernel=args.kernel)
    failed = [r for r in results if r.status != "passed"]
    print(f"\n{len(results) - len(failed)} of {len(results)} notebooks passed "
          f"in {sum(r.seconds for r in results):.0f} s. Report: {args.out / 'report.md'} (and report.html)")
    for r in failed:
        err = r.error or {}
        print(f"FAILED {r.name}: cell {err.get('cell_index', '?')}: {err.get('ename')}: {err.get('evalue')}",
              file=sys.stderr)
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meddiff-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_course_commands(sub)
    for name in ("_add_data_commands", "_add_train_commands", "_add_bench_commands", "_add_metrics_commands"):
        adder = globals().get(name)
        if adder is not None:
            adder(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"meddiff-lab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
