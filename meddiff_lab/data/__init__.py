"""Data: readers for medical files and chest-radiograph datasets, intensity, transforms, splits.

Names are imported lazily from their modules (one concept per module), so
``from meddiff_lab.data import X`` works for every public name listed in ``_PUBLIC``.
"""

from __future__ import annotations

import importlib

# public name -> module that defines it. Add a line when you add a public name.
_PUBLIC = {
    "Volume": "io",
    "load_nifti": "io",
    "load_dicom": "io",
    "load_dicom_series": "io",
    "load_png": "io",
    "save_nifti": "io",
    "dicom_series_to_nifti": "io",
    "window": "intensity",
    "hu_from_dicom": "intensity",
    "normalize_to_unit": "intensity",
    "to_minus_one_one": "intensity",
    "CXR_LABELS": "phantom",
    "generate_phantoms": "phantom",
    "PhantomBatch": "phantom",
    "write_synthetic_cxr": "phantom",
    "ChestXray14": "sources",
    "MedMNIST": "sources",
    "MedNIST": "sources",
    "ImageFolderDataset": "sources",
    "load_dataset": "sources",
    "train_transforms": "transforms",
    "eval_transforms": "transforms",
    "patient_split": "splits",
    "deidentify": "deid",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
