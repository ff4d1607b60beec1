"""Notebooks are stored clean: no outputs, no execution counts, a `parameters` cell, kernel python3."""

from __future__ import annotations

import json

import pytest

from meddiff_lab import course

NOTEBOOK_PATHS = sorted(course.notebooks_dir().glob("*.ipynb"))


def test_every_course_notebook_is_known_and_ordered():
    names = [p.stem for p in NOTEBOOK_PATHS]
    assert names, "no notebooks found"
    assert all(n in course.NOTEBOOKS for n in names), f"unexpected notebook names: {names}"
    assert course.available_notebooks() == [n for n in course.NOTEBOOKS if n in names]


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_notebook_is_stored_clean(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code_cells, f"{path.name} has no code cells"
    dirty = [i for i, c in enumerate(code_cells) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs or execution counts"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}"
    params = "".join(tagged[0]["source"])
    for name in ("PROFILE", "SEED", "DATA_SOURCE", "DATA_DIR"):
        assert f"{name} =" in params, f"{path.name}: parameters cell does not define {name}"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_notebook_cells_are_short(path):
    """House rule: a code cell does one thing, about 15 lines at most (hidden solutions may be longer)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    long_cells = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code" or c.get("metadata", {}).get("jupyter", {}).get("source_hidden"):
            continue
        lines = [l for l in "".join(c["source"]).splitlines() if l.strip()]
        if len(lines) > 20:
            long_cells.append((i, len(lines)))
    assert not long_cells, f"{path.name}: cells longer than 20 non-blank lines (index, lines): {long_cells}"
