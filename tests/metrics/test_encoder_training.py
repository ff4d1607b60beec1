"""Tests for meddiff_lab/metrics/encoder_training.py: the old import path of notebook 08's two helpers."""

from __future__ import annotations

import ast
import inspect

from meddiff_lab.metrics import encoder_training, generative, image


def test_the_old_path_gives_the_helpers_where_they_now_live():
    assert encoder_training.gaussian_blur is image.gaussian_blur
    assert encoder_training.near_copies is generative.near_copies


def test_the_old_path_imports_nothing_from_training():
    tree = ast.parse(inspect.getsource(encoder_training))
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name.startswith("meddiff_lab.training")]
