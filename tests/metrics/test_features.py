"""Tests for meddiff_lab/metrics/features.py: the domain encoder, the Inception and RadImageNet loaders."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from meddiff_lab.metrics import features as FT


def test_phantom_encoder_shapes_and_any_input_size():
    encoder = FT.PhantomEncoder().eval()
    with torch.no_grad():
        out = encoder(torch.rand(3, 1, 64, 64) * 2 - 1)
        small = encoder.features(torch.rand(2, 1, 32, 32) * 2 - 1)
    assert out["features"].shape == (3, 32) and small.shape == (2, 32)
    assert out["quality"].shape == (3, 2)
    assert out["label_logits"].shape == (3, 14) and out["ctr"].shape == (3,)
    assert torch.allclose(out["projection"].norm(dim=1), torch.ones(3), atol=1e-5)


def test_encoder_save_and_load_round_trip_gives_the_same_features(tmp_path):
    encoder = FT.PhantomEncoder(channels=(8, 16), feature_dim=8, ctr_mean=0.45).eval()
    path = FT.save_phantom_encoder(encoder, tmp_path, card={"training": {"command": "x"}})
    card = json.loads((tmp_path / "phantom_encoder.json").read_text())
    assert card["config"]["feature_dim"] == 8 and card["training"]["command"] == "x"
    loaded = FT.load_phantom_encoder(path)
    images = torch.rand(4, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded(images), encoder.features(images), atol=1e-6)
    assert FT.load_phantom_encoder(path, output="encoder").config["ctr_mean"] == pytest.approx(0.45)
    copy_embedding = FT.load_phantom_encoder(path, output="copy_embedding")
    with torch.no_grad():
        embedded = copy_embedding(images)
        assert torch.allclose(embedded, encoder(images)["projection"], atol=1e-6)
    assert embedded.shape == (4, 64) and torch.allclose(embedded.norm(dim=1), torch.ones(4), atol=1e-5)
    with pytest.raises(ValueError, match="output must be one of"):
        FT.load_phantom_encoder(path, output="logits")


def test_shipped_phantom_encoder_is_small_and_loads():
    path = FT.find_weights([f"{FT.PHANTOM_ENCODER_NAME}.safetensors"])
    if path is None:
        pytest.skip("data/pretrained/phantom_encoder.safetensors not shipped in this checkout")
    assert path.stat().st_size < 2 * 1024 * 1024
    card = json.loads(path.with_suffix(".json").read_text())
    assert "command" in card["training"] and card["training"]["hardware"]
    features = FT.extract_features(torch.rand(5, 1, 64, 64), "phantom", value_range=(0, 1))
    assert features.shape == (5, card["config"]["feature_dim"]) and torch.isfinite(features).all()


def test_missing_weights_raise_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(FT, "pretrained_dirs", lambda: [tmp_path])
    with pytest.raises(FT.WeightsNotAvailable, match="inception-2015-12-05.pt"):
        FT.load_inception()
    with pytest.raises(FT.WeightsNotAvailable, match="RadImageNet"):
        FT.load_radimagenet()
    with pytest.raises(FT.WeightsNotAvailable, match="train-encoder"):
        FT.load_phantom_encoder()
    assert issubclass(FT.WeightsNotAvailable, FileNotFoundError)


class _FakeFIDInception(nn.Module):
    """Stands in for the TorchScript FID Inception: same call, records what it was fed."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        stats = torch.stack(
            [x.mean(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3)), torch.full((x.shape[0],), float(x.shape[-1]))], dim=1
        )
        return torch.cat([stats, torch.zeros(x.shape[0], 2045)], dim=1) if return_features else stats


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script, used only to make the test file
def test_inception_loader_reads_a_torchscript_file_and_feeds_it_rgb_299_in_0_255(tmp_path):
    path = tmp_path / FT.INCEPTION_FILE
    torch.jit.script(_FakeFIDInception()).save(str(path))
    extractor = FT.load_inception(path)
    features = FT.extract_features(torch.ones(2, 1, 32, 32), extractor, value_range=(0, 1))
    assert features.shape == (2, 2048)
    assert features[0, 1] == pytest.approx(255.0) and features[0, 2] == 299


def test_inception_loader_rejects_a_file_that_is_not_torchscript(tmp_path):
    bad = tmp_path / "inception.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="TorchScript"):
        FT.load_inception(bad)


def test_radimagenet_loader_reads_a_state_dict_in_the_converted_layout(tmp_path):
    reference = FT.RadImageNetResNet50().eval()
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}  # saved from DataParallel
    path = tmp_path / "RadImageNet-ResNet50_notop.pth"
    torch.save(state, path)
    extractor = FT.load_radimagenet(path)
    images = torch.rand(2, 1, 64, 64) * 2 - 1
    features = FT.extract_features(images, extractor)
    with torch.no_grad():
        expected = reference(
            (images + 1).div(2).repeat(1, 3, 1, 1) - torch.tensor([0.406, 0.456, 0.485]).view(1, 3, 1, 1)
        ).mean(dim=(2, 3))
    assert features.shape == (2, 2048)
    assert torch.allclose(features, expected, atol=1e-5)


def test_radimagenet_loader_names_a_file_that_does_not_fit(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="does not fit a RadImageNet ResNet-50"):
        FT.load_radimagenet(path)


def test_extract_features_checks_its_inputs():
    with pytest.raises(ValueError, match="unknown extractor"):
        FT.extract_features(torch.rand(2, 1, 8, 8), "vgg")
    with pytest.raises(ValueError, match="grey 2D images"):
        FT.extract_features(torch.rand(2, 3, 8, 8), lambda x: x.flatten(1))
    identity = FT.extract_features(torch.full((2, 8, 8), 0.5), lambda x: x.flatten(1), value_range=(0, 1))
    assert torch.allclose(identity, torch.zeros(2, 64))  # 0.5 in [0, 1] is 0 in [-1, 1]
