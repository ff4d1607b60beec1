"""Shipped pretrained weights: safetensors files (no code inside) with a JSON config beside them.

``data/pretrained/NAME.safetensors`` holds the EMA weights of a U-Net; ``data/pretrained/NAME.json``
holds everything needed to use them and to know where they came from::

    {"name": ..., "description": ..., "image_size": 64,
     "model": {UNet keyword arguments}, "diffusion": {schedule, betas, prediction_type},
     "training": {command, config, steps, seconds, hardware, final_loss, images_per_sec, ...}}

Use::

    from meddiff_lab.models import PRETRAINED, load_pretrained
    pipe = load_pretrained("phantom64")        # .model (eval mode), .scheduler (DDIM), .config (dict)
    pipe.scheduler.set_timesteps(50)
    images = meddiff_lab.diffusion.sample(pipe.model, pipe.scheduler, (16, 1, 64, 64))

The folder is ``data/pretrained`` of the repository, or ``$MEDDIFF_PRETRAINED_DIR`` when set.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from meddiff_lab.checkpoint import atomic_write, load_checkpoint, nonfinite_tensors
from meddiff_lab.diffusion.sampling import generate_samples
from meddiff_lab.diffusion.schedulers import scheduler_from_config
from meddiff_lab.models.conditioning import build_zoo_model
from meddiff_lab.models.unet import UNet
from meddiff_lab.runtime import hardware_description

# name -> description. Each name has NAME.safetensors and NAME.json in the pretrained folder.
PRETRAINED: dict[str, str] = {
    "phantom64": "Unconditional 64 px synthetic chest radiograph (phantom) model, version 3: 2.75 M-parameter U-Net "
    "(channels 16-32-64-128, attention at 8 px), v-prediction, linear schedule, EMA weights, trained "
    "on one GPU (896,000 images). Sample it with DDIM (50 steps): see MODEL_CARD_phantom64.md.",
    "phantom64-v2": "phantom64 version 2: the same network trained on one CPU thread (128,000 images), replaced by "
    "version 3 and kept as the frozen base of the zoo's ControlNets: see MODEL_CARD_phantom64-v2.md.",
    "phantom64-v1": "The first phantom64 (phantom version 1, epsilon prediction with min-SNR-5, 27,200 training "
    "images), replaced by phantom64 and kept for comparison: see MODEL_CARD_phantom64-v1.md.",
    "phantom64-cond": "64 px model conditioned on the 14 findings and the patient (age, sex, view), condition "
    "dropout for classifier-free guidance (training.zoo.VectorGuidance); the phantom64 network "
    "plus an 18-d condition vector, trained on one GPU: see MODEL_CARD_phantom64-cond.md.",
    "phantom64-controlnet-mask": "ControlNet on a frozen phantom64-v2 (its weights are in the file), steered by "
    "lung/heart label maps (training.segmentation.masks_to_condition): see "
    "MODEL_CARD_phantom64-controlnet-mask.md.",
    "phantom64-controlnet-edge": "ControlNet on a frozen phantom64-v2 (its weights are in the file), steered by "
    "automatic Canny edge maps (data.edges; no labels needed): see "
    "MODEL_CARD_phantom64-controlnet-edge.md.",
    "phantom128-ldm": "Latent diffusion at 128 px: MONAI AutoencoderKL (128 px -> 4 x 32 x 32 latents, scale factor "
    "in the file) + the course's U-Net on the latents, v-prediction, EMA weights; .sample(n, steps, "
    "seed) decodes. Trained briefly on one CPU thread: see MODEL_CARD_phantom128-ldm.md.",
    "phantom128-ldm-rf": "Latent rectified flow at 128 px: phantom128-ldm's autoencoder + the course's U-Net trained "
    "with the flow-matching objective on one GPU (the rectified-flow arm of notebook 10's "
    "equal-compute comparison); Euler sampling: see MODEL_CARD_phantom128-ldm-rf.md.",
}

#: shipped models that are an autoencoder plus a latent network (loaded by models.autoencoder)
LATENT_PRETRAINED = ("phantom128-ldm", "phantom128-ldm-rf")


@dataclass
class PretrainedModel:
    """What :func:`load_pretrained` returns.

    Attributes:
        model: the U-Net in eval mode, on ``device``.
        scheduler: a ``DDIMScheduler`` with the training run's schedule and prediction type.
        config: the JSON config (a dict with at least ``image_size``, ``model``, ``diffusion``).
        name: the model's name (or the file it came from).
    """

    model: torch.nn.Module
    scheduler: Any
    config: dict
    name: str

    def sample(self, n: int = 16, steps: int = 50, seed: int = 0, progress: bool = False) -> torch.Tensor:
        """``n`` DDIM samples, (n, 1, H, W) float32 in [-1, 1]."""
        return generate_samples(
            self.model, self.scheduler, n, self.config["image_size"], steps, seed=seed, progress=progress
        )


def pretrained_dir() -> Path:
    """The folder holding shipped weights: ``$MEDDIFF_PRETRAINED_DIR`` or the repository's ``data/pretrained``."""
    env = os.environ.get("MEDDIFF_PRETRAINED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data" / "pretrained"


def pretrained_files(name: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """The (safetensors, json) paths of shipped model ``name``. Raises ValueError for an unknown name."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; available: {', '.join(sorted(PRETRAINED))}")
    folder = Path(root) if root is not None else pretrained_dir()
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def is_available(name: str, root: str | Path | None = None) -> bool:
    """True when the weights and config of ``name`` are present (a notebook can fall back otherwise)."""
    try:
        weights, config = pretrained_files(name, root)
    except ValueError:
        return False
    return weights.is_file() and config.is_file()


def _scheduler_from_config(config: dict):
    return scheduler_from_config(config["diffusion"])


def _require_finite(state_dict: dict, what: str) -> None:
    """Weights with NaN or inf make every image garbage: refuse them, naming the file."""
    bad = nonfinite_tensors(state_dict)
    if bad:
        raise ValueError(
            f"{what}: {len(bad)} weight tensor(s) hold NaN or inf (first: {bad[0]}); the run "
            f"diverged? use an earlier checkpoint"
        )


def _model_from_config(config: dict, state_dict: dict, device) -> torch.nn.Module:
    conditioning = config.get("conditioning", "none")
    if conditioning == "none":
        model = UNet.from_config(config["model"])
    else:  # a zoo model: the ControlNet's file holds its frozen base too, so nothing else is loaded
        model = build_zoo_model(conditioning, config["model"], base=UNet.from_config(config["model"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    model.load_state_dict(state)
    return model.to(device).eval()


def load_safetensors_model(
    weights: str | Path, config_path: str | Path | None = None, device=None, name: str | None = None
) -> PretrainedModel:
    """Load ``weights`` (.safetensors) with the JSON config beside it (or ``config_path``)."""
    from safetensors.torch import load_file

    weights = Path(weights)
    config_path = Path(config_path) if config_path is not None else weights.with_suffix(".json")
    for path, what in ((weights, "weights"), (config_path, "config")):
        if not path.is_file():
            raise FileNotFoundError(f"pretrained {what} {path} not found")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("image_size", "model", "diffusion"):
        if key not in config:
            raise ValueError(f"pretrained config {config_path} lacks {key!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    state = load_file(str(weights))
    _require_finite(state, f"pretrained weights {weights}")
    model = _model_from_config(config, state, device)
    return PretrainedModel(
        model=model, scheduler=_scheduler_from_config(config), config=config, name=name or weights.stem
    )


def load_pretrained(name: str, device=None, root: str | Path | None = None) -> PretrainedModel:
    """Load a shipped model by name (see ``PRETRAINED``).

    Returns:
        A :class:`PretrainedModel` with ``.model`` (eval mode), ``.scheduler`` (DDIMScheduler set up
        as in training) and ``.config`` (dict with at least ``image_size``).

    Raises:
        ValueError: ``name`` is not in ``PRETRAINED``.
        FileNotFoundError: the weights are not in the pretrained folder (the message says how to make them).
    """
    weights, config = pretrained_files(name, root)
    if name in LATENT_PRETRAINED and not (weights.is_file() and config.is_file()):
        raise FileNotFoundError(
            f"the weights of pretrained model {name!r} are not in {weights.parent} (expected {weights.name} and "
            f"{config.name}). Train and export them with `python -m meddiff_lab.training.latent --config "
            f"configs/{name.replace('-', '_')}.yaml --out runs/{name} --export {weights}`."
        )
    if not weights.is_file() or not config.is_file():
        raise FileNotFoundError(
            f"the weights of pretrained model {name!r} are not in {weights.parent} (expected {weights.name} and "
            f"{config.name}). Train them with "
            f"`meddiff-lab train --config configs/pretrained_{name.replace('-', '_')}.yaml --out "
            f"runs/{name}` and export with `meddiff-lab export --checkpoint runs/{name}/last.pt --out {weights}`."
        )
    if name in LATENT_PRETRAINED:
        from meddiff_lab.models.autoencoder import load_latent_diffusion

        return load_latent_diffusion(weights, config, device=device, name=name)
    return load_safetensors_model(weights, config, device=device, name=name)


def load_model(spec: str | Path, device=None) -> PretrainedModel:
    """A shipped name, a training checkpoint (``.pt``; its EMA weights) or a ``.safetensors`` file."""
    spec_str = str(spec)
    if spec_str in PRETRAINED:
        return load_pretrained(spec_str, device=device)
    path = Path(spec_str)
    if path.suffix == ".safetensors":
        return load_safetensors_model(path, device=device)
    if path.suffix in (".pt", ".pth") or path.is_file():
        state = load_checkpoint(path)
        config = _config_from_training(state["config"])
        weights = state["ema"]["model"] if "ema" in state else state["model"]
        _require_finite(weights, f"checkpoint {path}")
        device = torch.device(device) if device is not None else torch.device("cpu")
        return PretrainedModel(
            model=_model_from_config(config, weights, device),
            scheduler=_scheduler_from_config(config),
            config=config,
            name=path.name,
        )
    raise ValueError(
        f"--model {spec_str!r} is neither a shipped model ({', '.join(sorted(PRETRAINED))}) nor an "
        f"existing .pt checkpoint or .safetensors file"
    )


def _config_from_training(train_config: dict) -> dict:
    return {
        "image_size": int(train_config["image_size"]),
        "model": dict(train_config["model"]),
        "diffusion": {
            key: train_config[key]
            for key in ("schedule", "num_train_timesteps", "beta_start", "beta_end", "prediction_type")
        },
        "data": {key: train_config[key] for key in ("data_source", "num_images", "data_seed")},
        "conditioning": train_config.get("conditioning", "none"),
        "base_model": train_config.get("base_model"),
    }


def _read_log(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    command: str | None = None,
    half: bool = False,
    name: str | None = None,
    description: str | None = None,
) -> Path:
    """Write a training checkpoint's EMA weights as ``out`` (.safetensors) and its config as JSON beside it.

    The JSON records the model, schedule, prediction type, image size and the training facts: the
    command, steps, wall time, hardware, final loss (mean of the last 10 log rows) and images/s
    (read from ``log.csv`` beside the checkpoint when present).
    """
    from safetensors.torch import save_file

    checkpoint = Path(checkpoint)
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"export destination {out} must end in .safetensors")
    state = load_checkpoint(checkpoint)
    weights = state["ema"]["model"] if "ema" in state else state["model"]
    _require_finite(weights, f"checkpoint {checkpoint}")
    dtype = torch.float16 if half else torch.float32
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().clone() for k, v in weights.items()}
    log = _read_log(checkpoint.parent / "log.csv")
    tail = log[-10:]
    config = _config_from_training(state["config"])
    config.update(
        {
            "name": name or out.stem,
            "description": description or PRETRAINED.get(name or out.stem, ""),
            "weights": "EMA" if "ema" in state else "raw",
            "dtype": str(dtype).replace("torch.", ""),
            "parameters": int(sum(v.numel() for v in weights.values() if v.is_floating_point())),
            "training": {
                "command": command,
                "config": state["config"],
                "steps": int(state["step"]),
                "seconds": round(float(state.get("seconds", 0.0)), 1),
                "hardware": state.get("hardware") or hardware_description(state["config"].get("threads")),
                "final_loss": round(sum(r["loss"] for r in tail) / len(tail), 5) if tail else state.get("loss"),
                "images_per_sec": round(sum(r["images_per_sec"] for r in log) / len(log), 2) if log else None,
                "images_seen": int(state["step"])
                * int(state["config"]["batch_size"])
                * int(state["config"]["gradient_accumulation_steps"])
                * int(state.get("world_size", 1)),
            },
        }
    )
    atomic_write(out, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", "name": config["name"]}))
    json_path = out.with_suffix(".json")
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8"))
    return out
