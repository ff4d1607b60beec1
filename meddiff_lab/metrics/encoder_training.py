"""Old home of the encoder's training run, kept so that ``from meddiff_lab.metrics.encoder_training
import gaussian_blur, near_copies`` (notebook 08) still works.

The training run moved beside the other training code, to :mod:`meddiff_lab.training.encoder`
(``EncoderConfig``, ``train_encoder``, ...); it is not importable from here, because metrics/ must not
import training/ (training builds and evaluates with the metrics). The two names below live with
their concepts: :func:`~meddiff_lab.metrics.image.gaussian_blur` (an image degradation the metrics are
probed with) and :func:`~meddiff_lab.metrics.generative.near_copies` (planted copies for the
memorisation check).
"""

from __future__ import annotations

from meddiff_lab.metrics.generative import near_copies
from meddiff_lab.metrics.image import gaussian_blur

__all__ = ["gaussian_blur", "near_copies"]
