"""The U-Net's building blocks, for 2D and 3D images (``spatial_dims`` 2 or 3).

* :class:`ResBlock`: GroupNorm, SiLU, 3x3 convolution, twice, with the time (and class/metadata)
  embedding injected between the two as a per-channel scale and shift of the normalised features
  (adaptive group norm, "AdaGN", Dhariwal & Nichol 2021):
  :math:`h \\leftarrow \\mathrm{GroupNorm}(h)\\,(1 + \\gamma(e)) + \\beta(e)`.
* :class:`SelfAttention`: multi-head self-attention over all positions, through
  :func:`torch.nn.functional.scaled_dot_product_attention` (which picks a fused kernel), or two matrix
  products where that is faster (:func:`attention`).
* :class:`Downsample` (stride-2 convolution) and :class:`Upsample` (nearest-neighbour x2, then a
  convolution), as in MONAI's ``DiffusionModelUNet`` and diffusers' ``UNet2DModel``.

Feature maps are ``(B, C, H, W)`` or ``(B, C, D, H, W)``; embeddings are ``(B, E)``. The norms go through
:func:`group_norm`, which gives ``nn.GroupNorm``'s numbers faster on channels-last CPU feature maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}


def conv_nd(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Module:
    """A ``spatial_dims``-D convolution with "same" padding (for odd kernels, at stride 1)."""
    if spatial_dims not in _CONV:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return _CONV[spatial_dims](in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


def zero_init(module: nn.Module) -> nn.Module:
    """Set a module's parameters to zero, so a residual branch starts as the identity."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def _channels_last_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.ndim == 4 else torch.channels_last_3d


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.ndim in (4, 5) and not x.is_contiguous() and x.is_contiguous(memory_format=_channels_last_format(x))


class _Relayout(torch.autograd.Function):
    """``x`` copied into ``memory_format``, with the gradient handed back in ``x``'s own layout.

    ``x.contiguous(memory_format=...)`` alone passes the gradient back in the *new* layout; where ``x``
    also feeds a residual connection, autograd then sums two gradients of different layouts, which
    PyTorch's CPU kernels do element by element (measured 1.25x slower training in bf16).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
        ctx.input_format = _channels_last_format(x) if _is_channels_last(x) else torch.contiguous_format
        return x.contiguous(memory_format=memory_format)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.contiguous(memory_format=ctx.input_format), None


def group_norm(
    norm: nn.GroupNorm, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None
) -> torch.Tensor:
    """``norm(x)``, or with an embedding's scale and shift ``norm(x) * (1 + scale) + shift`` (AdaGN).

    The same numbers as the plain modules, computed faster on the CPU:

    * **on the channels-first layout.** PyTorch's CPU GroupNorm is slow on channels-last feature maps,
      above all its backward pass in bf16 (3-4x slower than on contiguous ones at 8-32 px), while the
      convolutions are faster on channels-last. So a channels-last ``x`` is normalised on a
      contiguous copy and the result (and, in the backward pass, the gradient) goes back to
      channels-last.
    * **AdaGN in the norm's own affine step.** GroupNorm over ``(B, C, *S)`` with ``G`` groups is
      GroupNorm over the view ``(1, B * C, *S)`` with ``B * G`` groups, whose affine weights may then
      differ per sample: weight ``w (1 + scale)`` and bias ``b (1 + scale) + shift``. One kernel pass
      instead of GroupNorm, a multiply and an add (and their backward passes).

    Args:
        norm: the ``nn.GroupNorm`` holding the groups, epsilon and (affine) weights.
        x: ``(B, C, *spatial)`` in any float dtype, contiguous or channels-last.
        scale, shift: ``(B, C)`` or ``None`` (plain GroupNorm).

    Returns:
        ``(B, C, *spatial)`` in ``x``'s dtype and memory layout.
    """
    if not isinstance(norm, nn.GroupNorm):  # replaced, e.g. by nn.Identity to study the network without it
        h = norm(x)
        if scale is None:
            return h
        view = (*scale.shape, *([1] * (x.ndim - 2)))
        return h * (1 + scale.reshape(view)) + shift.reshape(view)
    channels_last = _is_channels_last(x)
    h = _Relayout.apply(x, torch.contiguous_format) if channels_last else x.contiguous()
    if scale is None:
        h = norm(h)
    else:
        batch, channels = x.shape[:2]
        gain = 1 + scale
        weight = norm.weight * gain if norm.weight is not None else gain
        bias = norm.bias * gain + shift if norm.bias is not None else shift
        h = F.group_norm(
            h.reshape(1, batch * channels, *x.shape[2:]),
            batch * norm.num_groups,
            weight.reshape(-1),
            bias.reshape(-1),
            norm.eps,
        ).reshape(x.shape)
    return _Relayout.apply(h, _channels_last_format(x)) if channels_last else h


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``(B, heads, N, d)`` tensors.

    Through :func:`torch.nn.functional.scaled_dot_product_attention` except on the CPU in bf16/fp16
    with at most 256 positions (the U-Net's low-resolution levels), where its fused kernel is slower
    than the two matrix products (fwd+bwd measured 3.5x slower at 64 positions, 1.8x at 256; see
    ``benchmarks/README.md``).
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and q.shape[-2] <= 256:
        weights = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2), dim=-1)
        return weights @ v
    return F.scaled_dot_product_attention(q, k, v)


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` -> ``(B, C, 1, 1[, 1])`` so it broadcasts over ``like``'s spatial axes."""
    return values.reshape(values.shape + (1,) * (like.ndim - 2))


class ResBlock(nn.Module):
    """Residual block with adaptive group norm (scale-shift) conditioning on an embedding.

    ``out = skip(x) + conv2(SiLU(GN(conv1(SiLU(GN(x)))) * (1 + scale) + shift))`` where
    ``scale, shift = Linear(SiLU(emb))``. ``conv2`` starts at zero, so a new block is the identity
    (or the 1x1 skip projection when the channel count changes).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of ``x``.
        out_channels: channels of the output.
        emb_channels: size of the embedding ``emb``.
        norm_num_groups: GroupNorm groups (must divide both channel counts).
        norm_eps: GroupNorm epsilon.
        dropout: dropout probability before the second convolution.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_num_groups, in_channels, eps=norm_eps)
        self.conv1 = conv_nd(spatial_dims, in_channels, out_channels)
        self.emb_proj = nn.Linear(emb_channels, 2 * out_channels)
        self.norm2 = nn.GroupNorm(norm_num_groups, out_channels, eps=norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(conv_nd(spatial_dims, out_channels, out_channels))
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else conv_nd(spatial_dims, in_channels, out_channels, kernel_size=1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, in_channels, *spatial)``, ``emb``: ``(B, emb_channels)``.

        Returns ``(B, out_channels, *spatial)``."""
        h = self.conv1(F.silu(group_norm(self.norm1, x)))
        scale, shift = self.emb_proj(F.silu(emb)).chunk(2, dim=1)
        h = group_norm(self.norm2, h, scale, shift)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over every spatial position, with a residual connection.

    ``out = x + proj(softmax(q k^T / sqrt(d)) v)`` with ``q, k, v`` linear maps of ``GN(x)``, one per
    head of ``num_head_channels`` channels. The output projection starts at zero (identity block).

    Args:
        channels: channels of ``x`` (a multiple of ``num_head_channels``).
        num_head_channels: channels per head.
        norm_num_groups: GroupNorm groups.
        norm_eps: GroupNorm epsilon.
    """

    def __init__(
        self, channels: int, num_head_channels: int = 32, norm_num_groups: int = 32, norm_eps: float = 1e-6
    ) -> None:
        super().__init__()
        if channels % num_head_channels != 0:
            raise ValueError(
                f"SelfAttention: channels ({channels}) must be a multiple of num_head_channels ({num_head_channels})"
            )
        self.num_heads = channels // num_head_channels
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=norm_eps)
        self.to_qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, *spatial)``. Returns the same shape."""
        batch, channels, *spatial = x.shape
        tokens = group_norm(self.norm, x).flatten(2).transpose(1, 2)  # (B, N, C)
        qkv = self.to_qkv(tokens).unflatten(-1, (3, self.num_heads, -1))  # (B, N, 3, heads, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, d)
        attended = attention(q, k, v)  # (B, heads, N, d)
        attended = self.proj(attended.transpose(1, 2).flatten(2))  # (B, N, C)
        return x + attended.transpose(1, 2).reshape(batch, channels, *spatial)


class Downsample(nn.Module):
    """Halve every spatial size with a stride-2 3x3 convolution. ``(B, C, *S) -> (B, C, *S/2)``."""

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        self.conv = conv_nd(spatial_dims, channels, channels, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double every spatial size: nearest-neighbour, then a 3x3 convolution. ``(B, C, *S) -> (B, C, *2S)``."""

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        self.conv = conv_nd(spatial_dims, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
