"""Data: readers for medical files and chest-radiograph datasets, intensity, transforms, splits.

Names are imported lazily from their modules (one concept per module), so
``from meddiff_lab.data import X`` works for every public name listed in ``_PUBLIC``.
"""

from __future__ import annotations

from meddiff_lab._lazy import lazy_exports

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
    "to_model_batch": "intensity",
    "CXR_LABELS": "cxr_labels",
    "generate_phantoms": "phantom",
    "PhantomBatch": "phantom",
    "write_synthetic_cxr": "phantom",
    "ChestXray14": "sources",
    "MedMNIST": "sources",
    "MedNIST": "sources",
    "ImageFolderDataset": "sources",
    "load_dataset": "sources",
    "load_images": "sources",
    "SyntheticCXR": "sources",
    "DATA_SOURCES": "sources",
    "read_nih_metadata": "sources",
    "iter_phantoms": "phantom",
    "load_phantom_masks": "phantom_files",
    "cardiothoracic_ratio_from_masks": "phantom",
    "labels_to_string": "cxr_labels",
    "labels_from_string": "cxr_labels",
    "FINDING_MASKS": "cxr_labels",
    "PHANTOM_VERSION": "phantom",
    "check_source": "sources",
    "find_source_root": "sources",
    "train_transforms": "transforms",
    "eval_transforms": "transforms",
    "patient_split": "splits",
    "image_split": "splits",
    "leakage_report": "splits",
    "shared_patients": "splits",
    "augmentation_gallery": "transforms",
    "edge_maps": "edges",
    "edges_to_condition": "edges",
    "MedicalFileError": "io",
    "write_dicom_series": "io",
    "describe_file": "io",
    "CT_WINDOWS": "intensity",
    "hu_from_pixels": "intensity",
    "from_minus_one_one": "intensity",
    "percentile_normalize": "intensity",
    "zscore_normalize": "intensity",
    "deidentify_folder": "deid",
    "find_phi": "deid",
    "deidentify": "deid",
    "DeidReport": "deid",
    "load_radiograph": "io",
    "display_pixels": "io",
    "pixel_spacing": "io",
    "write_dicom_radiograph": "io",
    "DicomRadiographs": "dicom_source",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
