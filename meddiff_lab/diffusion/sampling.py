r"""One sampling loop for every scheduler: ours, diffusers' and MONAI's.

The loop is the same for all of them::

    x = randn(shape)
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t), t, x).prev_sample

What differs between libraries is handled here: diffusers' ``step`` returns an object with
``.prev_sample``, MONAI's a tuple ``(prev_sample, pred_original_sample)``; diffusers' models return an
object with ``.sample``; MONAI's DDIM takes ``eta`` in ``step``.

**Timesteps.** A scheduler with whole-number timesteps (ours, MONAI's, diffusers' DDPM/DDIM/DPM-Solver)
gets ``int(t)`` in ``step`` and the model a long ``t``. A scheduler with fractional (floating-point)
timesteps (diffusers' ``FlowMatchEulerDiscreteScheduler`` and its Euler family) gets its own timestep
``t``, a 0-d tensor from ``scheduler.timesteps``, unrounded (its ``step`` rejects integers), and the model
a float32 ``t``.

Classifier-free guidance (Ho & Salimans 2022)
---------------------------------------------
With ``guidance_scale = w`` the model is called on the labels and on the *null* labels, and

.. math:: \hat\varepsilon = \hat\varepsilon_\varnothing + w\,(\hat\varepsilon_c - \hat\varepsilon_\varnothing)

(``w = 1``: purely conditional; ``w = 0``: unconditional; ``w > 1``: stronger conditioning).

**The null-class convention** of this package: a model trained with label dropout for
``num_classes`` classes has ``num_classes + 1`` label embeddings and the *last index,
``num_classes``*, means "no label". :func:`sample` finds it as ``null_class`` (argument) or else
``model.null_class``, ``model.num_classes``, or diffusers' ``model.config.num_class_embeds - 1``.
``null_class`` may also be a tensor (e.g. an all-zero multi-hot vector) broadcast to the labels' shape.

MONAI's schedulers, two quirks worth knowing: MONAI's ``DDPMScheduler.step`` always steps from ``t``
to ``t - 1``, so it is right only with all T timesteps (its default); MONAI's ``DDIMScheduler`` spaces
its timesteps with ``linspace(T-1, 0, n)`` but steps by ``T // n``, so its numbers differ slightly
from diffusers' and ours (the samples are still correct in distribution; the tests check it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class Trajectory:
    """A sampling run, step by step.

    Attributes:
        timesteps: (S,) the timestep of each step.
        x_t: (S, B, C, ...) the sample entering each step (``x_t[0]`` is the initial noise).
        predicted_x0: (S, B, C, ...) the scheduler's prediction of the clean image at each step.
        final: (B, C, ...) the sample after the last step.
    """

    timesteps: torch.Tensor
    x_t: torch.Tensor
    predicted_x0: torch.Tensor
    final: torch.Tensor

    def __len__(self) -> int:
        return int(self.timesteps.shape[0])

    def subsample(self, frames: int) -> Trajectory:
        """At most ``frames`` steps, evenly spread and always including the first and the last."""
        n = len(self)
        if frames >= n:
            return self
        index = torch.linspace(0, n - 1, max(frames, 1)).round().long().unique()
        return Trajectory(self.timesteps[index], self.x_t[index], self.predicted_x0[index], self.final)


def _call_model(model, x: torch.Tensor, t: torch.Tensor, class_labels=None) -> torch.Tensor:
    out = model(x, t) if class_labels is None else model(x, t, class_labels=class_labels)
    if hasattr(out, "sample") and not isinstance(out, torch.Tensor):
        out = out.sample
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model returned {type(out).__name__}; expected a tensor or an object with .sample")
    return out


def _split_step_output(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(prev_sample, pred_original_sample) from diffusers' output object or MONAI's tuple."""
    if hasattr(out, "prev_sample"):
        return out.prev_sample, getattr(out, "pred_original_sample", None)
    if isinstance(out, (tuple, list)):
        return out[0], (out[1] if len(out) > 1 else None)
    raise TypeError(f"scheduler.step returned {type(out).__name__}; expected .prev_sample or a tuple")


def resolve_null_class(model, null_class=None):
    """The "no label" value for classifier-free guidance (see the module docstring for the convention)."""
    if null_class is not None:
        return null_class
    for attr in ("null_class", "num_classes"):
        value = getattr(model, attr, None)
        if isinstance(value, int):
            return value
    config = getattr(model, "config", None)
    num_embeds = getattr(config, "num_class_embeds", None) if config is not None else None
    if isinstance(num_embeds, int):
        return num_embeds - 1
    raise ValueError(
        "classifier-free guidance needs the unconditional label: pass null_class=... (by this "
        "package's convention the index num_classes, the extra embedding learnt with label dropout)"
    )


def _null_labels(class_labels: torch.Tensor, null_class) -> torch.Tensor:
    if isinstance(null_class, torch.Tensor):
        return null_class.to(class_labels.device, class_labels.dtype).expand_as(class_labels).clone()
    return torch.full_like(class_labels, null_class)


def _model_device(model) -> torch.device:
    params = getattr(model, "parameters", None)
    if callable(params):
        try:
            return next(params()).device
        except StopIteration:
            pass
    return torch.device("cpu")


@torch.no_grad()
def sample(
    model,
    scheduler,
    shape,
    *,
    generator: torch.Generator | None = None,
    class_labels=None,
    guidance_scale: float | None = None,
    num_inference_steps: int | None = None,
    progress: bool = True,
    return_trajectory: bool = False,
    eta: float | None = None,
    null_class=None,
    noise=None,
    device: torch.device | str | None = None,
    trajectory_every: int = 1,
):
    """Generate images by running ``scheduler``'s reverse process with ``model``.

    Args:
        model: called as ``model(x, t)`` (plus ``class_labels=`` when given) with ``x`` (B, C, ...) and
            ``t`` a (B,) long tensor (float32 for a scheduler with fractional timesteps); returns the
            prediction as a tensor or an object with ``.sample`` (diffusers' UNet2DModel).
        scheduler: ours, diffusers' or MONAI's DDPM/DDIM scheduler, our ``RectifiedFlowScheduler``, diffusers'
            ``DPMSolverMultistepScheduler`` or ``FlowMatchEulerDiscreteScheduler``.
        shape: (B, C, H, W) (or (B, C, D, H, W)) of the images to generate.
        generator: seeds the initial noise and every step's noise (a CPU generator works on any device).
        class_labels: (B,) int labels (or (B, K) float), passed to the model.
        guidance_scale: classifier-free guidance weight w (needs ``class_labels``; ``None``: no guidance).
        num_inference_steps: if given, ``scheduler.set_timesteps(num_inference_steps)`` first; otherwise the
            scheduler's timesteps are used as they are set.
        progress: show a progress bar.
        return_trajectory: also return a :class:`Trajectory` (x_t and predicted x₀ at every step).
        eta: DDIM's η, passed to ``step`` when given (diffusers' and MONAI's DDIM take it there).
        null_class: the unconditional label for guidance (see the module docstring).
        noise: the initial noise :math:`x_T` (default: drawn from ``generator``).
        device: where to run (default: the model's device, else CPU).
        trajectory_every: keep every k-th step in the trajectory (and always the last one), to bound its
            memory: it holds 2 × steps × the batch on the CPU.

    Returns:
        The samples (B, C, ...) float32, or ``(samples, trajectory)`` with ``return_trajectory=True``.
    """
    from tqdm.auto import tqdm

    shape = tuple(int(s) for s in shape)
    if len(shape) < 3:
        raise ValueError(f"shape must be (B, C, H, W) or (B, C, D, H, W), got {shape}")
    if trajectory_every < 1:
        raise ValueError(f"trajectory_every must be >= 1, got {trajectory_every}")
    if guidance_scale is not None and class_labels is None:
        raise ValueError(
            "guidance_scale needs class_labels (classifier-free guidance mixes the labelled and "
            "the unlabelled prediction)"
        )
    device = torch.device(device) if device is not None else _model_device(model)
    if num_inference_steps is not None:
        scheduler.set_timesteps(num_inference_steps)
    timesteps = torch.as_tensor(scheduler.timesteps).cpu()
    # fractional timesteps (diffusers' flow-matching / Euler schedulers) are passed on as they are
    fractional = timesteps.is_floating_point()
    timestep_dtype = torch.float32 if fractional else torch.long

    if noise is None:
        gen_device = generator.device if generator is not None else device
        noise = torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {shape}")
    x = noise.to(device=device, dtype=torch.float32) * float(getattr(scheduler, "init_noise_sigma", 1.0))

    labels = None
    if class_labels is not None:
        labels = torch.as_tensor(class_labels, device=device)
        if labels.shape[0] != shape[0]:
            raise ValueError(f"class_labels has {labels.shape[0]} entries for a batch of {shape[0]}")
        if guidance_scale is not None:
            labels = torch.cat([labels, _null_labels(labels, resolve_null_class(model, null_class))])

    step_kwargs = {"generator": generator}
    if eta is not None:
        step_kwargs["eta"] = eta
    xs, x0s = [], []
    started = time.perf_counter()
    kept: list[int] = []
    for step_index, t in enumerate(tqdm(timesteps, desc="sampling", disable=not progress, leave=False)):
        model_input = x
        if hasattr(scheduler, "scale_model_input"):
            model_input = scheduler.scale_model_input(x, t)
        step_timestep = t if fractional else int(t)
        model_timestep = float(t) if fractional else int(t)
        if guidance_scale is None:
            t_batch = torch.full((shape[0],), model_timestep, device=device, dtype=timestep_dtype)
            model_output = _call_model(model, model_input, t_batch, labels)
        else:
            t_batch = torch.full((2 * shape[0],), model_timestep, device=device, dtype=timestep_dtype)
            both = _call_model(model, torch.cat([model_input, model_input]), t_batch, labels)
            conditional, unconditional = both.chunk(2)
            model_output = unconditional + guidance_scale * (conditional - unconditional)
        prev, pred_x0 = _split_step_output(scheduler.step(model_output, step_timestep, x, **step_kwargs))
        if return_trajectory and (step_index % trajectory_every == 0 or step_index == len(timesteps) - 1):
            kept.append(step_index)
            xs.append(x.detach().cpu())
            x0s.append((pred_x0 if pred_x0 is not None else torch.full_like(x, float("nan"))).detach().cpu())
        x = prev
    if progress:
        print(f"sampled {shape[0]} images in {len(timesteps)} steps, {time.perf_counter() - started:.1f} s")
    if not return_trajectory:
        return x
    trajectory = Trajectory(timesteps[kept].clone(), torch.stack(xs), torch.stack(x0s), x.detach().cpu())
    return x, trajectory


@torch.no_grad()
def ddim_invert(
    model,
    scheduler,
    x0: torch.Tensor,
    *,
    num_inference_steps: int | None = None,
    class_labels=None,
    fixed_point_iterations: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    r"""Run deterministic DDIM (η = 0) backwards: find the noise :math:`x_T` that DDIM maps to ``x0``.

    The DDIM update is an Euler step of an ODE, so it can be integrated in either direction:
    :math:`x_{t''} = \sqrt{\bar\alpha_{t''}}\hat x_0 + \sqrt{1-\bar\alpha_{t''}}\hat\varepsilon(x_t, t)`
    with :math:`t'' > t`. Sampling from the result with the same scheduler and η = 0 gives back
    (approximately; the error shrinks with more steps) the image.

    Args:
        model: as in :func:`sample`.
        scheduler: a :class:`~meddiff_lab.diffusion.schedulers.DDIMScheduler`.
        x0: clean images (B, C, ...).
        num_inference_steps: set the scheduler's timesteps first (as :func:`sample` does).
        fixed_point_iterations: the plain inversion evaluates the model at the lower end of each step,
            sampling at the upper end, which leaves an error of order one step. Each iteration re-evaluates
            the model at the current guess of the upper end; a few make the inversion the exact inverse
            of the sampler (at one more model call per iteration and step).

    Returns:
        The latent noise :math:`x_T`, shaped like ``x0``.
    """
    from tqdm.auto import tqdm

    if not hasattr(scheduler, "inversion_step"):
        raise TypeError(f"ddim_invert needs this package's DDIMScheduler, got {type(scheduler).__name__}")
    if num_inference_steps is not None:
        scheduler.set_timesteps(num_inference_steps)
    ascending = torch.as_tensor(scheduler.timesteps).cpu().flip(0).tolist()
    device = x0.device
    labels = None if class_labels is None else torch.as_tensor(class_labels, device=device)
    x = x0.to(torch.float32)
    current = scheduler.previous_timestep(ascending[0])  # the level below the first timestep (-1: clean)
    for t_next in tqdm(ascending, desc="inverting", disable=not progress, leave=False):
        t_eval = max(current, 0)
        t_batch = torch.full((x.shape[0],), t_eval, device=device, dtype=torch.long)
        model_output = _call_model(model, x, t_batch, labels)
        x_next = scheduler.inversion_step(model_output, current, x, t_next)
        for _ in range(fixed_point_iterations):
            t_batch = torch.full((x.shape[0],), t_next, device=device, dtype=torch.long)
            x_next = scheduler.inversion_step(_call_model(model, x_next, t_batch, labels), current, x, t_next)
        x, current = x_next, t_next
    return x


@torch.no_grad()
def generate_samples(
    model: torch.nn.Module,
    scheduler,
    num_samples: int,
    image_size: int,
    steps: int,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """``num_samples`` images from ``model``, reproducibly: :func:`sample` with ``steps`` steps of ``scheduler``.

    The starting noise comes from a CPU generator seeded with ``seed`` (the same images on any device);
    the model is put in eval mode for the call and back in its former mode after.

    Returns:
        ``(num_samples, 1, image_size, image_size)`` float32 in [-1, 1], on the model's device.
    """
    was_training = model.training
    model.eval()
    device = _model_device(model)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    scheduler.set_timesteps(steps)
    try:
        images = sample(
            model, scheduler, (num_samples, 1, image_size, image_size), generator=generator, progress=progress
        )
    finally:
        model.train(was_training)
    return images.to(device).clamp(-1, 1)
