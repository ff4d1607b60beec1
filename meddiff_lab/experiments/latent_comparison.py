r"""Pixel vs latent, ε / v vs rectified flow, at equal training compute: the harness behind notebook 10's table.

Four arms share one training loop (:func:`~meddiff_lab.training.latent.train_denoiser`), one optimizer
and one training-compute budget; only the data (pixels or an autoencoder's latents) and the objective
differ:

=========================  =========================  ====================================================
arm                        data                       objective, sampler
=========================  =========================  ====================================================
latent ε                   latents (4 × h × w)        ε-prediction, DDIM
latent v                   latents                    v-prediction, DDIM
latent rectified flow      latents                    rectified flow (flow matching), Euler
pixel ε                    pixels (1 × 128 × 128)     ε-prediction, DDIM
=========================  =========================  ====================================================

**Equal training compute** is counted in floating-point operations, not seconds, so that it does not
depend on the machine or on what else runs on it: PyTorch's ``FlopCounterMode`` counts one training
step (forward and backward) of each arm, and each arm gets ``ceil(budget / FLOPs per step)`` steps.
Seconds and images per second are reported too (on a shared machine they vary; FLOPs do not). The
latent arms' one-time cost of encoding the training set is reported beside the budget (it is not in
it: the autoencoder is shared by every latent model and trained once).

Quality is measured on ``N`` samples per arm against ``N`` unseen phantoms with the course's domain
features (FID, KID, precision, recall), beside the **floor** (``N`` other unseen phantoms against the
same ``N``), at every step count of ``step_sweep``; **steps to a fixed KID** is the fewest swept steps
at which an arm's KID is at most ``target_kid`` (the KID of the latent v arm, the shipped recipe, at
``reference_steps`` steps), ``None`` when no swept count reaches it.

With an output folder the comparison **resumes by arm**: each measured arm is written at once to
``out/arms/<arm>.json`` (atomically, beside its EMA weights), and rerunning the same command reads
finished arms back instead of training them again. ``arms=`` (``--arms``) runs only some arms, so a
short GPU call can do part of the table and the next call the rest; arms not run yet are listed in
``missing``, and ``profile.json`` keeps one folder to one profile.

Example:
    >>> results = run_latent_comparison(get_latent_comparison_profile("ci"), autoencoder)
    >>> write_latent_comparison_results(results, "runs/latent-comparison-ci")   # results.json, results.md
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from meddiff_lab.checkpoint import atomic_write
from meddiff_lab.experiments._results import claim_folder, write_results

__all__ = [
    "LatentComparisonProfile",
    "LATENT_COMPARISON_PROFILES",
    "LATENT_ARMS",
    "get_latent_comparison_profile",
    "training_flops_per_step",
    "run_latent_comparison",
    "training_throughput",
    "arm_file",
    "latent_comparison_markdown",
    "write_latent_comparison_results",
    "export_arm",
    "solver_comparison",
]

#: arm -> (objective, space)
LATENT_ARMS: dict[str, tuple[str, str]] = {
    "latent ε": ("epsilon", "latent"),
    "latent v": ("v_prediction", "latent"),
    "latent rectified flow": ("rectified_flow", "latent"),
    "pixel ε": ("epsilon", "pixel"),
}
LINEAR = {"schedule": "linear", "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}


@dataclass(frozen=True)
class LatentComparisonProfile:
    """Every size of one comparison.

    Attributes:
        budget_gflops: training compute of *every* arm, in GFLOPs (forward + backward, counted).
        latent_channels / pixel_channels: the course's ``UNet`` levels in latent and in pixel space
            (attention at the lowest level of each).
        step_sweep: sampling steps tried for every arm; reference_steps: the step count of the table.
    """

    name: str
    image_size: int
    train_images: int
    eval_images: int
    budget_gflops: float
    latent_batch: int
    pixel_batch: int
    latent_channels: tuple[int, ...]
    pixel_channels: tuple[int, ...]
    step_sweep: tuple[int, ...]
    reference_steps: int
    learning_rate: float = 1e-3
    ema_decay: float = 0.999
    warmup_steps: int = 100

    def __post_init__(self) -> None:
        if self.reference_steps not in self.step_sweep:
            raise ValueError(
                f"profile {self.name!r}: reference_steps {self.reference_steps} must be one of "
                f"step_sweep {self.step_sweep}"
            )
        for field_name in ("train_images", "eval_images", "latent_batch", "pixel_batch"):
            if getattr(self, field_name) < 2:
                raise ValueError(f"profile {self.name!r}: {field_name} must be >= 2, got {getattr(self, field_name)}")
        if not self.budget_gflops > 0:
            raise ValueError(f"profile {self.name!r}: budget_gflops must be positive, got {self.budget_gflops}")


LATENT_COMPARISON_PROFILES: dict[str, LatentComparisonProfile] = {
    "ci": LatentComparisonProfile(
        name="ci",
        image_size=32,
        train_images=32,
        eval_images=16,
        budget_gflops=2.0,
        latent_batch=8,
        pixel_batch=4,
        latent_channels=(16, 16),
        pixel_channels=(16, 16, 16),
        step_sweep=(2, 4),
        reference_steps=4,
        warmup_steps=2,
    ),
    "full": LatentComparisonProfile(
        name="full",
        image_size=128,
        train_images=4000,
        eval_images=500,
        budget_gflops=2.5e5,
        latent_batch=128,
        pixel_batch=32,
        latent_channels=(32, 64, 64),
        pixel_channels=(32, 64, 64, 64),
        step_sweep=(10, 25, 50, 100),
        reference_steps=50,
    ),
}


def get_latent_comparison_profile(name: str) -> LatentComparisonProfile:
    """The named profile; ``ValueError`` naming the known ones otherwise."""
    if name not in LATENT_COMPARISON_PROFILES:
        raise ValueError(
            f"unknown latent-comparison profile {name!r}; expected one of {', '.join(LATENT_COMPARISON_PROFILES)}"
        )
    return LATENT_COMPARISON_PROFILES[name]


def training_flops_per_step(model: torch.nn.Module, example: torch.Tensor, objective: str) -> float:
    """FLOPs of one training step (forward and backward) of ``model`` on the batch ``example``, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; the optimizer's
    elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from meddiff_lab.diffusion import NoiseSchedule
    from meddiff_lab.training.latent import objective_loss

    schedule = None if objective == "rectified_flow" else NoiseSchedule.from_name("linear")
    counter = FlopCounterMode(display=False)
    with counter:
        loss = objective_loss(model, example, objective, schedule, torch.Generator().manual_seed(0))
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _unet(channels: tuple[int, ...], in_channels: int) -> torch.nn.Module:
    from meddiff_lab.models import UNet

    torch.manual_seed(0)
    return UNet(
        in_channels=in_channels,
        out_channels=in_channels,
        channels=channels,
        num_head_channels=16,
        attention_levels=(False,) * (len(channels) - 1) + (True,),
        norm_num_groups=8,
    )


def training_throughput(
    profile: LatentComparisonProfile,
    pixels: torch.Tensor,
    latent_draw: Callable[[torch.Tensor], torch.Tensor],
    latent_shape: tuple[int, ...],
    *,
    device=None,
    mixed_precision: str = "no",
    steps: int = 2,
    rounds: int = 2,
) -> dict[str, float]:
    """Training images per second of every arm, measured in one call on one machine: each arm gets one
    warm-up step, then ``rounds`` times ``steps`` timed steps, the arms taking turns (so a noisy neighbour
    slows them all alike).

    Args:
        pixels: ``(N, 1, S, S)`` the pixel arm's training images; ``latent_draw``: ``index -> (B, *latent_shape)``
            latents, as the latent arms train on.

    Returns:
        ``{arm: images per second}``.
    """
    from meddiff_lab.training.latent import train_denoiser

    runs, seconds, images = {}, dict.fromkeys(LATENT_ARMS, 0.0), dict.fromkeys(LATENT_ARMS, 0)
    for _ in range(rounds):
        for name, (objective, space) in LATENT_ARMS.items():
            pixel = space == "pixel"
            batch = profile.pixel_batch if pixel else profile.latent_batch
            options = dict(
                data=pixels if pixel else latent_draw,
                objective=objective,
                batch_size=batch,
                warmup_steps=1,
                progress=False,
                num_items=len(pixels),
                mixed_precision=mixed_precision,
            )
            if name not in runs:
                channels = profile.pixel_channels if pixel else profile.latent_channels
                model = _unet(channels, 1 if pixel else latent_shape[0]).to(device or "cpu")
                runs[name] = train_denoiser(model, steps=1, **options)
            run = runs[name]
            before = run.seconds
            runs[name] = train_denoiser(run.model, steps=run.steps + steps, resume=run, **options)
            seconds[name] += runs[name].seconds - before
            images[name] += steps * batch
    return {name: images[name] / seconds[name] for name in LATENT_ARMS}


def arm_file(out, arm: str, suffix: str) -> Path:
    """Where one arm's files live: ``out/arms/<arm with underscores><suffix>`` (``.json``, ``.safetensors``,
    ``_samples.pt``)."""
    return Path(out) / "arms" / f"{arm.replace(' ', '_')}{suffix}"


def run_latent_comparison(
    profile: LatentComparisonProfile,
    autoencoder,
    *,
    device=None,
    out=None,
    arms: Sequence[str] | None = None,
    max_seconds: float | None = None,
    mixed_precision: str = "no",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the four arms at equal FLOPs, sample them at every swept step count and measure each.

    Args:
        profile: from :func:`get_latent_comparison_profile`.
        autoencoder: a trained :class:`~meddiff_lab.models.LatentAutoencoder` for ``profile.image_size``
            with its scale factor fitted.
        device: where everything runs (default: CPU).
        out: a folder for each arm's EMA weights and results (``arms/<arm>.safetensors``, ``arms/<arm>.json``);
            arms already measured there are read back, not rerun. ``None``: nothing kept.
        arms: the arms to run (names of :data:`LATENT_ARMS`; default all); the others are only read back.
        max_seconds: a safety cap on each arm's training (e.g. on a shared GPU); an arm stopped by it is
            marked ``capped``: its compute was not equal, and the table says so. ``None``: no cap.
        mixed_precision: ``"no"`` (float32) or ``"bf16"`` autocast for training and sampling (recorded per
            arm; bf16 is about twice as fast on CPUs with AMX).

    Returns:
        JSON-ready: ``profile``, ``floor``, ``ceiling`` (the autoencoder's reconstructions), ``arms``
        (per arm: steps, images, FLOPs, seconds, images/s, memory, ``capped``, ``hardware``, ``mixed_precision``
        and ``by_steps``: metrics per step count), ``throughput`` (training images/s of every arm measured in
        this call, alternating, so comparable even when arms were trained elsewhere), ``missing`` (arms not
        measured yet), ``target_kid`` and ``steps_to_target``
        (``None`` while the latent v arm is missing), ``hardware``, ``seconds``.
    """
    from meddiff_lab import metrics
    from meddiff_lab.data import generate_phantoms, to_model_batch
    from meddiff_lab.diffusion import sample
    from meddiff_lab.models.autoencoder import decode_in_batches, encode_dataset, scheduler_for
    from meddiff_lab.runtime import hardware_description
    from meddiff_lab.training.latent import train_denoiser, training_memory_mb

    started = time.perf_counter()
    device = torch.device(device or "cpu")
    size, n = profile.image_size, profile.eval_images
    selected = list(LATENT_ARMS) if arms is None else list(arms)
    unknown = [arm for arm in selected if arm not in LATENT_ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; expected some of {list(LATENT_ARMS)}")
    if out is not None:
        claim_folder(out, profile)
    if int(autoencoder.config["image_size"]) != size:
        raise ValueError(
            f"the autoencoder is for {autoencoder.config['image_size']} px; profile {profile.name!r} "
            f"has image_size {size}"
        )
    train = to_model_batch(generate_phantoms(profile.train_images, size, 0, masks=()).images)
    real = to_model_batch(generate_phantoms(2 * n, size, 1, masks=()).images)
    real_a, real_b = real[:n], real[n:]
    encoder = metrics.load_phantom_encoder().to(device)
    features = lambda images: metrics.extract_features(images, encoder).double().cpu()  # noqa: E731
    f_real = features(real_a)

    def set_metrics(images):
        f = features(images)
        precision, recall = metrics.precision_recall(f_real, f)
        return {"fid": metrics.fid(f_real, f), "kid": metrics.kid(f_real, f), "precision": precision, "recall": recall}

    floor = set_metrics(real_b)
    autoencoder = autoencoder.to(device).eval()
    with torch.no_grad():
        recon = torch.cat([autoencoder.reconstruct(real_a[i : i + 64].to(device)).cpu() for i in range(0, n, 64)])
    ceiling = {
        "psnr_db": metrics.psnr(recon, real_a, data_range=2.0),
        "ssim": metrics.ssim(recon, real_a, data_range=2.0),
        **set_metrics(recon),
    }
    encode_started = time.perf_counter()
    mu, sigma = encode_dataset(autoencoder, train)
    encode_seconds = time.perf_counter() - encode_started
    latent_shape = tuple(mu.shape[1:])
    log(f"floor FID {floor['fid']:.3f}; reconstructions FID {ceiling['fid']:.3f}; latents {latent_shape}")
    with torch.no_grad():
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            autoencoder.encode_distribution(train[:1].to(device))
        encode_gflops = counter.get_total_flops() * len(train) / 1e9

    measured: dict[str, dict] = {}
    missing: list[str] = []
    for name, (objective, space) in LATENT_ARMS.items():
        if out is not None and arm_file(out, name, ".json").is_file():
            measured[name] = json.loads(arm_file(out, name, ".json").read_text(encoding="utf-8"))
            log(f"{name}: read back from {arm_file(out, name, '.json')}")
            continue
        if name not in selected:
            missing.append(name)
            continue
        pixel = space == "pixel"
        model = _unet(profile.pixel_channels if pixel else profile.latent_channels, 1 if pixel else latent_shape[0])
        batch = profile.pixel_batch if pixel else profile.latent_batch
        example = train[:batch] if pixel else mu[:batch]
        flops = training_flops_per_step(model, example, objective)
        memory = training_memory_mb(model, example, objective)["total"]
        steps = max(1, math.ceil(profile.budget_gflops * 1e9 / flops))
        model = model.to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        data = train if pixel else (lambda index: mu[index] + sigma[index] * torch.randn(mu[index].shape))
        run = train_denoiser(
            model,
            data,
            objective,
            steps,
            batch,
            profile.learning_rate,
            profile.ema_decay,
            profile.warmup_steps,
            max_seconds=max_seconds,
            progress=False,
            num_items=len(train),
            mixed_precision=mixed_precision,
        )
        arm = {
            "objective": objective,
            "space": space,
            "batch": batch,
            "planned_steps": steps,
            "steps": run.steps,
            "images": run.images,
            "gflops_per_step": flops / 1e9,
            "training_gflops": run.steps * flops / 1e9,
            "capped": run.steps < steps,
            "seconds": run.seconds,
            "images_per_sec": run.images_per_sec,
            "training_memory_mb": memory,
            "final_loss": run.history[-1]["loss"] if run.history else None,
            "cuda_peak_mb": (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None),
            "hardware": hardware_description(),
            "mixed_precision": mixed_precision,
            "max_seconds": max_seconds,
        }
        log(
            f"{name}: {run.steps}/{steps} steps, {run.images} images, {run.seconds:.0f} s, "
            f"{run.images_per_sec:.0f} images/s"
        )
        if out is not None:
            from safetensors.torch import save_file

            arm_file(out, name, "").parent.mkdir(parents=True, exist_ok=True)
            save_file(
                {k: v.detach().float().cpu().contiguous() for k, v in run.ema_model.state_dict().items()},
                str(arm_file(out, name, ".safetensors")),
            )
        by_steps = {}
        for sampling_steps in profile.step_sweep:
            sample_started = time.perf_counter()
            scheduler = scheduler_for({**LINEAR, "prediction_type": objective})
            shape = (n, 1, size, size) if pixel else (n, *latent_shape)
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=mixed_precision == "bf16"):
                x = sample(
                    run.ema_model,
                    scheduler,
                    shape,
                    generator=torch.Generator().manual_seed(0),
                    num_inference_steps=sampling_steps,
                    progress=False,
                )
            with torch.no_grad():  # decoded in float32, like the reconstructions of the ceiling
                images = (
                    x.float().clamp(-1, 1).cpu() if pixel else decode_in_batches(autoencoder.decode, x.float()).cpu()
                )
            by_steps[str(sampling_steps)] = {
                **set_metrics(images),
                "seconds_per_sample": (time.perf_counter() - sample_started) / n,
            }
            if out is not None and sampling_steps == profile.reference_steps:
                torch.save((images[:64] * 127.5 + 127.5).round().to(torch.uint8), arm_file(out, name, "_samples.pt"))
        arm["by_steps"] = by_steps
        measured[name] = arm
        if out is not None:
            text = json.dumps(arm, indent=2, default=float) + "\n"
            atomic_write(
                arm_file(out, name, ".json"), lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8")
            )
        del model, run

    log("measuring every arm's training images/s in this call")
    latent_draw = lambda index: mu[index] + sigma[index] * torch.randn(mu[index].shape)  # noqa: E731
    throughput = training_throughput(
        profile, train, latent_draw, latent_shape, device=device, mixed_precision=mixed_precision
    )
    reference = str(profile.reference_steps)
    target = measured["latent v"]["by_steps"][reference]["kid"] if "latent v" in measured else None
    steps_to_target = {
        name: None
        if target is None
        else next((s for s in profile.step_sweep if arm["by_steps"][str(s)]["kid"] <= target), None)
        for name, arm in measured.items()
    }
    return {
        "experiment": "latent-comparison",
        "profile": asdict(profile),
        "n": n,
        "floor": floor,
        "ceiling": ceiling,
        "latent_shape": list(latent_shape),
        "encode_seconds": encode_seconds,
        "encode_gflops": encode_gflops,
        "arms": measured,
        "missing": missing,
        "throughput": throughput,
        "mixed_precision": mixed_precision,
        "target_kid": target,
        "steps_to_target": steps_to_target,
        "hardware": hardware_description(),
        "device": str(device),
        "seconds": time.perf_counter() - started,
    }


def _f(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def latent_comparison_markdown(results: dict[str, Any]) -> str:
    """The comparison as markdown tables (what ran where, the table at the reference steps, steps vs KID)."""
    p, ref = results["profile"], str(results["profile"]["reference_steps"])
    floor = results["floor"]
    lines = [
        f"# Pixel vs latent, ε/v vs rectified flow at equal training compute (profile `{p['name']}`)",
        "",
        f"{results['hardware']}; {results['seconds']:.0f} s (the last call). Every arm: {p['budget_gflops']:g} GFLOPs "
        f"of training (FlopCounterMode, forward + backward), {p['image_size']} px, {p['train_images']} training "
        f"phantoms; N = {results['n']} samples vs {results['n']} unseen phantoms (domain features). Latents "
        f"{tuple(results['latent_shape'])}; encoding the training set once cost {results['encode_gflops']:.0f} "
        "GFLOPs (not in the budget).",
    ]
    trained_on = {name: arm.get("hardware", results["hardware"]) for name, arm in results["arms"].items()}
    if set(trained_on.values()) != {results["hardware"]}:
        lines += ["", "Arms trained and sampled in earlier calls, on other hardware:"]
        lines += [f"- {name}: {hardware}" for name, hardware in trained_on.items() if hardware != results["hardware"]]
    throughput = results.get("throughput")
    if throughput:
        lines += [
            "",
            "Train images/s: every arm measured in the last call, on the hardware named first, taking turns "
            f"(mixed precision: {results.get('mixed_precision', 'no')}), so the column compares arms even "
            "when they were trained elsewhere.",
        ]
    if results.get("missing"):
        lines += ["", f"**Incomplete:** not run yet: {', '.join(results['missing'])} (the same command resumes)."]
    target = results["target_kid"]
    lines += [
        "",
        f"| arm | steps × batch | arithmetic | images seen | train images/s | training memory (MB) | FID | KID "
        f"| precision | recall | steps to KID ≤ {_f(target)} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in results["arms"].items():
        m = arm["by_steps"][ref]
        capped = " (capped by time: less compute)" if arm["capped"] else ""
        if target is None:
            to_target = "— (latent v not run yet)"
        else:
            to_target = results["steps_to_target"][name] or f"not within {max(p['step_sweep'])}"
        arithmetic = {"no": "fp32", "bf16": "bf16 autocast"}[arm.get("mixed_precision", "no")]
        speed = throughput[name] if throughput else arm["images_per_sec"]
        lines.append(
            f"| {name} | {arm['steps']} × {arm['batch']}{capped} | {arithmetic} | {arm['images']:,} | "
            f"{speed:.0f} | {arm['training_memory_mb']:.0f} | {m['fid']:.2f} | {m['kid']:.3f} | "
            f"{m['precision']:.3f} | {m['recall']:.3f} | {to_target} |"
        )
    lines.append(
        f"| floor (real vs real) | | | | | | {floor['fid']:.2f} | {floor['kid']:.3f} | {floor['precision']:.3f} | "
        f"{floor['recall']:.3f} | |"
    )
    c = results["ceiling"]
    lines.append(
        f"| autoencoder reconstructions (the latent arms' ceiling) | | | | | | {c['fid']:.2f} | {c['kid']:.3f} | "
        f"{c['precision']:.3f} | {c['recall']:.3f} | |"
    )
    lines += [
        "",
        f"Metrics at {ref} sampling steps (DDIM for ε and v, Euler for rectified flow). The KID target is "
        f"the latent v arm's at {ref} steps.",
        "",
        "## KID by sampling steps",
        "",
        "| arm | " + " | ".join(f"{s} steps" for s in p["step_sweep"]) + " |",
        "|---|" + "---|" * len(p["step_sweep"]),
    ]
    for name, arm in results["arms"].items():
        lines.append(f"| {name} | " + " | ".join(_f(arm["by_steps"][str(s)]["kid"]) for s in p["step_sweep"]) + " |")
    lines.append("| floor | " + " | ".join(_f(floor["kid"]) for _ in p["step_sweep"]) + " |")
    return "\n".join(lines) + "\n"


def write_latent_comparison_results(results: dict[str, Any], out) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into ``out`` (created)."""
    return write_results(results, out, latent_comparison_markdown(results))


def export_arm(out, arm: str, autoencoder_model: str, destination, name: str, command: str | None = None) -> Path:
    """Ship one arm of a finished comparison as a latent zoo model: ``autoencoder_model``'s autoencoder
    (the one the comparison ran on) plus the arm's EMA U-Net, in one ``.safetensors`` with its JSON config.

    Args:
        out: the comparison's output folder (``results.json`` and ``arms/<arm>.safetensors``).
        arm: a latent arm of :data:`LATENT_ARMS`.
        autoencoder_model: the shipped latent model whose autoencoder the comparison used.
        destination: the ``.safetensors`` to write (the ``.json`` goes beside it).
    """
    from safetensors.torch import load_file, save_file

    from meddiff_lab.models.pretrained import pretrained_dir

    out, destination = Path(out), Path(destination)
    if arm not in LATENT_ARMS or LATENT_ARMS[arm][1] != "latent":
        raise ValueError(
            f"arm {arm!r} is not a latent arm; expected one of "
            f"{[a for a, (_, space) in LATENT_ARMS.items() if space == 'latent']}"
        )
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    profile, record = results["profile"], results["arms"][arm]
    base_weights = pretrained_dir() / f"{autoencoder_model}.safetensors"
    base_config = json.loads(base_weights.with_suffix(".json").read_text(encoding="utf-8"))
    tensors = {k: v for k, v in load_file(str(base_weights)).items() if k.startswith("autoencoder.")}
    unet = load_file(str(out / "arms" / f"{arm.replace(' ', '_')}.safetensors"))
    tensors.update({f"unet.{k}": v.contiguous() for k, v in unet.items()})
    channels = list(profile["latent_channels"])
    latent_channels = int(base_config["latent_shape"][0])
    config = {
        "name": name,
        "image_size": int(profile["image_size"]),
        "kind": "latent_diffusion",
        "autoencoder": base_config["autoencoder"],
        "scale_factor": base_config["scale_factor"],
        "latent_shape": base_config["latent_shape"],
        "model": {
            "channels": channels,
            "attention_levels": [False] * (len(channels) - 1) + [True],
            "num_res_blocks": 1,
            "num_head_channels": 16,
            "norm_num_groups": 8,
            "spatial_dims": 2,
            "in_channels": latent_channels,
            "out_channels": latent_channels,
        },
        "diffusion": {**LINEAR, "prediction_type": record["objective"]},
        "data": {"data_source": "synthetic", "num_images": int(profile["train_images"]), "data_seed": 0},
        "weights": f"autoencoder: {autoencoder_model}'s; unet: EMA",
        "parameters": {
            "autoencoder": int(sum(v.numel() for k, v in tensors.items() if k.startswith("autoencoder."))),
            "unet": int(sum(v.numel() for v in unet.values())),
        },
        "training": {
            "command": command or results.get("command"),
            "arm": arm,
            "experiment": "latent-comparison",
            "steps": record["steps"],
            "batch_size": record["batch"],
            "images_seen": record["images"],
            "training_gflops": record["training_gflops"],
            "seconds": record["seconds"],
            "final_loss": record["final_loss"],
            "hardware": results["hardware"],
            "optimizer": f"AdamW, learning rate {profile['learning_rate']}, {profile['warmup_steps']} "
            f"warm-up steps, gradient clipping 1.0, EMA {profile['ema_decay']}",
        },
    }
    destination.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(destination), metadata={"format": "pt", "name": name})
    destination.with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return destination


def solver_comparison(
    out,
    autoencoder,
    arm: str = "latent ε",
    steps: tuple[int, ...] = (5, 10, 15, 20, 25),
    reference_steps: int = 50,
    device=None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """How many DPM-Solver++ steps (diffusers' ``DPMSolverMultistepScheduler`` through the course's
    ``sample``) match DDIM-``reference_steps``'s KID, for one ε or v arm of a finished comparison.

    Same noise (seed 0), same ``N`` and real set as the comparison; DDIM at the same step counts beside.

    Returns:
        ``{"arm", "n", "reference_steps", "reference_kid", "kid": {"DPM-Solver++": {steps: kid}, "DDIM": {...}},
        "steps_to_match": fewest DPM-Solver++ steps with KID <= the reference (None if none), "floor_kid"}``.
    """
    import diffusers
    from safetensors.torch import load_file

    from meddiff_lab import metrics
    from meddiff_lab.data import generate_phantoms, to_model_batch
    from meddiff_lab.diffusion import sample
    from meddiff_lab.models.autoencoder import decode_in_batches, scheduler_for

    out = Path(out)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    profile, record = results["profile"], results["arms"][arm]
    if record["objective"] == "rectified_flow" or record["space"] != "latent":
        raise ValueError(f"arm {arm!r} must be a latent ε or v arm, got {record['objective']} in {record['space']}")
    device = torch.device(device or "cpu")
    n, size = int(results["n"]), int(profile["image_size"])
    model = _unet(tuple(profile["latent_channels"]), int(results["latent_shape"][0]))
    model.load_state_dict(load_file(str(out / "arms" / f"{arm.replace(' ', '_')}.safetensors")))
    model = model.to(device).eval()
    autoencoder = autoencoder.to(device).eval()
    real = to_model_batch(generate_phantoms(2 * n, size, 1, masks=()).images)
    encoder = metrics.load_phantom_encoder().to(device)
    f_real = metrics.extract_features(real[:n], encoder).double().cpu()

    def kid_of(scheduler, count):
        with torch.no_grad():
            x = sample(
                model,
                scheduler,
                (n, *results["latent_shape"]),
                generator=torch.Generator().manual_seed(0),
                num_inference_steps=count,
                progress=False,
            )
            images = decode_in_batches(autoencoder.decode, x).cpu()
        return metrics.kid(f_real, metrics.extract_features(images, encoder).double().cpu())

    ddim = scheduler_for({**LINEAR, "prediction_type": record["objective"]})
    dpm = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type=record["objective"],
    )
    reference = kid_of(ddim, reference_steps)
    log(f"DDIM-{reference_steps} KID {reference:.3f}")
    kid = {"DPM-Solver++": {}, "DDIM": {}}
    for count in steps:
        kid["DPM-Solver++"][count] = kid_of(dpm, count)
        kid["DDIM"][count] = kid_of(ddim, count)
        log(f"{count} steps: DPM-Solver++ KID {kid['DPM-Solver++'][count]:.3f}, DDIM {kid['DDIM'][count]:.3f}")
    enough = [c for c in steps if kid["DPM-Solver++"][c] <= reference]
    floor = metrics.kid(f_real, metrics.extract_features(real[n:], encoder).double().cpu())
    return {
        "arm": arm,
        "n": n,
        "reference_steps": reference_steps,
        "reference_kid": reference,
        "kid": kid,
        "steps_to_match": min(enough) if enough else None,
        "floor_kid": floor,
    }
