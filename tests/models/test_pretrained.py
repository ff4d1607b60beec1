"""Shipped pretrained weights: export to safetensors + JSON, load by name, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_runs import tiny_run_config

from meddiff_lab.models import PRETRAINED, load_pretrained
from meddiff_lab.models.pretrained import export_checkpoint, is_available, load_model
from meddiff_lab.training import TrainConfig, Trainer

TINY = tiny_run_config(batch_size=2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    images = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    trainer = Trainer(TrainConfig.from_dict(TINY), folder / "run", images=images, progress=False).train()
    name = next(iter(PRETRAINED))
    export_checkpoint(folder / "run" / "last.pt", folder / f"{name}.safetensors", command="meddiff-lab train ...")
    return folder, name, trainer


def test_export_writes_safetensors_and_a_config_with_the_training_facts(exported):
    folder, name, trainer = exported
    config = json.loads((folder / f"{name}.json").read_text())
    assert config["image_size"] == 16 and config["diffusion"]["prediction_type"] == "epsilon"
    assert config["training"]["steps"] == 2 and config["training"]["command"] == "meddiff-lab train ..."
    assert config["weights"] == "EMA" and config["training"]["final_loss"] > 0


def test_load_pretrained_returns_eval_model_with_ema_weights_and_ddim_scheduler(exported):
    folder, name, trainer = exported
    loaded = load_pretrained(name, root=folder)
    assert not loaded.model.training and loaded.config["image_size"] == 16
    assert type(loaded.scheduler).__name__ == "DDIMScheduler"
    assert loaded.scheduler.config.prediction_type == "epsilon"
    for a, b in zip(loaded.model.state_dict().values(), trainer.ema.model.state_dict().values()):
        assert torch.equal(a, b)
    images = loaded.sample(n=2, steps=3)
    assert images.shape == (2, 1, 16, 16) and images.abs().max() <= 1


def test_a_training_checkpoint_loads_like_a_shipped_model(exported):
    folder, _, trainer = exported
    loaded = load_model(folder / "run" / "last.pt")
    for a, b in zip(loaded.model.parameters(), trainer.ema.model.parameters()):
        assert torch.equal(a, b)


def test_unknown_name_and_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown pretrained model 'nope'.*available"):
        load_pretrained("nope")
    name = next(iter(PRETRAINED))
    with pytest.raises(FileNotFoundError, match="meddiff-lab train"):
        load_pretrained(name, root=tmp_path)
    assert not is_available(name, root=tmp_path)


@pytest.mark.parametrize("name", ["phantom64", "phantom64-v1"])
def test_shipped_unconditional_models_load_and_denoise_a_batch(name):
    """The shipped weights are committed: a missing file is a failure, not a skip."""
    loaded = load_pretrained(name)
    size = loaded.config["image_size"]
    assert size == 64 and not loaded.model.training
    with torch.no_grad():
        out = loaded.model(torch.randn(2, 1, size, size), torch.tensor([999, 10]))
    assert out.shape == (2, 1, size, size) and torch.isfinite(out).all()
    assert loaded.config["training"]["steps"] > 0 and loaded.config["training"]["command"].startswith("meddiff-lab")


def test_nan_weights_are_refused_by_the_python_api_naming_the_file(tmp_path):
    from safetensors.torch import load_file, save_file

    from meddiff_lab.models.pretrained import load_safetensors_model, pretrained_files

    weights, config = pretrained_files("phantom64")
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    (tmp_path / "broken.json").write_text(config.read_text())
    with pytest.raises(ValueError, match=r"broken\.safetensors.*NaN"):
        load_safetensors_model(broken)
