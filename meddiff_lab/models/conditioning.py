r"""The conditional models of the zoo: what condition each one takes, and how it is built.

* ``"findings_metadata"`` (``phantom64-cond``): a U-Net whose timestep embedding also gets an
  18-d vector, the 14 findings and the patient (age, sex, view) in :func:`findings_metadata_to_cond`;
  trained with the whole vector dropped to zeros for a share of the images, so the same network is
  also the unconditional model that classifier-free guidance needs (:class:`VectorGuidance`):

  .. math:: \hat v = v_\theta(x_t, t, \varnothing) + w\,\big(v_\theta(x_t, t, c) - v_\theta(x_t, t, \varnothing)\big),

  where :math:`\varnothing` is the all-zero vector (every entry of a known condition is ±1 or a
  non-zero flag, so no real patient is all zeros);
* ``"mask"`` and ``"edges"`` (``phantom64-controlnet-mask``/``-edge``): a ControlNet branch
  (:class:`~meddiff_lab.models.controlnet.ControlledUNet`) on a frozen unconditional U-Net;
* ``"none"``: the plain :class:`~meddiff_lab.models.unet.UNet`.

The training side (images and conditions of each job) is :mod:`meddiff_lab.training.zoo`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from meddiff_lab.data.cxr_labels import CXR_LABELS
from meddiff_lab.models.controlnet import ControlledUNet
from meddiff_lab.models.unet import UNet

__all__ = [
    "CONDITIONINGS",
    "FINDINGS_METADATA_FIELDS",
    "findings_metadata_to_cond",
    "build_zoo_model",
    "VectorGuidance",
]

#: The conditional jobs a training config may ask for (``conditioning:``).
CONDITIONINGS = ("none", "findings_metadata", "mask", "edges")


def _fields() -> tuple[str, ...]:
    return tuple(f"{name} (+1 present, -1 absent)" for name in CXR_LABELS) + (
        "age (years - 50) / 20",
        "sex (+1 female, -1 male)",
        "view (+1 PA, -1 AP)",
        "known (1; 0 = dropped)",
    )


#: What each column of :func:`findings_metadata_to_cond`'s vectors means (18 columns).
FINDINGS_METADATA_FIELDS: tuple[str, ...] = _fields()


def findings_metadata_to_cond(labels, metadata: Sequence[Mapping]) -> torch.Tensor:
    """Findings and patient → ``(N, 18)`` float32 condition vectors (see :data:`FINDINGS_METADATA_FIELDS`).

    Args:
        labels: ``(N, 14)`` multi-hot over ``CXR_LABELS`` ("No Finding" is all zeros, i.e. all -1 here).
        metadata: one dict per image with ``age`` (years), ``sex`` ("F"/"M") and ``view`` ("PA"/"AP").
    """
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or labels.shape[1] != 14:
        raise ValueError(f"labels must be (N, 14) multi-hot over CXR_LABELS, got shape {labels.shape}")
    if len(metadata) != len(labels):
        raise ValueError(f"metadata has {len(metadata)} entries for {len(labels)} label rows")
    rows = []
    for i, m in enumerate(metadata):
        if m.get("sex") not in ("F", "M") or m.get("view") not in ("PA", "AP"):
            raise ValueError(
                f"metadata[{i}] needs sex 'F'/'M' and view 'PA'/'AP', got {m.get('sex')!r}, {m.get('view')!r}"
            )
        age = float(m.get("age", float("nan")))
        if not np.isfinite(age) or age < 0:
            raise ValueError(f"metadata[{i}] needs a non-negative age in years, got {m.get('age')!r}")
        rows.append([(age - 50.0) / 20.0, 1.0 if m["sex"] == "F" else -1.0, 1.0 if m["view"] == "PA" else -1.0, 1.0])
    findings = np.where(labels > 0.5, 1.0, -1.0).astype(np.float32)
    return torch.from_numpy(np.concatenate([findings, np.asarray(rows, np.float32)], axis=1))


def build_zoo_model(conditioning: str, model_kwargs: Mapping, base: nn.Module | None = None) -> nn.Module:
    """The network a zoo job trains.

    ``"findings_metadata"``: a new ``UNet(**model_kwargs, cond_dim=18)``; ``"mask"``/``"edges"``: a
    :class:`~meddiff_lab.models.controlnet.ControlledUNet` on the frozen ``base`` U-Net (required);
    ``"none"``: ``UNet(**model_kwargs)``.
    """
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    if conditioning in ("mask", "edges"):
        if not isinstance(base, UNet):
            raise ValueError(
                f"conditioning {conditioning!r} trains a ControlNet on a frozen base U-Net; pass "
                f"base=load_pretrained(name).model (got {type(base).__name__})"
            )
        return ControlledUNet(base, mask_channels=1)
    if conditioning == "findings_metadata":
        return UNet.from_config({**model_kwargs, "cond_dim": len(FINDINGS_METADATA_FIELDS)})
    return UNet.from_config(model_kwargs)


class VectorGuidance(nn.Module):
    """Classifier-free guidance for a vector-conditioned model, callable as ``model(x, t)``.

    Args:
        model: takes ``(x, timesteps, cond=...)``; trained with the vector dropped to zeros.
        cond: ``(B, D)`` condition vectors, one per image to generate.
        guidance_scale: ``w``; 1 is the plain conditional model, 0 the unconditional one.
    """

    def __init__(self, model: nn.Module, cond: torch.Tensor, guidance_scale: float = 1.0) -> None:
        super().__init__()
        if cond.ndim != 2:
            raise ValueError(f"cond must be (B, D) vectors, got shape {tuple(cond.shape)}")
        self.model, self.cond, self.guidance_scale = model, cond, float(guidance_scale)

    def forward(self, x: torch.Tensor, timesteps, class_labels=None) -> torch.Tensor:
        if x.shape[0] != self.cond.shape[0]:
            raise ValueError(f"VectorGuidance holds {self.cond.shape[0]} condition rows for a batch of {x.shape[0]}")
        cond = self.cond.to(device=x.device, dtype=x.dtype)
        if self.guidance_scale == 1.0:
            return self.model(x, timesteps, cond=cond)
        t = torch.as_tensor(timesteps, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), cond=torch.cat([cond, torch.zeros_like(cond)]))
        conditional, unconditional = both.chunk(2)
        return unconditional + self.guidance_scale * (conditional - unconditional)
