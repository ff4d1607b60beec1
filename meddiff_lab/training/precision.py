"""Which arithmetic to train in on this machine: float32 or bf16 autocast, chosen by measuring.

bf16 autocast halves the bytes each convolution moves, but only CPUs with native bf16 instructions
(AVX512-BF16, AMX) compute in it directly; elsewhere PyTorch emulates it and training gets slower
(0.30× was measured on a Xeon without them). Even with them, the gain depends on the model and the
batch (1.25–1.37× for the course's 64 px U-Net on one Sapphire Rapids machine). So ``"auto"`` on a
CPU does not guess: where the CPU has native bf16 it times a few real training steps both ways,
alternating, and keeps bf16 only if it is measurably faster. On CUDA ``"auto"`` is bf16 autocast where
the GPU has it (no gradient scaler needed), else float16 with a gradient scaler.

Example:
    >>> choice = choose_precision("auto", torch.device("cpu"), step_fn, images_per_step=32)
    >>> choice.precision, choice.speedup        # ("bf16", 1.31) on an AMX machine, ("no", None) elsewhere
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

__all__ = ["PRECISIONS", "PrecisionChoice", "cpu_has_native_bf16", "measure_step_speed", "choose_precision"]

#: What a config may ask for: ``"auto"``, ``"no"`` (float32), ``"bf16"`` autocast, ``"fp16"`` (CUDA only).
PRECISIONS = ("auto", "no", "bf16", "fp16")
#: bf16 must beat float32 by at least this factor for ``"auto"`` to pick it (below it, timing noise).
MIN_SPEEDUP = 1.05


@dataclass(frozen=True)
class PrecisionChoice:
    """The arithmetic a run uses and why.

    Attributes:
        setting: what the config asked for (``"auto"``, ``"no"``, ``"bf16"``, ``"fp16"``).
        precision: what the run uses: ``"no"`` (float32), ``"bf16"`` or ``"fp16"``.
        reason: one sentence, for logs and model cards.
        fp32_images_per_sec, bf16_images_per_sec: the measured training speeds (``None`` if not measured).
    """

    setting: str
    precision: str
    reason: str
    fp32_images_per_sec: float | None = None
    bf16_images_per_sec: float | None = None

    @property
    def speedup(self) -> float | None:
        """bf16 images/s divided by float32 images/s, when both were measured."""
        if self.fp32_images_per_sec and self.bf16_images_per_sec:
            return self.bf16_images_per_sec / self.fp32_images_per_sec
        return None

    def to_dict(self) -> dict:
        return dict(asdict(self), speedup=self.speedup)


def cpu_has_native_bf16() -> bool:
    """True when oneDNN reports native bf16 instructions (AVX512-BF16 / AMX) on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - very old or unusual builds
        return False


def measure_step_speed(
    step_fn: Callable[[str], None],
    images_per_step: int,
    precisions=("no", "bf16"),
    rounds: int = 3,
    steps_per_round: int = 2,
) -> dict[str, float]:
    """Training images per second of ``step_fn(precision)`` for each precision, timed alternately.

    The machine may be shared and its speed drifts, so the precisions take turns (round 1: fp32,
    bf16; round 2: fp32, bf16; ...) after one untimed warm-up step each, and each precision's speed is
    the median over rounds.

    Args:
        step_fn: runs one forward and backward pass in the given precision (``"no"`` or ``"bf16"``).
        images_per_step: images one call processes.
        rounds, steps_per_round: how many timed turns, and calls per turn.

    Returns:
        ``{precision: images_per_sec}``.
    """
    if rounds < 1 or steps_per_round < 1 or images_per_step < 1:
        raise ValueError(
            f"rounds, steps_per_round and images_per_step must be >= 1, got "
            f"{rounds}, {steps_per_round}, {images_per_step}"
        )
    for precision in precisions:
        step_fn(precision)
    speeds: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(rounds):
        for precision in precisions:
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step_fn(precision)
            speeds[precision].append(steps_per_round * images_per_step / max(time.perf_counter() - start, 1e-9))
    return {p: statistics.median(v) for p, v in speeds.items()}


def choose_precision(
    setting: str,
    device: torch.device,
    step_fn: Callable[[str], None] | None = None,
    images_per_step: int = 1,
    min_speedup: float = MIN_SPEEDUP,
    **measure_kwargs,
) -> PrecisionChoice:
    """Resolve a config's precision ``setting`` for ``device``.

    ``"auto"``: bf16 on a CUDA GPU that has it (Ampere and newer), else float16; on a CPU with native bf16
    and a ``step_fn`` to time, bf16 if it trains at least ``min_speedup`` × faster than float32 (measured
    with :func:`measure_step_speed`), float32 otherwise. Explicit settings are kept (``"fp16"`` needs CUDA).
    """
    if setting not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {setting!r}")
    if setting == "fp16" and device.type != "cuda":
        raise ValueError(f"mixed_precision 'fp16' needs a CUDA device; use 'bf16' or 'no' on {device.type}")
    if setting != "auto":
        reason = "set in the config"
        if setting == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            reason += " (this CPU has no native bf16 instructions: emulated, probably slower than float32)"
        return PrecisionChoice(setting, setting, reason)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice(
                setting,
                "bf16",
                "auto on CUDA: this GPU has bf16, so bf16 autocast (float32's range: no gradient scaling)",
            )
        return PrecisionChoice(setting, "fp16", "auto on CUDA: float16 autocast with gradient scaling")
    if device.type != "cpu":
        return PrecisionChoice(setting, "no", f"auto on {device.type}: float32")
    if not cpu_has_native_bf16():
        return PrecisionChoice(
            setting, "no", "auto: this CPU has no native bf16 instructions (AVX512-BF16/AMX), so float32"
        )
    if step_fn is None:
        return PrecisionChoice(setting, "no", "auto: native bf16 present but nothing to measure, so float32")
    speed = measure_step_speed(step_fn, images_per_step, **measure_kwargs)
    ratio = speed["bf16"] / speed["no"]
    chosen = "bf16" if ratio >= min_speedup else "no"
    reason = (
        f"auto: measured {speed['no']:.1f} img/s float32 vs {speed['bf16']:.1f} bf16 ({ratio:.2f}x) "
        f"-> {'bf16' if chosen == 'bf16' else 'float32'}"
    )
    return PrecisionChoice(setting, chosen, reason, speed["no"], speed["bf16"])
