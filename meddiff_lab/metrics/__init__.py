"""Metrics for synthetic medical images: FID/KID on domain features, precision/recall, diversity, PSNR/SSIM,
Dice/HD95, memorisation.

Names are imported lazily from their modules (one concept per module), so
``from meddiff_lab.metrics import X`` works for every public name listed in ``_PUBLIC``.
"""

from __future__ import annotations

from meddiff_lab._lazy import lazy_exports

# public name -> module that defines it. Add a line when you add a public name.
_PUBLIC = {
    "fid": "generative",
    "kid": "generative",
    "precision_recall": "generative",
    "ms_ssim_diversity": "generative",
    "nearest_training_images": "generative",
    "psnr": "image",
    "ssim": "image",
    "nmse": "image",
    "dice": "segmentation",
    "hd95": "segmentation",
    "sensitivity": "segmentation",
    "specificity": "segmentation",
    "postprocess_mask": "segmentation",
    "SEG_STRUCTURES": "segmentation",
    "stack_masks": "segmentation",
    "predict_masks": "segmentation",
    "dice_per_structure": "segmentation",
    "segmentation_scores": "segmentation",
    "SegmentationScores": "segmentation",
    "measure_cardiothoracic_ratio": "segmentation",
    "cardiothoracic_ratio_from_masks": "segmentation",
    "gaussian_blur": "image",
    "near_copies": "generative",
    "edge_f1": "edges",
    "evaluate_model": "model_evaluation",
    "format_model_card": "model_evaluation",
    "unseen_phantoms": "model_evaluation",
    "memorisation_threshold": "generative",
    "NearestTraining": "generative",
    "frechet_distance": "generative",
    "ms_ssim_settings": "generative",
    "PhantomEncoder": "features",
    "load_phantom_encoder": "features",
    "extract_features": "features",
    "load_inception": "features",
    "load_radimagenet": "features",
    "WeightsNotAvailable": "features",
    "ReaderResult": "readers",
    "reader_study": "readers",
    "describe_study": "readers",
    "wilson_interval": "readers",
    "air_corner_std": "readers",
    "high_pass_energy": "readers",
    "classifier_two_sample_test": "readers",
    "pixel_auroc": "detection",
    "pixel_auprc": "detection",
    "dice_at_threshold": "detection",
    "best_dice": "detection",
    "image_auroc": "detection",
    "Lesion": "lesion",
    "find_lesions": "lesion",
    "lesion_contrast": "lesion",
    "lesion_cnr": "lesion",
    "LesionChanges": "lesion",
    "lesion_changes": "lesion",
    "default_threshold": "lesion",
    "Difference": "differences",
    "paired_difference": "differences",
    "paired_t_interval": "differences",
    "unpaired_difference": "differences",
    "chance_verdict": "differences",
    "spread_verdict": "differences",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
