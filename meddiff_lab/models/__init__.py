"""Models: timestep embeddings, U-Net blocks, the U-Net, and the shipped pretrained weights.

Names are imported lazily from their modules (one concept per module), so
``from meddiff_lab.models import X`` works for every public name listed in ``_PUBLIC``.
"""

from __future__ import annotations

from meddiff_lab._lazy import lazy_exports

# public name -> module that defines it. Add a line when you add a public name.
_PUBLIC = {
    "UNet": "unet",
    "unet_kwargs": "unet",
    "timestep_embedding": "embeddings",
    "TimestepEmbedding": "embeddings",
    "ClassEmbedding": "embeddings",
    "ConditionEmbedding": "embeddings",
    "ResBlock": "blocks",
    "SelfAttention": "blocks",
    "Downsample": "blocks",
    "Upsample": "blocks",
    "PRETRAINED": "pretrained",
    "load_pretrained": "pretrained",
    "export_checkpoint": "pretrained",
    "MaskConcat": "controlnet",
    "ControlNet": "controlnet",
    "ControlledUNet": "controlnet",
    "BoundCondition": "controlnet",
    "CONDITIONINGS": "conditioning",
    "build_zoo_model": "conditioning",
    "findings_metadata_to_cond": "conditioning",
    "VectorGuidance": "conditioning",
    "LatentAutoencoder": "autoencoder",
    "PlainAutoencoder": "autoencoder",
    "LatentDiffusionPipeline": "autoencoder",
    "train_autoencoder": "autoencoder",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
