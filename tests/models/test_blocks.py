"""Tests for meddiff_lab/models/blocks.py: residual block, attention, up/down sampling in 2D and 3D."""

import pytest
import torch

from meddiff_lab.models.blocks import Downsample, ResBlock, SelfAttention, Upsample, conv_nd


@pytest.mark.parametrize("spatial", [(8, 8), (4, 4, 4)])
def test_resblock_shapes_and_identity_at_init(spatial):
    dims = len(spatial)
    block = ResBlock(dims, 32, 32, emb_channels=16)
    x, emb = torch.randn(2, 32, *spatial), torch.randn(2, 16)
    torch.testing.assert_close(block(x, emb), x)  # conv2 starts at zero
    assert ResBlock(dims, 32, 64, emb_channels=16)(x, emb).shape == (2, 64, *spatial)


def test_resblock_uses_the_embedding_as_scale_and_shift():
    torch.manual_seed(0)
    block = ResBlock(2, 32, 32, emb_channels=16)
    torch.nn.init.normal_(block.conv2.weight)
    x = torch.randn(1, 32, 8, 8)
    assert not torch.allclose(block(x, torch.zeros(1, 16)), block(x, torch.ones(1, 16)))
    assert block.emb_proj.out_features == 2 * 32  # scale and shift


def test_self_attention_matches_a_by_hand_softmax():
    torch.manual_seed(0)
    attention = SelfAttention(64, num_head_channels=32)
    torch.nn.init.normal_(attention.proj.weight, std=0.1)
    x = torch.randn(2, 64, 4, 4)
    tokens = attention.norm(x).flatten(2).transpose(1, 2)
    q, k, v = attention.to_qkv(tokens).chunk(3, dim=-1)
    heads = lambda t: t.unflatten(-1, (2, 32)).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / 32 ** 0.5, dim=-1)
    out = attention.proj((weights @ heads(v)).transpose(1, 2).flatten(2))
    expected = x + out.transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(attention(x), expected, rtol=1e-4, atol=1e-5)


def test_self_attention_3d_and_bad_heads():
    assert SelfAttention(32, 16)(torch.randn(1, 32, 2, 4, 4)).shape == (1, 32, 2, 4, 4)
    with pytest.raises(ValueError, match="num_head_channels"):
        SelfAttention(48, 32)


@pytest.mark.parametrize("dims", [2, 3])
def test_down_and_up_sampling_halve_and_double(dims):
    x = torch.randn(1, 32, *(8,) * dims)
    assert Downsample(dims, 32)(x).shape == (1, 32, *(4,) * dims)
    assert Upsample(dims, 32)(x).shape == (1, 32, *(16,) * dims)


def test_conv_nd_rejects_other_dims():
    with pytest.raises(ValueError, match="spatial_dims"):
        conv_nd(1, 1, 1)
    assert isinstance(conv_nd(3, 1, 2), torch.nn.Conv3d)
