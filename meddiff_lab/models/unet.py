"""A denoising U-Net for 2D and 3D images, with the argument names of MONAI's ``DiffusionModelUNet``.

Layout (the same as MONAI's ``DiffusionModelUNet`` and diffusers' ``UNet2DModel``)::

    x ──conv_in──► level 0 ──down──► level 1 ──down──► … level L-1 ──► middle (res, attn, res)
                     │ skips           │ skips              │ skips          │
    out ◄─conv_out─ level 0 ◄──up─── level 1 ◄──up─── … level L-1 ◄────────┘

* every down level has ``num_res_blocks`` residual blocks (each followed by self-attention where
  ``attention_levels`` says so), then a stride-2 convolution (not on the last level);
* every up level has ``num_res_blocks + 1`` residual blocks, each taking one skip connection
  (concatenated on channels), then nearest-neighbour upsampling and a convolution;
* the timestep embedding (plus the class and metadata embeddings when used) reaches every residual
  block as a per-channel scale and shift after group normalisation (AdaGN).

Conditioning:

* **masks or other images**: give them as extra input channels (``in_channels = 1 + mask channels``)
  and concatenate them to ``x``.
* **a class** (``num_classes``): ``class_labels`` (B,) int64 in ``[0, num_classes]``; the index
  ``num_classes`` (``model.null_class``) means "no label". Replace a fraction of labels by it while
  training and the same network also learns the unconditional model, as classifier-free guidance needs.
  ``class_labels=None`` on a class-conditional model means the null class for the whole batch.
* **a metadata vector** (``cond_dim``): ``cond`` (B, cond_dim) float, through a small MLP into the same
  embedding, hence into every block's adaptive group norm. ``cond=None`` adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from meddiff_lab.models.blocks import Downsample, ResBlock, SelfAttention, Upsample, conv_nd, group_norm, zero_init
from meddiff_lab.models.embeddings import ClassEmbedding, ConditionEmbedding, TimestepEmbedding


def _per_level(value: int | Sequence[int], levels: int, name: str) -> tuple[int, ...]:
    values = (value,) * levels if isinstance(value, int) else tuple(value)
    if len(values) != levels:
        raise ValueError(f"{name} must be an int or have one value per level ({levels}), got {value!r}")
    return values


class DownLevel(nn.Module):
    """One resolution of the encoder: residual blocks (+ attention), then an optional downsampling."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        num_res_blocks: int,
        with_attention: bool,
        num_head_channels: int,
        add_downsample: bool,
        norm_num_groups: int,
        norm_eps: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResBlock(
                spatial_dims,
                in_channels if i == 0 else out_channels,
                out_channels,
                emb_channels,
                norm_num_groups,
                norm_eps,
                dropout,
            )
            for i in range(num_res_blocks)
        )
        self.attentions = nn.ModuleList(
            SelfAttention(out_channels, num_head_channels, norm_num_groups, norm_eps)
            if with_attention
            else nn.Identity()
            for _ in range(num_res_blocks)
        )
        self.downsample = Downsample(spatial_dims, out_channels) if add_downsample else None

    def forward(self, h: torch.Tensor, emb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Runs the level, appending every intermediate feature map to ``skips``."""
        for resnet, attention in zip(self.resnets, self.attentions):
            h = attention(resnet(h, emb))
            skips.append(h)
        if self.downsample is not None:
            h = self.downsample(h)
            skips.append(h)
        return h


class MiddleBlock(nn.Module):
    """The bottleneck: residual block, self-attention, residual block (at the lowest resolution)."""

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        emb_channels: int,
        num_head_channels: int,
        norm_num_groups: int,
        norm_eps: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.resnet1 = ResBlock(spatial_dims, channels, channels, emb_channels, norm_num_groups, norm_eps, dropout)
        self.attention = SelfAttention(channels, num_head_channels, norm_num_groups, norm_eps)
        self.resnet2 = ResBlock(spatial_dims, channels, channels, emb_channels, norm_num_groups, norm_eps, dropout)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.resnet2(self.attention(self.resnet1(h, emb)), emb)


class UpLevel(nn.Module):
    """One resolution of the decoder: residual blocks each eating one skip (+ attention), then upsampling."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: Sequence[int],
        out_channels: int,
        emb_channels: int,
        with_attention: bool,
        num_head_channels: int,
        add_upsample: bool,
        norm_num_groups: int,
        norm_eps: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResBlock(
                spatial_dims,
                (in_channels if i == 0 else out_channels) + skip,
                out_channels,
                emb_channels,
                norm_num_groups,
                norm_eps,
                dropout,
            )
            for i, skip in enumerate(skip_channels)
        )
        self.attentions = nn.ModuleList(
            SelfAttention(out_channels, num_head_channels, norm_num_groups, norm_eps)
            if with_attention
            else nn.Identity()
            for _ in skip_channels
        )
        self.upsample = Upsample(spatial_dims, out_channels) if add_upsample else None

    def forward(self, h: torch.Tensor, emb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Runs the level, taking (popping) its skip connections from the end of ``skips``."""
        for resnet, attention in zip(self.resnets, self.attentions):
            h = attention(resnet(torch.cat([h, skips.pop()], dim=1), emb))
        if self.upsample is not None:
            h = self.upsample(h)
        return h


class UNet(nn.Module):
    """Denoising U-Net predicting noise (or x0, or v) from a noisy image and its timestep.

    Args:
        spatial_dims: 2 for images ``(B, C, H, W)``, 3 for volumes ``(B, C, D, H, W)``.
        in_channels: input channels (1 for a radiograph; add one per conditioning mask).
        out_channels: output channels.
        channels: feature channels per resolution level (each a multiple of ``norm_num_groups``).
        attention_levels: per level, whether residual blocks are followed by self-attention.
        num_res_blocks: residual blocks per down level (an int or one per level); up levels get one more.
        num_head_channels: channels per attention head (an int or one per level).
        num_classes: number of classes for class conditioning (``None``: unconditional). Index
            ``num_classes`` is the null class for classifier-free guidance.
        cond_dim: size of a metadata vector for adaptive-group-norm conditioning (``None``: none).
        norm_num_groups: GroupNorm groups.
        norm_eps: GroupNorm epsilon.
        dropout: dropout probability inside residual blocks.
        channels_last: keep feature maps and convolution weights channels-last (NHWC / NDHWC), the
            layout oneDNN and cuDNN convolutions run fastest on. ``None`` (default): on for 2D (faster
            CPU training here), off for 3D (slower here); see ``benchmarks/README.md``. Inputs and
            outputs keep the usual layout, and state dicts load either way.

    Spatial sizes must be divisible by ``2 ** (len(channels) - 1)``.

    Example::

        model = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(32, 64, 128),
                     attention_levels=(False, False, True), num_res_blocks=1, num_head_channels=32)
        eps = model(x_t, t)                      # x_t (B, 1, H, W), t (B,) int64 -> (B, 1, H, W)
        guided = UNet(num_classes=15)            # class_labels in 0..14, 15 = null (unconditional)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128),
        attention_levels: Sequence[bool] = (False, False, True),
        num_res_blocks: int | Sequence[int] = 1,
        num_head_channels: int | Sequence[int] = 32,
        num_classes: int | None = None,
        cond_dim: int | None = None,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        channels = tuple(int(c) for c in channels)
        attention_levels = tuple(bool(a) for a in attention_levels)
        levels = len(channels)
        if levels < 1 or len(attention_levels) != levels:
            raise ValueError(
                f"attention_levels must have one entry per level of channels {channels}, got {attention_levels}"
            )
        if any(c % norm_num_groups for c in channels):
            raise ValueError(
                f"every entry of channels {channels} must be a multiple of norm_num_groups={norm_num_groups}"
            )
        num_res_blocks = _per_level(num_res_blocks, levels, "num_res_blocks")
        num_head_channels = _per_level(num_head_channels, levels, "num_head_channels")
        for level, (c, heads, attend) in enumerate(zip(channels, num_head_channels, attention_levels)):
            if (attend or level == levels - 1) and c % heads:
                raise ValueError(f"channels[{level}]={c} must be a multiple of num_head_channels[{level}]={heads}")
        self.config = dict(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            attention_levels=attention_levels,
            num_res_blocks=num_res_blocks,
            num_head_channels=num_head_channels,
            num_classes=num_classes,
            cond_dim=cond_dim,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            dropout=dropout,
            channels_last=channels_last,
        )
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.channels, self.num_classes, self.cond_dim = channels, num_classes, cond_dim
        if channels_last is None:
            channels_last = spatial_dims == 2
        channels_last_format = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        self.memory_format = channels_last_format if channels_last else torch.contiguous_format
        emb_channels = 4 * channels[0]
        common = dict(norm_num_groups=norm_num_groups, norm_eps=norm_eps, dropout=dropout)

        self.time_embedding = TimestepEmbedding(channels[0], emb_channels)
        self.class_embedding = ClassEmbedding(num_classes, emb_channels) if num_classes is not None else None
        self.cond_embedding = ConditionEmbedding(cond_dim, emb_channels) if cond_dim is not None else None
        self.conv_in = conv_nd(spatial_dims, in_channels, channels[0])

        self.down_levels = nn.ModuleList()
        skip_channels = [channels[0]]
        for level, out_c in enumerate(channels):
            in_c = channels[max(level - 1, 0)]
            last = level == levels - 1
            self.down_levels.append(
                DownLevel(
                    spatial_dims,
                    in_c,
                    out_c,
                    emb_channels,
                    num_res_blocks[level],
                    attention_levels[level],
                    num_head_channels[level],
                    add_downsample=not last,
                    **common,
                )
            )
            skip_channels += [out_c] * (num_res_blocks[level] + (0 if last else 1))

        self.middle = MiddleBlock(spatial_dims, channels[-1], emb_channels, num_head_channels[-1], **common)

        self.up_levels = nn.ModuleList()
        h_channels = channels[-1]
        for level in reversed(range(levels)):
            n = num_res_blocks[level] + 1
            level_skips = [skip_channels.pop() for _ in range(n)]
            self.up_levels.append(
                UpLevel(
                    spatial_dims,
                    h_channels,
                    level_skips,
                    channels[level],
                    emb_channels,
                    attention_levels[level],
                    num_head_channels[level],
                    add_upsample=level > 0,
                    **common,
                )
            )
            h_channels = channels[level]

        self.norm_out = nn.GroupNorm(norm_num_groups, channels[0], eps=norm_eps)
        self.conv_out = zero_init(conv_nd(spatial_dims, channels[0], out_channels))
        self.to(memory_format=self.memory_format)  # convolution weights in the layout of the feature maps

    @classmethod
    def from_config(cls, model_config: Mapping[str, Any], image_size: int | None = None) -> UNet:
        """The U-Net a config's ``model`` section describes (a training YAML, a shipped model's JSON).

        Args:
            model_config: ``UNet`` keyword arguments as YAML or JSON gives them back (lists are
                turned into tuples by :func:`unet_kwargs`).
            image_size: when given, checked: each of the ``len(channels) - 1`` downsamplings halves
                it, so it must be a multiple of ``2 ** (len(channels) - 1)``.

        Raises:
            ValueError: naming ``image_size`` and the number of levels when they do not fit.
        """
        kwargs = unet_kwargs(model_config)
        if image_size is not None:
            levels = len(kwargs.get("channels", (32, 64, 128)))
            if image_size % 2 ** (levels - 1):
                raise ValueError(
                    f"image_size {image_size} must be a multiple of {2 ** (levels - 1)}: a U-Net with "
                    f"{levels} levels (model.channels) halves it {levels - 1} time(s)"
                )
        return cls(**kwargs)

    @property
    def null_class(self) -> int | None:
        """The class index meaning "no label" (classifier-free guidance), or ``None`` if unconditional."""
        return self.num_classes

    def embed(
        self,
        timesteps: torch.Tensor | int | float,
        batch_size: int,
        class_labels: torch.Tensor | int | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The embedding every residual block sees: time (+ class) (+ metadata). Returns ``(B, 4 * channels[0])``."""
        timesteps = torch.as_tensor(timesteps, device=self.conv_in.weight.device)
        if timesteps.ndim > 1 or timesteps.numel() not in (1, batch_size):
            raise ValueError(
                f"timesteps must be a number or a ({batch_size},) tensor, got shape {tuple(timesteps.shape)}"
            )
        emb = self.time_embedding(timesteps.reshape(-1).expand(batch_size))
        if self.class_embedding is not None:
            if class_labels is None:
                class_labels = self.class_embedding.null_class
            labels = torch.as_tensor(class_labels, device=emb.device).reshape(-1).expand(batch_size)
            emb = emb + self.class_embedding(labels)
        elif class_labels is not None:
            raise ValueError(
                "class_labels were given but this UNet has num_classes=None; "
                "build it with UNet(..., num_classes=N) for class conditioning"
            )
        if self.cond_embedding is not None and cond is not None:
            emb = emb + self.cond_embedding(cond)
        elif cond is not None:
            raise ValueError("cond was given but this UNet has cond_dim=None; build it with UNet(..., cond_dim=D)")
        return emb

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | int | float,
        class_labels: torch.Tensor | int | None = None,
        cond: torch.Tensor | None = None,
        *,
        down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict from a noisy batch.

        Args:
            x: ``(B, in_channels, H, W)`` (or ``(B, in_channels, D, H, W)``) float, sizes divisible by
                ``2 ** (len(channels) - 1)``.
            timesteps: an int, a 0-d tensor or a ``(B,)`` tensor.
            class_labels: ``(B,)`` int64 in ``[0, num_classes]`` (``num_classes`` = null), or an int.
            cond: ``(B, cond_dim)`` float metadata vector.
            down_block_additional_residuals: one tensor per skip connection, added to it before the
                decoder uses it (what a ControlNet contributes; the names are MONAI's and diffusers').
            mid_block_additional_residual: added to the middle block's output.

        Returns:
            ``(B, out_channels, *x.shape[2:])``, the same dtype as ``x``.
        """
        self._check_input(x)
        emb = self.embed(timesteps, x.shape[0], class_labels, cond)
        h, skips = self.encode(self.conv_in(x), emb)
        if down_block_additional_residuals is not None:
            if len(down_block_additional_residuals) != len(skips):
                raise ValueError(
                    f"down_block_additional_residuals: expected {len(skips)} tensors (one per skip "
                    f"connection), got {len(down_block_additional_residuals)}"
                )
            skips = [s + r for s, r in zip(skips, down_block_additional_residuals)]
        if mid_block_additional_residual is not None:
            h = h + mid_block_additional_residual
        for level in self.up_levels:
            h = level(h, emb, skips)
        return self.conv_out(nn.functional.silu(group_norm(self.norm_out, h))).contiguous()

    def encode(self, h: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The encoder half: down levels, then the middle block.

        Args:
            h: ``conv_in``'s output, ``(B, channels[0], *spatial)``.
            emb: :meth:`embed`'s output, ``(B, 4 * channels[0])``.

        Returns:
            The middle block's output ``(B, channels[-1], *spatial / 2 ** (levels - 1))`` and the list of
            skip connections, in the order the encoder makes them (the decoder pops from the end).
        """
        h = h.contiguous(memory_format=self.memory_format)  # later layers keep this layout
        skips = [h]
        for level in self.down_levels:
            h = level(h, emb, skips)
        return self.middle(h, emb), skips

    def _check_input(self, x: torch.Tensor) -> None:
        expected_ndim = self.spatial_dims + 2
        if x.ndim != expected_ndim or x.shape[1] != self.in_channels:
            axes = "(B, C, H, W)" if self.spatial_dims == 2 else "(B, C, D, H, W)"
            raise ValueError(f"x must be {axes} with C = in_channels = {self.in_channels}, got shape {tuple(x.shape)}")
        factor = 2 ** (len(self.channels) - 1)
        if any(size % factor for size in x.shape[2:]):
            raise ValueError(
                f"x's spatial sizes {tuple(x.shape[2:])} must be divisible by {factor} (2 ** (number of levels - 1))"
            )


def unet_kwargs(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """``UNet`` keyword arguments from a config's ``model`` section as YAML or JSON gives it back.

    Lists become tuples (``channels: [32, 64, 128]`` → ``(32, 64, 128)``), so that the built U-Net's
    attributes (``.channels``) compare equal to the ones written in code; other values are kept.
    ``UNet(**unet_kwargs(config["model"]))`` builds the network a training config or a model file describes.
    """
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in model_config.items()}
