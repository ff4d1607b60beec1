"""U-Net throughput: the kit's ``UNet`` vs MONAI's ``DiffusionModelUNet`` vs diffusers' ``UNet2DModel``.

All three are built at one configuration (channels (32, 64, 128), self-attention at the lowest level
only, one residual block per level, 32 channels per attention head) and timed in ONE run, model by
model in turn (the order rotates every round), so that a busy machine slows all of them alike. Each
round times a few steps of each model; the table gives the median images/s over rounds, and the
ratios to MONAI and to diffusers as the median over rounds of the *paired* ratio (this model's round
divided by the reference's round, measured back to back), which a load that changes between rounds
does not bias.

A training step is a forward pass, the noise-prediction MSE loss, a backward pass and an AdamW step;
forward-only runs under ``torch.inference_mode``. Both at 32 px (batch 32) and 64 px (batch 16), on
the CPU with ``--threads`` threads, and on the GPU when there is one.

Model variants: ``+cl`` (weights and inputs channels-last; the kit's 2D U-Net already runs so),
``+bf16`` (bfloat16 autocast), ``kit+nchw`` (the kit with ``channels_last=False``), for example
``--models kit kit+nchw monai monai+cl``. By default every peer runs in all four settings (memory
format x precision) and the kit in its default layout, fp32 and bf16, all in one alternating run;
after each table a summary compares the kit with each peer's *fastest* setting per precision, and
gives each model's bf16 speed-up over fp32 (its best bf16 setting over its best fp32 setting, paired).
``--auto-precision`` adds what ``precision: auto`` (``meddiff_lab.training.precision``) measures and
chooses for the kit's training step.

Usage::

    python benchmarks/unet_throughput.py                 # full run (several minutes on 2 cores)
    python benchmarks/unet_throughput.py --quick         # 32 px, training only, fewer rounds
    python benchmarks/unet_throughput.py --sizes 32 --modes train --threads 1 --clock process --auto-precision
    python benchmarks/unet_throughput.py --models kit kit+bf16 --sizes 32 --modes train
    meddiff-lab bench unet --quick                       # the same, through the CLI
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

CHANNELS = (32, 64, 128)
ATTENTION_LEVELS = (False, False, True)
HEAD_CHANNELS = 32
DEFAULT_BATCH = {32: 32, 64: 16}
#: Every setting of every model: the peers in both memory formats and both precisions, the kit in its default.
ALL_SETTINGS = [
    "kit",
    "kit+bf16",
    "monai",
    "monai+cl",
    "monai+bf16",
    "monai+cl+bf16",
    "diffusers",
    "diffusers+cl",
    "diffusers+bf16",
    "diffusers+cl+bf16",
]
VARIANTS = {
    "cl": "channels-last weights and inputs",
    "bf16": "bfloat16 autocast",
    "nchw": "the kit's UNet with channels_last=False (feature maps in the default layout)",
}


def build_model(name: str, image_size: int, kit_channels_last: bool = True) -> tuple[torch.nn.Module, Callable]:
    """The model called ``name`` (``kit``, ``monai``, ``diffusers``) and a function ``(model, x, t) -> eps``."""
    if name == "kit":
        from meddiff_lab.models import UNet

        model = UNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            channels=CHANNELS,
            attention_levels=ATTENTION_LEVELS,
            num_res_blocks=1,
            num_head_channels=HEAD_CHANNELS,
            channels_last=kit_channels_last,
        )
        return model, lambda m, x, t: m(x, t)
    if name == "monai":
        from monai.networks.nets import DiffusionModelUNet

        model = DiffusionModelUNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            channels=CHANNELS,
            attention_levels=ATTENTION_LEVELS,
            num_res_blocks=1,
            num_head_channels=HEAD_CHANNELS,
        )
        return model, lambda m, x, t: m(x, t)
    if name == "diffusers":
        from diffusers import UNet2DModel

        down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in ATTENTION_LEVELS)
        up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(ATTENTION_LEVELS))
        model = UNet2DModel(
            sample_size=image_size,
            in_channels=1,
            out_channels=1,
            block_out_channels=CHANNELS,
            layers_per_block=1,
            down_block_types=down,
            up_block_types=up,
            attention_head_dim=HEAD_CHANNELS,
        )
        return model, lambda m, x, t: m(x, t).sample
    raise ValueError(f"unknown model {name!r}; expected kit, monai or diffusers (optionally +cl, +bf16, +nchw)")


@dataclass
class Runner:
    """One model variant, ready to time: its model, optimizer, inputs and step function."""

    label: str
    device: torch.device
    image_size: int
    batch_size: int
    mode: str  # "train" | "forward"
    channels_last: bool = False
    bf16: bool = False
    parameters: int = 0
    model: torch.nn.Module = field(init=False, repr=False)

    def __post_init__(self) -> None:
        base, *flags = self.label.split("+")
        unknown = [f for f in flags if f not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant {'+'.join(unknown)!r} in {self.label!r}; known: {', '.join(VARIANTS)}")
        self.channels_last, self.bf16 = "cl" in flags, "bf16" in flags
        torch.manual_seed(0)
        model, self.call = build_model(base, self.image_size, kit_channels_last="nchw" not in flags)
        self.parameters = sum(p.numel() for p in model.parameters())
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        if base == "kit" and not self.channels_last:
            memory_format = model.memory_format  # its own layout (channels-last weights unless +nchw)
        self.model = model.to(self.device, memory_format=memory_format).train(self.mode == "train")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4) if self.mode == "train" else None
        shape = (self.batch_size, 1, self.image_size, self.image_size)
        self.x = torch.randn(shape, device=self.device).contiguous(memory_format=memory_format)
        self.noise = torch.randn(shape, device=self.device)
        self.t = torch.randint(0, 1000, (self.batch_size,), device=self.device)

    def step(self) -> None:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        if self.mode == "forward":
            with torch.inference_mode(), autocast:
                self.call(self.model, self.x, self.t)
            return
        self.optimizer.zero_grad(set_to_none=True)
        with autocast:
            prediction = self.call(self.model, self.x, self.t)
        loss = torch.nn.functional.mse_loss(prediction.float(), self.noise)
        loss.backward()
        self.optimizer.step()

    def time_steps(self, steps: int, clock: Callable[[], float] = time.perf_counter) -> float:
        """Run ``steps`` steps; returns images per second of ``clock``."""
        self._sync()
        start = clock()
        for _ in range(steps):
            self.step()
        self._sync()
        return steps * self.batch_size / (clock() - start)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def measure(
    labels: list[str],
    device: torch.device,
    image_size: int,
    batch_size: int,
    mode: str,
    rounds: int,
    steps: int,
    warmup: int = 2,
    clock: str = "wall",
) -> dict[str, list[float]]:
    """Images/s of each model per round, measured alternating (rotating order). Returns label -> list."""
    runners = [Runner(label, device, image_size, batch_size, mode) for label in labels]
    for runner in runners:
        for _ in range(warmup):
            runner.step()
    speeds: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        order = runners[r % len(runners) :] + runners[: r % len(runners)]
        for runner in order:
            speeds[runner.label].append(runner.time_steps(steps, CLOCKS[clock]))
    return speeds


def machine_description(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {threads} thread(s), torch {torch.__version__}"


def run(
    models: list[str],
    devices: list[str],
    sizes: list[int],
    modes: list[str],
    rounds: int,
    steps: int,
    threads: int,
    batch: int | None = None,
    clock: str = "wall",
    out=sys.stdout,
) -> list[dict]:
    """Measure every (device, size, mode) and print a table per device; returns one dict per row."""
    torch.set_num_threads(threads)
    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        policy = os.environ.get("OMP_WAIT_POLICY", "default")
        print(
            f"\n## {device_name}: {machine_description(device, threads)}; OMP_WAIT_POLICY {policy}; "
            f"load average {_load_average():.1f}; clock {clock if device.type == 'cpu' else 'wall'}",
            file=out,
            flush=True,
        )
        print(
            f"{'size':>5} {'batch':>5} {'mode':>8} {'model':>16} {'params':>9} {'median img/s':>13} "
            f"{'min..max':>15} {'vs monai':>9} {'vs diffusers':>13}",
            file=out,
            flush=True,
        )
        for size in sizes:
            batch_size = batch or DEFAULT_BATCH.get(size, 16)
            for mode in modes:
                load = _load_average()
                speeds = measure(
                    models,
                    device,
                    size,
                    batch_size,
                    mode,
                    rounds,
                    steps,
                    clock=clock if device.type == "cpu" else "wall",
                )
                medians = {label: statistics.median(v) for label, v in speeds.items()}
                for label, values in speeds.items():
                    row = dict(
                        device=device_name,
                        image_size=size,
                        batch_size=batch_size,
                        mode=mode,
                        model=label,
                        parameters=_parameters(label),
                        median_images_per_s=medians[label],
                        rounds=values,
                        threads=threads,
                        load_average=load,
                        clock=clock,
                    )
                    for reference in ("monai", "diffusers"):
                        if reference in speeds:  # paired: this model's round against the reference's same round
                            row[f"vs_{reference}"] = statistics.median(a / b for a, b in zip(values, speeds[reference]))
                    rows.append(row)
                    print(
                        f"{size:>5} {batch_size:>5} {mode:>8} {label:>16} {row['parameters'] / 1e6:>8.2f}M "
                        f"{medians[label]:>13.1f} {min(values):>7.1f}..{max(values):<7.1f} "
                        f"{_ratio(row, 'vs_monai'):>9} {_ratio(row, 'vs_diffusers'):>13}",
                        file=out,
                        flush=True,
                    )
                summary = fastest_settings_summary(speeds)
                for line in summary["lines"]:
                    print(f"   {line}", file=out, flush=True)
                rows.append(
                    dict(
                        device=device_name,
                        image_size=size,
                        batch_size=batch_size,
                        mode=mode,
                        summary=summary["ratios"],
                        load_average=load,
                        threads=threads,
                        clock=clock,
                    )
                )
    return rows


def _paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a``'s round divided by ``b``'s same round."""
    return statistics.median(x / y for x, y in zip(a, b))


def fastest_settings_summary(speeds: dict[str, list[float]]) -> dict:
    """The kit against each peer's fastest setting, per precision, and each model's bf16 speed-up.

    A model's fastest setting in a precision is the variant (memory format) with the highest median
    images/s; ratios are medians of paired per-round ratios. Returns ``{"lines": [...], "ratios": {...}}``.
    """
    best: dict[tuple[str, str], str] = {}
    for label, values in speeds.items():
        base, *flags = label.split("+")
        key = (base, "bf16" if "bf16" in flags else "fp32")
        if key not in best or statistics.median(values) > statistics.median(speeds[best[key]]):
            best[key] = label
    lines, ratios = [], {}
    for precision in ("fp32", "bf16"):
        kit = best.get(("kit", precision))
        if kit is None:
            continue
        parts = []
        for peer in ("monai", "diffusers"):
            reference = best.get((peer, precision))
            if reference is not None:
                ratio = _paired(speeds[kit], speeds[reference])
                ratios[f"{precision}_kit_vs_{peer}"] = dict(kit=kit, peer=reference, ratio=ratio)
                parts.append(f"{ratio:.2f}x {peer}'s fastest ({reference}, {statistics.median(speeds[reference]):.1f})")
        lines.append(f"{precision}: {kit} {statistics.median(speeds[kit]):.1f} img/s = " + ", ".join(parts))
    speedups = []
    for base in ("kit", "monai", "diffusers"):
        fp32, bf16 = best.get((base, "fp32")), best.get((base, "bf16"))
        if fp32 and bf16:
            ratio = _paired(speeds[bf16], speeds[fp32])
            ratios[f"bf16_speedup_{base}"] = dict(fp32=fp32, bf16=bf16, ratio=ratio)
            speedups.append(f"{base} {ratio:.2f}x ({bf16} / {fp32})")
    if speedups:
        lines.append("bf16 speed-up over fp32 (best setting each): " + ", ".join(speedups))
    return dict(lines=lines, ratios=ratios)


def auto_precision_report(device: torch.device, image_size: int, batch_size: int, out=sys.stdout) -> dict:
    """What ``precision: auto`` measures and picks for the kit's training step (its own alternating timing)."""
    from meddiff_lab.training.precision import choose_precision

    runners = {
        "no": Runner("kit", device, image_size, batch_size, "train"),
        "bf16": Runner("kit+bf16", device, image_size, batch_size, "train"),
    }
    choice = choose_precision("auto", device, lambda precision: runners[precision].step(), images_per_step=batch_size)
    speedup = f"{choice.speedup:.2f}x" if choice.speedup else "not measured"
    print(
        f"precision auto ({image_size} px, batch {batch_size}, kit training step): {choice.precision}; "
        f"fp32 {choice.fp32_images_per_sec or float('nan'):.1f} img/s, bf16 "
        f"{choice.bf16_images_per_sec or float('nan'):.1f} img/s, bf16 speed-up {speedup}; {choice.reason}",
        file=out,
        flush=True,
    )
    return choice.to_dict()


def _load_average() -> float:
    """The 1-minute load average (how busy the machine was), NaN where the OS does not say."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


_PARAMETER_CACHE: dict[str, int] = {}


def _parameters(label: str) -> int:
    base = label.split("+")[0]
    if base not in _PARAMETER_CACHE:
        model, _ = build_model(base, 32)
        _PARAMETER_CACHE[base] = sum(p.numel() for p in model.parameters())
    return _PARAMETER_CACHE[base]


def _ratio(row: dict, key: str) -> str:
    return f"{row[key]:.2f}x" if key in row else "-"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 px, training only, 3 rounds of 2 steps")
    parser.add_argument(
        "--models",
        nargs="+",
        default=ALL_SETTINGS,
        help="kit, monai, diffusers, optionally with +cl, +bf16, +nchw (default: the peers in "
        "both memory formats and both precisions, the kit in fp32 and bf16)",
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=None, help="image sizes (default: 32 64)")
    parser.add_argument(
        "--modes", nargs="+", choices=("train", "forward"), default=None, help="train and/or forward (default: both)"
    )
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 32 at 32 px, 16 at 64 px)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per model (default 7, quick 3)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 3, quick 2)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall (default) or process: CPU seconds of this process, which other jobs on a "
        "shared machine barely disturb (use with --threads 1)",
    )
    parser.add_argument(
        "--auto-precision",
        action="store_true",
        help="also run precision 'auto' on the kit's training step and print its measured speed-up",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = args.sizes or ([32] if args.quick else [32, 64])
    modes = args.modes or (["train"] if args.quick else ["train", "forward"])
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rounds = args.rounds or (3 if args.quick else 7)
    steps = args.steps or (2 if args.quick else 3)
    started = time.perf_counter()
    rows = run(args.models, devices, sizes, modes, rounds, steps, args.threads, args.batch, args.clock)
    if args.auto_precision:
        size = sizes[0]
        rows.append(
            dict(
                auto_precision=auto_precision_report(
                    torch.device("cpu"), size, args.batch or DEFAULT_BATCH.get(size, 16)
                )
            )
        )
    print(
        f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s (median over {rounds} rounds of {steps} "
        f"steps, models alternating; ratios: median of per-round ratios)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
