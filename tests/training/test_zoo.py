"""Tests for meddiff_lab/training/zoo.py: the zoo's conditional training sets and a zoo job end to end
(the models and guidance: tests/models/test_conditioning.py)."""

from __future__ import annotations

import pytest
import torch
from tiny_runs import tiny_run_config

from meddiff_lab.training.zoo import zoo_training_set


@pytest.mark.parametrize(
    "conditioning, key, values",
    [("findings_metadata", "cond", None), ("mask", "mask", {-1.0, 0.0, 1.0}), ("edges", "mask", {-1.0, 1.0})],
)
def test_training_sets_pair_each_image_with_its_condition(conditioning, key, values):
    images, conditions = zoo_training_set(conditioning, 6, 32, seed=2)
    assert images.shape == (6, 1, 32, 32) and float(images.min()) >= -1 and float(images.max()) <= 1
    assert set(conditions) == {key} and len(conditions[key]) == 6
    if values is not None:
        assert set(torch.unique(conditions[key]).tolist()) <= values
    assert zoo_training_set("none", 2, 32)[1] == {}
    with pytest.raises(ValueError, match="conditioning"):
        zoo_training_set("text", 2, 32)


TINY = tiny_run_config(learning_rate=1e-3)


def test_a_zoo_config_trains_exports_and_loads_back(tmp_path):
    """conditioning: findings_metadata → a vector-conditioned model; edges → a ControlNet on that base."""
    from meddiff_lab.models.pretrained import export_checkpoint, load_model
    from meddiff_lab.training import TrainConfig
    from meddiff_lab.training.trainer import train_from_config

    vector_run = train_from_config(dict(TINY, conditioning="findings_metadata"), tmp_path / "cond", progress=False)
    assert vector_run.model.cond_dim == 18 and set(vector_run.conditions) == {"cond"}
    exported = export_checkpoint(tmp_path / "cond" / "last.pt", tmp_path / "cond.safetensors")
    loaded = load_model(exported)
    assert loaded.config["conditioning"] == "findings_metadata" and loaded.model.cond_dim == 18
    x, t, cond = torch.randn(2, 1, 16, 16), torch.tensor([5, 900]), torch.randn(2, 18)
    with torch.no_grad():
        expected = vector_run.ema.model(x, t, cond=cond)
        got = loaded.model(x, t, cond=cond)
    assert torch.allclose(got, expected, atol=1e-5), "the shipped file holds the EMA weights"

    # an unconditional base to steer, then an edge ControlNet trained on it from a config
    train_from_config(TINY, tmp_path / "base", progress=False)
    base_file = export_checkpoint(tmp_path / "base" / "last.pt", tmp_path / "base.safetensors")
    edge_config = dict(TINY, conditioning="edges", base_model=str(base_file))
    edge_run = train_from_config(edge_config, tmp_path / "edges", progress=False)
    trainable = {n for n, p in edge_run.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("controlnet.") for n in trainable), "only the branch trains"
    edge_model = load_model(export_checkpoint(tmp_path / "edges" / "last.pt", tmp_path / "edges.safetensors")).model
    base_model = load_model(base_file).model
    with torch.no_grad():
        steered = edge_model(x, t, mask=torch.ones(2, 1, 16, 16))
        assert steered.shape == (2, 1, 16, 16)
        assert torch.allclose(edge_model.base(x, t), base_model(x, t), atol=1e-6), "the base stays frozen"
    with pytest.raises(ValueError, match="base_model"):
        TrainConfig.from_dict(dict(TINY, conditioning="mask"))
