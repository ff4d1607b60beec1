r"""Train the domain feature encoder (:class:`~meddiff_lab.metrics.features.PhantomEncoder`) on phantoms.

The encoder is a measuring instrument (:mod:`meddiff_lab.metrics.features` defines, saves and loads
it); this module is its training run, beside the other training code.

``meddiff-lab metrics train-encoder --config configs/phantom_encoder.yaml --out data/pretrained``
runs :func:`train_encoder`. The encoder learns what matters in a chest radiograph because the
phantom's ground truth is exact:

* the 14 finding labels (binary cross-entropy), the cardiothoracic ratio (MSE on the standardised
  ratio), the view (AP/PA) and sex (binary cross-entropy);
* image quality: half of the images get Gaussian blur and/or noise of a random strength, and the
  encoder regresses both strengths (MSE). Without this, features learnt for anatomy ignore noise
  and blur, and a FID on them would not see the most common failure of a sampler;
* instance discrimination (NT-Xent, as in SimCLR, temperature :math:`\tau`): two random views of one
  image (shifted by up to 2 pixels, contrast and brightness jittered, a little noise) must be
  closer to each other than to any other image in the batch,

  .. math:: \ell_i = -\log\frac{\exp(z_i^\top z_{i'}/\tau)}{\sum_{k\ne i}\exp(z_i^\top z_k/\tau)},

  which makes the features tell two individual radiographs apart, not only two diagnoses (what a
  copy detector needs) while staying stable under the small changes a near-copy would show. The
  two views of an image always share its blur and noise *level* (each with its own noise), so
  the loss never teaches the features to ignore image quality.

The run ends with a held-out evaluation (label AUROC, ratio error, copy detection, how FID responds
to noise and blur) written into the model card beside the weights.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from meddiff_lab._json import to_jsonable
from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.data.phantom import generate_phantoms
from meddiff_lab.metrics.detection import image_auroc
from meddiff_lab.metrics.features import PhantomEncoder, save_phantom_encoder
from meddiff_lab.metrics.generative import fid, memorisation_threshold, near_copies, nearest_training_images
from meddiff_lab.metrics.image import gaussian_blur
from meddiff_lab.runtime import hardware_description
from meddiff_lab.training.lr_schedule import warmup_cosine
from meddiff_lab.training.schema import Field, as_config, check_fields

#: the learning rate decays to this fraction of ``learning_rate`` by the last step
MIN_LR_RATIO = 0.05


@dataclass
class EncoderConfig:
    """Everything a training run of the encoder depends on (the YAML file's sections, flattened)."""

    # data: phantoms generated in memory; validation uses the next seed (different patients)
    image_size: int = 64
    train_images: int = 1536
    val_images: int = 256
    data_seed: int = 1000
    # model
    channels: tuple[int, ...] = (32, 64, 96, 96)
    feature_dim: int = 32
    projection_dim: int = 64
    # optimisation
    steps: int = 400
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    temperature: float = 0.2
    loss_weights: dict = field(
        default_factory=lambda: {"labels": 1.0, "ctr": 1.0, "view_sex": 0.5, "quality": 1.0, "contrastive": 0.5}
    )
    # degradation whose strength the quality head regresses (values in [-1, 1] units, blur in pixels)
    degrade_probability: float = 0.5
    max_noise_std: float = 0.2
    max_blur_sigma: float = 1.5
    # augmentation of the two views (values in [-1, 1] units)
    shift_pixels: int = 2
    contrast_jitter: float = 0.1
    brightness_jitter: float = 0.05
    noise_std: float = 0.02
    low_res_probability: float = 0.0
    # run
    seed: int = 0
    threads: int | None = 1
    log_every: int = 50

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the type and range of every key (see ``_ENCODER_FIELDS``); raises ``ValueError`` naming each
        bad key."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in check_fields(values, _ENCODER_FIELDS).items():
            setattr(self, name, value)
        channels = self.channels
        if (
            isinstance(channels, (str, bytes))
            or not hasattr(channels, "__len__")
            or not channels
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)
        ):
            raise ValueError(f"channels: expected a list of positive integers, got {channels!r}")
        self.channels = tuple(channels)
        weights = self.loss_weights
        known = ("labels", "ctr", "view_sex", "quality", "contrastive")
        unknown = sorted(set(weights) - set(known))
        if unknown:
            raise ValueError(f"loss_weights: unknown key(s) {unknown}; known: {list(known)}")
        for key, value in weights.items():
            try:
                weights[key] = Field("float", low=0.0).coerce(value)
            except (ValueError, TypeError):
                raise ValueError(f"loss_weights.{key}: expected a number >= 0, got {value!r}") from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EncoderConfig:
        """Build from a (possibly sectioned) mapping; unknown keys raise with the list of known ones."""
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, Mapping) and key != "loss_weights":
                flat.update(value)
            else:
                flat[key] = value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ValueError(f"unknown encoder config keys {unknown}; known: {sorted(known)}")
        return cls(**flat)

    @classmethod
    def from_yaml(cls, path) -> EncoderConfig:
        """Read a YAML encoder config (flat or sectioned); every error names the file."""
        return as_config(Path(path), cls, cls.from_mapping, "encoder config")

    @classmethod
    def coerce(cls, config: EncoderConfig | Mapping[str, Any] | str | Path) -> EncoderConfig:
        """``config`` as an :class:`EncoderConfig`: given one, a dict (:meth:`from_mapping`) or a YAML path."""
        return as_config(config, cls, cls.from_mapping, "encoder config")


#: type and range of every EncoderConfig key (checked by EncoderConfig.validate)
_ENCODER_FIELDS: dict[str, Field] = {
    "image_size": Field("int", low=8),
    "train_images": Field("int", low=2),
    "val_images": Field("int", low=2),
    "data_seed": Field("int", low=0),
    "feature_dim": Field("int", low=1),
    "projection_dim": Field("int", low=1),
    "steps": Field("int", low=1),
    "batch_size": Field("int", low=2),
    "learning_rate": Field("float", low=0.0, high=1.0, low_open=True),
    "weight_decay": Field("float", low=0.0),
    "warmup_steps": Field("int", low=0),
    "temperature": Field("float", low=0.0, low_open=True),
    "loss_weights": Field("mapping"),
    "degrade_probability": Field("float", low=0.0, high=1.0),
    "max_noise_std": Field("float", low=0.0),
    "max_blur_sigma": Field("float", low=0.0),
    "shift_pixels": Field("int", low=0),
    "contrast_jitter": Field("float", low=0.0, high=1.0),
    "brightness_jitter": Field("float", low=0.0),
    "noise_std": Field("float", low=0.0),
    "low_res_probability": Field("float", low=0.0, high=1.0),
    "seed": Field("int", low=0),
    "threads": Field("int", low=1, optional=True),
    "log_every": Field("int", low=1),
}


# ---------------------------------------------------------------------------------------------- data
def phantom_tensors(n: int, image_size: int, seed: int) -> dict[str, torch.Tensor]:
    """Phantoms as training tensors: ``images`` (N, 1, H, W) in [-1, 1], ``labels`` (N, 14),
    ``ctr`` (N,), ``view_sex`` (N, 2) (1 = AP, 1 = female)."""
    batch = generate_phantoms(n, image_size, seed, masks=())
    return {
        "images": to_model_batch(batch.images),
        "labels": torch.from_numpy(batch.labels).float(),
        "ctr": torch.from_numpy(batch.cardiothoracic_ratio).float(),
        "view_sex": torch.tensor([[m["view"] == "AP", m["sex"] == "F"] for m in batch.metadata], dtype=torch.float32),
    }


def augment(images: torch.Tensor, config: EncoderConfig, generator: torch.Generator) -> torch.Tensor:
    """One random view of each image ``(B, 1, H, W)`` in [-1, 1]: shift, contrast/brightness, noise, resolution."""
    b, _, h, w = images.shape
    s = config.shift_pixels
    if s > 0:
        padded = F.pad(images, (s, s, s, s), mode="replicate")
        dy, dx = torch.randint(0, 2 * s + 1, (2, b), generator=generator)
        images = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    contrast = 1 + config.contrast_jitter * (2 * torch.rand(b, 1, 1, 1, generator=generator) - 1)
    brightness = config.brightness_jitter * (2 * torch.rand(b, 1, 1, 1, generator=generator) - 1)
    images = images * contrast + brightness
    low_res = torch.rand(b, generator=generator) < config.low_res_probability
    if bool(low_res.any()):
        small = F.interpolate(images[low_res], scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        images[low_res] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    noise_level = config.noise_std * torch.rand(b, 1, 1, 1, generator=generator)
    return (images + noise_level * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def draw_degradation(
    batch: int, config: EncoderConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise std and blur sigma per image (B,): zero for ``1 - degrade_probability`` of the images; the
    others get noise, blur or both (each with probability 1/2, at least one), of uniform strength."""
    degraded = torch.rand(batch, generator=generator) < config.degrade_probability
    kind = torch.randint(0, 3, (batch,), generator=generator)  # 0 noise, 1 blur, 2 both
    noise = config.max_noise_std * torch.rand(batch, generator=generator) * (degraded & (kind != 1))
    blur = config.max_blur_sigma * torch.rand(batch, generator=generator) * (degraded & (kind != 0))
    return noise, blur


# -------------------------------------------------------------------------------------------- losses
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss for two L2-normalised views ``(B, P)``: each view must pick its partner."""
    z = torch.cat([z1, z2])
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    b = len(z1)
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    return F.cross_entropy(logits, partner)


def encoder_losses(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], encoder: PhantomEncoder, config: EncoderConfig
) -> dict[str, torch.Tensor]:
    """The supervised losses for one batch of outputs (targets repeated for both views)."""
    ctr_target = (targets["ctr"] - encoder.config["ctr_mean"]) / encoder.config["ctr_std"]
    return {
        "labels": F.binary_cross_entropy_with_logits(outputs["label_logits"], targets["labels"]),
        "ctr": F.mse_loss(outputs["ctr_standardized"], ctr_target),
        "view_sex": F.binary_cross_entropy_with_logits(outputs["view_sex_logits"], targets["view_sex"]),
    }


# -------------------------------------------------------------------------------------------- training
def train_encoder(
    config: EncoderConfig | Mapping[str, Any] | str | Path,
    out_dir=None,
    command: str | None = None,
    progress: bool = True,
) -> tuple[PhantomEncoder, dict]:
    """Train the encoder, evaluate it on held-out phantoms and (with ``out_dir``) save weights + card.

    Returns:
        ``(encoder, card)``: the encoder in eval mode and the card dict (config, timing, hardware,
        held-out numbers) that is written as ``phantom_encoder.json`` beside the weights.
    """
    config = EncoderConfig.coerce(config)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()

    train = phantom_tensors(config.train_images, config.image_size, config.data_seed)
    val = phantom_tensors(config.val_images, config.image_size, config.data_seed + 1)
    data_seconds = time.perf_counter() - started
    encoder = PhantomEncoder(
        config.channels,
        config.feature_dim,
        train["labels"].shape[1],
        config.image_size,
        config.projection_dim,
        ctr_mean=float(train["ctr"].mean()),
        ctr_std=float(train["ctr"].std()),
    )
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, config.warmup_steps, config.steps, MIN_LR_RATIO)
    )
    weights = config.loss_weights
    history = []
    encoder.train()
    for step in range(1, config.steps + 1):
        idx = torch.randint(0, config.train_images, (config.batch_size,), generator=generator)
        noise_std, blur_sigma = draw_degradation(config.batch_size, config, generator)
        images = gaussian_blur(train["images"][idx], blur_sigma)
        views = torch.cat([augment(images, config, generator), augment(images, config, generator)])
        views = views + torch.cat([noise_std] * 2).view(-1, 1, 1, 1) * torch.randn(views.shape, generator=generator)
        outputs = encoder(views.clamp(-1, 1))
        targets = {k: torch.cat([train[k][idx]] * 2) for k in ("labels", "ctr", "view_sex")}
        losses = encoder_losses(outputs, targets, encoder, config)
        quality = torch.stack([noise_std / config.max_noise_std, blur_sigma / config.max_blur_sigma], dim=1)
        losses["quality"] = F.mse_loss(outputs["quality"], torch.cat([quality] * 2))
        z1, z2 = outputs["projection"].chunk(2)
        losses["contrastive"] = nt_xent(z1, z2, config.temperature)
        total = sum(weights.get(name, 1.0) * value for name, value in losses.items())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        schedule.step()
        if step % config.log_every == 0 or step == config.steps:
            row = {
                "step": step,
                "loss": round(float(total.detach()), 4),
                **{k: round(float(v.detach()), 4) for k, v in losses.items()},
                "elapsed_s": round(time.perf_counter() - started, 1),
            }
            history.append(row)
            if progress:
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    train_seconds = time.perf_counter() - started - data_seconds
    encoder.eval().requires_grad_(False)
    evaluation = evaluate_encoder(encoder, val, generator)
    card = {
        "name": "phantom_encoder",
        "description": "Domain feature encoder for FID/KID/precision-recall and copy detection on 64 px phantom "
        "chest radiographs (features: 32-d). Trained on phantom labels, cardiothoracic ratio, "
        "view/sex, noise/blur level and instance discrimination.",
        "training": {
            "command": command,
            "config": to_jsonable(asdict(config)),
            "data_seconds": round(data_seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "hardware": hardware_description(),
            "parameters": sum(p.numel() for p in encoder.parameters()),
            "history": history,
        },
        "evaluation": evaluation,
    }
    if out_dir is not None:
        path = save_phantom_encoder(encoder, out_dir, card)
        card["files"] = {"weights": path.name, "bytes": path.stat().st_size}
        save_phantom_encoder(encoder, out_dir, card)
    return encoder, card


# ------------------------------------------------------------------------------------------ evaluation
def evaluate_encoder(encoder: PhantomEncoder, val: dict[str, torch.Tensor], generator: torch.Generator) -> dict:
    """Held-out numbers for the card: what the features know and how they behave as a metric."""
    with torch.no_grad():
        out = encoder(val["images"])
    label_auc = [
        image_auroc(out["label_logits"][:, j], val["labels"][:, j] > 0.5) for j in range(val["labels"].shape[1])
    ]
    finite_auc = [a for a in label_auc if np.isfinite(a)]
    feats = out["features"]
    n = len(feats) // 2
    half_a, half_b = val["images"][:n], val["images"][n : 2 * n]

    def features_of(images):
        with torch.no_grad():
            return encoder.features(images)

    noisy = (half_b + 0.1 * torch.randn(half_b.shape, generator=generator)).clamp(-1, 1)
    blurred = gaussian_blur(half_b, torch.full((len(half_b),), 1.0))
    fa, fb = features_of(half_a), features_of(half_b)
    # copy detection: half_a is the "training set", copies of some of its images vs fresh half_b images
    num_copies = min(16, n)
    copies = near_copies(half_a[:num_copies], generator)

    def embed(images):
        with torch.no_grad():
            return F.normalize(encoder.projection(encoder.features(images)), dim=1)

    ea, eb = embed(half_a), embed(half_b)
    copy_eval = {}
    for space, (train_x, heldout_x, copies_x, fresh_x) in {
        "copy_embedding": (ea, eb[: n // 2], embed(copies), eb[n // 2 :]),
        "features": (fa, fb[: n // 2], features_of(copies), fb[n // 2 :]),
        "pixels": (half_a, half_b[: n // 2], copies, half_b[n // 2 :]),
    }.items():
        threshold = memorisation_threshold(heldout_x, train_x)
        copy_result = nearest_training_images(copies_x, train_x)
        fresh_result = nearest_training_images(fresh_x, train_x)
        copy_eval[space] = {
            "threshold": round(threshold, 4),
            "copies_flagged": float((copy_result.similarity > threshold).float().mean()),
            "copies_matched_to_source": float((copy_result.index == torch.arange(num_copies)).float().mean()),
            "fresh_flagged": float((fresh_result.similarity > threshold).float().mean()),
        }
    return {
        "val_images": len(feats),
        "val_seed_offset": 1,
        "label_auroc_mean": round(float(np.mean(finite_auc)), 4),
        "label_auroc": {str(j): round(a, 4) for j, a in enumerate(label_auc)},
        "ctr_mae": round(float((out["ctr"] - val["ctr"]).abs().mean()), 4),
        "view_accuracy": round(
            float(((out["view_sex_logits"][:, 0] > 0) == (val["view_sex"][:, 0] > 0.5)).float().mean()), 4
        ),
        "sex_accuracy": round(
            float(((out["view_sex_logits"][:, 1] > 0) == (val["view_sex"][:, 1] > 0.5)).float().mean()), 4
        ),
        "fid_real_vs_real": round(fid(fa, fb), 3),
        "fid_real_vs_noise_0.1": round(fid(fa, features_of(noisy)), 3),
        "fid_real_vs_blur_1px": round(fid(fa, features_of(blurred)), 3),
        "fid_real_vs_flipped": round(fid(fa, features_of(half_b.flip(-1))), 3),
        "copy_detection": copy_eval,
    }


__all__ = [
    "EncoderConfig",
    "train_encoder",
    "evaluate_encoder",
    "augment",
    "nt_xent",
    "phantom_tensors",
    "draw_degradation",
    "encoder_losses",
    "MIN_LR_RATIO",
]
