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
        lines = [line for line in "".join(c["source"]).splitlines() if line.strip()]
        if len(lines) > 20:
            long_cells.append((i, len(lines)))
    assert not long_cells, f"{path.name}: cells longer than 20 non-blank lines (index, lines): {long_cells}"


# ------------------------------------------------------------------------------------------ hygiene
#: calls that may end a cell: they display on purpose and return None
DISPLAY_CALLS = {"print", "display", "tight_layout", "show"}


def _cell_echoes(source: str) -> str | None:
    """The final expression Jupyter would echo (its text), or None when the cell echoes nothing.

    A cell echoes its last statement when that is a bare expression not ended by ``;``, unless it is
    a call that displays on purpose (``print``, ``display``, ``fig.tight_layout()``, ``plt.show()``).
    ``record(...)`` and ``claim(...)`` return their values, so they count as echoes.
    """
    import ast
    import io
    import tokenize

    try:
        tree = ast.parse(source)
        tokens = [
            t
            for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type
            not in (
                tokenize.COMMENT,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            )
        ]
    except (SyntaxError, tokenize.TokenError):  # cell magics and the like: not Python to judge
        return None
    if tokens and tokens[-1].string == ";":  # IPython's rule: a trailing ';' (comments aside) silences the cell
        return None
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return None
    value = tree.body[-1].value
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in DISPLAY_CALLS:
            return None
    return ast.get_source_segment(source, tree.body[-1]).splitlines()[0]


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_no_cell_ends_with_a_value_that_jupyter_echoes(path):
    """House rule: a cell shows what it prints or displays, not a stray repr (a number, a 60-line dict).

    End such a cell with ``;``, assign the value, or print a short summary; show a widget with ``display``.
    """
    nb = json.loads(path.read_text(encoding="utf-8"))
    echoes = [(i, _cell_echoes("".join(c["source"]))) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    echoes = [(i, text) for i, text in echoes if text]
    assert not echoes, f"{path.name}: cells whose last line Jupyter echoes (index, line): {echoes}"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_markdown_has_no_accidental_headings(path):
    """A line starting with '#' renders as a heading: never a sentence (ending in '.' or ':') nor inside $$ math."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    bad = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "markdown":
            continue
        in_math = in_fence = False
        for line in "".join(c["source"]).splitlines():
            text = line.strip()
            if text.startswith("```"):
                in_fence = not in_fence
                continue
            if not in_fence and text.startswith("#") and (in_math or text.endswith((".", ":")) or "$$" in text):
                bad.append((i, text[:60]))
            if not in_fence and text.count("$$") % 2:
                in_math = not in_math
    assert not bad, f"{path.name}: lines that would render as giant headings (cell, text): {bad}"


def test_the_hygiene_checks_catch_what_they_should():
    assert _cell_echoes("x = 1\nx") == "x"
    assert _cell_echoes("record('a', 1)") == "record('a', 1)"
    assert _cell_echoes("{k: 1 for k in 'ab'}") is not None
    for quiet in (
        "record('a', 1);",
        "print(1)",
        "display(widget)",
        "fig.tight_layout()",
        "x = 1",
        "for i in []:\n    i",
        "show_images(x);  # a figure\n",
    ):
        assert _cell_echoes(quiet) is None, quiet
