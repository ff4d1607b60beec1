r"""Training a denoiser on any tensors (latents or pixels) with one of three objectives, and the
two-stage latent diffusion run that makes the shipped ``phantom128-ldm``.

:func:`train_denoiser` is deliberately one short loop for every arm of notebook 10's comparison, so
that "equal training compute" means the same code, the same batch, the same optimizer and the same
wall-clock budget; only the data (pixels or latents) and the objective differ:

* ``epsilon``: input :math:`x_t=\sqrt{\bar\alpha_t}x_0+\sqrt{1-\bar\alpha_t}\varepsilon`, target :math:`\varepsilon`
* ``v_prediction``: the same input, target :math:`\sqrt{\bar\alpha_t}\varepsilon-\sqrt{1-\bar\alpha_t}x_0`
* ``rectified_flow``: input :math:`x_s=(1-s)x_0+s\varepsilon`, target :math:`\varepsilon-x_0`

(The 64 px pixel models of notebooks 05-08 use :class:`~meddiff_lab.training.trainer.Trainer`, which
adds logging files, sample grids, Accelerate and mixed precision; this loop keeps only EMA and
gradient clipping.)

The shipped model is trained from a YAML config, resumable, in two stages::

    python -m meddiff_lab.training.latent --config configs/phantom128_ldm.yaml --out runs/phantom128-ldm [--resume]

Stage 1 trains the KL autoencoder (``autoencoder.pt``), then fits the latent scale factor; stage 2
encodes the training set once and trains the latent U-Net (``latent.pt``). ``--export`` writes
``data/pretrained/phantom128-ldm.{safetensors,json}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from meddiff_lab.checkpoint import load_checkpoint, save_checkpoint
from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.data.phantom import generate_phantoms
from meddiff_lab.diffusion.flow import flow_matching_loss
from meddiff_lab.diffusion.losses import diffusion_loss
from meddiff_lab.diffusion.process import add_noise
from meddiff_lab.diffusion.schedules import NoiseSchedule
from meddiff_lab.models.autoencoder import LatentAutoencoder, encode_dataset, train_autoencoder
from meddiff_lab.models.unet import UNet, unet_kwargs
from meddiff_lab.runtime import get_device, hardware_description
from meddiff_lab.training.schema import read_yaml_mapping

OBJECTIVES = ("epsilon", "v_prediction", "rectified_flow")


@dataclass
class DenoiserRun:
    """What :func:`train_denoiser` returns.

    Attributes:
        model: the trained network (train weights); ema_model: its EMA copy (sample from this one).
        history: rows of ``step``, ``loss``, ``images_per_sec``; seconds: wall time of the loop.
        steps: optimizer steps done; images: training images (or latents) seen.
    """

    model: torch.nn.Module
    ema_model: torch.nn.Module
    objective: str
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    images: int = 0
    optimizer: Any = None
    ema_updates: int = 0

    @property
    def images_per_sec(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def objective_loss(
    model: torch.nn.Module,
    x0: torch.Tensor,
    objective: str,
    schedule=None,
    generator: torch.Generator | None = None,
    num_train_timesteps: int = 1000,
) -> torch.Tensor:
    """One batch's loss for ``objective`` (see the module table); ``schedule`` is a NoiseSchedule for ε/v."""
    if objective == "rectified_flow":
        return flow_matching_loss(model, x0, num_train_timesteps=num_train_timesteps, generator=generator)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {OBJECTIVES}")
    if schedule is None:
        raise ValueError(f"objective {objective!r} needs a noise schedule")
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    t = torch.randint(0, schedule.num_train_timesteps, (x0.shape[0],), generator=generator).to(x0.device)
    x_t = add_noise(schedule, x0, noise, t)
    return diffusion_loss(model(x_t, t), x0, noise, t, schedule, prediction_type=objective)


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for target, source in zip(ema.state_dict().values(), model.state_dict().values()):
            if target.dtype.is_floating_point:
                target.lerp_(source.detach(), 1.0 - decay)
            else:
                target.copy_(source)


def train_denoiser(
    model: torch.nn.Module,
    data: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    objective: str = "epsilon",
    steps: int = 1000,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    ema_decay: float = 0.999,
    warmup_steps: int = 20,
    schedule=None,
    num_train_timesteps: int = 1000,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: bool = True,
    log_every: int = 10,
    resume: DenoiserRun | None = None,
    num_items: int | None = None,
    mixed_precision: str = "no",
) -> DenoiserRun:
    """Train ``model`` to denoise ``data`` with ``objective`` for ``steps`` steps or ``max_seconds``.

    Args:
        model: called as ``model(x, t)``; returns a tensor shaped like ``x``.
        data: (N, C, ...) float32 training samples, or a function ``index -> batch`` (e.g. drawing
            latents ``mu + sigma * randn`` afresh); then pass ``num_items``.
        objective: ``"epsilon"``, ``"v_prediction"`` (need ``schedule``, a ``NoiseSchedule``; default
            linear 1e-4..0.02) or ``"rectified_flow"``.
        max_seconds: stop at this wall time even before ``steps`` (equal-compute comparisons).
        resume: a previous run of the same model to continue (its step count, optimizer and EMA).
        mixed_precision: ``"no"`` (float32) or ``"bf16"`` (the loss under bf16 autocast; weights, optimizer
            and EMA stay float32): faster on CPUs with AMX/AVX512-BF16, see ``training.precision``.

    Returns:
        A :class:`DenoiserRun`; sample from ``run.ema_model`` (eval mode).
    """
    from tqdm.auto import tqdm

    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {OBJECTIVES}")
    if mixed_precision not in ("no", "bf16"):
        raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {mixed_precision!r}")
    if objective != "rectified_flow" and schedule is None:
        schedule = NoiseSchedule.from_name("linear", num_train_timesteps=num_train_timesteps)
    if callable(data) and not isinstance(data, torch.Tensor):
        if num_items is None:
            raise ValueError("data given as a function needs num_items (how many items it indexes)")
        draw = data
    else:
        num_items = len(data)
        draw = lambda index: data[index]  # noqa: E731
    if resume is not None:
        run = resume
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
        run = DenoiserRun(
            model=model,
            ema_model=copy.deepcopy(model).eval().requires_grad_(False),
            objective=objective,
            optimizer=optimizer,
        )
    lr_lambda = lambda s: min(1.0, (s + 1) / max(1, warmup_steps))  # noqa: E731
    generator = torch.Generator().manual_seed(seed * 7919 + run.steps)
    start_step, started = run.steps, time.perf_counter()
    seconds_before = run.seconds
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    device = next(model.parameters()).device  # batches are drawn on the CPU and moved to the model
    model.train()
    bar = tqdm(
        total=steps,
        initial=start_step,
        desc=f"training ({objective})",
        unit="step",
        disable=not progress,
        mininterval=1.0,
    )
    while run.steps < steps:
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate * lr_lambda(run.steps)
        x0 = draw(torch.randint(num_items, (batch_size,), generator=generator)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision == "bf16"):
            loss = objective_loss(model, x0, objective, schedule, generator, num_train_timesteps)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {float(loss)} at step {run.steps + 1}; lower learning_rate")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        run.optimizer.step()
        decay = min(ema_decay, (1 + run.ema_updates) / (10 + run.ema_updates))
        _ema_update(run.ema_model, model, decay)
        run.ema_updates += 1
        run.steps += 1
        run.images += batch_size
        window_loss += float(loss.detach())
        window_steps += 1
        bar.update(1)
        run.seconds = seconds_before + time.perf_counter() - started
        out_of_time = max_seconds is not None and time.perf_counter() - started >= max_seconds
        if run.steps % log_every == 0 or run.steps == steps or out_of_time:
            elapsed = time.perf_counter() - window_start
            run.history.append(
                {
                    "step": run.steps,
                    "loss": window_loss / window_steps,
                    "images_per_sec": window_steps * batch_size / max(elapsed, 1e-9),
                }
            )
            bar.set_postfix(loss=f"{run.history[-1]['loss']:.4f}", refresh=False)
            window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        if out_of_time:
            break
    bar.close()
    model.eval()
    if progress and run.history:
        print(
            f"{objective}: {run.steps - start_step} steps in {run.seconds - seconds_before:.0f} s "
            f"({run.images_per_sec:.1f} images/s), last loss {run.history[-1]['loss']:.4f}"
        )
    return run


def training_memory_mb(model: torch.nn.Module, example: torch.Tensor, objective: str = "epsilon") -> dict[str, float]:
    """Memory one training step needs, counted exactly rather than read from the process:

    ``activations`` (every tensor autograd saves for the backward pass of one batch like ``example``),
    ``weights`` + ``gradients`` + ``adam`` (two moments) + ``ema`` (a copy of the weights), and ``total``, in MB.
    (The process's peak RSS also holds Python, the libraries and the data, and never goes down, so it
    cannot compare two arms run in one notebook.)
    """
    saved = {}

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    schedule = NoiseSchedule.from_name("linear") if objective != "rectified_flow" else None
    was_training = model.training
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = objective_loss(model, example, objective, schedule, torch.Generator().manual_seed(0))
    loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    parts = {
        "activations": sum(saved.values()),
        "weights": weights,
        "gradients": weights,
        "adam": 2 * weights,
        "ema": weights,
    }
    parts = {k: v / 2**20 for k, v in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


# ------------------------------------------------------------------------ the shipped two-stage run
def load_latent_config(path: str | Path) -> dict:
    """The latent diffusion config a YAML file holds (sections ``data``, ``autoencoder``, ``latent``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: not YAML, not a mapping, or a section missing.
    """
    data = read_yaml_mapping(path, "latent diffusion config")
    for section in ("data", "autoencoder", "latent"):
        if section not in data:
            raise ValueError(f"latent diffusion config {path} lacks the {section!r} section")
    return data


def build_latent_unet(latent_config: dict, latent_channels: int) -> torch.nn.Module:
    """The course's UNet on latents: in/out channels = the autoencoder's latent channels."""
    kwargs = unet_kwargs(latent_config["model"])
    return UNet(spatial_dims=2, in_channels=latent_channels, out_channels=latent_channels, **kwargs)


def train_latent_diffusion_from_config(
    config_path: str | Path, out_dir: str | Path, resume: bool = False, stage: str = "all", progress: bool = True
) -> Path:
    """Run (or resume) the two stages the config describes; checkpoints in ``out_dir``. Returns ``out_dir``."""
    config = load_latent_config(config_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(config.get("threads", 1)))
    device = get_device()  # $MEDDIFF_DEVICE, else cuda when present, else the CPU
    data_cfg, ae_cfg, lat_cfg = config["data"], config["autoencoder"], config["latent"]
    started = time.perf_counter()
    phantoms = generate_phantoms(
        int(data_cfg["num_images"]), int(data_cfg["image_size"]), int(data_cfg["data_seed"]), masks=()
    )
    images = to_model_batch(phantoms.images)
    print(
        f"data: {len(images)} phantoms of {data_cfg['image_size']} px (seed {data_cfg['data_seed']}) in "
        f"{time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )

    # stage 1: the autoencoder, in chunks of checkpoint_every steps
    torch.manual_seed(int(config.get("seed", 0)))
    autoencoder = LatentAutoencoder(image_size=int(data_cfg["image_size"]), **ae_cfg["model"]).to(device)
    optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=float(ae_cfg["learning_rate"]), weight_decay=0.0)
    ae_path, step, seconds, history = out / "autoencoder.pt", 0, 0.0, []
    if resume and ae_path.exists():
        state = load_checkpoint(ae_path, map_location=device)
        autoencoder.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, seconds, history = int(state["step"]), float(state["seconds"]), list(state["history"])
        print(f"autoencoder: resumed at step {step}", file=sys.stderr)
    total, every = int(ae_cfg["steps"]), int(ae_cfg.get("checkpoint_every", 100))
    budget = float(ae_cfg.get("max_seconds", float("inf")))  # training seconds in all, across resumes
    while step < total and seconds < budget and stage in ("all", "autoencoder"):
        run = train_autoencoder(
            autoencoder,
            images,
            min(total, step + every),
            int(ae_cfg["batch_size"]),
            float(ae_cfg["learning_rate"]),
            float(ae_cfg["kl_weight"]),
            seed=int(config.get("seed", 0)),
            progress=progress,
            start_step=step,
            optimizer=optimizer,
            log_every=10,
            max_seconds=budget - seconds,
        )
        step, seconds, history = run.steps, seconds + run.seconds, history + run.history
        save_checkpoint(
            ae_path,
            {
                "model": autoencoder.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "seconds": seconds,
                "history": history,
                "config": config,
            },
        )
    if stage == "autoencoder":
        return out
    scale = autoencoder.fit_scale_factor(images[:512])
    print(f"autoencoder: {step} steps, {seconds:.0f} s; latent scale factor {scale:.4f}", file=sys.stderr)

    # stage 2: the latent U-Net on (mu, sigma) of every training image
    mu, sigma = encode_dataset(autoencoder, images, progress=progress)
    draw = lambda index: mu[index] + sigma[index] * torch.randn(mu[index].shape)  # noqa: E731
    torch.manual_seed(int(config.get("seed", 0)))
    unet = build_latent_unet(lat_cfg, autoencoder.config["latent_channels"]).to(device)
    lat_path, run = out / "latent.pt", None
    diffusion = lat_cfg["diffusion"]
    schedule = NoiseSchedule.from_name(
        diffusion["schedule"],
        num_train_timesteps=int(diffusion["num_train_timesteps"]),
        beta_start=float(diffusion["beta_start"]),
        beta_end=float(diffusion["beta_end"]),
    )
    objective = diffusion["prediction_type"]
    if resume and lat_path.exists():
        state = load_checkpoint(lat_path, map_location=device)
        unet.load_state_dict(state["model"])
        ema = copy.deepcopy(unet)
        ema.load_state_dict(state["ema"])
        optimizer = torch.optim.AdamW(unet.parameters(), lr=float(lat_cfg["learning_rate"]), weight_decay=0.0)
        optimizer.load_state_dict(state["optimizer"])
        run = DenoiserRun(
            model=unet,
            ema_model=ema.eval().requires_grad_(False),
            objective=objective,
            history=list(state["history"]),
            seconds=float(state["seconds"]),
            steps=int(state["step"]),
            images=int(state["images"]),
            optimizer=optimizer,
            ema_updates=int(state["ema_updates"]),
        )
        print(f"latent: resumed at step {run.steps}", file=sys.stderr)
    total, every = int(lat_cfg["steps"]), int(lat_cfg.get("checkpoint_every", 200))
    budget = float(lat_cfg.get("max_seconds", float("inf")))  # training seconds in all, across resumes
    while run is None or (run.steps < total and run.seconds < budget):
        target = min(total, (run.steps if run else 0) + every)
        run = train_denoiser(
            unet,
            draw,
            objective,
            target,
            int(lat_cfg["batch_size"]),
            float(lat_cfg["learning_rate"]),
            float(lat_cfg["ema_decay"]),
            int(lat_cfg.get("warmup_steps", 50)),
            schedule=schedule,
            seed=int(config.get("seed", 0)),
            progress=progress,
            resume=run,
            num_items=len(mu),
            max_seconds=budget - (run.seconds if run else 0.0),
        )
        save_checkpoint(
            lat_path,
            {
                "model": unet.state_dict(),
                "ema": run.ema_model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "step": run.steps,
                "seconds": run.seconds,
                "images": run.images,
                "ema_updates": run.ema_updates,
                "history": run.history,
                "config": config,
                "scale_factor": scale,
            },
        )
    return out


def load_trained_autoencoder(path: str | Path, fit_images: int = 512):
    """The stage-1 autoencoder of a config run (``<out>/autoencoder.pt``), with its latent scale factor
    fitted as stage 2 fits it (1 / std of the sampled latents of the first ``fit_images`` training phantoms)."""
    state = load_checkpoint(path)
    config = state["config"]
    size = int(config["data"]["image_size"])
    autoencoder = LatentAutoencoder(image_size=size, **config["autoencoder"]["model"])
    autoencoder.load_state_dict(state["model"])
    count = min(int(fit_images), int(config["data"]["num_images"]))
    images = to_model_batch(generate_phantoms(count, size, int(config["data"]["data_seed"]), masks=()).images)
    autoencoder.fit_scale_factor(images)
    return autoencoder.eval()


def export_latent_diffusion(
    out_dir: str | Path,
    destination: str | Path,
    config_path: str | Path,
    command: str | None = None,
    name: str = "phantom128-ldm",
) -> Path:
    """Write the autoencoder and the latent U-Net's EMA weights into one .safetensors (keys prefixed
    ``autoencoder.`` and ``unet.``) and the JSON config beside it."""
    from safetensors.torch import save_file

    config = load_latent_config(config_path)
    out = Path(out_dir)
    ae_state, lat_state = load_checkpoint(out / "autoencoder.pt"), load_checkpoint(out / "latent.pt")
    autoencoder = LatentAutoencoder(image_size=int(config["data"]["image_size"]), **config["autoencoder"]["model"])
    autoencoder.load_state_dict(ae_state["model"])
    autoencoder.scale_factor.fill_(float(lat_state["scale_factor"]))
    tensors = {f"autoencoder.{k}": v.float().contiguous() for k, v in autoencoder.state_dict().items()}
    tensors.update({f"unet.{k}": v.float().contiguous() for k, v in lat_state["ema"].items()})
    unet_config = dict(config["latent"]["model"])
    latent_channels = autoencoder.config["latent_channels"]
    unet_config.update(spatial_dims=2, in_channels=latent_channels, out_channels=latent_channels)
    card = {
        "name": name,
        "image_size": int(config["data"]["image_size"]),
        "kind": "latent_diffusion",
        "autoencoder": autoencoder.config,
        "scale_factor": float(lat_state["scale_factor"]),
        "latent_shape": list(autoencoder.latent_shape),
        "model": unet_config,
        "diffusion": dict(config["latent"]["diffusion"]),
        "data": {
            "data_source": "synthetic",
            "num_images": int(config["data"]["num_images"]),
            "data_seed": int(config["data"]["data_seed"]),
        },
        "weights": "autoencoder: trained weights; unet: EMA",
        "parameters": {
            "autoencoder": int(sum(v.numel() for k, v in tensors.items() if k.startswith("autoencoder."))),
            "unet": int(sum(v.numel() for k, v in tensors.items() if k.startswith("unet."))),
        },
        "training": {
            "command": command,
            "config": config,
            "autoencoder": {
                "steps": int(ae_state["step"]),
                "seconds": round(float(ae_state["seconds"]), 1),
                "images_seen": int(ae_state["step"]) * int(config["autoencoder"]["batch_size"]),
                "final_loss": ae_state["history"][-1]["loss"] if ae_state["history"] else None,
            },
            "latent": {
                "steps": int(lat_state["step"]),
                "seconds": round(float(lat_state["seconds"]), 1),
                "images_seen": int(lat_state["images"]),
                "final_loss": lat_state["history"][-1]["loss"] if lat_state["history"] else None,
            },
            "hardware": hardware_description(int(config.get("threads", 1))),
        },
    }
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(destination), metadata={"format": "pt", "name": name})
    destination.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return destination


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meddiff_lab.training.latent",
        description="Train (or resume) the two-stage latent diffusion model of a config.",
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True, help="folder for autoencoder.pt and latent.pt")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stage", choices=("all", "autoencoder"), default="all")
    parser.add_argument("--export", help="after training, write this .safetensors (and .json beside it)")
    args = parser.parse_args(argv)
    train_latent_diffusion_from_config(args.config, args.out, resume=args.resume, stage=args.stage)
    if args.export:
        command = (
            f"python -m meddiff_lab.training.latent --config {args.config} --out {args.out} --export {args.export}"
        )
        print(f"exported {export_latent_diffusion(args.out, args.export, args.config, command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
