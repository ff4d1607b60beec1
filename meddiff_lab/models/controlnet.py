r"""Mask conditioning for the course's :class:`~meddiff_lab.models.UNet`: channel concatenation and ControlNet.

Two ways to make a denoiser draw the anatomy a mask asks for:

* **Channel concatenation** (:class:`MaskConcat`): the mask is given to the U-Net as extra input
  channels, :math:`\hat\varepsilon = f_\theta([x_t, m], t)`, so the network is built with
  ``in_channels = 1 + mask channels`` and trained from scratch with the masks. Simple and strong,
  but the whole network must be (re)trained for every new kind of condition.
* **ControlNet** (Zhang, Rao & Agrawala 2023; :class:`ControlNet` + :class:`ControlledUNet`): keep a
  trained U-Net *frozen* and train a copy of its encoder that also sees the mask. The copy's
  outputs reach the frozen U-Net's skip connections (and its middle block) through
  **zero-initialised** 1x1 convolutions:

  .. math:: s_k \leftarrow s_k + Z_k\big(E^{copy}_k(x_t + H(m), t)\big), \qquad Z_k = 0 \text{ at the start,}

  so before training the controlled model is *exactly* the frozen model, and training can only
  add what the mask explains. ``H`` is a small convolutional encoder for the mask (its last layer
  is zero too). MONAI's ``monai.networks.nets.ControlNet`` and diffusers' ``ControlNetModel`` do
  the same for their U-Nets.

Both wrappers share one call signature, ``model(x, timesteps, class_labels=None, cond=None, mask=...)``,
so the same training loop (:func:`meddiff_lab.training.conditional.train_conditional_diffusion`)
trains either. :class:`BoundCondition` fixes the mask (and metadata) of a batch so that
:func:`meddiff_lab.diffusion.sample`, which only passes ``x``, ``t`` and ``class_labels``, can sample
from them (repeating them when classifier-free guidance doubles the batch).

Shapes: ``x`` (B, 1, H, W) float in [-1, 1]; ``mask`` (B, M, H, W) float (for example
:func:`meddiff_lab.training.segmentation.masks_to_condition`: one channel in [-1, 1]).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from meddiff_lab.models.blocks import conv_nd, zero_init
from meddiff_lab.models.unet import UNet

__all__ = [
    "MaskConcat",
    "ControlNet",
    "ControlledUNet",
    "BoundCondition",
    "unet_forward_with_residuals",
    "skip_channels",
]


def _check_mask(mask: torch.Tensor | None, x: torch.Tensor, channels: int, who: str) -> torch.Tensor:
    if mask is None:
        raise ValueError(f"{who} needs mask=... (B, {channels}, H, W); got None")
    if mask.ndim != x.ndim or mask.shape[1] != channels or mask.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"{who}: mask must be (B, {channels}, {', '.join(map(str, x.shape[2:]))}) to match x "
            f"{tuple(x.shape)}, got {tuple(mask.shape)}"
        )
    if mask.shape[0] != x.shape[0]:
        if x.shape[0] % mask.shape[0]:
            raise ValueError(f"{who}: mask has {mask.shape[0]} images for a batch of {x.shape[0]}")
        mask = mask.repeat(x.shape[0] // mask.shape[0], *([1] * (mask.ndim - 1)))
    return mask.to(device=x.device, dtype=x.dtype)


class MaskConcat(nn.Module):
    """Condition a U-Net on masks by concatenating them to its input channels.

    Args:
        unet: a :class:`UNet` built with ``in_channels = image channels + mask_channels``.
        mask_channels: channels of the mask (default 1).

    ``forward(x, timesteps, class_labels=None, cond=None, mask=...)`` returns ``unet(cat([x, mask]), ...)``,
    shaped like ``x`` (``out_channels`` channels).
    """

    def __init__(self, unet: UNet, mask_channels: int = 1) -> None:
        super().__init__()
        if unet.in_channels <= mask_channels:
            raise ValueError(
                f"MaskConcat: the U-Net has in_channels={unet.in_channels}, which leaves no image "
                f"channel beside {mask_channels} mask channel(s); build it with "
                f"in_channels = 1 + {mask_channels}"
            )
        self.unet = unet
        self.mask_channels = mask_channels

    @property
    def null_class(self) -> int | None:
        return self.unet.null_class

    def forward(self, x: torch.Tensor, timesteps, class_labels=None, cond=None, mask=None) -> torch.Tensor:
        expected = self.unet.in_channels - self.mask_channels
        if x.shape[1] != expected:
            raise ValueError(f"MaskConcat: x must have {expected} channel(s), got shape {tuple(x.shape)}")
        mask = _check_mask(mask, x, self.mask_channels, "MaskConcat")
        return self.unet(torch.cat([x, mask], dim=1), timesteps, class_labels=class_labels, cond=cond)


def skip_channels(unet: UNet) -> list[int]:
    """The channel count of every skip connection of ``unet``, in the order the encoder makes them."""
    cfg = unet.config
    channels, blocks = cfg["channels"], cfg["num_res_blocks"]
    out = [channels[0]]
    for level, c in enumerate(channels):
        out += [c] * (blocks[level] + (0 if level == len(channels) - 1 else 1))
    return out


def unet_forward_with_residuals(
    unet: UNet,
    x: torch.Tensor,
    timesteps,
    class_labels=None,
    cond=None,
    skip_residuals: list[torch.Tensor] | None = None,
    middle_residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``unet(x, timesteps, class_labels, cond)`` with residuals added to its skips and middle output.

    The two places a ControlNet adds to: every skip connection (``skip_residuals``, one per entry of
    :func:`skip_channels`) and the output of the middle block. A shorthand for
    ``unet(..., down_block_additional_residuals=..., mid_block_additional_residual=...)``; with no
    residuals it returns exactly ``unet(x, ...)``.
    """
    return unet(
        x,
        timesteps,
        class_labels,
        cond,
        down_block_additional_residuals=skip_residuals,
        mid_block_additional_residual=middle_residual,
    )


class ControlNet(nn.Module):
    """A trainable copy of a U-Net's encoder that turns a mask into residuals for the U-Net's skips.

    Args:
        base: the trained :class:`UNet` to control; its encoder (embeddings, ``conv_in``, down levels,
            middle block) is copied, weights included, as the starting point.
        mask_channels: channels of the conditioning mask.
        hint_channels: widths of the small convolutional mask encoder ``H``.

    ``forward(x, timesteps, mask, class_labels=None, cond=None)`` returns ``(skip_residuals,
    middle_residual)``: a list shaped like the base's skip connections and one tensor shaped like
    its middle block's output. All are zero until training moves the zero convolutions.
    """

    def __init__(self, base: UNet, mask_channels: int = 1, hint_channels: tuple[int, ...] = (16, 32)) -> None:
        super().__init__()
        if not isinstance(base, UNet):
            raise TypeError(f"ControlNet controls a meddiff_lab.models.UNet, got {type(base).__name__}")
        dims, channels = base.spatial_dims, base.channels
        self.mask_channels = mask_channels
        self.encoder = copy.deepcopy(base)
        # the copy keeps only what the encoder needs; the decoder stays with the frozen base
        self.encoder.up_levels = nn.ModuleList()
        self.encoder.norm_out = nn.Identity()
        self.encoder.conv_out = nn.Identity()
        self.encoder.requires_grad_(True)
        layers: list[nn.Module] = []
        width = mask_channels
        for hidden in hint_channels:
            layers += [conv_nd(dims, width, hidden), nn.SiLU()]
            width = hidden
        layers.append(zero_init(conv_nd(dims, width, channels[0])))
        self.hint_encoder = nn.Sequential(*layers)
        self.skip_convs = nn.ModuleList(zero_init(conv_nd(dims, c, c, kernel_size=1)) for c in skip_channels(base))
        self.middle_conv = zero_init(conv_nd(dims, channels[-1], channels[-1], kernel_size=1))

    def forward(
        self, x: torch.Tensor, timesteps, mask: torch.Tensor, class_labels=None, cond=None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        mask = _check_mask(mask, x, self.mask_channels, "ControlNet")
        encoder = self.encoder
        encoder._check_input(x)
        emb = encoder.embed(timesteps, x.shape[0], class_labels, cond)
        h, skips = encoder.encode(encoder.conv_in(x) + self.hint_encoder(mask), emb)
        return [conv(s) for conv, s in zip(self.skip_convs, skips)], self.middle_conv(h)


class ControlledUNet(nn.Module):
    """A frozen :class:`UNet` steered by a :class:`ControlNet`: the model to train and sample.

    Args:
        base: the trained U-Net (frozen here: ``requires_grad_(False)``, unless ``freeze_base=False``).
        controlnet: a :class:`ControlNet` built from ``base`` (default: a new one).
        conditioning_scale: multiplies every residual (0 switches the control off; 1 as trained).

    ``forward(x, timesteps, class_labels=None, cond=None, mask=...)`` → shaped like ``x``.
    Only ``controlnet``'s parameters require gradients, so an optimizer over
    ``filter(lambda p: p.requires_grad, model.parameters())`` trains just the branch.
    """

    def __init__(
        self,
        base: UNet,
        controlnet: ControlNet | None = None,
        conditioning_scale: float = 1.0,
        freeze_base: bool = True,
        mask_channels: int = 1,
    ) -> None:
        super().__init__()
        self.base = base
        if freeze_base:
            self.base.requires_grad_(False)
        self.controlnet = controlnet if controlnet is not None else ControlNet(base, mask_channels=mask_channels)
        self.conditioning_scale = float(conditioning_scale)

    @property
    def null_class(self) -> int | None:
        return self.base.null_class

    def forward(self, x: torch.Tensor, timesteps, class_labels=None, cond=None, mask=None) -> torch.Tensor:
        skip_residuals, middle_residual = self.controlnet(x, timesteps, mask, class_labels, cond)
        scale = self.conditioning_scale
        if scale != 1.0:
            skip_residuals = [scale * r for r in skip_residuals]
            middle_residual = scale * middle_residual
        return unet_forward_with_residuals(self.base, x, timesteps, class_labels, cond, skip_residuals, middle_residual)


class BoundCondition(nn.Module):
    """Fix a batch's mask and/or metadata so ``model(x, t, class_labels=...)`` is all a sampler must pass.

    Args:
        model: a model taking ``(x, timesteps, class_labels=None, cond=None, mask=None)`` (a
            :class:`MaskConcat`, a :class:`ControlledUNet`) or ``(x, timesteps, class_labels=None,
            cond=None)`` (a :class:`UNet`, for metadata only).
        mask: (B, M, H, W) masks, one per image to generate (or ``None``).
        cond: (B, D) metadata vectors, one per image (or ``None``).

    When a sampler doubles the batch for classifier-free guidance, ``mask`` and ``cond`` are repeated
    to match, so both halves see the same mask and metadata (guidance acts on the class only).
    """

    def __init__(self, model: nn.Module, mask: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.mask = mask
        self.cond = cond

    @property
    def null_class(self) -> int | None:
        return getattr(self.model, "null_class", None)

    @staticmethod
    def _repeat(value: torch.Tensor | None, batch: int, name: str) -> torch.Tensor | None:
        if value is None or value.shape[0] == batch:
            return value
        if batch % value.shape[0]:
            raise ValueError(f"BoundCondition: {name} holds {value.shape[0]} rows for a batch of {batch}")
        return value.repeat(batch // value.shape[0], *([1] * (value.ndim - 1)))

    def forward(self, x: torch.Tensor, timesteps, class_labels=None) -> torch.Tensor:
        kwargs = {}
        cond = self._repeat(self.cond, x.shape[0], "cond")
        if cond is not None:
            kwargs["cond"] = cond.to(x.device)
        if self.mask is not None:
            kwargs["mask"] = self._repeat(self.mask, x.shape[0], "mask").to(x.device)
        return self.model(x, timesteps, class_labels=class_labels, **kwargs)
