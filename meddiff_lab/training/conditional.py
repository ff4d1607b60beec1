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

The loss is the usual per-image MSE on the chosen target (:func:`meddiff_lab.diffusion.diffusion_loss`),
the optimizer AdamW with a linear warm-up and cosine decay, gradients are clipped and an EMA copy of
the weights is kept (:class:`~meddiff_lab.training.trainer.EMA`). Only parameters with
``requires_grad`` are trained, so a ControlNet's frozen base stays as it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from meddiff_lab.training.trainer import EMA, warmup_cosine

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


def _as_tensor(value, name: str, n: int, dtype=None) -> torch.Tensor | None:
    if value is None:
        return None
    tensor = torch.as_tensor(value) if dtype is None else torch.as_tensor(value, dtype=dtype)
    if tensor.shape[0] != n:
        raise ValueError(f"{name} has {tensor.shape[0]} rows but there are {n} images; give one per image")
    return tensor


def train_conditional_diffusion(model: torch.nn.Module, images: torch.Tensor, *, steps: int, batch_size: int = 16,
                                learning_rate: float = 1e-3, class_labels=None, cond=None, masks=None,
                                label_dropout: float = 0.1, balance_classes: bool = False, schedule=None,
                                prediction_type: str = "epsilon",
                                ema_decay: float = 0.995, warmup_steps: int | None = None,
                                max_grad_norm: float | None = 1.0, seed: int = 0,
                                progress: bool = True) -> ConditionalTrainingResult:
    """Train ``model`` to denoise ``images`` given their conditions.

    Args:
        model: called as ``model(x_t, t, [class_labels=...], [cond=...], [mask=...])`` with the keyword
            arguments whose data are given.
        images: (N, 1, H, W) float32 in [-1, 1].
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
        seed: seeds the batches, timesteps, noise and dropout (not the model's initial weights).
        progress: show a tqdm bar.

    Returns:
        a :class:`ConditionalTrainingResult`.

    Raises:
        ValueError: for images that are not (N, 1, H, W), conditions with the wrong number of rows,
            or label dropout on a model without a null class.
    """
    from tqdm.auto import tqdm

    from meddiff_lab.diffusion import NoiseSchedule, add_noise, diffusion_loss

    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) float in [-1, 1], got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    n = images.shape[0]
    class_labels = _as_tensor(class_labels, "class_labels", n, torch.long)
    cond = _as_tensor(cond, "cond", n, torch.float32)
    masks = _as_tensor(masks, "masks", n, torch.float32)
    if not 0.0 <= label_dropout < 1.0:
        raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout!r}")
    null_class = getattr(model, "null_class", None)
    if class_labels is not None and label_dropout > 0 and null_class is None:
        raise ValueError("label_dropout > 0 needs a model with a null class (UNet(..., num_classes=K) has "
                         "null_class = K); use label_dropout=0 for a model without one")
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    schedule = schedule or NoiseSchedule.from_name("linear")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(int(seed))

    weights = None
    if balance_classes:
        if class_labels is None:
            raise ValueError("balance_classes=True needs class_labels")
        counts = torch.bincount(class_labels)
        weights = 1.0 / counts[class_labels].double()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no parameter with requires_grad=True: nothing to train")
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    warmup = max(1, int(0.05 * steps)) if warmup_steps is None else int(warmup_steps)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, steps, 0.05))
    ema = EMA(model, ema_decay)

    losses: list[float] = []
    model.train()
    started = time.perf_counter()
    bar = tqdm(range(int(steps)), desc="training", unit="step", disable=not progress, leave=False)
    for _ in bar:
        index = (torch.randint(n, (batch_size,), generator=generator) if weights is None
                 else torch.multinomial(weights, batch_size, replacement=True, generator=generator))
        x0 = images[index].to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, schedule.num_train_timesteps, (batch_size,), generator=generator)
        x_t = add_noise(schedule, x0, noise, t.to(device))
        kwargs = {}
        if class_labels is not None:
            labels = class_labels[index].clone()
            if label_dropout > 0:
                labels[torch.rand(batch_size, generator=generator) < label_dropout] = null_class
            kwargs["class_labels"] = labels.to(device)
        if cond is not None:
            c = cond[index].clone()
            if label_dropout > 0:
                c[torch.rand(batch_size, generator=generator) < label_dropout] = 0.0
            kwargs["cond"] = c.to(device)
        if masks is not None:
            kwargs["mask"] = masks[index].to(device)
        output = model(x_t, t.to(device), **kwargs)
        loss = diffusion_loss(output, x0, noise, t.to(device), schedule, prediction_type=prediction_type)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {len(losses) + 1}; "
                                     f"try a lower learning_rate (now {learning_rate})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
        optimizer.step()
        lr_schedule.step()
        ema.update(model)
        losses.append(loss.item())
        if progress and len(losses) % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    bar.close()
    seconds = time.perf_counter() - started
    model.eval()
    return ConditionalTrainingResult(model=model, ema_model=ema.model, losses=losses, seconds=seconds,
                                     images_per_second=steps * batch_size / max(seconds, 1e-9))
