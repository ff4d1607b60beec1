"""The training loop: loss falls, exact resume, learning-rate schedule, EMA, non-finite losses."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from tiny_runs import tiny_run_config

from meddiff_lab.training import TrainConfig, Trainer, train_from_config
from meddiff_lab.training.trainer import EMA, NonFiniteLossError, warmup_cosine

REPO = Path(__file__).resolve().parents[2]

TINY = tiny_run_config(
    num_images=16, max_steps=6, learning_rate=2e-3, warmup_steps=2, ema_decay=0.9, checkpoint_every=3
)


def _images(n=16, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=generator) * 2 - 1


def _read_log(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_ci_config_loss_falls(tmp_path):
    trainer = train_from_config(REPO / "configs" / "smoke_test_16px.yaml", tmp_path, progress=False)
    rows = _read_log(tmp_path / "log.csv")
    losses = [float(r["loss"]) for r in rows]
    assert {"step", "loss"} <= set(rows[0])
    assert int(rows[-1]["step"]) == trainer.config.max_steps
    assert sum(losses[-2:]) / 2 < 0.5 * losses[0], losses
    assert (tmp_path / "last.pt").is_file() and list((tmp_path / "samples").glob("step_*.png"))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    config = TrainConfig.from_dict(TINY)
    straight = Trainer(config, tmp_path / "straight", images=_images(), progress=False).train()

    def crash_after_step_4(row):  # stands in for a kill: the checkpoint of step 3 is the last one
        if row["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "split", images=_images(), progress=False, on_log=crash_after_step_4).train()
    resumed = Trainer(config, tmp_path / "split", images=_images(), progress=False)
    resumed.train(resume=True)
    assert resumed.step == 6
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.ema.model.parameters(), resumed.ema.model.parameters()):
        assert torch.equal(a, b)
    steps = [int(r["step"]) for r in _read_log(tmp_path / "split" / "log.csv")]
    assert steps == list(range(1, 7))


def test_log_rows_after_a_resume_are_exact_means_of_their_steps(tmp_path):
    """A checkpoint in the middle of a log window carries the window: the row after the resume averages
    the same steps as in an uninterrupted run (log every 2 steps, checkpoint at step 3, kill after 4)."""
    config = TrainConfig.from_dict(dict(TINY, log_every=2))
    straight = Trainer(config, tmp_path / "straight", images=_images(), progress=False).train()

    def crash_after_step_4(row):
        if row["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "split", images=_images(), progress=False, on_log=crash_after_step_4).train()
    Trainer(config, tmp_path / "split", images=_images(), progress=False).train(resume=True)
    rows = {
        name: [(int(r["step"]), float(r["loss"])) for r in _read_log(tmp_path / name / "log.csv")]
        for name in ("straight", "split")
    }
    assert [step for step, _ in rows["split"]] == [2, 4, 6]
    for (step, expected), (_, got) in zip(rows["straight"], rows["split"]):
        assert got == pytest.approx(expected, rel=1e-6), step
    assert straight.step == 6


def test_existing_checkpoint_without_resume_is_an_error(tmp_path):
    config = TrainConfig.from_dict({**TINY, "max_steps": 1})
    Trainer(config, tmp_path, images=_images(), progress=False).train()
    with pytest.raises(ValueError, match="resume"):
        Trainer(config, tmp_path, images=_images(), progress=False).train()


def test_non_finite_loss_stops_naming_the_step_and_saves_nothing(tmp_path):
    trainer = Trainer(TrainConfig.from_dict(TINY), tmp_path, images=_images(), progress=False)
    trainer.images[:] = float("nan")  # NaN after the checks at construction, as a diverging run would produce
    with pytest.raises(NonFiniteLossError, match="at step 1 "):
        trainer.train()
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"prediction_type": "v_prediction", "min_snr_gamma": 5.0},
        {"prediction_type": "sample", "loss": "hybrid"},
        {"gradient_accumulation_steps": 2, "mixed_precision": "bf16"},
    ],
)
def test_targets_weightings_accumulation_and_bf16_run(changes):
    trainer = Trainer(TrainConfig.from_dict({**TINY, **changes, "max_steps": 2}), images=_images(), progress=False)
    trainer.train()
    assert trainer.step == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in trainer.history)


def test_warmup_then_cosine_learning_rate():
    factors = [warmup_cosine(s, warmup_steps=10, max_steps=110, min_lr_ratio=0.1) for s in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5)
    assert factors[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))


def test_prediction_types_are_the_diffusion_process_ones():
    from meddiff_lab.diffusion import process
    from meddiff_lab.training import trainer

    assert trainer.PREDICTION_TYPES is process.PREDICTION_TYPES


def test_ema_moves_towards_the_weights_with_warmed_up_decay():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.99)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # first decay: min(0.99, 1/10) = 0.1
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 0.9))


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match="learnin_rate"):
        TrainConfig.from_dict({"learnin_rate": 1e-3})
    with pytest.raises(ValueError, match="prediction_type"):
        TrainConfig.from_dict({"prediction_type": "noise"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  batch_size: 0\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        TrainConfig.from_yaml(bad)


@pytest.mark.parametrize("name", ["smoke_test_16px.yaml", "student_phantom32.yaml", "pretrained_phantom64.yaml"])
def test_training_configs_parse(name):
    assert TrainConfig.from_yaml(REPO / "configs" / name).max_steps > 0


def test_trains_without_accelerate_in_one_process():
    from meddiff_lab.training.trainer import SingleProcess

    trainer = Trainer(
        TrainConfig.from_dict({**TINY, "max_steps": 2}), images=_images(), progress=False, accelerator=SingleProcess()
    )
    trainer.train()
    assert trainer.step == 2 and trainer.ema.num_updates == 2


def test_a_class_conditional_run_resumes_exactly_and_passes_labels(tmp_path):
    config = TrainConfig.from_dict({**TINY, "model": {**TINY["model"], "num_classes": 2}, "label_dropout": 0.5})
    conditions = {"class_labels": torch.arange(16) % 2}
    straight = Trainer(config, tmp_path / "straight", images=_images(), conditions=conditions, progress=False)
    seen = []
    forward = straight.model.forward
    straight.model.forward = lambda x, t, **kw: (seen.append(kw["class_labels"].clone()), forward(x, t, **kw))[1]
    straight.train()
    assert set(torch.cat(seen).tolist()) == {0, 1, 2}  # 2 = the null class, from label dropout

    def crash_after_step_4(row):
        if row["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(
            config,
            tmp_path / "split",
            images=_images(),
            conditions=conditions,
            progress=False,
            on_log=crash_after_step_4,
        ).train()
    resumed = Trainer(config, tmp_path / "split", images=_images(), conditions=conditions, progress=False)
    resumed.train(resume=True)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_conditions_are_checked_against_the_data_and_the_model():
    config = TrainConfig.from_dict(TINY)
    with pytest.raises(ValueError, match="class_labels has 3 rows but there are 16 images"):
        Trainer(config, images=_images(), conditions={"class_labels": torch.zeros(3)}, progress=False)
    with pytest.raises(ValueError, match="null class"):
        Trainer(config, images=_images(), conditions={"class_labels": torch.zeros(16)}, progress=False)
    with pytest.raises(ValueError, match="unknown condition 'labels'"):
        Trainer(config, images=_images(), conditions={"labels": torch.zeros(16)}, progress=False)
    with pytest.raises(ValueError, match="sample_every=0"):
        Trainer(
            config.replace(sample_every=5),
            images=_images(),
            conditions={"mask": torch.zeros(16, 1, 16, 16)},
            progress=False,
        )
    with pytest.raises(ValueError, match="balance_classes=True needs"):
        Trainer(config.replace(balance_classes=True), images=_images(), progress=False)


# ----------------------------------------------------------------- bad data, bad checkpoints
@pytest.mark.parametrize(
    "images, message",
    [
        (torch.full((16, 1, 16, 16), float("nan")), "16 of 16 training images contain NaN or inf"),
        (torch.rand(16, 1, 16, 16) * 255, r"training images span \[.*\]; expected float32 in \[-1, 1\]"),
        (torch.zeros(0, 1, 16, 16), "the training set is empty"),
    ],
)
def test_training_images_are_checked_before_training(images, message):
    with pytest.raises(ValueError, match=message):
        Trainer(TrainConfig.from_dict(TINY), images=images, progress=False)


def _saved_run(tmp_path):
    config = TrainConfig.from_dict({**TINY, "max_steps": 3})
    Trainer(config, tmp_path, images=_images(), progress=False).train()
    return config, tmp_path / "last.pt"


def _resume(config, folder):
    return Trainer(config, folder, images=_images(), progress=False).train(max_steps=4, resume=True)


def test_resuming_a_checkpoint_without_optimizer_names_the_file(tmp_path):
    from meddiff_lab.training import load_checkpoint, save_checkpoint

    config, path = _saved_run(tmp_path)
    state = load_checkpoint(path)
    save_checkpoint(path, {key: state[key] for key in ("model", "step", "config", "ema")})
    with pytest.raises(ValueError, match=rf"checkpoint {path} cannot be resumed: it lacks \['optimizer'"):
        _resume(config, tmp_path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s["model"].__setitem__(next(iter(s["model"])), torch.zeros(3, 3)), "size mismatch"),
        (lambda s: s["rng"].__setitem__("torch", torch.zeros(4, dtype=torch.uint8)), "'torch' random number state"),
        (lambda s: s["optimizer"].__setitem__("param_groups", []), "different number of parameter groups"),
        (lambda s: s["config"].__setitem__("max_steps", -4), "holds an invalid training config: max_steps"),
    ],
    ids=["wrong-tensor-shape", "bad-rng-state", "bad-optimizer", "bad-config"],
)
def test_resuming_a_damaged_checkpoint_names_the_file(tmp_path, damage, message):
    from meddiff_lab.training import load_checkpoint, save_checkpoint

    config, path = _saved_run(tmp_path)
    state = load_checkpoint(path)
    damage(state)
    save_checkpoint(path, state)
    with pytest.raises(ValueError, match=message) as caught:
        _resume(config, tmp_path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_time_budget_fits_max_steps_to_the_measured_speed_and_a_resume_keeps_it(tmp_path, monkeypatch):
    import yaml

    from meddiff_lab.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "BUDGET_WARMUP_STEPS", 1)
    monkeypatch.setattr(trainer_module, "BUDGET_PROBE_STEPS", 2)
    config = TrainConfig.from_dict(dict(TINY, max_steps=100000, checkpoint_every=0))
    run = Trainer(config, tmp_path, images=_images(), progress=False)
    run.train(time_budget_s=4.0)
    fitted = run.config.max_steps
    assert 3 < fitted < 100000 and run.step == fitted  # the schedule ends where the run ends
    assert run.history[-1]["lr"] == pytest.approx(TINY["learning_rate"] * config.min_lr_ratio, rel=1e-3)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["max_steps"] == fitted
    again = Trainer(config, tmp_path, images=_images(), progress=False).train(resume=True, time_budget_s=1.5)
    assert again.step == fitted  # finished, not a second budget
    with pytest.raises(ValueError, match="time_budget_s"):
        Trainer(config, tmp_path / "other", images=_images(), progress=False).train(time_budget_s=0)


def test_time_budget_refits_when_the_speed_drops(tmp_path, monkeypatch):
    """A fake clock: 10 ms a step, then 40 ms from step 40 on (say, other jobs start on a shared GPU)."""
    import types

    from meddiff_lab.training import trainer as trainer_module

    clock = {"now": 0.0}
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    config = TrainConfig.from_dict(dict(TINY, max_steps=100000, checkpoint_every=0, log_every=1000))
    run = Trainer(config, tmp_path, images=_images(), progress=False)
    real_step = run.train_step

    def timed_step():
        result = real_step()
        clock["now"] += 0.01 if run.step < 40 else 0.04
        return result

    monkeypatch.setattr(run, "train_step", timed_step)
    run.train(time_budget_s=2.0)
    first_fit = 25 + int((2.0 - 0.25) / 0.01)  # what the first 20 timed steps predicted
    assert run.step < first_fit  # fitted again when the speed dropped
    assert 1.8 <= clock["now"] <= 2.1  # and the run ended with its budget
