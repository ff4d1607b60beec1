r"""A short training loop for *conditional* diffusion models: class labels, metadata, masks.

The :class:`~meddiff_lab.training.Trainer` trains unconditional models from images alone. Here every
training image comes with its conditions, drawn together in each batch:

* ``class_labels`` (N,) int, e.g. 0 = no cardiomegaly, 1 = cardiomegaly. With probability
  ``label_dropout`` a label is replaced by the model's *null class* (index ``num_classes``), so the
  same network also learns the unconditional model :math:`\hat\varepsilon(x_t, t, \varnothing)` that
  classifier-free guidance needs (Ho & Salimans 2022):
  :math:`\hat\varepsilon_w = \hat\varepsilon_\varnothing + w(\hat\varepsilon_y - \hat\varepsilon_\varnothing)`.
* ``cond`` (N, D) float metadata (see :func:`metadata_to_cond`), dropped to the all-zero vector
  ("unknown") with the same probability, independently of the label.
* ``masks`` (N, M, H, W), passed as ``mask=`` to a :class:`~meddiff_lab.models.MaskConcat` or
  :class:`~meddiff_lab.models.ControlledUNet`.

The loop is the package's :class:`~meddiff_lab.training.Trainer` (given ``conditions=``): the usual
per-image loss on the chosen target, AdamW with a linear warm-up and cosine decay, gradient clipping
and an EMA copy of the weights. Only parameters with ``requires_grad`` are trained, so a
ControlNet's frozen base stays as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from meddiff_lab.training.trainer import SingleProcess, TrainConfig, Trainer

__all__ = ["metadata_to_cond", "METADATA_FIELDS", "train_conditional_diffusion", "ConditionalTrainingResult"]

#: What each column of :func:`metadata_to_cond`'s vectors means.
METADATA_FIELDS = ("age (years - 50) / 20", "sex (+1 female, -1 male)", "known (1; 0 = dropped)")


def metadata_to_cond(metadata: Sequence[Mapping] | None = None, *, age=None, sex=None) -> torch.Tensor:
    """Clinical metadata → (N, 3) float32 vectors for the U-Net's ``cond`` input (see :data:`METADATA_FIELDS`).

    ``[(age - 50) / 20, +1 for "F" / -1 for "M", 1]``. The last entry says the metadata is known: the
    all-zero vector is the "unknown" (dropped) condition, distinct from any real patient.

    Args:
        metadata: a list of dicts with ``"age"`` (years) and ``"sex"`` (``"F"``/``"M"``), e.g. a
            :class:`~meddiff_lab.data.PhantomBatch`'s ``.metadata``; or
        age, sex: the same as sequences (or one value each).

    Raises:
        ValueError: for a sex other than ``"F"``/``"M"`` or a missing/negative age.
    """
    if metadata is not None:
        age = [m.get("age") for m in metadata]
        sex = [m.get("sex") for m in metadata]
    if age is None or sex is None:
        raise ValueError("metadata_to_cond needs metadata=[{'age': ..., 'sex': ...}, ...] or both age= and sex=")
    age = np.atleast_1d(np.asarray(age, dtype=object))
    sex = np.atleast_1d(np.asarray(sex, dtype=object))
    if len(age) != len(sex):
        raise ValueError(f"age and sex must have one entry per image, got {len(age)} and {len(sex)}")
    bad_age = [a for a in age if a is None or not np.isfinite(float(a)) or float(a) < 0]
    if bad_age:
        raise ValueError(f"age must be a non-negative number of years, got {bad_age[0]!r}")
    bad_sex = [s for s in sex if s not in ("F", "M")]
    if bad_sex:
        raise ValueError(f"sex must be 'F' or 'M', got {bad_sex[0]!r}")
    ages = np.asarray(age, dtype=np.float32)
    signs = np.where(np.asarray(sex) == "F", 1.0, -1.0).astype(np.float32)
    return torch.from_numpy(np.stack([(ages - 50.0) / 20.0, signs, np.ones_like(ages)], axis=1))


@dataclass
class ConditionalTrainingResult:
    """What :func:`train_conditional_diffusion` returns.

    Attributes:
        model: the trained model (train mode left off: ``eval()``).
        ema_model: the exponential moving average of its weights (sample from this one).
        losses: the loss of every step.
        seconds: wall-clock training time.
        images_per_second: training throughput.
    """

    model: torch.nn.Module
    ema_model: torch.nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0


def train_conditional_diffusion(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    class_labels=None,
    cond=None,
    masks=None,
    label_dropout: float = 0.1,
    balance_classes: bool = False,
    schedule=None,
    prediction_type: str = "epsilon",
    ema_decay: float = 0.995,
    warmup_steps: int | None = None,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> ConditionalTrainingResult:
    """Train ``model`` to denoise ``images`` given their conditions, in memory, with the package's :class:`Trainer`.

    A short-run front end for notebooks: the same loop as ``meddiff-lab train`` (EMA, clipping,
    warm-up + cosine, mixed precision on a GPU), without files, on the model's own device.

    Args:
        model: called as ``model(x_t, t, [class_labels=...], [cond=...], [mask=...])`` with the keyword
            arguments whose data are given.
        images: (N, 1, H, W) float32 in [-1, 1], H = W.
        steps: optimizer steps.
        batch_size: images per step (drawn with replacement).
        learning_rate: peak AdamW learning rate (warm-up over ``warmup_steps``, default 5 % of the
            steps, then cosine decay to 5 %).
        class_labels: (N,) int in ``[0, num_classes)``; needs ``model.null_class`` when ``label_dropout > 0``.
        cond: (N, D) float metadata (dropped to zeros with probability ``label_dropout``).
        masks: (N, M, H, W) float masks, passed as ``mask=``.
        label_dropout: probability of replacing a label (and, independently, a metadata vector) by the
            null condition; 0.1-0.2 is usual for classifier-free guidance.
        balance_classes: draw every class equally often (each image with probability inversely
            proportional to its class's frequency), so a rare finding is not drowned out.
        schedule: a :class:`~meddiff_lab.diffusion.NoiseSchedule` (default: linear, 1000 steps).
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.
        ema_decay: EMA decay (with the usual warm-up).
        max_grad_norm: gradient clipping (``None``: none).
        seed: seeds the batches, dropout and the global RNG (timesteps, noise; not the model's
            initial weights, which exist already).
        progress: show a tqdm bar.

    Returns:
        a :class:`ConditionalTrainingResult` (``losses`` has one entry per step).

    Raises:
        ValueError: for images that are not (N, 1, H, W), conditions with the wrong number of rows,
            or label dropout on a model without a null class.
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be (N, 1, H, W) float in [-1, 1] with H = W, got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    config = TrainConfig(
        image_size=images.shape[-1],
        num_images=len(images),
        max_steps=int(steps),
        batch_size=batch_size,
        learning_rate=learning_rate,
        min_lr_ratio=0.05,
        warmup_steps=max(1, int(0.05 * steps)) if warmup_steps is None else int(warmup_steps),
        max_grad_norm=max_grad_norm,
        ema_decay=ema_decay,
        prediction_type=prediction_type,
        label_dropout=label_dropout,
        balance_classes=balance_classes,
        seed=seed,
        log_every=1,
        sample_every=0,
        checkpoint_every=0,
    )
    device = next(model.parameters()).device
    trainer = Trainer(
        config,
        images=images,
        model=model,
        progress=progress,
        accelerator=SingleProcess(device),
        conditions={"class_labels": class_labels, "cond": cond, "mask": masks},
    )
    if schedule is not None:
        trainer.schedule = schedule
    trainer.train()
    model.eval()
    return ConditionalTrainingResult(
        model=model,
        ema_model=trainer.ema.model,
        losses=[row["loss"] for row in trainer.history],
        seconds=trainer.seconds,
        images_per_second=steps * batch_size / max(trainer.seconds, 1e-9),
    )
