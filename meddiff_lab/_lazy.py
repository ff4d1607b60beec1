"""Lazy public names for the subpackages (PEP 562), so ``import meddiff_lab.data`` stays fast.

Each subpackage keeps a table ``_PUBLIC = {public name: module that defines it}`` and ends with::

    __getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)

The first ``from meddiff_lab.data import load_nifti`` imports ``meddiff_lab.data.io`` and caches the
name in the package; names that are not in the table raise ``AttributeError`` as usual.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, public: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` for ``package`` with the name table ``public``."""

    def __getattr__(name: str):
        if name in public:
            value = getattr(importlib.import_module(f"{package}.{public[name]}"), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
