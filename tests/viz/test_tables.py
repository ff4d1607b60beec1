"""Tests for meddiff_lab/viz/tables.py: Markdown tables of numbers."""

from __future__ import annotations

import numpy as np
import pytest

from meddiff_lab.viz.tables import format_cell, markdown_table, show_table


def test_named_rows_get_a_first_column_and_numbers_their_formats():
    text = markdown_table(
        {"bicubic": {"psnr": 30.123, "note": "x"}, "net": {"psnr": float("nan")}}, {"psnr": ".2f", "note": "s"}
    )
    assert text.splitlines() == [
        "| method | psnr | note |",
        "|---|---:|---:|",
        "| bicubic | 30.12 | x |",
        "| net | – | – |",
    ]


def test_unnamed_rows_default_columns_and_default_number_formats():
    rows = [
        {"network": "ours", "parameters": 1234567, "ratio": 1.0456},
        {"network": "MONAI", "parameters": np.int64(1200000), "ratio": np.float32(1.0), "extra": None},
    ]
    lines = markdown_table(rows, align={"network": "left"}).splitlines()
    assert lines[0] == "| network | parameters | ratio | extra |"
    assert lines[1] == "|---|---:|---:|---:|"
    assert lines[2:] == ["| ours | 1,234,567 | 1.046 | – |", "| MONAI | 1,200,000 | 1.000 | – |"]


def test_templates_functions_digits_alignment_and_escaped_pipes():
    text = markdown_table(
        {"total": {"share": 100, "shape": (1, 2), "ok": True}},
        {"share": "{:.1f} %", "shape": lambda s: "×".join(map(str, s)), "ok": None},
        first="part",
        align="left",
    )
    assert text.splitlines() == [
        "| part | share | shape | ok |",
        "|---|---|---|---|",
        "| total | 100.0 % | 1×2 | True |",
    ]
    assert markdown_table([{"x": 0.5}], digits=1).splitlines()[-1] == "| 0.5 |"
    assert format_cell("a | b") == r"a \| b"
    assert format_cell(float("inf"), ".2f") == "–" and format_cell(None) == "–"
    with pytest.raises(ValueError, match="align"):
        markdown_table([{"x": 1}], align="middle")


def test_show_table_prints_outside_jupyter_and_returns_the_text(capsys):
    text = show_table([{"item": "torch", "status": "ok"}], align="left")
    assert capsys.readouterr().out.strip() == text
    assert text.startswith("| item | status |\n|---|---|")


def test_the_applications_package_still_exports_the_same_helpers():
    from meddiff_lab.applications import markdown_table as old_table
    from meddiff_lab.applications import show_table as old_show

    assert old_table is markdown_table and old_show is show_table
