"""Tests for meddiff_lab/models/blocks.py: residual block, attention, up/down sampling in 2D and 3D."""

import pytest
import torch

from meddiff_lab.models.blocks import Downsample, ResBlock, SelfAttention, Upsample, attention, conv_nd, group_norm


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
    weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / 32**0.5, dim=-1)
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


@pytest.mark.parametrize("spatial", [(8, 8), (4, 4, 4)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_group_norm_gives_the_plain_modules_numbers_and_gradients_in_the_input_layout(spatial, channels_last):
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(8, 32)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(3, 32, *spatial)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if len(spatial) == 2 else torch.channels_last_3d)
    scale, shift = torch.randn(3, 32), torch.randn(3, 32)
    bcast = (slice(None), slice(None)) + (None,) * len(spatial)
    for args, reference in [
        ((), lambda v: norm(v)),
        ((scale, shift), lambda v: norm(v) * (1 + scale[bcast]) + shift[bcast]),
    ]:
        ours_x, ref_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ours, expected = group_norm(norm, ours_x, *args), reference(ref_x)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
        assert ours.stride() == x.stride()  # same layout out as in
        grad = torch.randn_like(expected)
        ours.backward(grad)
        expected.backward(grad)
        torch.testing.assert_close(ours_x.grad, ref_x.grad, rtol=1e-4, atol=1e-4)
        assert ours_x.grad.stride() == x.stride()


def test_attention_matches_scaled_dot_product_attention_in_every_precision():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 64, 32).unbind(0)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(attention(q, k, v), expected)
    low = attention(q.bfloat16(), k.bfloat16(), v.bfloat16())  # the explicit CPU path
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, rtol=0.05, atol=0.05)


def test_a_norm_replaced_by_identity_gives_the_plain_adagn_formula():
    """Notebook 04 removes the GroupNorms (nn.Identity) to see what the convolutions alone reach."""
    from torch import nn

    x = torch.randn(2, 4, 5, 5)
    scale, shift = torch.randn(2, 4), torch.randn(2, 4)
    out = group_norm(nn.Identity(), x, scale, shift)
    assert torch.allclose(out, x * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
    assert torch.equal(group_norm(nn.Identity(), x), x)
