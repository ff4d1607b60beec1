"""Tests for meddiff_lab/_lazy.py: every public name of every subpackage resolves to what its module defines."""

import importlib

import pytest

SUBPACKAGES = ["data", "diffusion", "models", "training", "metrics"]


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_every_public_name_resolves_from_its_module(subpackage):
    package = importlib.import_module(f"meddiff_lab.{subpackage}")
    assert package.__all__ == sorted(package._PUBLIC)
    for name, module in package._PUBLIC.items():
        value = getattr(package, name)
        assert value is getattr(importlib.import_module(f"meddiff_lab.{subpackage}.{module}"), name), name
        assert name in dir(package)


def test_an_unknown_name_raises_attribute_error_naming_it():
    package = importlib.import_module("meddiff_lab.data")
    with pytest.raises(AttributeError, match="'meddiff_lab.data' has no attribute 'load_nifty'"):
        package.load_nifty  # noqa: B018 (the attribute access is what raises)
    with pytest.raises(ImportError):
        exec("from meddiff_lab.models import Unet")
