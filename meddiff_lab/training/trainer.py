"""The training loop for a denoising diffusion model, from one CPU thread to several GPUs.

One optimizer *step* is ``gradient_accumulation_steps`` micro-batches of ``batch_size`` images on
each process; ``max_steps`` counts steps for the whole run, resumed or not. Each step:

1. draw clean images :math:`x_0` (B, 1, H, W) in [-1, 1], noise :math:`\\epsilon \\sim N(0, I)` and a
   timestep :math:`t \\sim U\\{0, T-1\\}`;
   form :math:`x_t = \\sqrt{\\bar\\alpha_t} x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon`;
2. predict the target (``prediction_type``): :math:`\\epsilon`, :math:`x_0` (``"sample"``) or
   :math:`v = \\sqrt{\\bar\\alpha_t}\\,\\epsilon - \\sqrt{1-\\bar\\alpha_t}\\,x_0` (``"v_prediction"``);
3. loss = per-image MSE, optionally weighted by min-SNR-:math:`\\gamma` (Hang et al. 2023) and mixed
   with :math:`1-\\mathrm{SSIM}` of the implied :math:`\\hat x_0` (hybrid loss), all from
   :func:`meddiff_lab.diffusion.losses.diffusion_loss`;
4. backward under mixed precision (bf16 autocast on CPU, fp16 with gradient scaling on CUDA), clip
   the gradient norm, step AdamW with linear warm-up then cosine decay, update the EMA weights.

Around it: a tqdm bar with loss and images/s, ``log.csv``, TensorBoard events when tensorboard is
installed, periodic DDIM sample grids from the EMA weights, atomic checkpoints and exact resume.
A non-finite loss stops the run with a message naming the step; nothing is saved after it.

Scale-out uses Hugging Face Accelerate (DDP; gloo on CPU, NCCL on GPUs)::

    accelerate launch --num_processes 4 -m meddiff_lab.cli train --config configs/pretrained_phantom64.yaml --out runs/x

Each process draws its own batches (a generator seeded by ``seed`` and its rank); gradients are
averaged across processes, so every rank holds the same weights after each step.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import inspect
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from meddiff_lab.checkpoint import (
    capture_rng_state,
    check_resumable,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.data.phantom import generate_phantoms
from meddiff_lab.data.sources import DATA_SOURCES, load_dataset
from meddiff_lab.diffusion.losses import diffusion_loss
from meddiff_lab.diffusion.process import PREDICTION_TYPES, add_noise
from meddiff_lab.diffusion.sampling import generate_samples  # also imported from here by older code
from meddiff_lab.diffusion.schedulers import scheduler_from_config
from meddiff_lab.diffusion.schedules import NoiseSchedule
from meddiff_lab.models.conditioning import CONDITIONINGS, build_zoo_model
from meddiff_lab.models.pretrained import load_model
from meddiff_lab.models.unet import UNet
from meddiff_lab.runtime import get_device, hardware_description  # hardware_description: as generate_samples
from meddiff_lab.training.lr_schedule import warmup_cosine
from meddiff_lab.training.precision import PRECISIONS, PrecisionChoice, choose_precision
from meddiff_lab.training.schema import Field, as_config, check_fields
from meddiff_lab.training.zoo import zoo_training_set
from meddiff_lab.viz.grids import save_image_grid  # as generate_samples

LOSS_TYPES = ("mse", "hybrid")
MIXED_PRECISION = PRECISIONS
CHECKPOINT_NAME = "last.pt"
#: ``time_budget_s``: steps left untimed at the start of a run, then steps timed to fit ``max_steps``.
BUDGET_WARMUP_STEPS, BUDGET_PROBE_STEPS = 5, 20
#: ...and the shares of the budget at which ``max_steps`` is fitted again to the speed since the last fit.
BUDGET_REFIT_AT = (0.25, 0.5, 0.75, 0.9)
LOG_NAME = "log.csv"
LOG_COLUMNS = ("step", "loss", "lr", "grad_norm", "images_per_sec", "elapsed_s")


class NonFiniteLossError(FloatingPointError):
    """Raised when the loss becomes NaN or infinite; the message names the step."""


# ----------------------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Everything a training run needs, as plain data (so it can live in a YAML file and a checkpoint).

    A YAML file may group the keys in sections (``data:``, ``model:``, ``diffusion:``, ``loss:``,
    ``optim:``, ``run:``); the sections are merged, except ``model:`` which holds the U-Net's
    keyword arguments. Unknown keys are an error.
    """

    # data: (N, 1, image_size, image_size) float32 in [-1, 1]
    data_source: str = "synthetic"  # "synthetic" | "chestxray14" | "medmnist" | "mednist" | "folder"
    data_root: str | None = None  # None (or a missing folder) with "synthetic": phantoms made in memory
    image_size: int = 64
    num_images: int = 2000  # at most this many training images
    data_seed: int = 0
    # model: keyword arguments of meddiff_lab.models.UNet
    model: dict = field(
        default_factory=lambda: {
            "channels": [32, 64, 128],
            "attention_levels": [False, False, True],
            "num_res_blocks": 1,
            "num_head_channels": 32,
        }
    )
    # diffusion
    schedule: str = "linear"
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    # loss
    loss: str = "mse"  # "mse" | "hybrid" (= (1 - ssim_weight) MSE + ssim_weight (1 - SSIM))
    ssim_weight: float = 0.3
    min_snr_gamma: float | None = None  # e.g. 5.0 turns on min-SNR weighting
    # optimisation
    max_steps: int = 1000
    batch_size: int = 16  # per process and micro-batch
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    adam_betas: tuple = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # the cosine ends at learning_rate * min_lr_ratio
    max_grad_norm: float | None = 1.0
    ema_decay: float = 0.999
    # conditions (used only when the Trainer is given conditions=...)
    label_dropout: float = 0.1  # chance a label / metadata vector becomes the null condition
    # zoo jobs (meddiff_lab.training.zoo): phantoms with their conditions, without conditions=...
    conditioning: str = "none"  # "none" | "findings_metadata" | "mask" | "edges" (the last two: ControlNet)
    base_model: str | None = None  # the frozen pretrained U-Net a ControlNet steers (e.g. "phantom64")
    balance_classes: bool = False  # draw every class equally often
    mixed_precision: str = "auto"  # "auto": fp16 on CUDA; on a CPU bf16 if measured faster, else float32
    # bookkeeping
    seed: int = 0
    threads: int | None = None
    log_every: int = 10
    sample_every: int = 500  # 0: never
    num_samples: int = 16
    sample_steps: int = 50  # DDIM steps for the sample grids
    checkpoint_every: int = 500  # 0: only at the end

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the type and range of every key (see ``_CONFIG_FIELDS``) and coerce YAML's values
        (``100.0`` -> 100, ``"1e-4"`` -> 1e-4); raises ``ValueError`` naming each bad key."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in check_fields(values, _CONFIG_FIELDS).items():
            setattr(self, name, value)
        if self.data_source not in DATA_SOURCES:
            raise ValueError(
                f"data_source: expected one of {', '.join(map(repr, DATA_SOURCES))}, got {self.data_source!r}"
            )
        if self.conditioning in ("mask", "edges") and not self.base_model:
            raise ValueError(
                f"conditioning {self.conditioning!r} trains a ControlNet on a frozen pretrained U-Net: "
                f"set base_model (e.g. base_model: phantom64)"
            )
        if self.conditioning != "none" and self.data_source != "synthetic":
            raise ValueError(
                f"conditioning {self.conditioning!r} needs data_source 'synthetic' (the phantoms carry "
                f"the findings, metadata and masks); got {self.data_source!r}"
            )
        if self.schedule != "cosine" and self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start!r}) must be smaller than beta_end ({self.beta_end!r})")
        self._check_model_kwargs()

    def _check_model_kwargs(self) -> None:
        """``model`` must be keyword arguments that build a UNet for ``image_size`` (built on the
        ``meta`` device: no memory, no time)."""
        accepted = [n for n in inspect.signature(UNet.__init__).parameters if n != "self"]
        unknown = sorted(set(self.model) - set(accepted))
        if unknown:
            raise ValueError(f"model: unknown UNet keyword argument(s) {unknown}; allowed: {accepted}")
        try:
            with torch.device("meta"):
                UNet.from_config(self.model)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"model: these UNet keyword arguments do not build a model: {exc}") from None

    # -------------------------------------------------------------------------------- conversions
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a flat or sectioned dict (see the class docstring). Unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        flat: dict[str, Any] = {}
        for key, value in dict(data).items():
            if key in ("data", "diffusion", "loss_config", "optim", "run", "sampling") and isinstance(value, Mapping):
                flat.update(value)
            elif key == "loss" and isinstance(value, Mapping):
                flat.update({("loss" if k == "type" else k): v for k, v in value.items()})
            else:
                flat[key] = value
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ValueError(f"unknown training config key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**flat)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML training config (flat or sectioned); every error names the file."""
        return as_config(Path(path), cls, cls.from_dict, "training config")

    @classmethod
    def coerce(cls, config: TrainConfig | Mapping[str, Any] | str | Path) -> TrainConfig:
        """``config`` as a :class:`TrainConfig`: given one, a dict (:meth:`from_dict`) or a YAML path."""
        return as_config(config, cls, cls.from_dict, "training config")

    def to_dict(self) -> dict[str, Any]:
        """Plain data only (lists instead of tuples), safe to store in a checkpoint or JSON."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


#: type and range of every TrainConfig key (checked by TrainConfig.validate)
_CONFIG_FIELDS: dict[str, Field] = {
    "data_source": Field("str"),  # one of meddiff_lab.data.sources.DATA_SOURCES (checked in validate)
    "data_root": Field("path", optional=True),
    "image_size": Field("int", low=8),
    "num_images": Field("int", low=1),
    "data_seed": Field("int", low=0),
    "model": Field("mapping"),
    "schedule": Field("choice", choices=("linear", "scaled_linear", "cosine", "sigmoid")),
    "num_train_timesteps": Field("int", low=2),
    "beta_start": Field("float", low=0.0, high=1.0, low_open=True, high_open=True),
    "beta_end": Field("float", low=0.0, high=1.0, low_open=True, high_open=True),
    "prediction_type": Field("choice", choices=PREDICTION_TYPES),
    "loss": Field("choice", choices=LOSS_TYPES),
    "ssim_weight": Field("float", low=0.0, high=1.0),
    "min_snr_gamma": Field("float", low=0.0, low_open=True, optional=True),
    "max_steps": Field("int", low=1),
    "batch_size": Field("int", low=1),
    "gradient_accumulation_steps": Field("int", low=1),
    "learning_rate": Field("float", low=0.0, high=1.0, low_open=True),
    "weight_decay": Field("float", low=0.0),
    "adam_betas": Field("floats", low=0.0, high=1.0, high_open=True, length=2),
    "warmup_steps": Field("int", low=0),
    "min_lr_ratio": Field("float", low=0.0, high=1.0),
    "max_grad_norm": Field("float", low=0.0, low_open=True, optional=True),
    "ema_decay": Field("float", low=0.0, high=1.0, high_open=True),
    "label_dropout": Field("float", low=0.0, high=1.0, high_open=True),
    "conditioning": Field("choice", choices=CONDITIONINGS),
    "base_model": Field("str", optional=True),
    "balance_classes": Field("bool"),
    "mixed_precision": Field("choice", choices=MIXED_PRECISION),
    "seed": Field("int", low=0),
    "threads": Field("int", low=1, optional=True),
    "log_every": Field("int", low=1),
    "sample_every": Field("int", low=0),
    "num_samples": Field("int", low=1),
    "sample_steps": Field("int", low=1),
    "checkpoint_every": Field("int", low=0),
}


# ------------------------------------------------------------------------------- building blocks
def build_model(config: TrainConfig) -> torch.nn.Module:
    """The U-Net described by ``config.model`` (:meth:`UNet.from_config`), checked against ``config.image_size``."""
    return UNet.from_config(config.model, image_size=config.image_size)


def build_zoo_or_plain_model(config: TrainConfig) -> torch.nn.Module:
    """``build_model(config)``, or for a zoo job (``config.conditioning``) its conditional model: a
    vector-conditioned U-Net, or a ControlNet on the frozen pretrained ``config.base_model``."""
    if config.conditioning == "none":
        return build_model(config)
    base = None
    if config.conditioning in ("mask", "edges"):
        base = load_model(config.base_model).model
        base.train()
    build_model(config)  # checks image_size against the levels
    return build_zoo_model(config.conditioning, config.model, base=base)


def build_schedule(config: TrainConfig) -> NoiseSchedule:
    """The noise schedule of a training run."""
    return NoiseSchedule.from_name(
        config.schedule,
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
    )


def build_scheduler(config: Mapping[str, Any] | TrainConfig, kind: str = "ddim"):
    """A DDIM (or DDPM) scheduler with the training run's schedule and prediction type
    (:func:`meddiff_lab.diffusion.schedulers.scheduler_from_config`)."""
    return scheduler_from_config(config, kind)


def resolve_mixed_precision(setting: str, device: torch.device) -> str:
    """The precision a run uses without measuring: ``"auto"`` → ``"fp16"`` on CUDA, ``"no"`` elsewhere.

    The :class:`Trainer` goes further for ``"auto"`` on a CPU with native bf16: it measures both and
    keeps the faster (:func:`meddiff_lab.training.precision.choose_precision`).
    """
    return choose_precision(setting, device).precision


class EMA:
    """Exponential moving average of a model's weights:
    :math:`\\theta_{ema} \\leftarrow d\\,\\theta_{ema} + (1-d)\\,\\theta`.

    The decay warms up as :math:`d_k = \\min(d, (1 + k) / (10 + k))` after ``k`` updates, so early
    averages are not dominated by the random initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.num_updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = self.current_decay()
        ema_state = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if target.dtype.is_floating_point:
                target.lerp_(value.detach().to(target.dtype), 1.0 - decay)
            else:
                target.copy_(value)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])


# ------------------------------------------------------------------------------------------ data
def load_training_images(config: TrainConfig, verbose: bool = True) -> torch.Tensor:
    """The training set as one tensor (N, 1, image_size, image_size) float32 in [-1, 1].

    ``"synthetic"`` with no ``data_root`` (or a folder that does not exist) generates phantoms in
    memory; otherwise ``meddiff_lab.data.load_dataset(source, root, "train", image_size)`` reads the
    files. No flips: a radiograph's heart is on the patient's left.
    """
    root = config.data_root
    if config.data_source == "synthetic" and (root is None or not Path(root).exists()):
        if verbose:
            where = "no data_root" if root is None else f"{root} does not exist"
            print(
                f"data: {where}; generating {config.num_images} synthetic phantoms of "
                f"{config.image_size} px in memory (seed {config.data_seed})",
                file=sys.stderr,
            )
        phantoms = generate_phantoms(config.num_images, config.image_size, config.data_seed, masks=())
        return to_model_batch(phantoms.images)
    if root is None:
        raise ValueError(f"data_source {config.data_source!r} needs data_root (a folder), got None")
    dataset = load_dataset(config.data_source, root, "train", config.image_size)
    count = min(len(dataset), config.num_images)
    if count == 0:
        raise ValueError(f"data_root {root} holds no training images for data_source {config.data_source!r}")
    if verbose:
        print(
            f"data: reading {count} of {len(dataset)} {config.data_source} training images from {root}", file=sys.stderr
        )
    images = torch.stack([torch.as_tensor(dataset[i]["image"], dtype=torch.float32) for i in range(count)])
    return images


def _check_training_values(images: torch.Tensor) -> None:
    """Training images must be finite and in [-1, 1] (give or take an augmentation's overshoot): refuse NaN/inf
    and 0-255 data up front."""
    if len(images) == 0:
        raise ValueError("the training set is empty: expected (N, 1, H, W) images with N >= 1")
    finite = torch.isfinite(images)
    if not bool(finite.all()):
        bad = int((~finite).flatten(1).any(1).sum())
        raise ValueError(f"{bad} of {len(images)} training images contain NaN or inf; check the data source")
    low, high = float(images.min()), float(images.max())
    if low < -1.1 or high > 1.1:  # room for an augmentation's overshoot, none for [0, 255] data
        raise ValueError(
            f"training images span [{low:.4g}, {high:.4g}]; expected float32 in [-1, 1] "
            f"(map [0, 1] images with x * 2 - 1, 0-255 images with x / 127.5 - 1)"
        )


# ---------------------------------------------------------------------------------- accelerator
class SingleProcess:
    """The few parts of ``accelerate.Accelerator`` the trainer uses, for one process without Accelerate."""

    process_index, num_processes, is_main_process = 0, 1, True

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else get_device()

    def prepare_model(self, model):
        return model

    def unwrap_model(self, model):
        return model

    def no_sync(self, model):
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def wait_for_everyone(self) -> None:
        pass


def make_accelerator():
    """``accelerate.Accelerator`` (one or many processes, CPU or GPUs) when installed, else :class:`SingleProcess`."""
    try:
        from accelerate import Accelerator
    except ImportError:
        return SingleProcess()
    return Accelerator(cpu=not torch.cuda.is_available())


# --------------------------------------------------------------------------------------- trainer
class Trainer:
    """Train a diffusion U-Net on radiographs.

    Args:
        config: a :class:`TrainConfig` (or a dict / YAML path for one).
        out_dir: where ``log.csv``, ``last.pt`` and ``samples/`` go (``None``: keep nothing on disk).
        images: the training set (N, 1, H, W) float32 in [-1, 1]; ``None`` loads it from the config.
        model: a model to train instead of the one ``config.model`` describes.
        on_log: called as ``on_log(row)`` with each ``log.csv`` row (a dict), e.g. for a live plot.
        on_sample: called as ``on_sample(step, images)`` with each sample grid's images.
        progress: show a tqdm bar.
        conditions: what each training image is conditioned on, one row per image, drawn with it:
            ``"class_labels"`` (N,) int, ``"cond"`` (N, D) float metadata, ``"mask"`` (N, M, H, W)
            float. They reach the model as keyword arguments of the same names. With probability
            ``config.label_dropout`` a label becomes the model's ``null_class`` and, independently, a
            metadata vector becomes all-zero ("unknown"), so one network also learns the
            unconditional model classifier-free guidance needs. ``config.balance_classes`` draws
            every class equally often.
        accelerator: an ``accelerate.Accelerator`` (default: made here) or :class:`SingleProcess`.

    Only parameters with ``requires_grad`` are optimised (a ControlNet's frozen base stays as it is).

    Attributes after :meth:`train`: ``history`` (list of log rows), ``step``, ``model`` (the raw
    model), ``ema`` (:class:`EMA`; ``ema.model`` is what to sample from), ``seconds``.
    """

    def __init__(
        self,
        config: TrainConfig | Mapping[str, Any] | str | Path,
        out_dir: str | Path | None = None,
        images: torch.Tensor | None = None,
        model: torch.nn.Module | None = None,
        on_log: Callable[[dict], None] | None = None,
        on_sample: Callable[[int, torch.Tensor], None] | None = None,
        progress: bool = True,
        accelerator=None,
        conditions: Mapping[str, torch.Tensor] | None = None,
    ):
        self._created = time.perf_counter()  # a time budget counts from here (data making included)
        config = TrainConfig.coerce(config)
        self.config: TrainConfig = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.on_log, self.on_sample, self.progress = on_log, on_sample, progress
        if config.threads is not None:
            torch.set_num_threads(int(config.threads))

        # Mixed precision is handled here (autocast + GradScaler), not by Accelerate, so that several
        # runs with different settings can share one Python process (a notebook, a test session).
        self.accelerator = accelerator or make_accelerator()
        self.device = self.accelerator.device
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions
        self.precision = resolve_mixed_precision(config.mixed_precision, self.device)
        self.precision_choice = PrecisionChoice(config.mixed_precision, self.precision, "not measured")

        torch.manual_seed(config.seed)  # same initial weights on every rank
        self.model = (model if model is not None else build_zoo_or_plain_model(config)).to(self.device)
        self.ema = EMA(self.model, config.ema_decay)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not self.trainable:
            raise ValueError("the model has no parameter with requires_grad=True: nothing to train")
        self.optimizer = torch.optim.AdamW(
            self.trainable, lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay
        )
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: warmup_cosine(s, self.config.warmup_steps, self.config.max_steps, self.config.min_lr_ratio),
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.wrapped_model = self.accelerator.prepare_model(self.model)

        self.schedule = build_schedule(config)

        if images is None and conditions is None and config.conditioning != "none":
            if self.is_main:
                print(
                    f"data: {config.num_images} phantoms of {config.image_size} px (seed {config.data_seed}) "
                    f"with their {config.conditioning} conditions",
                    file=sys.stderr,
                )
            images, conditions = zoo_training_set(
                config.conditioning, config.num_images, config.image_size, config.data_seed
            )
        self.images = images if images is not None else load_training_images(config, verbose=self.is_main)
        if self.images.dim() != 4 or self.images.shape[1] != 1:
            raise ValueError(f"training images must be (N, 1, H, W), got shape {tuple(self.images.shape)}")
        if self.images.shape[-1] != config.image_size or self.images.shape[-2] != config.image_size:
            raise ValueError(
                f"training images are {tuple(self.images.shape[-2:])} px but the config says "
                f"image_size={config.image_size}"
            )
        _check_training_values(self.images)
        self.data_generator = torch.Generator().manual_seed(config.seed * 1000 + self.rank)
        self.conditions = self._check_conditions(conditions or {})
        self.sampling_weights = None
        if config.balance_classes:
            if "class_labels" not in self.conditions:
                raise ValueError("balance_classes=True needs conditions={'class_labels': ...}")
            labels = self.conditions["class_labels"]
            self.sampling_weights = 1.0 / torch.bincount(labels)[labels].double()

        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0
        self._log_window = [0.0, 0]  # loss sum and step count since the last log row
        self._writer = None
        self._budget_fitted = False  # max_steps fitted to a time budget (train(time_budget_s=...))
        self._saved_budget_max_steps = None
        if config.mixed_precision == "auto" and self.device.type == "cpu":
            self.precision_choice = self._measure_precision()
            self.precision = self.precision_choice.precision

    def _measure_precision(self) -> PrecisionChoice:
        """``mixed_precision: auto`` on a CPU: time real forward/backward passes in float32 and bf16
        (alternating; no optimizer step, gradients cleared, random state untouched) and keep the faster."""
        batch = min(self.config.batch_size, len(self.images))
        x0 = self.images[:batch].to(self.device)
        conditions = {name: value[:batch].to(self.device) for name, value in self.conditions.items()}

        def step(precision: str) -> None:
            self.precision = precision
            self._micro_step_loss(x0, conditions).backward()
            self.optimizer.zero_grad(set_to_none=True)

        self.wrapped_model.train()
        with torch.random.fork_rng(devices=[]):
            choice = choose_precision("auto", self.device, step, images_per_step=batch)
        if self.is_main and self.progress:
            print(f"precision {choice.reason}", file=_progress_stream())
        return choice

    # ------------------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.accelerator.unwrap_model(self.wrapped_model).state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": capture_rng_state(self.data_generator),
            "step": self.step,
            "seconds": self.seconds,
            "config": self.config.to_dict(),
            "loss": self.history[-1]["loss"] if self.history else None,
            "world_size": self.world_size,
            "hardware": hardware_description(),
            "precision": self.precision_choice.to_dict(),
            "log_window": list(self._log_window),
            "budget_max_steps": self.config.max_steps if self._budget_fitted else None,
        }

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write a resumable checkpoint atomically (main process only; others wait)."""
        path = Path(path) if path is not None else self.checkpoint_path
        written = None
        if path is not None and self.is_main:
            written = save_checkpoint(path, self.state_dict())
        self.accelerator.wait_for_everyone()
        return written

    def load(self, path: str | Path) -> int:
        """Restore model, EMA, optimizer, LR schedule, RNG states and step from ``path``; returns the step."""
        state = load_checkpoint(path, map_location="cpu")
        check_resumable(state, path)
        try:
            saved = TrainConfig.from_dict(state["config"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint {path} holds an invalid training config: {exc}") from None
        for key in (
            "model",
            "schedule",
            "num_train_timesteps",
            "beta_start",
            "beta_end",
            "prediction_type",
            "image_size",
        ):
            if getattr(saved, key) != getattr(self.config, key):
                raise ValueError(
                    f"checkpoint {path} was trained with {key}={getattr(saved, key)!r} but the "
                    f"config asks for {getattr(self.config, key)!r}; use the same config to resume"
                )
        try:  # a checkpoint whose tensors do not fit this model, or a damaged state, is the file's fault
            self.accelerator.unwrap_model(self.wrapped_model).load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            restore_rng_state(state["rng"], self.data_generator)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            text = " ".join(str(exc).split())
            raise ValueError(
                f"checkpoint {path} does not fit this run and cannot be resumed: "
                f"{text[:300]}{'...' if len(text) > 300 else ''}"
            ) from None
        saved_precision = state.get("precision")
        if (
            self.config.mixed_precision == "auto"
            and isinstance(saved_precision, Mapping)
            and saved_precision.get("precision") in ("no", "bf16")
            and self.device.type == "cpu"
        ):
            # keep the arithmetic the run started with, so a resumed run continues the same computation
            self.precision_choice = PrecisionChoice(
                **{
                    k: saved_precision.get(k)
                    for k in ("setting", "precision", "reason", "fp32_images_per_sec", "bf16_images_per_sec")
                }
            )
            self.precision = self.precision_choice.precision
        self.step = int(state["step"])
        self.seconds = float(state.get("seconds", 0.0))
        self._saved_budget_max_steps = state.get("budget_max_steps")
        window = state.get("log_window")
        self._log_window = (
            [float(window[0]), int(window[1])] if isinstance(window, (list, tuple)) and len(window) == 2 else [0.0, 0]
        )
        self._truncate_log(self.step)
        return self.step

    def _truncate_log(self, step: int) -> None:
        """Drop log rows written after the checkpoint we resume from (a killed run may have logged them)."""
        if self.out_dir is None or not self.is_main:
            return
        log = self.out_dir / LOG_NAME
        if not log.is_file():
            return
        with open(log, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= step]
        with open(log, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.history = [{k: float(v) if k != "step" else int(v) for k, v in row.items()} for row in rows]

    def _check_conditions(self, conditions: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        known = {"class_labels": torch.long, "cond": torch.float32, "mask": torch.float32}
        checked = {}
        for name, value in conditions.items():
            if name not in known:
                raise ValueError(f"unknown condition {name!r}; expected some of {sorted(known)}")
            if value is None:
                continue
            tensor = torch.as_tensor(value, dtype=known[name])
            if tensor.ndim == 0 or tensor.shape[0] != len(self.images):
                raise ValueError(
                    f"{name} has {tensor.shape[0] if tensor.ndim else 0} rows but there are "
                    f"{len(self.images)} images; give one per image"
                )
            checked[name] = tensor
        if "class_labels" in checked and self.config.label_dropout > 0 and self.null_class is None:
            raise ValueError(
                "label_dropout > 0 needs a model with a null class (UNet(..., num_classes=K) has "
                "null_class = K); use label_dropout=0 for a model without one"
            )
        if "mask" in checked and self.config.sample_every:
            raise ValueError(
                "sample grids cannot be drawn without masks: set sample_every=0 when training "
                "on masks, and sample with meddiff_lab.models.BoundCondition"
            )
        return checked

    @property
    def null_class(self) -> int | None:
        """The model's "no label" class index (classifier-free guidance), or ``None``."""
        return getattr(self.model, "null_class", None)

    # -------------------------------------------------------------------------------- one step
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        if self.precision == "fp16":
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def _next_batch(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clean images (B, 1, H, W) and their conditions (keyword arguments for the model)."""
        batch, generator = self.config.batch_size, self.data_generator
        if self.sampling_weights is None:
            index = torch.randint(len(self.images), (batch,), generator=generator)
        else:
            index = torch.multinomial(self.sampling_weights, batch, replacement=True, generator=generator)
        kwargs = {name: value[index] for name, value in self.conditions.items()}
        dropout = self.config.label_dropout
        if "class_labels" in kwargs and dropout > 0:
            kwargs["class_labels"][torch.rand(batch, generator=generator) < dropout] = self.null_class
        if "cond" in kwargs and dropout > 0:
            kwargs["cond"][torch.rand(batch, generator=generator) < dropout] = 0.0
        kwargs = {name: value.to(self.device, non_blocking=True) for name, value in kwargs.items()}
        return self.images[index].to(self.device, non_blocking=True), kwargs

    def _micro_step_loss(self, x0: torch.Tensor, conditions: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        cfg = self.config
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.config.num_train_timesteps, (x0.shape[0],), device=self.device)
        x_t = add_noise(self.schedule, x0, noise, t)
        with self._autocast():
            output = self.wrapped_model(x_t, t, **(conditions or {}))
        return diffusion_loss(
            output,
            x0,
            noise,
            t,
            self.schedule,
            prediction_type=cfg.prediction_type,
            weighting="min_snr" if cfg.min_snr_gamma else None,
            snr_gamma=cfg.min_snr_gamma or 5.0,
            ssim_weight=cfg.ssim_weight if cfg.loss == "hybrid" else 0.0,
            x_t=x_t,
        )

    def _check_finite(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).float().reshape(1)
        if self.world_size > 1:
            finite = self.accelerator.reduce(finite, reduction="sum") / self.world_size
        if finite.item() < 1.0:
            where = (
                f"; the last good checkpoint is {self.checkpoint_path}"
                if self.checkpoint_path is not None and self.checkpoint_path.exists()
                else ""
            )
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {self.step + 1} (of {self.config.max_steps}); "
                f"stopped without saving anything{where}. Try a lower learning_rate, mixed_precision: no, "
                f"or check the data for NaN/inf."
            )

    def train_step(self) -> tuple[float, float]:
        """One optimizer step (with accumulation). Returns (mean loss, gradient norm before clipping)."""
        accum = self.config.gradient_accumulation_steps
        self.wrapped_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(accum):
            sync = micro == accum - 1
            context = contextlib.nullcontext() if sync else self.accelerator.no_sync(self.wrapped_model)
            with context:
                loss = self._micro_step_loss(*self._next_batch())
                self._check_finite(loss)
                scaled = loss / accum
                self.accelerator.backward(self.scaler.scale(scaled) if self.scaler is not None else scaled)
            total += loss.item()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, max_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        return total / accum, float(grad_norm)

    # ----------------------------------------------------------------------------- bookkeeping
    def _log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.on_log is not None:
            self.on_log(row)
        if self.out_dir is None or not self.is_main:
            return
        log = self.out_dir / LOG_NAME
        new = not log.exists()
        with open(log, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow({k: row[k] for k in LOG_COLUMNS})
        if self._writer is not None:
            for key in ("loss", "lr", "grad_norm", "images_per_sec"):
                self._writer.add_scalar(f"train/{key}", row[key], row["step"])

    def _open_tensorboard(self) -> None:
        if self.out_dir is None or not self.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional
            return
        self._writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def sample_grid(self, num_samples: int | None = None, steps: int | None = None, seed: int = 0) -> torch.Tensor:
        """DDIM samples from the EMA weights: (num_samples, 1, H, W) in [-1, 1]."""
        scheduler = build_scheduler(self.config)
        return generate_samples(
            self.ema.model,
            scheduler,
            num_samples or self.config.num_samples,
            self.config.image_size,
            steps or self.config.sample_steps,
            seed=seed,
        )

    def _write_samples(self) -> None:
        if not self.is_main:
            return
        images = self.sample_grid()
        if self.out_dir is not None:
            save_image_grid(images, self.out_dir / "samples" / f"step_{self.step:06d}.png")
        if self._writer is not None:
            self._writer.add_images("samples", (images + 1) / 2, self.step)
        if self.on_sample is not None:
            self.on_sample(self.step, images)

    # ----------------------------------------------------------------------------------- train
    def train(self, max_steps: int | None = None, resume: bool = False, time_budget_s: float | None = None) -> Trainer:
        """Run until ``max_steps`` optimizer steps in total (default: ``config.max_steps``).

        With ``resume=True`` and a checkpoint in ``out_dir``, continue from its step.
        ``time_budget_s``: stop about this many seconds after the Trainer was made (making the
        data included) instead: after
        ``BUDGET_PROBE_STEPS`` timed steps, ``max_steps`` is set to the step this machine reaches in
        the budget (never above the config's), so the learning-rate schedule still ends where the run
        ends. It is fitted again at the shares ``BUDGET_REFIT_AT`` of the budget to the speed since
        the last fit (a GPU shared with other jobs changes speed as they start and end). The value is
        written to ``config.yaml`` and to the checkpoint; resuming with a time budget again finishes
        that fitted schedule.
        Raises :class:`NonFiniteLossError` if the loss stops being finite.
        """
        cfg = self.config
        if max_steps is not None:
            self.config = cfg = cfg.replace(max_steps=int(max_steps))
        if time_budget_s is not None and not time_budget_s > 0:
            raise ValueError(f"time_budget_s must be a positive number of seconds, got {time_budget_s!r}")
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt = self.checkpoint_path
            if resume and ckpt.exists():
                self.load(ckpt)
                if self.is_main:
                    print(f"resumed from {ckpt} at step {self.step}", file=_progress_stream())
                if time_budget_s is not None and self._saved_budget_max_steps:
                    # the budget was fitted once: finish that schedule rather than start a new budget
                    self.config = cfg = cfg.replace(max_steps=int(self._saved_budget_max_steps))
                    self._budget_fitted = True
            elif resume and self.is_main:
                print(f"no checkpoint in {self.out_dir}; starting from step 0", file=_progress_stream())
            elif ckpt.exists():
                raise ValueError(
                    f"{self.out_dir} already holds a checkpoint ({ckpt}); pass --resume "
                    f"(resume=True) to continue it, or choose another output folder"
                )
            if self.is_main:
                (self.out_dir / "precision.json").write_text(
                    json.dumps(dict(self.precision_choice.to_dict(), hardware=hardware_description()), indent=2),
                    encoding="utf-8",
                )
            if self.is_main and self.step == 0:
                (self.out_dir / "config.yaml").write_text(_to_yaml(cfg.to_dict()), encoding="utf-8")
                log = self.out_dir / LOG_NAME
                if log.exists():
                    log.unlink()
        self._open_tensorboard()
        if self.step >= cfg.max_steps:
            if self.is_main:
                print(
                    f"already at step {self.step} >= max_steps {cfg.max_steps}; nothing to do", file=_progress_stream()
                )
            return self

        from tqdm.auto import tqdm

        images_per_step = cfg.batch_size * cfg.gradient_accumulation_steps * self.world_size
        interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc="training",
            unit="step",
            disable=not (self.progress and self.is_main),
            mininterval=0.5 if interactive else 30.0,
            dynamic_ncols=True,
        )
        # the loss window survives a resume (it is in the checkpoint), so every log row is the exact mean
        # of the steps since the previous row; the speed counts only steps timed in this process
        speed_steps, window_start = 0, time.perf_counter()
        run_start = probe_start = time.perf_counter()
        seconds_before, steps_here, refits = self.seconds, 0, []
        self._config_max_steps = cfg.max_steps
        try:
            while self.step < cfg.max_steps:
                loss, grad_norm = self.train_step()
                self._log_window[0] += loss
                self._log_window[1] += 1
                speed_steps += 1
                self.seconds = seconds_before + time.perf_counter() - run_start
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    elapsed = time.perf_counter() - window_start
                    row = {
                        "step": self.step,
                        "loss": self._log_window[0] / self._log_window[1],
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "grad_norm": grad_norm,
                        "images_per_sec": speed_steps * images_per_step / max(elapsed, 1e-9),
                        "elapsed_s": self.seconds,
                    }
                    self._log(row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_sec']:.1f}", refresh=False)
                    self._log_window = [0.0, 0]
                    speed_steps, window_start = 0, time.perf_counter()
                bar.update(1)
                steps_here += 1
                if steps_here == BUDGET_WARMUP_STEPS:  # first steps (allocation, autotuning) not timed
                    probe_start = time.perf_counter()
                if (
                    time_budget_s is not None
                    and not self._budget_fitted
                    and self.step < cfg.max_steps
                    and steps_here == BUDGET_WARMUP_STEPS + BUDGET_PROBE_STEPS
                ):
                    cfg = self._fit_steps_to_budget(time_budget_s, self._created, probe_start, BUDGET_PROBE_STEPS)
                    bar.total = cfg.max_steps
                    refits = [self._created + time_budget_s * share for share in BUDGET_REFIT_AT]
                    refit_from = (time.perf_counter(), steps_here)
                elif (
                    time_budget_s is not None
                    and refits
                    and time.perf_counter() >= refits[0]
                    and self.step < cfg.max_steps
                ):
                    # the speed can change (other jobs starting or ending on a shared GPU): fit again
                    refits.pop(0)
                    cfg = self._fit_steps_to_budget(
                        time_budget_s,
                        self._created,
                        refit_from[0],
                        steps_here - refit_from[1],
                        cap=self._config_max_steps,
                    )
                    bar.total = cfg.max_steps
                    refit_from = (time.perf_counter(), steps_here)
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.step < cfg.max_steps:
                    self._write_samples()
                    speed_steps, window_start = 0, time.perf_counter()
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.max_steps:
                    self.save()
                    speed_steps, window_start = 0, time.perf_counter()
        finally:
            bar.close()
        self.save()
        if cfg.sample_every:
            self._write_samples()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.is_main and self.progress:
            final = self.history[-1]["loss"] if self.history else float("nan")
            print(
                f"trained to step {self.step} in {self.seconds:.0f} s; final loss {final:.4f}"
                + (f"; checkpoint {self.checkpoint_path}" if self.checkpoint_path else ""),
                file=_progress_stream(),
            )
        return self

    def _fit_steps_to_budget(
        self, budget_s: float, budget_start: float, probe_start: float, probe_steps: int, cap: int | None = None
    ) -> TrainConfig:
        """Set ``max_steps`` to the step reached ``budget_s`` seconds after ``budget_start`` at the speed
        measured since ``probe_start`` (never above ``cap``, default the current ``max_steps``)."""
        now = time.perf_counter()
        steps_per_s = probe_steps / max(now - probe_start, 1e-9)
        reachable = self.step + int(max(budget_s - (now - budget_start), 0.0) * steps_per_s)
        cap = self.config.max_steps if cap is None else cap
        max_steps = max(self.step + 1, min(cap, reachable))
        self.config = self.config.replace(max_steps=max_steps)
        self._budget_fitted = True
        if self.is_main:
            print(
                f"time budget {budget_s:.0f} s at {steps_per_s:.2f} steps/s: max_steps set to {max_steps}",
                file=_progress_stream(),
            )
            if self.out_dir is not None:
                (self.out_dir / "config.yaml").write_text(_to_yaml(self.config.to_dict()), encoding="utf-8")
        return self.config


def _progress_stream():
    """Where progress messages go: stdout in a notebook (JupyterLab shows stderr as if an error), else stderr."""
    return sys.stdout if "ipykernel" in sys.modules else sys.stderr


def _to_yaml(data: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=False)


def train_from_config(
    config: TrainConfig | Mapping[str, Any] | str | Path,
    out_dir: str | Path | None,
    resume: bool = False,
    max_steps: int | None = None,
    checkpoint_every: int | None = None,
    threads: int | None = None,
    time_budget_s: float | None = None,
    **trainer_kwargs: Any,
) -> Trainer:
    """Build a :class:`Trainer` from a config (object, dict or YAML path) and train it; returns the trainer.

    ``max_steps`` is the total step count of the run, resumed or not; ``time_budget_s`` fits it to a
    wall-clock budget (:meth:`Trainer.train`).
    """
    config = TrainConfig.coerce(config)
    changes: dict[str, Any] = {}
    if max_steps is not None:
        changes["max_steps"] = int(max_steps)
    if checkpoint_every is not None:
        changes["checkpoint_every"] = int(checkpoint_every)
    if threads is not None:
        changes["threads"] = int(threads)
    if changes:
        config = config.replace(**changes)
        config.validate()
    trainer = Trainer(config, out_dir=out_dir, **trainer_kwargs)
    return trainer.train(resume=resume, time_budget_s=time_budget_s)
