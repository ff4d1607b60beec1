"""Where every experiment's results go: ``results.json`` (the numbers) and ``results.md`` (the table),
and the ``profile.json`` that keeps one folder to one profile.

Both files are written atomically (a temporary file, then a rename), so a killed run never leaves a
half-written table beside a complete one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from meddiff_lab.checkpoint import atomic_write

__all__ = ["write_results", "claim_folder"]


def write_results(results: dict[str, Any], out, markdown: str) -> tuple[Path, Path]:
    """Write ``results`` as ``out/results.json`` and ``markdown`` as ``out/results.md``; returns both paths.

    ``out`` is created when missing. Numbers that JSON does not know (numpy or torch scalars) are
    written as floats.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=float) + "\n"
    json_path = atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    markdown_path = atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(markdown, encoding="utf-8"))
    return Path(json_path), Path(markdown_path)


def claim_folder(out, profile) -> None:
    """Record ``profile`` (a dataclass) in ``out/profile.json``, or check that the folder holds that profile.

    A resumed run must add to the results of the *same* sizes; ``ValueError`` names the fields that differ
    when ``out`` holds another profile's results.
    """
    out = Path(out)
    path = out / "profile.json"
    mine = json.loads(json.dumps(dataclasses.asdict(profile)))
    if path.is_file():
        theirs = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if changed:
            raise ValueError(
                f"{out} holds results of another profile (differs in {', '.join(changed)}); use a new --out folder"
            )
        return
    text = json.dumps(mine, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
