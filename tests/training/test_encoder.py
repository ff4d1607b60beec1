"""Tests for meddiff_lab/training/encoder.py: config, augmentation, losses, a tiny training run."""

from __future__ import annotations

import math

import pytest
import torch

from meddiff_lab.training import encoder as ET


def test_config_reads_the_sectioned_yaml_and_rejects_unknown_keys(tmp_path):
    config = ET.EncoderConfig.from_yaml("configs/phantom_encoder.yaml")
    assert config.feature_dim == 32 and config.threads == 1 and isinstance(config.channels, tuple)
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        ET.EncoderConfig.from_mapping({"optim": {"stepz": 3}})


def test_nt_xent_is_low_when_views_match_and_log_2b_minus_1_when_uninformative():
    z = torch.nn.functional.normalize(torch.eye(8)[:4] * 10, dim=1)
    assert ET.nt_xent(z, z, temperature=0.05) < 1e-3
    same = torch.nn.functional.normalize(torch.ones(4, 8), dim=1)
    assert float(ET.nt_xent(same, same, 0.2)) == pytest.approx(math.log(7), rel=1e-5)


def test_augment_keeps_shape_and_range_and_changes_the_image():
    config = ET.EncoderConfig()
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    views = ET.augment(images, config, torch.Generator().manual_seed(0))
    assert views.shape == images.shape and views.min() >= -1 and views.max() <= 1
    assert not torch.allclose(views, images)


def test_draw_degradation_leaves_the_clean_share_untouched():
    config = ET.EncoderConfig(degrade_probability=0.5)
    noise, blur = ET.draw_degradation(4000, config, torch.Generator().manual_seed(0))
    clean = (noise == 0) & (blur == 0)
    assert 0.45 < float(clean.float().mean()) < 0.55
    assert noise.max() <= config.max_noise_std and blur.max() <= config.max_blur_sigma


def test_a_tiny_training_run_writes_weights_and_a_card(tmp_path):
    config = ET.EncoderConfig(
        image_size=32,
        train_images=24,
        val_images=24,
        channels=(8, 16),
        feature_dim=8,
        projection_dim=8,
        steps=3,
        batch_size=8,
        warmup_steps=1,
        log_every=1,
        threads=None,
    )
    encoder, card = ET.train_encoder(config, tmp_path, command="meddiff-lab metrics train-encoder ...", progress=False)
    assert (tmp_path / "phantom_encoder.safetensors").exists() and (tmp_path / "phantom_encoder.json").exists()
    assert card["training"]["command"].startswith("meddiff-lab") and len(card["training"]["history"]) == 3
    assert 0.0 <= card["evaluation"]["label_auroc_mean"] <= 1.0
    assert set(card["evaluation"]["copy_detection"]) == {"copy_embedding", "features", "pixels"}
    assert not encoder.training
