r"""Exact denoisers: the best possible "network" for data we know completely.

A denoiser trained to convergence with the MSE loss outputs the posterior mean
:math:`\mathbb E[x_0 \mid x_t]` (or the matching :math:`\mathbb E[\varepsilon \mid x_t]`). For two kinds
of data that expectation has a closed form, so the samplers can be tested before any network exists:

* **Gaussian data** :math:`x_0 \sim \mathcal N(\mu, s^2 I)`: with :math:`x_t = a x_0 + b\varepsilon`
  (:math:`a=\sqrt{\bar\alpha_t}`, :math:`b=\sqrt{1-\bar\alpha_t}`), :math:`x_t` is Gaussian too and

  .. math:: \mathbb E[x_0\mid x_t] = \mu + \frac{a s^2}{a^2 s^2 + b^2}(x_t - a\mu), \qquad
            \mathbb E[\varepsilon\mid x_t] = \frac{b}{a^2 s^2 + b^2}(x_t - a\mu).

  Sampling with it must give samples of mean μ and standard deviation s.
* **A finite dataset** :math:`\{x^{(1)},\dots,x^{(N)}\}` (each image equally likely): the posterior over
  which image was noised is a softmax of the negative squared distances,

  .. math:: w_i(x_t) = \operatorname{softmax}_i\Big(-\frac{\lVert x_t - a x^{(i)}\rVert^2}{2b^2}\Big), \qquad
            \mathbb E[x_0\mid x_t] = \sum_i w_i\,x^{(i)}.

  Sampling with it regenerates training images exactly: the optimum of the training loss *is*
  memorisation; a real network generalises only because it cannot reach that optimum.

Both are callables with a model's signature ``model(x, timesteps, class_labels=None)`` and return
the prediction named by ``prediction_type``, so they plug into :func:`~meddiff_lab.diffusion.sample`
and into diffusers' or MONAI's schedulers.
"""

from __future__ import annotations

import torch

from .process import check_prediction_type


def _alphas_cumprod_of(schedule) -> torch.Tensor:
    """ᾱ from a NoiseSchedule, one of our schedulers, a diffusers/MONAI scheduler, or a tensor."""
    if isinstance(schedule, torch.Tensor):
        values = schedule
    elif hasattr(schedule, "alphas_cumprod"):
        values = schedule.alphas_cumprod
    else:
        raise TypeError(
            "schedule must be a NoiseSchedule, a scheduler with .alphas_cumprod, or a tensor of "
            f"alphas_cumprod; got {type(schedule).__name__}"
        )
    return torch.as_tensor(values).detach().to(torch.float64).cpu()


def _timesteps_per_item(timesteps, batch: int) -> torch.Tensor:
    t = torch.as_tensor(timesteps).detach().cpu().long().flatten()
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"got {t.numel()} timesteps for a batch of {batch}")
    return t


def _to_prediction(kind: str, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, a, b) -> torch.Tensor:
    if kind == "epsilon":
        return eps
    if kind == "sample":
        return x0
    return a * eps - b * x0  # v


class GaussianDenoiser:
    r"""The exact denoiser for data :math:`x_0 \sim \mathcal N(\mu, s^2)`, independent per pixel.

    Args:
        mean: μ (a float, or a tensor broadcastable to one image, e.g. (C, H, W)).
        std: s > 0 (same rules).
        schedule: anything with ``alphas_cumprod`` (a :class:`NoiseSchedule`, our or diffusers'/MONAI's scheduler).
        prediction_type: what to return: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.

    Call: ``denoiser(x, timesteps)`` with ``x`` (B, C, ...) and one timestep or (B,) timesteps.
    """

    def __init__(self, mean, std, schedule, prediction_type: str = "epsilon") -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.std = torch.as_tensor(std, dtype=torch.float64)
        if not torch.all(self.std > 0):
            raise ValueError(f"std must be positive, got {std!r}")
        self.alphas_cumprod = _alphas_cumprod_of(schedule)
        self.prediction_type = check_prediction_type(prediction_type)

    def __call__(self, x: torch.Tensor, timesteps, class_labels=None) -> torch.Tensor:
        t = _timesteps_per_item(timesteps, x.shape[0])
        alpha_bar = self.alphas_cumprod[t].reshape(-1, *([1] * (x.ndim - 1)))
        a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        xd = x.detach().to(torch.float64).cpu()
        centred = xd - a * self.mean
        denominator = a**2 * self.std**2 + b**2
        eps = b * centred / denominator
        x0 = self.mean + a * self.std**2 * centred / denominator
        return _to_prediction(self.prediction_type, xd, x0, eps, a, b).to(device=x.device, dtype=x.dtype)


class DatasetDenoiser:
    r"""The exact posterior-mean denoiser for a small finite dataset (a uniform mixture of its images).

    Args:
        images: the training set (N, C, ...) (or (N, H, W), read as one channel), float, in [-1, 1].
        schedule: anything with ``alphas_cumprod``.
        prediction_type: what to return: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.

    Call: ``denoiser(x, timesteps)`` with ``x`` (B, C, ...) shaped like one training image per item.
    :meth:`weights` gives the posterior probability of each training image, (B, N).
    """

    def __init__(self, images: torch.Tensor, schedule, prediction_type: str = "epsilon") -> None:
        images = torch.as_tensor(images).detach()
        if images.ndim == 3:
            images = images[:, None]
        if images.ndim < 3 or images.shape[0] < 1:
            raise ValueError(f"images must be (N, C, H, W) or (N, H, W) with N >= 1, got {tuple(images.shape)}")
        self.images = images.to(torch.float64).cpu()
        self.flat = self.images.flatten(1)
        self._squared_norms = (self.flat**2).sum(1)[None]  # ||x_i||^2, (1, N)
        self.alphas_cumprod = _alphas_cumprod_of(schedule)
        self.prediction_type = check_prediction_type(prediction_type)

    def weights(self, x: torch.Tensor, timesteps) -> torch.Tensor:
        """The posterior :math:`p(x_0 = x^{(i)} \\mid x_t)` for each item and training image, (B, N)."""
        if tuple(x.shape[1:]) != tuple(self.images.shape[1:]):
            raise ValueError(f"x has per-image shape {tuple(x.shape[1:])}, the dataset {tuple(self.images.shape[1:])}")
        a, b = self._coefficients(timesteps, x.shape[0], 2)
        return self._weights(x.detach().to(torch.float64).cpu().flatten(1), a, b)

    def _coefficients(self, timesteps, batch: int, ndim: int):
        """sqrt(ᾱ_t) and sqrt(1-ᾱ_t): floats when the batch shares one timestep (the sampling case), else (B, 1...)."""
        t = _timesteps_per_item(timesteps, batch)
        if bool((t == t[0]).all()):
            alpha_bar = float(self.alphas_cumprod[int(t[0])])
            return alpha_bar**0.5, (1 - alpha_bar) ** 0.5
        alpha_bar = self.alphas_cumprod[t].reshape(-1, *([1] * (ndim - 1)))
        return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()

    def _weights(self, xf: torch.Tensor, a, b) -> torch.Tensor:
        if isinstance(a, torch.Tensor):
            a, b = a.reshape(-1, 1), b.reshape(-1, 1)
        # ||x_t - a x_i||^2 = ||x_t||^2 - 2a <x_t, x_i> + a^2 ||x_i||^2  (the first term cancels in the softmax)
        logits = (2 * a * (xf @ self.flat.T) - a**2 * self._squared_norms) / (2 * b**2)
        return torch.softmax(logits, dim=1)

    def __call__(self, x: torch.Tensor, timesteps, class_labels=None) -> torch.Tensor:
        if tuple(x.shape[1:]) != tuple(self.images.shape[1:]):
            raise ValueError(f"x has per-image shape {tuple(x.shape[1:])}, the dataset {tuple(self.images.shape[1:])}")
        a, b = self._coefficients(timesteps, x.shape[0], 2)
        xf = x.detach().to(torch.float64).cpu().flatten(1)
        x0 = self._weights(xf, a, b) @ self.flat
        if isinstance(a, torch.Tensor):
            a, b = a.reshape(-1, 1), b.reshape(-1, 1)
        eps = (xf - a * x0) / b
        out = _to_prediction(self.prediction_type, xf, x0, eps, a, b)
        return out.reshape(x.shape).to(device=x.device, dtype=x.dtype)

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each image in ``x`` the index of the nearest training image and the RMS distance to it."""
        xf = x.detach().to(torch.float64).cpu().flatten(1)
        d = torch.cdist(xf, self.flat) / xf.shape[1] ** 0.5
        dist, index = d.min(dim=1)
        return index, dist
