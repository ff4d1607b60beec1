"""Tests of meddiff_lab/cli.py's one error path: every user-caused failure ends in ONE line on stderr
naming the input and what was expected, exit code 2, no traceback; outputs are checked before long
work; a bug stays a traceback."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch
import yaml
from tiny_runs import tiny_run_config

from meddiff_lab import cli
from meddiff_lab.models.pretrained import export_checkpoint
from meddiff_lab.training import TrainConfig, Trainer, load_checkpoint, save_checkpoint

TINY = tiny_run_config(max_steps=1, batch_size=2)


def _fails(argv, capsys, *needles):
    """Run the CLI; it must exit 2 with one error line (the last on stderr, after any progress notes)
    containing every needle, and no traceback."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and sum("error:" in line for line in lines) == 1, err
    assert lines[-1].startswith("meddiff-lab ") and "error:" in lines[-1], err
    for needle in needles:
        assert str(needle) in lines[-1], (needle, lines[-1])
    return lines[-1]


def _argparse_fails(argv, capsys, *needles):
    with pytest.raises(SystemExit) as caught:
        cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished one-step training run (last.pt) and its export (tiny.safetensors + tiny.json)."""
    folder = tmp_path_factory.mktemp("cli_run")
    images = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    Trainer(TrainConfig.from_dict(TINY), folder / "run", images=images, progress=False).train()
    export_checkpoint(folder / "run" / "last.pt", folder / "tiny.safetensors")
    return folder


# ------------------------------------------------------------------------------------------ train
@pytest.mark.parametrize(
    "text, needles",
    [
        (yaml.safe_dump({**TINY, "max_grad_norm": -1}), ["max_grad_norm: expected a number > 0 or null, got -1"]),
        (yaml.safe_dump({**TINY, "min_lr_ratio": -2}), ["min_lr_ratio: expected a number in [0, 1]"]),
        (yaml.safe_dump({**TINY, "max_steps": 2.7}), ["max_steps: expected an integer >= 1, got 2.7"]),
        (yaml.safe_dump({**TINY, "log_every": 0}), ["log_every: expected an integer >= 1"]),
        (yaml.safe_dump({**TINY, "threads": 0}), ["threads: expected an integer >= 1 or null"]),
        (yaml.safe_dump({**TINY, "batch_size": "two"}), ["batch_size: expected an integer >= 1"]),
        (yaml.safe_dump({**TINY, "seed": "abc"}), ["seed: expected an integer >= 0, got 'abc'"]),
        (yaml.safe_dump({**TINY, "learning_rate": "fast"}), ["learning_rate: expected a number"]),
        (yaml.safe_dump({**TINY, "model": {**TINY["model"], "widht": 3}}), ["model: unknown UNet keyword", "'widht'"]),
        ("", ["is empty; expected a mapping of keys"]),
        ("optim: {max_steps: 3\n", ["is not valid YAML"]),
    ],
    ids=[
        "max_grad_norm",
        "min_lr_ratio",
        "max_steps",
        "log_every",
        "threads",
        "batch_size",
        "seed",
        "learning_rate",
        "model-kwargs",
        "empty",
        "malformed",
    ],
)
def test_train_refuses_a_bad_config_before_writing_anything(tmp_path, capsys, text, needles):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    _fails(["train", "--config", config, "--out", out], capsys, config, *needles)
    assert not out.exists()


def test_train_refuses_an_out_that_is_a_file_or_under_a_file(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(TINY))
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _fails(["train", "--config", config, "--out", blocker], capsys, f"--out {blocker} is a file; expected a folder")
    _fails(["train", "--config", config, "--out", blocker / "run"], capsys, f"{blocker} is a file, not a folder")
    _fails(["train", "--config", tmp_path / "nope.yaml", "--out", tmp_path / "o"], capsys, "nope.yaml does not exist")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--max-steps", "0"], "argument --max-steps: expected an integer >= 1, got 0"),
        (["--max-steps", "2.5"], "argument --max-steps: expected an integer >= 1, got '2.5'"),
        (["--threads", "-1"], "argument --threads: expected an integer >= 1"),
        (["--checkpoint-every", "-1"], "argument --checkpoint-every: expected an integer >= 0"),
    ],
)
def test_train_option_values_are_checked_in_one_line(tmp_path, capsys, argv, needle):
    _argparse_fails(
        ["train", "--config", "configs/smoke_test_16px.yaml", "--out", tmp_path / "o", *argv], capsys, needle
    )


def test_resuming_a_checkpoint_without_optimizer_is_one_line(run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    state = load_checkpoint(run_dir / "run" / "last.pt")
    save_checkpoint(out / "last.pt", {k: state[k] for k in ("model", "ema", "step", "config")})
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(TINY))
    _fails(
        ["train", "--config", config, "--out", out, "--resume", "--max-steps", "2"],
        capsys,
        out / "last.pt",
        "cannot be resumed",
        "'optimizer'",
    )


# ------------------------------------------------------------------------------- sample / export
def _nan_checkpoint(run_dir, tmp_path):
    state = load_checkpoint(run_dir / "run" / "last.pt")
    name = next(iter(state["ema"]["model"]))
    state["ema"]["model"][name][...] = float("nan")
    return save_checkpoint(tmp_path / "diverged.pt", state), name


def test_sample_and_export_refuse_nan_weights(run_dir, tmp_path, capsys):
    path, name = _nan_checkpoint(run_dir, tmp_path)
    _fails(
        ["sample", "--model", path, "--n", 1, "--steps", 1, "--out", tmp_path / "grid.png"],
        capsys,
        f"--model {path}",
        "hold NaN or inf",
        name,
    )
    assert not (tmp_path / "grid.png").exists()
    _fails(
        ["export", "--checkpoint", path, "--out", tmp_path / "x.safetensors"],
        capsys,
        f"--checkpoint {path}",
        "NaN or inf",
    )
    assert not (tmp_path / "x.safetensors").exists()


def test_sample_checks_out_before_sampling(run_dir, tmp_path, capsys, monkeypatch):
    import meddiff_lab.training.trainer as trainer_module

    def never(*args, **kwargs):
        raise AssertionError("sampling started before --out was checked")

    monkeypatch.setattr(trainer_module, "generate_samples", never)
    model = run_dir / "tiny.safetensors"
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _fails(["sample", "--model", model, "--out", tmp_path], capsys, f"--out {tmp_path} is a folder")
    _fails(["sample", "--model", model, "--out", blocker / "grid.png"], capsys, f"{blocker} is a file, not a folder")
    _fails(["sample", "--model", model, "--out", tmp_path / "grid.xyz"], capsys, "must end in .png")


def test_sample_works_on_a_good_model(run_dir, tmp_path, capsys):
    assert (
        cli.main(
            [
                "sample",
                "--model",
                str(run_dir / "tiny.safetensors"),
                "--n",
                "1",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "grid.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "grid.png").is_file()


def _model_copy(run_dir, tmp_path, config_change=None, weights_bytes=None):
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(weights_bytes if weights_bytes is not None else (run_dir / "tiny.safetensors").read_bytes())
    config = json.loads((run_dir / "tiny.json").read_text())
    if config_change:
        config_change(config)
    weights.with_suffix(".json").write_text(json.dumps(config))
    return weights


@pytest.mark.parametrize(
    "damage, needle",
    [
        (dict(weights_bytes=b"\x08\x00\x00\x00\x00\x00\x00\x00{}"), "not a readable .safetensors file"),
        ("truncated", "not a readable .safetensors file"),
        (
            dict(config_change=lambda c: c["model"].update(channels=[16, 32])),
            "its weights and config do not make a model",
        ),
        (dict(config_change=lambda c: c["model"].update(architecture="resnet")), "do not make a model"),
        (dict(config_change=lambda c: c.pop("image_size")), "lacks 'image_size'"),
    ],
    ids=["not-safetensors", "truncated", "wrong-shapes", "unknown-architecture", "missing-key"],
)
def test_sample_with_a_broken_model_file_names_it(run_dir, tmp_path, capsys, damage, needle):
    if damage == "truncated":
        data = (run_dir / "tiny.safetensors").read_bytes()
        damage = dict(weights_bytes=data[: len(data) // 2])
    weights = _model_copy(run_dir, tmp_path, **damage)
    _fails(
        ["sample", "--model", weights, "--n", 1, "--steps", 1, "--out", tmp_path / "g.png"],
        capsys,
        str(weights.with_suffix("")),
        needle,
    )  # names m.safetensors or its m.json


def test_sample_with_a_corrupt_or_config_less_checkpoint_names_it(run_dir, tmp_path, capsys):
    data = (run_dir / "run" / "last.pt").read_bytes()
    corrupt = tmp_path / "last.pt"
    corrupt.write_bytes(data[: len(data) // 3])
    line = _fails(["sample", "--model", corrupt, "--out", tmp_path / "g.png"], capsys, corrupt, "corrupt")
    assert "could run code" not in line
    state = load_checkpoint(run_dir / "run" / "last.pt")
    del state["config"]["image_size"]
    odd = save_checkpoint(tmp_path / "odd.pt", state)
    _fails(["sample", "--model", odd, "--out", tmp_path / "g.png"], capsys, odd, "lacks the key 'image_size'")


def test_export_refuses_a_bad_destination(run_dir, tmp_path, capsys):
    _fails(
        ["export", "--checkpoint", run_dir / "run" / "last.pt", "--out", tmp_path / "w.bin"],
        capsys,
        "must end in .safetensors",
    )
    _fails(
        ["export", "--checkpoint", tmp_path / "none.pt", "--out", tmp_path / "w.safetensors"],
        capsys,
        "none.pt does not exist",
    )


# ---------------------------------------------------------------------------------------- metrics
def test_metrics_evaluate_refuses_sets_of_different_resolutions(tmp_path, capsys):
    generated, real = tmp_path / "generated.npy", tmp_path / "real.npy"
    np.save(generated, np.random.default_rng(0).random((8, 32, 32), dtype=np.float32))
    np.save(real, np.random.default_rng(1).random((20, 16, 16), dtype=np.float32))
    _fails(
        ["metrics", "evaluate", "--generated", generated, "--real", real],
        capsys,
        f"--real {real} holds (16, 16) px images but the generated images are 32 x 32",
    )
    _fails(
        ["metrics", "evaluate", "--generated", generated, "--train", "synthetic:abc"],
        capsys,
        "--train 'synthetic:abc': expected 'synthetic' or 'synthetic:N'",
    )


def test_metrics_evaluate_reads_uint8_as_0_to_255_and_refuses_unknown_ranges(tmp_path, capsys):
    path = tmp_path / "u8.npy"
    np.save(path, np.array([[[0, 255], [128, 64]]] * 4, dtype=np.uint8))
    images = cli._metrics_image_set(str(path), 0, 2, seed=0, option="--real")
    assert float(images.min()) == -1.0 and float(images.max()) == 1.0  # not 0 .. 509
    scaled = tmp_path / "float255.npy"
    np.save(scaled, np.array([[[0.0, 255.0], [128.0, 64.0]]] * 4, dtype=np.float32))
    _fails(["metrics", "evaluate", "--generated", scaled], capsys, str(scaled), "expected uint8 0-255, or floats")


def test_metrics_evaluate_and_train_encoder_check_outputs_and_steps(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    generated = tmp_path / "g.npy"
    np.save(generated, np.zeros((4, 16, 16), np.float32))
    _fails(["metrics", "evaluate", "--generated", generated, "--out", tmp_path], capsys, "is a folder")
    _fails(
        ["metrics", "evaluate", "--generated", generated, "--out", blocker / "r.json"],
        capsys,
        "is a file, not a folder",
    )
    _argparse_fails(
        ["metrics", "train-encoder", "--config", "configs/phantom_encoder.yaml", "--out", tmp_path, "--steps", "-1"],
        capsys,
        "argument --steps: expected an integer >= 1, got -1",
    )
    config = tmp_path / "enc.yaml"
    config.write_text("optim: {steps: -1}\n")
    _fails(
        ["metrics", "train-encoder", "--config", config, "--out", tmp_path / "enc"],
        capsys,
        config,
        "steps: expected an integer >= 1, got -1",
    )
    _fails(
        ["metrics", "train-encoder", "--config", "configs/phantom_encoder.yaml", "--out", blocker],
        capsys,
        "is a file; expected a folder",
    )


# ----------------------------------------------------------------------------------- course, data
def test_course_run_without_its_notebooks_folder_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDDIFF_NOTEBOOKS", str(tmp_path / "missing"))
    _fails(
        ["course", "run", "--profile", "ci", "--out", tmp_path / "out"],
        capsys,
        f"notebooks folder {tmp_path / 'missing'} does not exist",
    )
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("MEDDIFF_NOTEBOOKS", str(tmp_path / "empty"))
    _fails(["course", "run", "--profile", "ci", "--out", tmp_path / "out"], capsys, "no course notebooks in")
    assert not (tmp_path / "out").exists()
    monkeypatch.delenv("MEDDIFF_NOTEBOOKS")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _fails(["course", "run", "--profile", "ci", "--out", blocker], capsys, "is a file; expected a folder")


def test_data_write_that_fails_leaves_nothing_behind(tmp_path, capsys):
    out = tmp_path / "synthetic_cxr"
    _fails(
        ["data", "write", "--out", out, "--n", "1", "--image-size", "16"],
        capsys,
        "data write --n 1",
        "nothing was written",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _fails(["data", "write", "--out", blocker, "--n", "4"], capsys, "is a file; expected a folder")
    _fails(["data", "gallery", "--out", tmp_path, "--n", "1"], capsys, "is a folder")
    _argparse_fails(
        ["data", "write", "--out", out, "--test-fraction", "1.5"],
        capsys,
        "argument --test-fraction: expected a number between 0 and 1",
    )


# ------------------------------------------------------------------------------- the error path
@pytest.mark.parametrize(
    "exc, needles",
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "data/secret.csv"),
            ["data/secret.csv: Permission denied", "permissions"],
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "runs/x/last.pt"),
            ["runs/x/last.pt: No space left on device", "the disk is full"],
        ),
        (FileNotFoundError("checkpoint runs/x/last.pt does not exist"), ["checkpoint runs/x/last.pt does not exist"]),
        (ValueError("first line\nsecond line"), ["first line second line"]),
    ],
)
def test_user_errors_become_one_line_and_exit_2(capsys, monkeypatch, exc, needles):
    def fail(args):
        raise exc

    monkeypatch.setattr(cli, "_course_list", fail)
    _fails(["course", "list"], capsys, "meddiff-lab course list: error:", *needles)


def test_a_bug_stays_a_traceback(monkeypatch):
    def bug(args):
        return {}["missing"]

    monkeypatch.setattr(cli, "_course_list", bug)
    with pytest.raises(KeyError):
        cli.main(["course", "list"])
