r"""Rectified flow (flow matching): a straight path from data to noise, and its Euler sampler.

Liu et al. 2023 ("Flow straight and fast"), Lipman et al. 2023 ("Flow matching"), Esser et al. 2024
(Stable Diffusion 3), and MONAI's MAISI train this way. With a time :math:`s \in [0, 1]` (0: data,
1: noise) the noisy sample is a *straight line* between the clean image and the noise:

.. math:: x_s = (1 - s)\,x_0 + s\,\varepsilon, \qquad \varepsilon \sim \mathcal N(0, I).   \quad (1)

Its time derivative along that line is the **velocity**

.. math:: v = \frac{\mathrm d x_s}{\mathrm d s} = \varepsilon - x_0,                        \quad (2)

and the network :math:`v_\theta(x_s, s)` is trained by plain regression onto it (the
*conditional flow matching* loss):

.. math:: \mathcal L = \mathbb E_{x_0,\varepsilon,s}\,\lVert v_\theta(x_s, s) - (\varepsilon - x_0)\rVert^2.   \quad (3)

The minimiser is :math:`\mathbb E[\varepsilon - x_0 \mid x_s]`, the velocity field of an ODE that carries
noise (s = 1) to data (s = 0). Sampling integrates it backwards with Euler steps from
:math:`s_i` to :math:`s_{i+1} < s_i`:

.. math:: x_{s_{i+1}} = x_{s_i} + (s_{i+1} - s_i)\,v_\theta(x_{s_i}, s_i).                \quad (4)

The clean-image estimate of one step follows from (1) and (2): :math:`\hat x_0 = x_s - s\,\hat v`.

Compared with DDPM (:mod:`.process`): no :math:`\bar\alpha_t` schedule, the path is linear in
:math:`s` (DDPM's is curved: :math:`\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon`),
and the final step of a good model lands on the data instead of needing many small steps.

============================ ============================= ====================================
this module                  diffusers                     MONAI ``RFlowScheduler``
============================ ============================= ====================================
:math:`s` = ``t / T``        ``sigma`` = ``timestep / T``   ``t / T`` (same)
target :math:`\varepsilon-x_0` ``noise - sample`` (same)    ``x_0 - noise`` (**opposite sign**)
step (4)                     ``FlowMatchEulerDiscrete``     ``step(v, t, x, next_t)``: ``x + v·(t - t')/T``
============================ ============================= ====================================

Timesteps: the network sees :math:`t = s\,T` with ``T = num_train_timesteps`` (1000), so a
:class:`~meddiff_lab.models.UNet` built for DDPM takes flow timesteps unchanged. The
:class:`RectifiedFlowScheduler` below uses whole-number timesteps
(:math:`t_i = \operatorname{round}(T\,(1 - i/n))`, as MONAI's ``use_discrete_timesteps``), so the course's
:func:`~meddiff_lab.diffusion.sample` (which passes ``int(t)`` to the model and to ``step``) drives it
exactly. diffusers' ``FlowMatchEulerDiscreteScheduler`` has fractional timesteps
(:math:`t_i = T\,s_i`, by default :math:`s_i` evenly spaced from 1 to :math:`1/T`) and rejects integer
ones in ``step``; :func:`~meddiff_lab.diffusion.sample` sees that its timesteps are floating-point and
passes them on unrounded (to ``step`` as they are, to the model as float32), so the same call drives it::

    flow = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    x = sample(model, flow, shape, noise=noise, num_inference_steps=20)
    # the same numbers as euler_sample(model, noise, sigmas=flow.sigmas[:-1])
"""

from __future__ import annotations

import torch

from .schedulers import SchedulerOutput

TIMESTEP_SAMPLINGS = ("uniform", "logit-normal")


def _per_item(values, x: torch.Tensor) -> torch.Tensor:
    """(B,) or scalar → a tensor broadcastable against ``x`` (B, C, ...), float32 on x's device."""
    s = torch.as_tensor(values, dtype=torch.float32, device=x.device).flatten()
    if s.numel() == 1:
        s = s.expand(x.shape[0])
    if s.numel() != x.shape[0]:
        raise ValueError(f"got {s.numel()} timesteps for a batch of {x.shape[0]}")
    return s.reshape(-1, *([1] * (x.ndim - 1)))


def flow_interpolate(x0: torch.Tensor, noise: torch.Tensor, timesteps, num_train_timesteps: int = 1000) -> torch.Tensor:
    r"""Equation (1): :math:`x_s = (1 - s)\,x_0 + s\,\varepsilon` with :math:`s = t / T`.

    Args:
        x0: clean samples (B, C, ...) float32.
        noise: :math:`\varepsilon`, shaped like ``x0``.
        timesteps: (B,) or a number, in ``[0, num_train_timesteps]`` (fractions allowed).

    Returns:
        :math:`x_s`, shaped like ``x0``.
    """
    if noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but x0 has {tuple(x0.shape)}")
    s = _per_item(timesteps, x0) / num_train_timesteps
    return (1.0 - s) * x0 + s * noise


def flow_velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    r"""Equation (2): the regression target :math:`v = \varepsilon - x_0` (diffusers' sign; MONAI's is ``-v``)."""
    return noise - x0


def sample_flow_timesteps(
    batch_size: int,
    num_train_timesteps: int = 1000,
    method: str = "uniform",
    generator: torch.Generator | None = None,
    device=None,
    loc: float = 0.0,
    scale: float = 1.0,
) -> torch.Tensor:
    r"""Training times :math:`t = s\,T`, (B,) float32 in ``(0, T)``.

    ``"uniform"``: :math:`s \sim U(0, 1)` (Liu et al.). ``"logit-normal"``: :math:`s = \sigma(u)`,
    :math:`u \sim \mathcal N(\text{loc}, \text{scale}^2)`, which spends more training on the middle of the
    path where the velocity is hardest to predict (Esser et al. 2024; MONAI's ``sample_method``).
    """
    if method not in TIMESTEP_SAMPLINGS:
        raise ValueError(f"timestep sampling {method!r} is not one of {TIMESTEP_SAMPLINGS}")
    if method == "uniform":
        s = torch.rand(batch_size, generator=generator)
    else:
        s = torch.sigmoid(loc + scale * torch.randn(batch_size, generator=generator))
    return (s * num_train_timesteps).to(device=device, dtype=torch.float32)


def flow_matching_loss(
    model,
    x0: torch.Tensor,
    noise: torch.Tensor | None = None,
    timesteps=None,
    *,
    num_train_timesteps: int = 1000,
    timestep_sampling: str = "uniform",
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    r"""Equation (3) for one batch: draw :math:`s` and :math:`\varepsilon` (unless given), form :math:`x_s`,
    regress ``model(x_s, t)`` onto :math:`\varepsilon - x_0`. Returns the mean squared error (a scalar).

    Args:
        model: called as ``model(x_s, t, **model_kwargs)`` with ``t`` (B,) float32 in ``[0, T]``.
        x0: clean samples (B, C, ...) (latents or images).
        noise, timesteps: fixed values for tests; drawn from ``generator`` when ``None``.
    """
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    if timesteps is None:
        timesteps = sample_flow_timesteps(
            x0.shape[0], num_train_timesteps, timestep_sampling, generator, device=x0.device
        )
    timesteps = torch.as_tensor(timesteps, dtype=torch.float32, device=x0.device).flatten()
    if timesteps.numel() == 1:
        timesteps = timesteps.expand(x0.shape[0])
    x_s = flow_interpolate(x0, noise, timesteps, num_train_timesteps)
    prediction = model(x_s, timesteps, **(model_kwargs or {}))
    if hasattr(prediction, "sample") and not isinstance(prediction, torch.Tensor):
        prediction = prediction.sample
    return torch.nn.functional.mse_loss(prediction.float(), flow_velocity(x0, noise).float())


class RectifiedFlowScheduler:
    r"""Euler sampler for a rectified-flow (velocity) model, with diffusers' call convention::

        scheduler = RectifiedFlowScheduler()
        scheduler.set_timesteps(20)
        x = torch.randn(shape)
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t), t, x).prev_sample

    Args:
        num_train_timesteps: :math:`T`; the network sees :math:`t = s\,T`.
        shift: the resolution shift of SD3 / diffusers, :math:`s' = \frac{k s}{1 + (k - 1) s}`
            (1: none; > 1 spends more steps at high noise).
        prediction_type: only ``"velocity"`` (:math:`\varepsilon - x_0`; the name is kept for symmetry
            with the DDPM schedulers).

    Attributes (after :meth:`set_timesteps`):
        timesteps: (n,) int64, decreasing from :math:`T`: :math:`\operatorname{round}(T\,s'(1 - i/n))`.
        sigmas: (n + 1,) float32, :math:`s_i = t_i / T` with the terminal 0 appended.
    """

    order = 1
    init_noise_sigma = 1.0

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0, prediction_type: str = "velocity"):
        if prediction_type not in ("velocity", "flow"):
            raise ValueError(
                f"RectifiedFlowScheduler predicts the velocity (noise - x0); got prediction_type "
                f"{prediction_type!r}. For epsilon/v-prediction use DDIMScheduler."
            )
        if num_train_timesteps < 1 or not shift > 0:
            raise ValueError(f"need num_train_timesteps >= 1 and shift > 0, got {num_train_timesteps}, {shift}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.shift = float(shift)
        self.prediction_type = "velocity"
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0, dtype=torch.long)
        self.sigmas = torch.empty(0)
        self.config = {
            "num_train_timesteps": self.num_train_timesteps,
            "shift": self.shift,
            "prediction_type": self.prediction_type,
        }

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        """``num_inference_steps`` Euler steps from :math:`s = 1` (pure noise) to :math:`s = 0` (data)."""
        n = int(num_inference_steps)
        if not 1 <= n <= self.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be in 1..{self.num_train_timesteps}, got {num_inference_steps}")
        s = 1.0 - torch.arange(n, dtype=torch.float64) / n
        s = self.shift * s / (1.0 + (self.shift - 1.0) * s)
        timesteps = torch.round(s * self.num_train_timesteps).long()
        if len(torch.unique(timesteps)) != n:
            raise ValueError(f"{n} steps give repeated whole-number timesteps with T={self.num_train_timesteps}")
        self.num_inference_steps = n
        self.timesteps = timesteps.to(device) if device is not None else timesteps
        sigmas = torch.cat([timesteps.double() / self.num_train_timesteps, torch.zeros(1, dtype=torch.float64)])
        self.sigmas = sigmas.float()

    def _next_sigma(self, timestep) -> tuple[float, float]:
        if self.num_inference_steps is None:
            raise RuntimeError("call set_timesteps(n) before step()")
        t = int(round(float(timestep)))
        matches = (self.timesteps.cpu() == t).nonzero()
        if len(matches) == 0:
            raise ValueError(f"timestep {timestep} is not one of this scheduler's timesteps {self.timesteps.tolist()}")
        index = int(matches[0])
        return float(self.sigmas[index]), float(self.sigmas[index + 1])

    def step(
        self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None, return_dict: bool = True
    ) -> SchedulerOutput:
        r"""Equation (4) from ``timestep`` to the next one of the schedule.

        Args:
            model_output: :math:`\hat v = v_\theta(x_s, t)`, shaped like ``sample``.
            timestep: one of :attr:`timesteps`.
            sample: :math:`x_s`.
            generator: unused (the sampler is deterministic); accepted for the course's ``sample`` loop.

        Returns:
            ``.prev_sample`` :math:`x_{s'}` and ``.pred_original_sample`` :math:`\hat x_0 = x_s - s\,\hat v`.
        """
        sigma, sigma_next = self._next_sigma(timestep)
        sample32 = sample.to(torch.float32)
        velocity = model_output.to(torch.float32)
        prev_sample = sample32 + (sigma_next - sigma) * velocity
        pred_original_sample = sample32 - sigma * velocity
        out = SchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
        return out if return_dict else (prev_sample,)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """Equation (1) at ``timesteps`` (0..T): the training input."""
        return flow_interpolate(original_samples, noise, timesteps, self.num_train_timesteps)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """The identity (kept for diffusers' call convention)."""
        return sample

    def __len__(self) -> int:
        return self.num_train_timesteps

    def __repr__(self) -> str:
        return (
            f"RectifiedFlowScheduler(num_train_timesteps={self.num_train_timesteps}, shift={self.shift}, "
            f"steps={self.num_inference_steps})"
        )


def euler_sample(
    model,
    noise: torch.Tensor,
    num_steps: int | None = None,
    num_train_timesteps: int = 1000,
    shift: float = 1.0,
    *,
    sigmas=None,
) -> torch.Tensor:
    r"""The whole sampler in a few lines (the same numbers as :class:`RectifiedFlowScheduler` with
    :func:`~meddiff_lab.diffusion.sample`): Euler steps of (4) from ``noise`` (:math:`s = 1`) to :math:`s = 0`.

    Args:
        model: called as ``model(x, t)`` with ``t`` (B,) :math:`= s\,T`: long on the whole-number grid of
            ``num_steps``, float32 with ``sigmas``.
        noise: :math:`x_1` (B, C, ...) float32.
        num_steps: :math:`n` steps on :class:`RectifiedFlowScheduler`'s grid
            :math:`t_i = \operatorname{round}(T\,s'(1 - i/n))`.
        sigmas: instead of ``num_steps``, the times :math:`s_0 > s_1 > \dots > s_{n-1}` in (0, 1] to step
            through (0 is appended), e.g. diffusers' ``FlowMatchEulerDiscreteScheduler.sigmas[:-1]``;
            ``shift`` is not applied to them.

    Returns:
        :math:`x_0`, shaped like ``noise``, float32.
    """
    if (num_steps is None) == (sigmas is None):
        raise ValueError("give either num_steps (the whole-number grid) or sigmas (the times s to step through)")
    if sigmas is None:
        scheduler = RectifiedFlowScheduler(num_train_timesteps, shift)
        scheduler.set_timesteps(num_steps)
        grid, timestep_dtype = scheduler.sigmas, torch.long
        model_timesteps = scheduler.timesteps.tolist()
    else:
        s = torch.as_tensor(sigmas, dtype=torch.float32).detach().cpu().flatten()
        if len(s) == 0 or not bool((s[1:] < s[:-1]).all()) or not (0 < float(s[-1]) and float(s[0]) <= 1):
            raise ValueError(f"sigmas must decrease within (0, 1], got {s.tolist()[:6]}")
        grid, timestep_dtype = torch.cat([s, torch.zeros(1)]), torch.float32
        model_timesteps = (s * num_train_timesteps).tolist()
    x = noise.to(torch.float32)
    with torch.no_grad():
        for i, t in enumerate(model_timesteps):
            t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=timestep_dtype)
            v = model(x, t_batch)
            x = x + float(grid[i + 1] - grid[i]) * v
    return x
