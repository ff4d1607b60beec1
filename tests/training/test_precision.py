"""Tests for meddiff_lab/training/precision.py: choosing float32 or bf16 autocast by measuring."""

from __future__ import annotations

import json
import time

import pytest
import torch
from tiny_runs import tiny_run_config

from meddiff_lab.training import TrainConfig, Trainer
from meddiff_lab.training import precision as precision_module
from meddiff_lab.training.precision import choose_precision, measure_step_speed

CPU = torch.device("cpu")
TINY = tiny_run_config(learning_rate=2e-3)


def _sleeper(seconds_by_precision):
    calls = []

    def step(precision):
        calls.append(precision)
        time.sleep(seconds_by_precision[precision])

    return step, calls


def test_auto_is_float32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    step, calls = _sleeper({"no": 0.0, "bf16": 0.0})
    choice = choose_precision("auto", CPU, step, images_per_step=4)
    assert choice.precision == "no" and "no native bf16" in choice.reason
    assert calls == [], "nothing is measured where bf16 is emulated"


@pytest.mark.parametrize("bf16_seconds, expected", [(0.002, "bf16"), (0.02, "no")])
def test_auto_keeps_the_faster_precision_where_bf16_is_native(monkeypatch, bf16_seconds, expected):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    step, calls = _sleeper({"no": 0.01, "bf16": bf16_seconds})
    choice = choose_precision("auto", CPU, step, images_per_step=4, rounds=2, steps_per_round=1)
    assert choice.precision == expected
    assert choice.fp32_images_per_sec > 0 and choice.bf16_images_per_sec > 0
    assert (choice.speedup > 1) == (expected == "bf16")
    assert calls[:2] == ["no", "bf16"] and calls[2:] == ["no", "bf16"] * 2, "warm-up, then alternating turns"


def test_explicit_settings_are_kept_and_fp16_needs_cuda():
    assert choose_precision("no", CPU).precision == "no"
    assert choose_precision("bf16", CPU).precision == "bf16"
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        choose_precision("fp16", CPU)
    with pytest.raises(ValueError, match="mixed_precision"):
        choose_precision("float8", CPU)
    with pytest.raises(ValueError, match="rounds"):
        measure_step_speed(lambda p: None, images_per_step=0)


def test_bf16_autocast_gives_the_same_loss_to_tolerance():
    """bf16 changes the arithmetic, not the objective: the same batch's loss agrees within a few %."""
    images = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    losses = {}
    for precision in ("no", "bf16"):
        trainer = Trainer(TrainConfig.from_dict(dict(TINY, mixed_precision=precision)), images=images, progress=False)
        torch.manual_seed(1)
        losses[precision] = trainer._micro_step_loss(images[:4]).item()
    assert losses["bf16"] == pytest.approx(losses["no"], rel=0.05)


def test_trainer_records_its_choice_and_resume_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    images = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    config = TrainConfig.from_dict(dict(TINY, mixed_precision="auto"))
    Trainer(TrainConfig.from_dict(dict(TINY, mixed_precision="no")), images=images, progress=False)
    state_without_measuring = torch.get_rng_state()
    trainer = Trainer(config, out_dir=tmp_path, images=images, progress=False)
    assert torch.equal(torch.get_rng_state(), state_without_measuring), "measuring does not move the random state"
    assert trainer.precision in ("no", "bf16") and trainer.precision_choice.speedup is not None
    trainer.train()
    recorded = json.loads((tmp_path / "precision.json").read_text())
    assert recorded["precision"] == trainer.precision and recorded["speedup"] > 0 and recorded["hardware"]
    # a resumed run continues in the arithmetic it started with, whatever a new measurement would say
    monkeypatch.setattr(
        precision_module,
        "measure_step_speed",
        lambda *a, **k: {"no": 1.0, "bf16": 10.0} if trainer.precision == "no" else {"no": 10.0, "bf16": 1.0},
    )
    resumed = Trainer(config, out_dir=tmp_path, images=images, progress=False)
    resumed.train(max_steps=3, resume=True)
    assert resumed.precision == trainer.precision


def test_auto_on_cuda_is_bf16_where_the_gpu_has_it_else_float16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision("auto", torch.device("cuda")).precision == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision("auto", torch.device("cuda")).precision == "fp16"
