r"""Noise schedules: how much noise the forward process adds at each of its T steps.

A schedule is the sequence :math:`\beta_1 \dots \beta_T`; everything else follows from it:

.. math::

    \alpha_t = 1 - \beta_t, \qquad \bar\alpha_t = \prod_{s \le t} \alpha_s, \qquad
    \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1 - \bar\alpha_t}.

Four families, with the names diffusers and MONAI use for them:

============== ================================ ===================== ======================
name           betas                            diffusers             MONAI
============== ================================ ===================== ======================
linear         linspace(beta_start, beta_end)   ``linear``            ``linear_beta``
scaled_linear  linspace(√beta_start, √beta_end)² ``scaled_linear``    ``scaled_linear_beta``
cosine         from ᾱ(t)=cos²((t/T+s)/(1+s)·π/2) ``squaredcos_cap_v2`` ``cosine``
               (s = 0.008, β ≤ 0.999)
sigmoid        sigmoid(linspace(-6, 6))·range    ``sigmoid``           ``sigmoid_beta``
============== ================================ ===================== ======================

Index ``t`` runs from 0 to T-1 (code convention, as in diffusers and MONAI): ``betas[0]`` is the
paper's :math:`\beta_1`. Values are computed in float64 and stored as float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULE_NAMES = ("linear", "scaled_linear", "cosine", "sigmoid")

#: other spellings accepted by :meth:`NoiseSchedule.from_name` (diffusers' and MONAI's names)
SCHEDULE_ALIASES = {
    "squaredcos_cap_v2": "cosine",
    "linear_beta": "linear",
    "scaled_linear_beta": "scaled_linear",
    "sigmoid_beta": "sigmoid",
}

#: the cosine schedule's offset s (Nichol & Dhariwal 2021) and its cap on beta
COSINE_S = 0.008
MAX_BETA = 0.999


def linear_betas(num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's schedule (Ho et al. 2020): betas evenly spaced from ``beta_start`` to ``beta_end``. float64 (T,)."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def scaled_linear_betas(num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Latent diffusion's schedule: square roots of the betas evenly spaced. float64 (T,)."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2


def cosine_alpha_bar(t: torch.Tensor | float, s: float = COSINE_S):
    r"""The cosine schedule's continuous :math:`\bar\alpha(t)=\cos^2\big(\frac{t+s}{1+s}\cdot\frac{\pi}{2}\big)`,
    t in [0, 1]."""
    if isinstance(t, torch.Tensor):
        return torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return math.cos((t + s) / (1 + s) * math.pi / 2) ** 2


def cosine_betas(num_train_timesteps: int, s: float = COSINE_S, max_beta: float = MAX_BETA) -> torch.Tensor:
    r"""Improved DDPM's cosine schedule (Nichol & Dhariwal 2021, eq. 17), float64 (T,).

    :math:`\beta_t = \min\big(1 - \bar\alpha(t/T) / \bar\alpha((t-1)/T),\ 0.999\big)`; the cap keeps the
    last steps from dividing by (almost) zero. Identical to diffusers' ``squaredcos_cap_v2``.
    """
    steps = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    alpha_bar = cosine_alpha_bar(steps, s)
    return torch.clamp(1 - alpha_bar[1:] / alpha_bar[:-1], max=max_beta)


def sigmoid_betas(
    num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02, sig_range: float = 6.0
) -> torch.Tensor:
    """GeoDiff's sigmoid schedule: betas follow a sigmoid from ``beta_start`` to ``beta_end``. float64 (T,)."""
    x = torch.linspace(-sig_range, sig_range, num_train_timesteps, dtype=torch.float64)
    return torch.sigmoid(x) * (beta_end - beta_start) + beta_start


@dataclass(frozen=True)
class NoiseSchedule:
    r"""A noise schedule and the quantities derived from it, all float32 tensors of shape (T,).

    Build one with :meth:`from_name` (or :meth:`from_betas`). Index ``t`` is 0-based.

    Attributes:
        name: the schedule's family (``"linear"``, ``"cosine"``...; ``"custom"`` for :meth:`from_betas`).
        betas: :math:`\beta_t`, the variance added at step t.
        alphas: :math:`\alpha_t = 1 - \beta_t`.
        alphas_cumprod: :math:`\bar\alpha_t = \prod_{s\le t}\alpha_s`, the signal fraction left at t.
        snr: :math:`\bar\alpha_t / (1 - \bar\alpha_t)`, the signal-to-noise ratio at t.
    """

    name: str
    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    snr: torch.Tensor

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_name(
        cls, name: str, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> NoiseSchedule:
        """A schedule by name: ``"linear"``, ``"scaled_linear"``, ``"cosine"`` or ``"sigmoid"``.

        diffusers' and MONAI's names (``"squaredcos_cap_v2"``, ``"linear_beta"``...) are accepted too.
        ``beta_start``/``beta_end`` are ignored by ``"cosine"`` (it is defined by ᾱ, not by a β range).

        Raises:
            ValueError: for an unknown name, a non-positive number of steps or an invalid β range.
        """
        key = SCHEDULE_ALIASES.get(name, name) if isinstance(name, str) else name
        if key not in SCHEDULE_NAMES:
            raise ValueError(
                f"unknown noise schedule {name!r}; expected one of {', '.join(SCHEDULE_NAMES)} "
                f"(or diffusers'/MONAI's names {', '.join(SCHEDULE_ALIASES)})"
            )
        if not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be a positive integer, got {num_train_timesteps!r}")
        if key != "cosine" and not (0 < beta_start <= beta_end < 1):
            raise ValueError(
                f"expected 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
            )
        if key == "linear":
            betas = linear_betas(num_train_timesteps, beta_start, beta_end)
        elif key == "scaled_linear":
            betas = scaled_linear_betas(num_train_timesteps, beta_start, beta_end)
        elif key == "cosine":
            betas = cosine_betas(num_train_timesteps)
        else:
            betas = sigmoid_betas(num_train_timesteps, beta_start, beta_end)
        return cls._from_float64_betas(key, betas)

    @classmethod
    def from_betas(cls, betas, name: str = "custom") -> NoiseSchedule:
        """A schedule from explicit betas (a sequence or tensor of T values in (0, 1))."""
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() == 0 or not torch.all((betas > 0) & (betas < 1)):
            raise ValueError("betas must be a non-empty sequence of values strictly between 0 and 1")
        return cls._from_float64_betas(name, betas)

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod, name: str = "custom") -> NoiseSchedule:
        r"""A schedule from :math:`\bar\alpha_t` (strictly decreasing, in (0, 1]); betas follow as
        :math:`1 - \bar\alpha_t/\bar\alpha_{t-1}`."""
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        if abar.numel() == 0 or not torch.all((abar > 0) & (abar <= 1)) or not torch.all(abar[1:] < abar[:-1]):
            raise ValueError("alphas_cumprod must be strictly decreasing values in (0, 1]")
        prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        return cls._from_float64_betas(name, 1 - abar / prev)

    @classmethod
    def _from_float64_betas(cls, name: str, betas: torch.Tensor) -> NoiseSchedule:
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        snr = alphas_cumprod / (1.0 - alphas_cumprod)
        f32 = lambda v: v.to(torch.float32)  # noqa: E731
        return cls(name, f32(betas), f32(alphas), f32(alphas_cumprod), f32(snr))

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        """T, the number of forward steps."""
        return int(self.betas.shape[0])

    @property
    def alphas_cumprod_prev(self) -> torch.Tensor:
        r""":math:`\bar\alpha_{t-1}`, with :math:`\bar\alpha_{-1} = 1` (no noise before the first step)."""
        return torch.cat([torch.ones(1, dtype=self.alphas_cumprod.dtype), self.alphas_cumprod[:-1]])

    @property
    def sqrt_alphas_cumprod(self) -> torch.Tensor:
        r""":math:`\sqrt{\bar\alpha_t}`: how much of x_0 is left in x_t."""
        return self.alphas_cumprod.sqrt()

    @property
    def sqrt_one_minus_alphas_cumprod(self) -> torch.Tensor:
        r""":math:`\sqrt{1-\bar\alpha_t}`: the standard deviation of the noise in x_t."""
        return (1.0 - self.alphas_cumprod).sqrt()

    @property
    def log_snr(self) -> torch.Tensor:
        r""":math:`\log \mathrm{SNR}(t)` (natural log)."""
        return self.snr.log()

    def shift_snr(self, factor: float) -> NoiseSchedule:
        r"""The schedule with every SNR multiplied by ``factor``:
        :math:`\mathrm{SNR}'(t) = \text{factor}\cdot\mathrm{SNR}(t)`.

        Averaging an image down by ``k`` in each axis averages ``k²`` pixels of independent noise, which
        multiplies the SNR by about ``k²``: a schedule tuned at 64 px is *less* noisy at 256 px.
        Shifting by ``(64/256)**2`` (Hoogeboom et al. 2023, "simple diffusion") keeps the SNR of the
        coarse structure the same at the higher resolution.
        """
        if not factor > 0:
            raise ValueError(f"factor must be positive, got {factor!r}")
        snr = self.snr.double() * factor
        return NoiseSchedule.from_alphas_cumprod(snr / (1 + snr), name=f"{self.name}(snr×{factor:g})")

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """The same schedule with its tensors on ``device``."""
        return NoiseSchedule(
            self.name, *(getattr(self, k).to(device) for k in ("betas", "alphas", "alphas_cumprod", "snr"))
        )

    def timestep_where_snr_below(self, snr: float) -> int:
        """The first (0-based) timestep whose SNR is below ``snr`` (T if none)."""
        below = torch.nonzero(self.snr < snr)
        return int(below[0]) if len(below) else self.num_train_timesteps

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule({self.name!r}, T={self.num_train_timesteps}, "
            f"beta={float(self.betas[0]):.3g}..{float(self.betas[-1]):.3g}, "
            f"alphas_cumprod[-1]={float(self.alphas_cumprod[-1]):.3g})"
        )
