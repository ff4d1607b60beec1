r"""Reverse-process samplers with diffusers' call convention: DDPM (ancestral) and DDIM.

Usage, exactly as with ``diffusers``::

    scheduler = DDIMScheduler(beta_schedule="cosine")
    scheduler.set_timesteps(50)
    x = torch.randn(shape)
    for t in scheduler.timesteps:
        model_output = model(x, t)
        x = scheduler.step(model_output, t, x).prev_sample

With the same configuration and inputs, one ``step`` gives the same numbers as diffusers' scheduler
(tests compare them). The only differences are deliberate: schedules are computed in float64 and
stored as float32 (see :mod:`.schedules`), the cosine schedule may be called ``"cosine"``, and the
output object also unpacks like MONAI's tuple: ``prev_sample, pred_original_sample = scheduler.step(...)``.

Timesteps are 0-based (``0 .. T-1``) and the ``"leading"`` spacing is diffusers' default: with
``T = 1000`` and 50 steps they are ``980, 960, ..., 20, 0``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .process import check_prediction_type
from .schedules import NoiseSchedule

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
VARIANCE_TYPES = ("fixed_small", "fixed_large")


@dataclass
class SchedulerOutput:
    """What ``step`` returns.

    Attributes:
        prev_sample: :math:`x_{t-1}` (or :math:`x_{t_{prev}}` when skipping steps), shaped like the sample.
        pred_original_sample: the step's prediction of the clean image :math:`\\hat x_0` (after clipping).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor

    def __iter__(self) -> Iterator[torch.Tensor]:  # unpack like MONAI's (prev_sample, pred_original_sample)
        return iter((self.prev_sample, self.pred_original_sample))

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.prev_sample, self.pred_original_sample)[index]


DDPMSchedulerOutput = SchedulerOutput
DDIMSchedulerOutput = SchedulerOutput


@dataclass(frozen=True)
class SchedulerConfig:
    """A scheduler's settings (read them as ``scheduler.config.num_train_timesteps`` as in diffusers)."""

    num_train_timesteps: int
    beta_start: float
    beta_end: float
    beta_schedule: str
    prediction_type: str
    clip_sample: bool
    clip_sample_range: float
    timestep_spacing: str
    steps_offset: int
    variance_type: str | None = None
    eta: float | None = None
    set_alpha_to_one: bool | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device (as diffusers does)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


class _SchedulerBase:
    """Shared parts: the schedule, timesteps, prediction conversion, clipping, ``add_noise``."""

    order = 1
    init_noise_sigma = 1.0

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        schedule: NoiseSchedule | None = None,
        **extra,
    ) -> None:
        check_prediction_type(prediction_type)
        if timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(
                f"timestep_spacing must be one of {', '.join(TIMESTEP_SPACINGS)}, got {timestep_spacing!r}"
            )
        if schedule is None:
            schedule = NoiseSchedule.from_name(beta_schedule, num_train_timesteps, beta_start, beta_end)
        elif not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.config = SchedulerConfig(
            num_train_timesteps=schedule.num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=schedule.name,
            prediction_type=prediction_type,
            clip_sample=bool(clip_sample),
            clip_sample_range=float(clip_sample_range),
            timestep_spacing=timestep_spacing,
            steps_offset=int(steps_offset),
            **extra,
        )
        self.betas = schedule.betas
        self.alphas = schedule.alphas
        self.alphas_cumprod = schedule.alphas_cumprod
        self.one = torch.tensor(1.0)
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(self.num_train_timesteps - 1, -1, -1, dtype=torch.long)

    # ---- configuration ---------------------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    @property
    def prediction_type(self) -> str:
        return self.config.prediction_type

    def __len__(self) -> int:
        return self.num_train_timesteps

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items())
        return f"{type(self).__name__}({settings})"

    def set_timesteps(self, num_inference_steps: int, device: torch.device | str | None = None) -> None:
        """Choose ``num_inference_steps`` timesteps (descending) for sampling; sets ``self.timesteps``.

        Spacing as in diffusers: ``"leading"`` (default) ``k·(T//n)`` for k = n-1..0, plus ``steps_offset``;
        ``"trailing"`` ends exactly at T-1; ``"linspace"`` spreads 0..T-1 evenly.

        Raises:
            ValueError: if ``num_inference_steps`` is not in 1..T.
        """
        T = self.num_train_timesteps
        if not isinstance(num_inference_steps, (int, np.integer)) or not 1 <= num_inference_steps <= T:
            raise ValueError(
                f"num_inference_steps must be an integer in 1..{T} (the training steps), got {num_inference_steps!r}"
            )
        n = int(num_inference_steps)
        spacing = self.config.timestep_spacing
        if spacing == "leading":
            timesteps = (np.arange(0, n) * (T // n)).round()[::-1].copy().astype(np.int64) + self.config.steps_offset
        elif spacing == "trailing":
            timesteps = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
        else:
            timesteps = np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
        self.num_inference_steps = n
        self.timesteps = torch.from_numpy(timesteps).to(device)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """Identity (DDPM and DDIM need no input scaling); kept for diffusers compatibility."""
        return sample

    # ---- shared maths ----------------------------------------------------------------------------
    def _alpha_bar(self, timestep: int) -> torch.Tensor:
        return self.alphas_cumprod[timestep]

    def _predict_x0_and_eps(self, model_output: torch.Tensor, sample: torch.Tensor, alpha_prod_t: torch.Tensor):
        """(x̂₀, ε̂) from the model output, with diffusers' arithmetic (same rounding)."""
        beta_prod_t = 1 - alpha_prod_t
        kind = self.config.prediction_type
        if kind == "epsilon":
            pred_original_sample = (sample - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5)
            pred_epsilon = model_output
        elif kind == "sample":
            pred_original_sample = model_output
            pred_epsilon = (sample - alpha_prod_t ** (0.5) * pred_original_sample) / beta_prod_t ** (0.5)
        else:
            pred_original_sample = (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
            pred_epsilon = (alpha_prod_t**0.5) * model_output + (beta_prod_t**0.5) * sample
        return pred_original_sample, pred_epsilon

    def _clip(self, pred_original_sample: torch.Tensor) -> torch.Tensor:
        if self.config.clip_sample:
            r = self.config.clip_sample_range
            return pred_original_sample.clamp(-r, r)
        return pred_original_sample

    @staticmethod
    def _check_inputs(model_output: torch.Tensor, sample: torch.Tensor) -> None:
        if not isinstance(model_output, torch.Tensor) or not isinstance(sample, torch.Tensor):
            raise TypeError(
                "model_output and sample must be tensors (if your model returns an object, pass its .sample)"
            )
        if model_output.shape != sample.shape:
            raise ValueError(
                f"model_output has shape {tuple(model_output.shape)} but sample has "
                f"{tuple(sample.shape)}; they must match"
            )

    def _timestep(self, timestep) -> int:
        t = int(timestep)
        if not 0 <= t < self.num_train_timesteps:
            raise ValueError(f"timestep {t} is outside 0..{self.num_train_timesteps - 1}")
        return t

    # ---- forward process, diffusers' names ---------------------------------------------------------
    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """:math:`\\sqrt{\\bar\\alpha_t}x_0 + \\sqrt{1-\\bar\\alpha_t}\\varepsilon` per item (diffusers' signature)."""
        from .process import add_noise

        return add_noise(self.schedule, original_samples, noise, timesteps)

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The v target for clean ``sample`` and ``noise`` (diffusers' signature)."""
        from .process import get_velocity

        return get_velocity(self.schedule, sample, noise, timesteps)


class DDPMScheduler(_SchedulerBase):
    r"""Ancestral sampling of Ho et al. (2020):
    sample :math:`x_{t-1} \sim \mathcal N(\tilde\mu_t(x_t, \hat x_0), \sigma_t^2 I)`.

    .. math::

        \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t'}}\,\beta_t}{1-\bar\alpha_t}\hat x_0
                    + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t'})}{1-\bar\alpha_t} x_t,
        \qquad \alpha_t = \bar\alpha_t/\bar\alpha_{t'},\ \beta_t = 1-\alpha_t,

    where :math:`t'` is the previous timestep (``t-1`` with all T steps). ``variance_type``:
    ``"fixed_small"`` :math:`\sigma_t^2=\tilde\beta_t=\frac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}\beta_t` (the posterior
    variance, right when the data is one point) or ``"fixed_large"`` :math:`\sigma_t^2=\beta_t` (right for
    N(0, I) data). Both are in the DDPM paper.

    Args:
        num_train_timesteps: T.
        beta_start, beta_end, beta_schedule: the noise schedule (see :class:`NoiseSchedule`).
        variance_type: ``"fixed_small"`` or ``"fixed_large"``.
        clip_sample: clip :math:`\hat x_0` to ``[-clip_sample_range, clip_sample_range]`` (diffusers' default: True).
        prediction_type: ``"epsilon"``, ``"sample"`` (x₀) or ``"v_prediction"``.
        timestep_spacing, steps_offset: how :meth:`set_timesteps` picks timesteps (diffusers' defaults).
        schedule: a ready :class:`NoiseSchedule` (overrides the beta arguments).
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        schedule: NoiseSchedule | None = None,
    ) -> None:
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"variance_type must be one of {', '.join(VARIANCE_TYPES)}, got {variance_type!r}")
        super().__init__(
            num_train_timesteps,
            beta_start,
            beta_end,
            beta_schedule,
            prediction_type,
            clip_sample,
            clip_sample_range,
            timestep_spacing,
            steps_offset,
            schedule,
            variance_type=variance_type,
        )

    @property
    def variance_type(self) -> str:
        return self.config.variance_type

    def previous_timestep(self, timestep: int) -> int:
        """The timestep after ``timestep`` in the sampling order (-1 after the last)."""
        t = int(timestep)
        if self.num_inference_steps is None:
            return t - 1
        positions = torch.nonzero(self.timesteps.cpu() == t)
        if len(positions) == 0:
            raise ValueError(f"timestep {t} is not one of the scheduler's timesteps {self.timesteps.tolist()[:6]}...")
        index = int(positions[0])
        return int(self.timesteps[index + 1]) if index + 1 < len(self.timesteps) else -1

    def _get_variance(self, t: int, prev_t: int) -> torch.Tensor:
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        current_beta_t = 1 - alpha_prod_t / alpha_prod_t_prev
        if self.variance_type == "fixed_large":
            return current_beta_t
        variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t
        return torch.clamp(variance, min=1e-20)

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        variance_noise: torch.Tensor | None = None,
    ):
        """One reverse step from ``timestep`` to the previous timestep.

        Args:
            model_output: the network's output at (sample, timestep), shaped like ``sample``.
            timestep: the current timestep (int or 0-d tensor), one of ``self.timesteps``.
            sample: :math:`x_t` (B, C, ...).
            generator: for the added noise (reproducible sampling).
            return_dict: ``False`` returns the tuple ``(prev_sample, pred_original_sample)``.
            variance_noise: the noise to add instead of drawing it (shaped like ``sample``).

        Returns:
            :class:`SchedulerOutput` with ``prev_sample`` and ``pred_original_sample``.
        """
        self._check_inputs(model_output, sample)
        t = self._timestep(timestep)
        prev_t = self.previous_timestep(t)
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t

        pred_original_sample, _ = self._predict_x0_and_eps(model_output, sample, alpha_prod_t)
        pred_original_sample = self._clip(pred_original_sample)

        # posterior mean (Ho et al. eq. 7)
        pred_original_sample_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
        current_sample_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
        pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample

        if t > 0:
            noise = variance_noise if variance_noise is not None else _randn_like(model_output, generator)
            pred_prev_sample = pred_prev_sample + (self._get_variance(t, prev_t) ** 0.5) * noise
        if not return_dict:
            return pred_prev_sample, pred_original_sample
        return SchedulerOutput(prev_sample=pred_prev_sample, pred_original_sample=pred_original_sample)


class DDIMScheduler(_SchedulerBase):
    r"""Song et al. (2021), eq. 12: a non-Markovian reverse process that can skip steps.

    .. math::

        x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0
               + \sqrt{1-\bar\alpha_{t'}-\sigma_t^2}\,\hat\varepsilon + \sigma_t z,
        \qquad \sigma_t = \eta\sqrt{\frac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}}
                          \sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t'}}}

    with :math:`t' = t - T/n` the previous timestep. ``eta = 0`` is deterministic (an ODE: the same
    noise always gives the same image, and an image can be inverted to its noise); ``eta = 1`` is
    DDPM's ``fixed_small`` sampler on the chosen timesteps.

    Args:
        eta: the default η for :meth:`step` (diffusers passes it to ``step`` instead; both work here).
        set_alpha_to_one: after the last step, use :math:`\bar\alpha = 1` (diffusers' default).
        others: as in :class:`DDPMScheduler`.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "leading",
        eta: float = 0.0,
        schedule: NoiseSchedule | None = None,
    ) -> None:
        if not eta >= 0:
            raise ValueError(f"eta must be >= 0 (0: deterministic DDIM, 1: DDPM-like), got {eta!r}")
        super().__init__(
            num_train_timesteps,
            beta_start,
            beta_end,
            beta_schedule,
            prediction_type,
            clip_sample,
            clip_sample_range,
            timestep_spacing,
            steps_offset,
            schedule,
            eta=float(eta),
            set_alpha_to_one=bool(set_alpha_to_one),
        )
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]

    @property
    def eta(self) -> float:
        return self.config.eta

    def previous_timestep(self, timestep: int) -> int:
        """``timestep - T // num_inference_steps`` (diffusers' rule; negative means "the clean image")."""
        n = self.num_inference_steps or self.num_train_timesteps
        return int(timestep) - self.num_train_timesteps // n

    def _alpha_prod_prev(self, prev_timestep: int) -> torch.Tensor:
        return self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod

    def _get_variance(self, timestep: int, prev_timestep: int) -> torch.Tensor:
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self._alpha_prod_prev(prev_timestep)
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        return (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        *,
        eta: float | None = None,
        variance_noise: torch.Tensor | None = None,
    ):
        """One DDIM step from ``timestep`` to ``timestep - T // num_inference_steps``.

        Args:
            model_output: the network's output at (sample, timestep), shaped like ``sample``.
            timestep: the current timestep (int or 0-d tensor).
            sample: :math:`x_t` (B, C, ...).
            generator: for the noise added when η > 0.
            return_dict: ``False`` returns the tuple ``(prev_sample, pred_original_sample)``.
            eta: overrides the scheduler's η for this step.
            variance_noise: the noise to add when η > 0 instead of drawing it.

        Returns:
            :class:`SchedulerOutput` with ``prev_sample`` and ``pred_original_sample``.
        """
        self._check_inputs(model_output, sample)
        eta = self.config.eta if eta is None else float(eta)
        t = self._timestep(timestep)
        prev_timestep = self.previous_timestep(t)
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self._alpha_prod_prev(prev_timestep)

        pred_original_sample, pred_epsilon = self._predict_x0_and_eps(model_output, sample, alpha_prod_t)
        pred_original_sample = self._clip(pred_original_sample)

        variance = self._get_variance(t, prev_timestep)
        std_dev_t = eta * variance ** (0.5)
        # "direction pointing to x_t" and the predicted x_{t'} (DDIM eq. 12)
        pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** (0.5) * pred_epsilon
        prev_sample = alpha_prod_t_prev ** (0.5) * pred_original_sample + pred_sample_direction
        if eta > 0:
            noise = variance_noise if variance_noise is not None else _randn_like(model_output, generator)
            prev_sample = prev_sample + std_dev_t * noise
        if not return_dict:
            return prev_sample, pred_original_sample
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def inversion_step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, next_timestep) -> torch.Tensor:
        r"""The deterministic DDIM step run forwards (η = 0): from :math:`x_t` at ``timestep`` to ``next_timestep`` > t.

        :math:`x_{t''} = \sqrt{\bar\alpha_{t''}}\hat x_0 + \sqrt{1-\bar\alpha_{t''}}\hat\varepsilon`. ``timestep``
        may be -1 (the clean image, :math:`\bar\alpha = 1`); the model output is taken at ``timestep``.
        Used by :func:`meddiff_lab.diffusion.sampling.ddim_invert`.
        """
        self._check_inputs(model_output, sample)
        t, t_next = int(timestep), int(next_timestep)
        alpha_prod_t = self._alpha_prod_prev(t)
        alpha_prod_next = self.alphas_cumprod[t_next]
        pred_original_sample, pred_epsilon = self._predict_x0_and_eps(model_output, sample, alpha_prod_t)
        return alpha_prod_next**0.5 * pred_original_sample + (1 - alpha_prod_next) ** 0.5 * pred_epsilon


#: the schedulers :func:`scheduler_from_config` builds, by ``kind``
SCHEDULER_KINDS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}


def scheduler_from_config(config, kind: str = "ddim") -> DDIMScheduler | DDPMScheduler:
    """A DDIM (or DDPM) scheduler with a training run's schedule and prediction type.

    Args:
        config: a mapping with ``num_train_timesteps``, ``beta_start``, ``beta_end``, ``schedule`` and
            ``prediction_type`` (a training config, or the ``diffusion`` section of a shipped model's
            JSON), or an object with ``to_dict()`` giving one (a ``TrainConfig``).
        kind: ``"ddim"`` or ``"ddpm"``.
    """
    if kind not in SCHEDULER_KINDS:
        raise ValueError(f"scheduler kind must be one of {', '.join(SCHEDULER_KINDS)}, got {kind!r}")
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    missing = [
        k for k in ("num_train_timesteps", "beta_start", "beta_end", "schedule", "prediction_type") if k not in cfg
    ]
    if missing:
        raise ValueError(f"a scheduler config needs {missing}; got the keys {sorted(cfg)}")
    return SCHEDULER_KINDS[kind](
        num_train_timesteps=int(cfg["num_train_timesteps"]),
        beta_start=float(cfg["beta_start"]),
        beta_end=float(cfg["beta_end"]),
        beta_schedule=cfg["schedule"],
        prediction_type=cfg["prediction_type"],
    )
