"""Where every experiment's results go: ``results.json`` (the numbers) and ``results.md`` (the table).

Both files are written atomically (a temporary file, then a rename), so a killed run never leaves a
half-written table beside a complete one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meddiff_lab.checkpoint import atomic_write

__all__ = ["write_results"]


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
