"""Training: the loop (EMA, mixed precision, Accelerate) and safe checkpoints.

Names are imported lazily from their modules (one concept per module), so
``from meddiff_lab.training import X`` works for every public name listed in ``_PUBLIC``.
"""

from __future__ import annotations

from meddiff_lab._lazy import lazy_exports

# public name -> module that defines it. Add a line when you add a public name.
_PUBLIC = {
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "Trainer": "trainer",
    "TrainConfig": "trainer",
    "train_from_config": "trainer",
    "EMA": "trainer",
    "NonFiniteLossError": "trainer",
    "train_conditional_diffusion": "conditional",
    "metadata_to_cond": "conditional",
    "SEG_STRUCTURES": "segmentation",
    "masks_to_condition": "segmentation",
    "make_segmentation_net": "segmentation",
    "classical_augmentation": "segmentation",
    "train_segmentation": "segmentation",
    "predict_masks": "segmentation",
    "segmentation_scores": "segmentation",
    "measure_cardiothoracic_ratio": "segmentation",
    "EncoderConfig": "encoder",
    "train_encoder": "encoder",
    "build_instruments": "instruments",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
