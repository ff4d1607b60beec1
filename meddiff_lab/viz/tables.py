"""Markdown tables of numbers, for the notebooks and the reports (one helper, so every table looks alike).

:func:`markdown_table` turns rows of numbers into the text of a Markdown table; :func:`show_table`
displays it (rendered in Jupyter, printed elsewhere) and returns the text, so a notebook can record it.

    markdown_table({"bicubic": {"psnr": 30.123, "ssim": 0.81}}, {"psnr": ".2f", "ssim": ".3f"})
    # | method | psnr | ssim |
    # |---|---:|---:|
    # | bicubic | 30.12 | 0.810 |
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: how one column's values are written: a format spec (".2f", ",", "d"), a template with one field
#: ("{:.1f} %"), or a function of the value
CellFormat = str | Callable[[Any], str] | None

#: shown for a missing value, None, NaN or infinity
MISSING = "–"

_RULES = {"left": "---", "right": "---:", "center": ":---:"}


def format_cell(value: Any, fmt: CellFormat = None, digits: int = 3) -> str:
    """One table cell as text.

    Strings are shown as they are; None, NaN and infinities as "–". With ``fmt`` None, integers get
    thousands separators (``12,345``) and other real numbers ``digits`` decimals; anything else is
    ``str(value)``. A ``|`` in the text is escaped so it cannot split the cell.
    """
    if isinstance(value, str):
        text = value
    elif value is None or (
        isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and not math.isfinite(float(value))
    ):
        text = MISSING
    elif callable(fmt):
        text = fmt(value)
    elif isinstance(fmt, str) and "{" in fmt:
        text = fmt.format(value)
    elif fmt:
        text = format(value, fmt)
    elif isinstance(value, bool):
        text = str(value)
    elif isinstance(value, numbers.Integral):
        text = f"{int(value):,}"
    elif isinstance(value, numbers.Real):
        text = f"{float(value):.{digits}f}"
    else:
        text = str(value)
    return text.replace("|", r"\|")


def markdown_table(
    rows: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
    columns: Mapping[str, CellFormat] | Sequence[str] | None = None,
    first: str = "method",
    digits: int = 3,
    align: str | Mapping[str, str] = "right",
) -> str:
    """The text of a Markdown table, one line per row.

    Args:
        rows: either a mapping row name → row, where the name fills a first column headed ``first``,
            or a sequence of rows without names. A row maps column name → value.
        columns: which columns to show, in order: a sequence of names, or a mapping name → how to
            write its values (a format spec such as ``".2f"``, a template such as ``"{:.1f} %"``, or
            a function; see :func:`format_cell`). Default: every key of the rows, in first-seen order.
        first: header of the row-name column (only when ``rows`` is a mapping).
        digits: decimals of real numbers in columns without a format.
        align: ``"right"`` (numbers), ``"left"`` or ``"center"`` for every value column, or a mapping
            column name → one of those (unnamed columns right). The row-name column is left-aligned.

    Returns:
        The table as a string. Missing values, None and NaN show as "–"; strings as they are.
    """
    named = isinstance(rows, Mapping)
    bodies = list(rows.values()) if named else list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in bodies for key in row))
    formats = dict(columns) if isinstance(columns, Mapping) else {name: None for name in columns}
    unknown = {a for a in ([align] if isinstance(align, str) else align.values()) if a not in _RULES}
    if unknown:
        raise ValueError(f"align: expected 'left', 'right' or 'center', got {sorted(unknown)}")
    aligns = {name: align if isinstance(align, str) else align.get(name, "right") for name in formats}
    header = ([first] if named else []) + list(formats)
    rule = (["---"] if named else []) + [_RULES[aligns[name]] for name in formats]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for label, row in zip(rows if named else [None] * len(bodies), bodies):
        cells = [format_cell(row.get(name), fmt, digits) for name, fmt in formats.items()]
        lines.append("| " + " | ".join(([str(label)] if named else []) + cells) + " |")
    return "\n".join(lines)


def show_table(
    rows: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
    columns: Mapping[str, CellFormat] | Sequence[str] | None = None,
    first: str = "method",
    **options: Any,
) -> str:
    """Display :func:`markdown_table` (rendered Markdown in Jupyter, plain text elsewhere); return its text.

    ``options`` are :func:`markdown_table`'s ``digits`` and ``align``.
    """
    text = markdown_table(rows, columns, first, **options)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(text))
            return text
    except ImportError:
        pass
    print(text)
    return text


__all__ = ["CellFormat", "MISSING", "format_cell", "markdown_table", "show_table"]
