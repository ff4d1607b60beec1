"""meddiff_lab/applications/__init__.py: every public name resolves lazily to what its module defines."""

import importlib


def test_every_public_name_resolves_from_its_module():
    package = importlib.import_module("meddiff_lab.applications")
    assert package.__all__ == sorted(package._PUBLIC)
    for name, module in package._PUBLIC.items():
        assert getattr(package, name) is getattr(importlib.import_module(f"meddiff_lab.applications.{module}"), name)
        assert name in dir(package)


def test_restoration_and_metric_names_are_exported_by_their_subpackages():
    from meddiff_lab import diffusion, metrics
    from meddiff_lab.diffusion import restoration
    from meddiff_lab.metrics import detection, lesion

    for name in restoration.__all__:
        assert getattr(diffusion, name) is getattr(restoration, name)
    for module in (detection, lesion):
        for name in module.__all__:
            assert getattr(metrics, name) is getattr(module, name)
