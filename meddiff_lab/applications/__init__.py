"""Applications of diffusion to clinical images, and the baselines they are judged against (notebook 09).

The diffusion samplers live in :mod:`meddiff_lab.diffusion.restoration` and the scores in
:mod:`meddiff_lab.metrics.detection` / :mod:`meddiff_lab.metrics.lesion`; this subpackage holds the
rest: low-dose data from the phantom's photon model, classical baselines (Gaussian, non-local means,
BM3D, bicubic, biharmonic inpainting), supervised networks trained on pairs, and anomaly detection by
reconstruction. Names are imported lazily from their modules (one concept per module).
"""

from __future__ import annotations

from meddiff_lab._lazy import lazy_exports

# public name -> module that defines it. Add a line when you add a public name.
_PUBLIC = {
    "LowDoseSet": "lowdose",
    "simulate_low_dose": "lowdose",
    "to_model_range": "lowdose",
    "gaussian_denoise": "classical",
    "tune_gaussian_sigma": "classical",
    "nlm_denoise": "classical",
    "bm3d_denoise": "classical",
    "bm3d_available": "classical",
    "bicubic_upsample": "classical",
    "biharmonic_inpaint": "classical",
    "RestorationCNN": "supervised",
    "random_crops": "supervised",
    "fit_pairs": "supervised",
    "train_restoration_net": "supervised",
    "apply_net": "supervised",
    "anomaly_map": "anomaly",
    "image_anomaly_scores": "anomaly",
    "ConvAutoencoder": "anomaly",
    "train_autoencoder": "anomaly",
    "pseudo_healthy": "anomaly",
    "hole_around": "inpainting",
    "heart_border_holes": "inpainting",
    "lesion_holes": "inpainting",
    "ctr_after_fill": "inpainting",
    "to_display": "report",
    "score_restoration": "report",
    "markdown_table": "report",
    "show_table": "report",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
