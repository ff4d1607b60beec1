r"""Autoencoders for latent diffusion: MONAI's KL autoencoder (the real part) and a plain one (the misconception).

Latent diffusion (Rombach et al. 2022; MONAI's 2D/3D LDM and MAISI; Medfusion, Cheff) runs the
diffusion model on a small *latent* image :math:`z = E(x)` instead of the radiograph :math:`x` and
decodes its samples with :math:`D(z)`::

    x (B, 1, 128, 128) ──encoder──► z (B, 4, 32, 32) ──diffusion model lives here──► z ──decoder──► x̂

:class:`LatentAutoencoder` wraps ``monai.networks.nets.AutoencoderKL``. Its encoder outputs a mean
:math:`\mu` and a standard deviation :math:`\sigma` per latent value; training minimises

.. math:: \mathcal L = \lVert D(z) - x\rVert_1
          + \beta\,\mathrm{KL}\big(\mathcal N(\mu,\sigma^2)\,\Vert\,\mathcal N(0, 1)\big),
          \qquad z = \mu + \sigma\,\varepsilon,
          \qquad \mathrm{KL} = \tfrac12\textstyle\sum(\mu^2 + \sigma^2 - \log\sigma^2 - 1),

with a small :math:`\beta` (1e-6 as in MONAI's tutorials): the KL term keeps the latent space smooth
and bounded, so that *every* point near the data decodes to an image, and the noise of
:math:`z = \mu + \sigma\varepsilon` makes the decoder robust to small latent errors a diffusion model
will make. The latents' scale is still arbitrary, so :meth:`LatentAutoencoder.fit_scale_factor`
measures :math:`c = 1/\operatorname{std}(z)` on training images and stores it: the diffusion model
sees :math:`c\,z` (unit variance, the scale its noise schedule assumes). Without it a schedule built
for unit-variance data would reach "pure noise" too early or too late.

:class:`PlainAutoencoder` is the encoder–decoder an article once presented as "a diffusion model for
chest X-rays": convolutions down to a code and back up, trained on ``MSE(output, input)``. It
reconstructs well and generates nothing: no term of its objective says what a code of a *new* image
looks like, so noise or a blend of two codes decodes to no radiograph (notebook 10 measures it).

Shapes: images (B, 1, H, W) float32 in [-1, 1]; latents (B, latent_channels, H/f, W/f) with the
downsampling factor :math:`f = 2^{\text{levels} - 1}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def kl_divergence(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mu,\sigma^2)\Vert\mathcal N(0,1))` summed over latent values, averaged
    over the batch: (B, C, h, w) → a scalar (MONAI's tutorials' convention)."""
    kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2).clamp_min(1e-12)) - 1)
    return kl.flatten(1).sum(1).mean()


class LatentAutoencoder(nn.Module):
    """MONAI's ``AutoencoderKL`` for one-channel radiographs, plus the latent scale factor.

    Args:
        image_size: side of the square images it is meant for (kept in ``config``; any multiple of
            ``downsample_factor`` works).
        channels: channels per level of MONAI's encoder/decoder; ``len(channels) - 1`` halvings, so
            3 levels give 4 × 32 × 32 latents at 128 px, 4 levels 4 × 16 × 16.
        latent_channels: channels of the latent image.
        num_res_blocks, norm_num_groups: as in ``AutoencoderKL``.
        attention: MONAI's non-local attention in the lowest level of the encoder and decoder (costly
            on a CPU; off by default).

    Attributes:
        autoencoder: the ``monai.networks.nets.AutoencoderKL``.
        scale_factor: (buffer) :math:`c`; :meth:`encode` returns :math:`c\\,z`, :meth:`decode` divides by it.
        config: the constructor arguments (plain data, for JSON).
    """

    def __init__(
        self,
        image_size: int = 128,
        channels: Sequence[int] = (16, 32, 64),
        latent_channels: int = 4,
        num_res_blocks: int = 1,
        norm_num_groups: int = 16,
        attention: bool = False,
    ) -> None:
        super().__init__()
        from monai.networks.nets import AutoencoderKL

        channels = tuple(int(c) for c in channels)
        factor = 2 ** (len(channels) - 1)
        if image_size % factor:
            raise ValueError(
                f"image_size {image_size} must be divisible by the downsampling factor {factor} "
                f"(2 ** (len(channels) - 1) for channels {channels})"
            )
        self.autoencoder = AutoencoderKL(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            channels=channels,
            latent_channels=latent_channels,
            num_res_blocks=num_res_blocks,
            attention_levels=(False,) * len(channels),
            norm_num_groups=norm_num_groups,
            with_encoder_nonlocal_attn=attention,
            with_decoder_nonlocal_attn=attention,
        )
        self.register_buffer("scale_factor", torch.tensor(1.0))
        self.config = dict(
            image_size=int(image_size),
            channels=list(channels),
            latent_channels=int(latent_channels),
            num_res_blocks=int(num_res_blocks),
            norm_num_groups=int(norm_num_groups),
            attention=bool(attention),
        )

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config["channels"]) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(latent_channels, h, w) for images of ``config["image_size"]``."""
        side = self.config["image_size"] // self.downsample_factor
        return (self.config["latent_channels"], side, side)

    def _check(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be (B, 1, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        if images.shape[-1] % self.downsample_factor or images.shape[-2] % self.downsample_factor:
            raise ValueError(f"image sides {tuple(images.shape[-2:])} must be divisible by {self.downsample_factor}")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction from a sampled z, z_mu, z_sigma), unscaled latents."""
        self._check(images)
        return self.autoencoder(images)

    def encode_distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ) of the latent posterior, unscaled, each (B, latent_channels, H/f, W/f)."""
        self._check(images)
        return self.autoencoder.encode(images)

    def encode(
        self, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Scaled latents :math:`c\\,\\mu` (or :math:`c\\,(\\mu + \\sigma\\varepsilon)` with ``sample=True``)."""
        z_mu, z_sigma = self.encode_distribution(images)
        z = z_mu
        if sample:
            z = z_mu + z_sigma * torch.randn(z_mu.shape, generator=generator).to(z_mu)
        return z * self.scale_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, H, W) from scaled latents (not clamped)."""
        return self.autoencoder.decode(latents / self.scale_factor)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """:math:`D(E(x))` through the posterior mean, clamped to [-1, 1]."""
        return self.decode(self.encode(images)).clamp(-1, 1)

    @torch.no_grad()
    def fit_scale_factor(self, images: torch.Tensor, batch_size: int = 32) -> float:
        """Set :attr:`scale_factor` to 1 / std of the sampled latents of ``images``; returns it."""
        was_training = self.training
        self.eval()
        generator = torch.Generator().manual_seed(0)
        latents = []
        for start in range(0, len(images), batch_size):
            z_mu, z_sigma = self.encode_distribution(images[start : start + batch_size].to(self.scale_factor.device))
            latents.append(z_mu + z_sigma * torch.randn(z_mu.shape, generator=generator).to(z_mu))
        std = float(torch.cat(latents).std())
        self.train(was_training)
        if not std > 0:
            raise ValueError("the latents have zero spread: is the autoencoder trained?")
        self.scale_factor.fill_(1.0 / std)
        return 1.0 / std


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    groups = 8 if out_channels % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.GroupNorm(groups, out_channels), nn.SiLU()
    )


class PlainAutoencoder(nn.Module):
    """The article's "diffusion model": a plain convolutional encoder–decoder trained on MSE(output, input).

    No noise, no timestep, no distribution over codes. ``forward(x)`` returns the reconstruction;
    :meth:`encode`/:meth:`decode` expose the code (B, code_channels, H/f, W/f), f = 2 ** (len(channels) - 1).
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64), code_channels: int = 4) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        down = [_conv_block(1, channels[0])]
        for a, b in zip(channels[:-1], channels[1:]):
            down.append(_conv_block(a, b, stride=2))
        down.append(nn.Conv2d(channels[-1], code_channels, 1))
        self.encoder = nn.Sequential(*down)
        up = [_conv_block(code_channels, channels[-1])]
        for a, b in zip(channels[::-1][:-1], channels[::-1][1:]):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), _conv_block(a, b)]
        up.append(nn.Conv2d(channels[0], 1, 3, padding=1))
        self.decoder = nn.Sequential(*up)
        self.config = dict(channels=list(channels), code_channels=int(code_channels))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))


# ------------------------------------------------------------------------------------------ training
@dataclass
class AutoencoderRun:
    """What :func:`train_autoencoder` returns: ``history`` rows (step, loss, reconstruction, kl,
    images_per_sec), total ``seconds`` and ``steps``."""

    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    optimizer: object = None  # kept for resuming

    @property
    def images_per_sec(self) -> float:
        rates = [row["images_per_sec"] for row in self.history]
        return float(sum(rates) / len(rates)) if rates else float("nan")


def autoencoder_loss(
    model: nn.Module, images: torch.Tensor, kl_weight: float = 1e-6, reconstruction: str = "l1"
) -> tuple[torch.Tensor, dict]:
    """One batch's loss: reconstruction (``"l1"`` or ``"mse"``) plus ``kl_weight`` · KL for a
    :class:`LatentAutoencoder`; the plain MSE for anything whose forward returns one tensor."""
    out = model(images)
    if isinstance(out, tuple):
        recon, z_mu, z_sigma = out
        kl = kl_divergence(z_mu, z_sigma)
    else:
        recon, kl = out, torch.zeros((), device=images.device)
    if reconstruction == "l1":
        rec = F.l1_loss(recon, images)
    elif reconstruction == "mse":
        rec = F.mse_loss(recon, images)
    else:
        raise ValueError(f"reconstruction must be 'l1' or 'mse', got {reconstruction!r}")
    loss = rec + kl_weight * kl
    return loss, {"reconstruction": float(rec.detach()), "kl": float(kl.detach())}


def train_autoencoder(
    model: nn.Module,
    images: torch.Tensor,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    kl_weight: float = 1e-6,
    reconstruction: str | None = None,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 10,
    max_seconds: float | None = None,
    start_step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
) -> AutoencoderRun:
    """Train ``model`` (a :class:`LatentAutoencoder` or :class:`PlainAutoencoder`) on ``images``.

    Args:
        images: (N, 1, H, W) float32 in [-1, 1].
        steps: optimizer steps in total (the loop runs from ``start_step``); ``max_seconds`` stops earlier.
        reconstruction: ``"l1"`` (default for the KL autoencoder) or ``"mse"`` (default for the plain one,
            as the article trained it).
        optimizer: an existing optimizer to continue (resume); otherwise AdamW is made here.

    Returns:
        An :class:`AutoencoderRun`; the model is trained in place (and left in eval mode).
    """
    from tqdm.auto import tqdm

    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    if reconstruction is None:
        reconstruction = "l1" if isinstance(model, LatentAutoencoder) else "mse"
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed + start_step)
    device = next(model.parameters()).device  # batches are drawn on the CPU and moved to the model
    run = AutoencoderRun(steps=start_step)
    model.train()
    started = window_start = time.perf_counter()
    window_loss, window_steps, window_parts = 0.0, 0, {"reconstruction": 0.0, "kl": 0.0}
    bar = tqdm(total=steps, initial=start_step, desc="autoencoder", unit="step", disable=not progress, mininterval=1.0)
    for step in range(start_step, steps):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        loss, parts = autoencoder_loss(model, images[index].to(device), kl_weight, reconstruction)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"autoencoder loss became {float(loss)} at step {step + 1}; lower learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        window_loss += float(loss.detach())
        window_steps += 1
        for key in window_parts:
            window_parts[key] += parts[key]
        run.steps = step + 1
        bar.update(1)
        elapsed_total = time.perf_counter() - started
        out_of_time = max_seconds is not None and elapsed_total >= max_seconds
        if run.steps % log_every == 0 or run.steps == steps or out_of_time:
            elapsed = time.perf_counter() - window_start
            row = {
                "step": run.steps,
                "loss": window_loss / window_steps,
                **{k: v / window_steps for k, v in window_parts.items()},
                "images_per_sec": window_steps * batch_size / max(elapsed, 1e-9),
            }
            run.history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
            window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
            window_parts = {"reconstruction": 0.0, "kl": 0.0}
        if out_of_time:
            break
    bar.close()
    run.seconds = time.perf_counter() - started
    model.eval()
    run.optimizer = optimizer
    if progress:
        print(
            f"autoencoder: {run.steps - start_step} steps in {run.seconds:.0f} s "
            f"({run.images_per_sec:.1f} images/s), last loss {run.history[-1]['loss']:.4f}"
        )
    return run


@torch.no_grad()
def encode_dataset(
    autoencoder: LatentAutoencoder, images: torch.Tensor, batch_size: int = 16, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (μ, σ) of every image, *scaled* by the autoencoder's scale factor: two (N, C, h, w) tensors.
    Draw training latents as ``mu + sigma * randn`` (a fresh draw each time is cheap augmentation)."""
    from tqdm.auto import tqdm

    autoencoder.eval()
    mus, sigmas = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="encoding", disable=not progress, leave=False):
        z_mu, z_sigma = autoencoder.encode_distribution(
            images[start : start + batch_size].to(autoencoder.scale_factor.device)
        )
        mus.append((z_mu * autoencoder.scale_factor).cpu())
        sigmas.append((z_sigma * autoencoder.scale_factor).cpu())
    return torch.cat(mus), torch.cat(sigmas)


@torch.no_grad()
def decode_in_batches(decoder, latents: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """``decoder(latents)`` batch by batch, clamped to [-1, 1] (bounds the memory of decoding many samples)."""
    return torch.cat([decoder(latents[i : i + batch_size]) for i in range(0, len(latents), batch_size)]).clamp(-1, 1)


# ------------------------------------------------------------------------------------------ files
def save_autoencoder(autoencoder: LatentAutoencoder, path: str | Path, extra: dict | None = None) -> Path:
    """Write weights (.safetensors, including the scale factor) and ``config`` as JSON beside them."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path} must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in autoencoder.state_dict().items()}, str(path))
    config = {"autoencoder": autoencoder.config, "scale_factor": float(autoencoder.scale_factor), **(extra or {})}
    path.with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def autoencoder_from_state(config: dict, state: dict) -> LatentAutoencoder:
    """Build a :class:`LatentAutoencoder` from its ``config`` and load ``state`` (eval mode)."""
    autoencoder = LatentAutoencoder(**config)
    autoencoder.load_state_dict({k: v.float() for k, v in state.items()})
    return autoencoder.eval()


# ------------------------------------------------------------------------------ latent diffusion
@dataclass
class LatentDiffusionPipeline:
    """An autoencoder and a latent denoiser, sampled together (what ``load_pretrained("phantom128-ldm")`` returns).

    Attributes:
        model: the latent U-Net (eval mode), ``model(z, t)`` on (B, C, h, w) scaled latents.
        scheduler: a ``DDIMScheduler`` for ε/v models, a ``RectifiedFlowScheduler`` for flow models.
        autoencoder: the :class:`LatentAutoencoder` (eval mode; its ``scale_factor`` set).
        config: dict with at least ``image_size``, ``latent_shape``, ``diffusion``.
        name: the model's name.
    """

    model: nn.Module
    scheduler: object
    autoencoder: LatentAutoencoder
    config: dict
    name: str = "latent-diffusion"

    @torch.no_grad()
    def sample_latents(
        self, n: int = 16, steps: int = 50, seed: int = 0, progress: bool = False, scheduler=None
    ) -> torch.Tensor:
        """``n`` latent samples (n, C, h, w) with ``steps`` steps of ``scheduler`` (default: ``self.scheduler``)."""
        from meddiff_lab.diffusion import sample

        scheduler = scheduler or self.scheduler
        generator = torch.Generator().manual_seed(seed)
        return sample(
            self.model,
            scheduler,
            (n, *self.config["latent_shape"]),
            generator=generator,
            num_inference_steps=steps,
            progress=progress,
        )

    @torch.no_grad()
    def sample(
        self, n: int = 16, steps: int = 50, seed: int = 0, progress: bool = False, scheduler=None
    ) -> torch.Tensor:
        """``n`` decoded samples (n, 1, H, W) float32 in [-1, 1]."""
        latents = self.sample_latents(n, steps, seed, progress, scheduler)
        return decode_in_batches(self.autoencoder.decode, latents)


def scheduler_for(diffusion: dict):
    """The sampler for a latent model's ``diffusion`` config: rectified flow, or DDIM for ε/v."""
    from meddiff_lab.diffusion import DDIMScheduler
    from meddiff_lab.diffusion.flow import RectifiedFlowScheduler

    if diffusion["prediction_type"] in ("rectified_flow", "velocity"):
        return RectifiedFlowScheduler(int(diffusion.get("num_train_timesteps", 1000)))
    # latents are not confined to [-1, 1]: no clipping of the predicted clean latent
    return DDIMScheduler(
        num_train_timesteps=int(diffusion["num_train_timesteps"]),
        beta_start=float(diffusion["beta_start"]),
        beta_end=float(diffusion["beta_end"]),
        beta_schedule=diffusion["schedule"],
        prediction_type=diffusion["prediction_type"],
        clip_sample=False,
    )


def load_latent_diffusion(
    weights: str | Path, config_path: str | Path | None = None, device=None, name: str | None = None
) -> LatentDiffusionPipeline:
    """Load a latent diffusion model written by ``meddiff_lab.training.latent.export_latent_diffusion``."""
    from safetensors.torch import load_file

    from meddiff_lab.models.unet import UNet, unet_kwargs

    weights = Path(weights)
    config_path = Path(config_path) if config_path is not None else weights.with_suffix(".json")
    for path, what in ((weights, "weights"), (config_path, "config")):
        if not path.is_file():
            raise FileNotFoundError(f"latent diffusion {what} {path} not found")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("image_size", "autoencoder", "model", "diffusion", "latent_shape", "scale_factor"):
        if key not in config:
            raise ValueError(f"latent diffusion config {config_path} lacks {key!r}")
    state = load_file(str(weights))
    autoencoder = autoencoder_from_state(
        config["autoencoder"], {k[len("autoencoder.") :]: v for k, v in state.items() if k.startswith("autoencoder.")}
    )
    unet = UNet(**unet_kwargs(config["model"]))
    unet.load_state_dict({k[len("unet.") :]: v.float() for k, v in state.items() if k.startswith("unet.")})
    device = torch.device(device) if device is not None else torch.device("cpu")
    return LatentDiffusionPipeline(
        model=unet.to(device).eval(),
        scheduler=scheduler_for(config["diffusion"]),
        autoencoder=autoencoder.to(device),
        config=config,
        name=name or weights.stem,
    )
