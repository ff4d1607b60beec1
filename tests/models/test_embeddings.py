"""Tests for meddiff_lab/models/embeddings.py: sinusoidal timestep, class and metadata embeddings."""

import pytest
import torch
from diffusers.models.embeddings import get_timestep_embedding as diffusers_embedding
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding as monai_embedding

from meddiff_lab.models.embeddings import ClassEmbedding, ConditionEmbedding, TimestepEmbedding, timestep_embedding


@pytest.mark.parametrize("dim", [32, 33, 128])
def test_timestep_embedding_matches_diffusers_and_monai(dim):
    t = torch.tensor([0, 1, 17, 500, 999])
    ours = timestep_embedding(t, dim)
    expected = diffusers_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(ours, monai_embedding(t, dim))


@pytest.mark.parametrize("flip, shift", [(False, 1.0), (True, 1.0), (False, 0.0)])
def test_timestep_embedding_options_match_diffusers(flip, shift):
    t = torch.tensor([3.5, 250.0])
    torch.testing.assert_close(
        timestep_embedding(t, 64, flip_sin_to_cos=flip, downscale_freq_shift=shift),
        diffusers_embedding(t, 64, flip_sin_to_cos=flip, downscale_freq_shift=shift),
    )


def test_timestep_embedding_accepts_int_and_scalar_tensor():
    expected = timestep_embedding(torch.tensor([7]), 16)
    torch.testing.assert_close(timestep_embedding(7, 16), expected)
    torch.testing.assert_close(timestep_embedding(torch.tensor(7), 16), expected)
    assert timestep_embedding(0, 16)[0, :8].eq(1).all()  # cos(0) = 1 first


def test_timestep_embedding_rejects_bad_shapes():
    with pytest.raises(ValueError, match="timesteps"):
        timestep_embedding(torch.zeros(2, 2), 16)


def test_timestep_mlp_shape():
    assert TimestepEmbedding(32, 128)(torch.tensor([1, 2, 3])).shape == (3, 128)


def test_class_embedding_has_null_class_and_checks_range():
    embedding = ClassEmbedding(num_classes=3, embedding_dim=8)
    assert embedding.null_class == 3
    assert embedding(torch.tensor([0, 3])).shape == (2, 8)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        embedding(torch.tensor([4]))
    with pytest.raises(ValueError, match="integer"):
        embedding(torch.tensor([0.5]))


def test_condition_embedding_checks_width():
    embedding = ConditionEmbedding(cond_dim=4, embedding_dim=8)
    assert embedding(torch.randn(2, 4)).shape == (2, 8)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        embedding(torch.randn(2, 5))
