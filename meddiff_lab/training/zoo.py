r"""The model zoo's conditional jobs: what each shipped conditional model learns from.

The zoo (``meddiff_lab.models.PRETRAINED``) has, besides the unconditional ``phantom64``:

* ``phantom64-cond``: one U-Net conditioned on a vector of the 14 findings and the patient
  (age, sex, view), with the whole vector dropped to zeros for a share of the training images, so
  the same network is also the unconditional model that classifier-free guidance needs;
* ``phantom64-controlnet-mask`` and ``phantom64-controlnet-edge``: ControlNet branches on the frozen
  ``phantom64``, steered by lung/heart masks or by edge maps extracted automatically from the
  images (no labels needed: trained on the unlabelled pool, as EMIT-Diff/DiffBoost do with HED edges).

``zoo_training_set(conditioning, n, image_size, seed)`` makes the images and conditions of a job from
phantoms. The networks and their condition vectors (``build_zoo_model``, ``VectorGuidance``,
``findings_metadata_to_cond``) live with the models, in :mod:`meddiff_lab.models.conditioning`; they
are importable from here too.
"""

from __future__ import annotations

import torch

from meddiff_lab.data.edges import edge_maps, edges_to_condition
from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.data.phantom import generate_phantoms
from meddiff_lab.metrics.segmentation import masks_to_condition
from meddiff_lab.models.conditioning import (
    CONDITIONINGS,
    FINDINGS_METADATA_FIELDS,
    VectorGuidance,
    build_zoo_model,
    findings_metadata_to_cond,
)

__all__ = [
    "CONDITIONINGS",
    "FINDINGS_METADATA_FIELDS",
    "findings_metadata_to_cond",
    "zoo_training_set",
    "build_zoo_model",
    "VectorGuidance",
]


def zoo_training_set(conditioning: str, n: int, image_size: int, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Images ``(n, 1, S, S)`` in [-1, 1] and the Trainer's ``conditions`` for a zoo job, from phantoms.

    ``"findings_metadata"`` → ``{"cond": (n, 18)}``; ``"mask"`` → ``{"mask": (n, 1, S, S)}`` lung/heart
    label maps in [-1, 1]; ``"edges"`` → ``{"mask": (n, 1, S, S)}`` Canny edges of the images
    themselves (±1); ``"none"`` → ``{}``.
    """
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    wanted = ("right_lung", "left_lung", "heart") if conditioning == "mask" else ()
    batch = generate_phantoms(n, image_size, seed, masks=wanted)
    images = to_model_batch(batch.images)
    if conditioning == "findings_metadata":
        return images, {"cond": findings_metadata_to_cond(batch.labels, batch.metadata)}
    if conditioning == "mask":
        return images, {"mask": masks_to_condition(batch.masks)}
    if conditioning == "edges":
        return images, {"mask": edges_to_condition(edge_maps(batch.images))}
    return images, {}
