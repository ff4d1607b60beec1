"""The smallest training run the tests share: a two-level U-Net on 16 px images that trains in a second.

Tests import it as ``from tiny_runs import TINY_UNET, tiny_run_config`` (pyproject's pytest ``pythonpath``
puts this folder on the path) and change only what they are about.
"""

from __future__ import annotations

import copy

TINY_UNET = {"channels": [8, 16], "attention_levels": [False, False], "num_head_channels": 8, "norm_num_groups": 8}
"""Keyword arguments of ``meddiff_lab.models.UNet``: 8 and 16 channels, no attention."""

_TINY_RUN = dict(
    image_size=16,
    num_images=8,
    max_steps=2,
    batch_size=4,
    warmup_steps=1,
    model=TINY_UNET,
    mixed_precision="no",
    threads=1,
    log_every=1,
    sample_every=0,
    checkpoint_every=0,
)


def tiny_run_config(**changes) -> dict:
    """A flat ``TrainConfig`` dictionary of the tiny run (2 steps of 4 images, fp32, one thread, no samples or
    checkpoints on the way), with ``changes`` applied; a fresh copy each call, so tests cannot share edits."""
    unknown = set(changes) - set(_TINY_RUN) - {"learning_rate", "ema_decay", "conditioning", "base_model"}
    if unknown:
        raise TypeError(f"tiny_run_config: no such setting {sorted(unknown)}")
    return copy.deepcopy({**_TINY_RUN, **changes})
