"""The denoiser training loop of notebook 10 (epsilon, v, rectified flow; any tensors) and the two-stage latent
diffusion run behind the shipped phantom128-ldm, on tiny sizes."""

from __future__ import annotations

import pytest
import torch
import yaml

from meddiff_lab.models import UNet, load_pretrained
from meddiff_lab.training.latent import (
    OBJECTIVES,
    export_latent_diffusion,
    load_latent_config,
    load_trained_autoencoder,
    main,
    objective_loss,
    train_denoiser,
    training_memory_mb,
)


def tiny_unet(channels: int = 2) -> UNet:
    torch.manual_seed(0)
    return UNet(
        in_channels=channels,
        out_channels=channels,
        channels=(8, 16),
        attention_levels=(False, False),
        num_head_channels=8,
        norm_num_groups=8,
    )


def tiny_latents(n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 2, 8, 8, generator=g)
    return base + 0.3 * torch.randn(n, 2, 8, 8, generator=g)  # data near one point: easy to learn


def tiny_latent_config(tmp_path, prediction_type="v_prediction", num_images=16, autoencoder=None, latent=None):
    """Write a two-stage latent diffusion config on 32 px phantoms (2 x 16 x 16 latents) to ``tmp_path/ldm.yaml``;
    ``autoencoder`` and ``latent`` change those sections' settings (steps, checkpoint_every, max_seconds)."""
    config = {
        "seed": 0,
        "threads": 1,
        "data": {"image_size": 32, "num_images": num_images, "data_seed": 0},
        "autoencoder": {
            "model": {"channels": [8, 16], "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 8},
            "steps": 1,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "kl_weight": 1e-6,
            **(autoencoder or {}),
        },
        "latent": {
            "model": {
                "channels": [8, 16],
                "attention_levels": [False, True],
                "num_res_blocks": 1,
                "num_head_channels": 8,
                "norm_num_groups": 8,
            },
            "diffusion": {
                "schedule": "linear",
                "num_train_timesteps": 1000,
                "beta_start": 1e-4,
                "beta_end": 0.02,
                "prediction_type": prediction_type,
            },
            "steps": 1,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "ema_decay": 0.9,
            **(latent or {}),
        },
    }
    path = tmp_path / "ldm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_learns(objective):
    data = tiny_latents()
    model = tiny_unet()
    g = torch.Generator().manual_seed(5)
    from meddiff_lab.diffusion import NoiseSchedule

    schedule = NoiseSchedule.from_name("linear")
    with torch.no_grad():
        before = sum(float(objective_loss(model, data[:32], objective, schedule, g)) for _ in range(4))
    run = train_denoiser(
        model,
        data,
        objective,
        steps=40,
        batch_size=8,
        learning_rate=3e-3,
        progress=False,
        schedule=schedule,
        log_every=20,
    )
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        after = sum(float(objective_loss(run.ema_model, data[:32], objective, schedule, g)) for _ in range(4))
    assert after < 0.8 * before
    assert run.steps == 40 and run.images == 320 and len(run.history) == 2 and run.images_per_sec > 0
    assert not run.ema_model.training


def test_resume_and_time_budget_and_data_function():
    data = tiny_latents()
    model = tiny_unet()
    run = train_denoiser(
        model, lambda index: data[index], "rectified_flow", steps=5, batch_size=4, progress=False, num_items=len(data)
    )
    run = train_denoiser(model, data, "rectified_flow", steps=8, batch_size=4, progress=False, resume=run)
    assert run.steps == 8 and run.images == 32
    timed = train_denoiser(tiny_unet(), data, "epsilon", steps=100_000, batch_size=4, max_seconds=0.3, progress=False)
    assert 0 < timed.steps < 100_000
    with pytest.raises(ValueError, match="not one of"):
        train_denoiser(tiny_unet(), data, "score", steps=1, progress=False)
    bf16 = train_denoiser(
        tiny_unet(), data, "v_prediction", steps=2, batch_size=4, progress=False, mixed_precision="bf16"
    )
    assert bf16.steps == 2 and all(p.dtype == torch.float32 for p in bf16.ema_model.parameters())
    with pytest.raises(ValueError, match="mixed_precision must be 'no' or 'bf16'"):
        train_denoiser(tiny_unet(), data, "epsilon", steps=1, progress=False, mixed_precision="fp8")
    with pytest.raises(ValueError, match="num_items"):
        train_denoiser(tiny_unet(), lambda index: data[index], "epsilon", steps=1, progress=False)


def test_training_memory_counts_activations_and_optimizer_state():
    model = tiny_unet(1)
    small = training_memory_mb(model, torch.zeros(2, 1, 16, 16))
    large = training_memory_mb(model, torch.zeros(2, 1, 64, 64))
    weights_mb = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    assert small["weights"] == pytest.approx(weights_mb) and small["adam"] == pytest.approx(2 * weights_mb)
    assert 10 < large["activations"] / small["activations"] < 20  # 16x the pixels, about 16x the activations
    assert small["total"] == pytest.approx(sum(v for k, v in small.items() if k != "total"))


def test_two_stage_run_resumes_exports_and_loads(tmp_path):
    path = tiny_latent_config(
        tmp_path, autoencoder={"steps": 2, "checkpoint_every": 1}, latent={"steps": 3, "checkpoint_every": 2}
    )
    out = tmp_path / "run"
    assert main(["--config", str(path), "--out", str(out), "--stage", "autoencoder"]) == 0
    assert (out / "autoencoder.pt").exists() and not (out / "latent.pt").exists()
    weights = tmp_path / "pretrained" / "phantom128-ldm.safetensors"
    assert main(["--config", str(path), "--out", str(out), "--resume", "--export", str(weights)]) == 0
    pipe = load_pretrained("phantom128-ldm", root=weights.parent)
    assert pipe.config["image_size"] == 32 and pipe.config["latent_shape"] == [2, 16, 16]
    assert pipe.config["training"]["autoencoder"]["steps"] == 2 and pipe.config["training"]["latent"]["steps"] == 3
    images = pipe.sample(n=2, steps=2, seed=0)
    assert images.shape == (2, 1, 32, 32)
    export_latent_diffusion(out, tmp_path / "again.safetensors", path)  # export is repeatable
    with pytest.raises(FileNotFoundError, match="meddiff_lab.training.latent"):
        load_pretrained("phantom128-ldm", root=tmp_path / "empty")


def test_a_stage_capped_by_seconds_stays_done_on_resume_and_its_autoencoder_loads(tmp_path, monkeypatch):
    from meddiff_lab.training import checkpoint

    capped = {"steps": 10_000, "max_seconds": 1e-6, "checkpoint_every": 5}
    path = tiny_latent_config(tmp_path, "rectified_flow", autoencoder=capped, latent=capped)
    out = tmp_path / "run"
    assert main(["--config", str(path), "--out", str(out), "--stage", "autoencoder"]) == 0
    first = checkpoint.load_checkpoint(out / "autoencoder.pt")
    assert first["step"] == 1 and first["seconds"] >= 1e-6  # one step, then the time was up
    assert main(["--config", str(path), "--out", str(out), "--resume"]) == 0
    assert checkpoint.load_checkpoint(out / "autoencoder.pt")["step"] == 1  # its budget was spent: not trained again
    assert checkpoint.load_checkpoint(out / "latent.pt")["step"] == 1
    autoencoder = load_trained_autoencoder(out / "autoencoder.pt")
    stored = checkpoint.load_checkpoint(out / "latent.pt")["scale_factor"]
    assert float(autoencoder.scale_factor) == pytest.approx(stored) and autoencoder.latent_shape == (2, 16, 16)


def test_the_cli_trains_and_exports_a_latent_config(tmp_path, capsys):
    from meddiff_lab import cli

    path = tiny_latent_config(tmp_path, num_images=8)
    weights = tmp_path / "w" / "m.safetensors"
    assert (
        cli.main(["train-latent", "--config", str(path), "--out", str(tmp_path / "run"), "--export", str(weights)]) == 0
    )
    card = __import__("json").loads(weights.with_suffix(".json").read_text())
    assert card["training"]["command"].startswith("meddiff-lab train-latent --config")
    assert cli.main(["train-latent", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.yaml does not exist" in capsys.readouterr().err


def test_latent_config_errors_name_the_file_and_the_missing_section(tmp_path):
    with pytest.raises(FileNotFoundError, match="latent diffusion config .*nope.yaml does not exist"):
        load_latent_config(tmp_path / "nope.yaml")
    path = tmp_path / "ldm.yaml"
    path.write_text("data: {image_size: 32}\nautoencoder: {}\n")
    with pytest.raises(ValueError, match=f"latent diffusion config {path} lacks the 'latent' section"):
        load_latent_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_latent_config(path)
