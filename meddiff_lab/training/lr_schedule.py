"""The learning-rate schedule of every training loop in the package: linear warm-up, then cosine decay.

Used as a ``torch.optim.lr_scheduler.LambdaLR`` multiplier by the diffusion
:class:`~meddiff_lab.training.trainer.Trainer` and by the feature encoder's training
(:func:`meddiff_lab.training.encoder.train_encoder`).
"""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up from 0 to 1 over ``warmup_steps``, then a cosine
    from 1 down to ``min_lr_ratio`` at ``max_steps``:
    :math:`r + (1-r)\\,\\tfrac12\\,(1 + \\cos(\\pi\\,p))`, :math:`p` the fraction of post-warm-up steps done.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
