"""Where code runs and how big it runs: device, threads, seeding and course profiles.

A *profile* holds every size a notebook uses (image size, number of images, training steps,
sampling steps...). Notebooks never hard-code a size the profiles cut; they read it from
``get_profile(PROFILE)``. Three profiles exist:

=========  ==========================================  =====================================
name       for                                         budget per notebook
=========  ==========================================  =====================================
ci         tests and CI                                <= 60 s on one CPU thread
classroom  a student on Binder or a laptop             <= 5 min on ONE CPU thread, <= 1.5 GB
full       a GPU                                       real training
=========  ==========================================  =====================================

The environment variable ``MEDDIFF_PROFILE`` sets the default profile; ``MEDDIFF_DEVICE`` forces
a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

PROFILE_NAMES = ("ci", "classroom", "full")
DEFAULT_PROFILE = "classroom"


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the compute device: ``prefer`` or ``$MEDDIFF_DEVICE`` if set, else cuda, mps, cpu.

    Raises:
        ValueError: if the requested device is not available on this machine.
    """
    requested = prefer or os.environ.get("MEDDIFF_DEVICE")
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was requested but CUDA is not available here; use 'cpu'")
        if device.type == "mps" and not _mps_available():
            raise ValueError(f"device {requested!r} was requested but MPS is not available here; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_threads(n: int | None) -> int:
    """Limit PyTorch to ``n`` CPU threads (``None`` leaves the default). Returns the thread count."""
    if n is not None:
        torch.set_num_threads(int(n))
    return torch.get_num_threads()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run repeats; returns a seeded CPU generator."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class ProfileSizes(Mapping[str, Any]):
    """Every size a notebook uses, for one profile: a typed field each, with what it sizes and which
    notebooks use it. Also a read-only mapping (``sizes["image_size"]``, ``dict(sizes)``), as the
    profiles were dicts once; ``Profile`` serves each field as an attribute (``profile.image_size``).

    A field a profile lacks, or a value of the wrong type, fails when this module is imported.
    """

    # --- data (00, 01; image_size and gallery_images in every notebook that loads radiographs)
    image_size: int  # side in px of the radiographs of 00-04, 08, 09
    num_images: int  # radiographs 01 writes in the ChestX-ray14 layout
    gallery_images: int  # radiographs in the galleries of 00-02 (01: augmentation variants)
    ct_side: int  # in-plane side of 01's synthetic CT volume
    ct_slices: int  # slices of 01's synthetic CT volume
    split_patients: int  # patients of 01's NIH-like patient split demonstration
    registration_steps: int  # optimizer iterations of 01's image registration
    # --- diffusion math (02, 03)
    num_train_timesteps: int  # T of the noise schedules (02-05, 10)
    forward_check_samples: int  # draws checking q(x_t | x_0) against its formula (02; 03 uses 10x)
    oracle_dataset_size: int  # images of 03's tiny training set and its exact denoiser (also 08, 09)
    sampling_steps: int  # DDIM steps of 03's samplers
    ddim_step_sweep: tuple[int, ...]  # step counts 03 compares, DDPM vs DDIM
    trajectory_frames: int  # frames 03 shows of a denoising trajectory
    gaussian_check_samples: int  # pixels drawn to check 03's Gaussian-data sampler (over the batch)
    oracle_samples: int  # images 03 samples from the exact denoiser
    # --- U-Net (04)
    unet_channels: tuple[int, ...]  # channels per level of 04's U-Net
    benchmark_repeats: int  # timed repeats of 04's speed comparison with MONAI and diffusers
    benchmark_batch: int  # batch of 04's forward passes and benchmark
    volume_size: int  # side of 04's 3D U-Net test volume
    # --- training (05; batch_size also 09)
    train_image_size: int  # side in px of 05's training images
    train_images: int  # 05's training set
    train_steps: int  # optimizer steps of 05's training run
    batch_size: int  # 05's training batch (09: the supervised denoiser's)
    sample_every: int  # steps between 05's sample grids and checkpoints
    num_samples: int  # images in each of 05's sample grids
    train_channels: tuple[int, ...]  # channels per level of 05's U-Net
    train_sampling_steps: int  # DDIM steps of 05's sample grids
    resume_steps: int  # steps 05 adds when it resumes from the checkpoint
    pretrained_samples: int  # shipped-model images 05 shows (twice as many meet the readers)
    pretrained_sampling_steps: int  # DDIM steps of those shipped-model samples
    train_threads: int | None  # CPU threads of 05's trainer (None: PyTorch's default)
    # --- conditioning (06) and segmentation augmentation (07); zoo_*: 06 samples the shipped conditional models
    cond_image_size: int  # side in px of 06's and 07's images
    cond_train_images: int  # 06's training set (class, metadata and mask conditioning)
    cond_unet_channels: tuple[int, ...]  # channels per level of the conditional U-Nets (06, 07)
    cond_batch_size: int  # 06's training batch
    cond_train_steps: int  # steps of 06's class- and metadata-conditioned model
    mask_train_steps: int  # steps of each of 06's two mask-conditioned models
    cond_guidance_scales: tuple[float, ...]  # guidance scales w of 06's sweep
    cond_samples_per_class: int  # samples per class and scale in 06 (and per sex)
    cond_sampling_steps: int  # DDIM steps of 06's and 07's conditional samples
    seg_instrument_steps: int  # steps of the segmentation net that measures samples (06, 07)
    seg_test_images: int  # held-out phantoms the instrument and 07's arms are scored on
    zoo_samples_per_arm: int  # phantom64-cond / ControlNet samples per arm in 06
    zoo_sampling_steps: int  # DDIM steps of 06's zoo samples
    zoo_guidance_scales: tuple[float, ...]  # guidance scales of 06's zoo sweep
    seg_grid: str  # 07's live grid: a profile of experiments.SEG_AUGMENTATION_PROFILES
    # --- evaluation (08)
    eval_images: int  # N of 08's real-vs-real floor and generated sets
    eval_ddim_steps: tuple[int, ...]  # step counts 08 sweeps
    quiz_questions: int  # questions of 08's real-or-synthetic quiz
    eval_sampling_steps: int  # DDIM steps of 08's generated set
    eval_sweep_images: int  # images per step count in 08's sweep
    eval_train_search: int  # training images 08 searches for near-copies
    eval_noise_levels: tuple[int, ...]  # timesteps at which 08 scores restoration (PSNR/SSIM)
    eval_restoration_images: int  # held-out images of 08's restoration check
    eval_restoration_steps: int  # sampler steps of 08's restoration check
    eval_seg_images: int  # phantoms of 08's Dice/HD95 section
    eval_ms_ssim_pairs: int  # image pairs of 08's MS-SSIM diversity
    eval_copy_calibration: int  # real images calibrating 08's near-copy threshold
    # --- applications (09): test/calibration/training sets, doses, sampler steps, anomaly detection
    app_test_images: int  # 09's low-dose test phantoms
    app_calibration_images: int  # 09's calibration phantoms (sampler settings, thresholds)
    app_train_pairs: int  # low/full-dose pairs of 09's supervised denoiser
    app_doses: tuple[float, ...]  # relative doses 09 simulates
    app_supervised_steps: int  # steps of 09's supervised denoiser
    app_supervised_crop: int | None  # crop side of its training patches (None: whole images)
    app_posterior_samples: int  # posterior samples per image of 09's diffusion denoiser
    app_denoise_steps: int  # sampler steps of 09's diffusion denoising
    app_bm3d_dose: float | None  # the dose 09 runs BM3D at (None: skipped)
    app_sr_steps: int  # sampler steps of 09's super-resolution
    app_inpaint_steps: int  # sampler steps of 09's inpainting
    app_repaint_resample: int  # RePaint resampling rounds in 09
    app_anomaly_images: int  # phantoms of 09's anomaly-detection test
    app_healthy_images: int  # healthy phantoms of 09's autoencoder baseline
    app_autoencoder_steps: int  # steps of that autoencoder
    app_anomaly_timestep: int  # timestep t* to which 09 noises images to detect anomalies
    app_anomaly_steps: int  # sampler steps back from t*
    # --- latent diffusion (10): live tiny autoencoders and latent models; equal-compute arms
    ldm_image_size: int  # side in px of 10's images
    ldm_train_images: int  # 10's training set
    ldm_eval_images: int  # N of 10's KID/FID comparisons
    ldm_batch_size: int  # 10's training batch (autoencoders and denoisers)
    ldm_plain_channels: tuple[int, ...]  # channels of 10's plain (non-KL) autoencoder
    ldm_ae_channels: tuple[int, ...]  # channels of 10's KL autoencoder, downsampling factor 4
    ldm_ae_f8_channels: tuple[int, ...]  # channels of 10's KL autoencoder, downsampling factor 8
    ldm_ae_steps: int  # step cap of each of 10's autoencoders
    ldm_ae_seconds: float | None  # time cap of each of 10's autoencoders (None: steps only)
    ldm_unet_channels: tuple[int, ...]  # channels of 10's latent U-Nets
    ldm_pixel_channels: tuple[int, ...]  # channels of 10's pixel-space U-Net
    ldm_arm_steps: int  # step cap of each of 10's equal-compute arms
    ldm_arm_seconds: float | None  # time cap of each arm
    ldm_sampling_steps: int  # sampler steps of 10's arm comparison
    ldm_step_sweep: tuple[int, ...]  # step counts 10 sweeps
    ldm_dpm_steps: tuple[int, ...]  # step counts 10 compares DPM-Solver++ and DDIM at
    ldm_reference_steps: int  # DDIM steps of 10's reference KID
    ldm_pretrained_samples: int  # phantom128-ldm samples 10 draws
    ldm_pretrained_steps: int  # DDIM steps of those samples

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for name in self:
            value, hint = getattr(self, name), hints[name]
            if not _fits(value, hint):
                raise TypeError(f"profile size {name}: expected {hint}, got {value!r}")

    # the read-only mapping the profiles were before they had types
    def __getitem__(self, key: str) -> Any:
        if key not in _SIZE_NAMES:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_SIZE_NAMES)

    def __len__(self) -> int:
        return len(_SIZE_NAMES)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the type ``hint`` (int, float, bool, ``X | None``, ``tuple[X, ...]``)."""
    if isinstance(hint, types.UnionType):
        return any(_fits(value, part) for part in hint.__args__)
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple) and all(_fits(v, typing.get_args(hint)[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


_SIZE_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ProfileSizes))


@dataclass(frozen=True)
class Profile:
    """Every size a notebook uses, for one profile. Read values as attributes or with ``[]``.

    Attributes:
        name: ``"ci"``, ``"classroom"`` or ``"full"``.
        threads: CPU threads the notebook should use (``None``: PyTorch's default).
        sizes: the sizes themselves, a :class:`ProfileSizes` (its fields say what each one sizes);
            ``profile.image_size`` and ``profile["image_size"]`` read ``profile.sizes.image_size``.
    """

    name: str
    threads: int | None
    sizes: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        sizes = object.__getattribute__(self, "sizes")
        if key in sizes:
            return sizes[key]
        raise AttributeError(
            f"profile {object.__getattribute__(self, 'name')!r} has no size {key!r}; known: {sorted(sizes)}"
        )

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__(key)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(object.__getattribute__(self, "sizes")))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "threads": self.threads, **dict(self.sizes)}


# One ProfileSizes per profile; the fields are documented in ProfileSizes, grouped by the notebook that
# introduces them (later notebooks reuse them).
_SIZES: dict[str, ProfileSizes] = {
    "ci": ProfileSizes(
        # data (01, and every notebook that loads radiographs)
        image_size=32,
        num_images=48,
        gallery_images=4,
        ct_side=64,
        ct_slices=16,
        split_patients=3000,
        registration_steps=40,
        # diffusion math (02, 03)
        num_train_timesteps=1000,
        forward_check_samples=2000,
        oracle_dataset_size=8,
        sampling_steps=20,
        ddim_step_sweep=(5, 10, 20),
        trajectory_frames=5,
        gaussian_check_samples=2048,
        oracle_samples=4,
        # U-Net (04)
        unet_channels=(32, 32, 64),
        benchmark_repeats=2,
        benchmark_batch=4,
        volume_size=16,
        # training (05, 06)
        train_image_size=16,
        train_images=64,
        train_steps=20,
        batch_size=8,
        sample_every=10,
        num_samples=4,
        train_channels=(16, 32),
        train_sampling_steps=10,
        resume_steps=4,
        pretrained_samples=4,
        pretrained_sampling_steps=10,
        train_threads=1,
        # conditioning (06) and segmentation augmentation (07); zoo_*: 06 samples the pretrained conditional models
        cond_image_size=32,
        cond_train_images=64,
        cond_unet_channels=(16, 32, 32),
        cond_batch_size=8,
        cond_train_steps=12,
        mask_train_steps=8,
        cond_guidance_scales=(0.0, 1.0, 3.0),
        cond_samples_per_class=4,
        cond_sampling_steps=8,
        seg_instrument_steps=20,
        seg_test_images=16,
        zoo_samples_per_arm=2,
        zoo_sampling_steps=4,
        zoo_guidance_scales=(0.0, 2.0),
        seg_grid="ci",
        # evaluation (08)
        eval_images=36,
        eval_ddim_steps=(2, 5),
        quiz_questions=4,
        eval_sampling_steps=5,
        eval_sweep_images=8,
        eval_train_search=128,
        eval_noise_levels=(100, 400),
        eval_restoration_images=3,
        eval_restoration_steps=3,
        eval_seg_images=4,
        eval_ms_ssim_pairs=100,
        eval_copy_calibration=64,
        # applications (09): test/calibration/training sets, doses, sampler steps, anomaly detection
        app_test_images=4,
        app_calibration_images=2,
        app_train_pairs=16,
        app_doses=(0.1,),
        app_supervised_steps=5,
        app_supervised_crop=32,
        app_posterior_samples=2,
        app_denoise_steps=3,
        app_bm3d_dose=None,
        app_sr_steps=4,
        app_inpaint_steps=4,
        app_repaint_resample=1,
        app_anomaly_images=12,
        app_healthy_images=16,
        app_autoencoder_steps=5,
        app_anomaly_timestep=250,
        app_anomaly_steps=2,
        # latent diffusion (10): live tiny autoencoders and latent models; equal-compute arms
        ldm_image_size=32,
        ldm_train_images=32,
        ldm_eval_images=8,
        ldm_batch_size=4,
        ldm_plain_channels=(8, 16, 16),
        ldm_ae_channels=(8, 16, 16),
        ldm_ae_f8_channels=(8, 16, 16, 16),
        ldm_ae_steps=3,
        ldm_ae_seconds=10.0,
        ldm_unet_channels=(16, 32),
        ldm_pixel_channels=(8, 16, 16),
        ldm_arm_steps=3,
        ldm_arm_seconds=10.0,
        ldm_sampling_steps=3,
        ldm_step_sweep=(2, 3),
        ldm_dpm_steps=(2, 3),
        ldm_reference_steps=4,
        ldm_pretrained_samples=4,
        ldm_pretrained_steps=3,
    ),
    "classroom": ProfileSizes(
        image_size=64,
        num_images=256,
        gallery_images=8,
        ct_side=128,
        ct_slices=24,
        split_patients=30805,
        registration_steps=100,
        num_train_timesteps=1000,
        forward_check_samples=20000,
        oracle_dataset_size=16,
        sampling_steps=50,
        ddim_step_sweep=(10, 20, 50, 100),
        trajectory_frames=10,
        gaussian_check_samples=8192,
        oracle_samples=8,
        unet_channels=(32, 64, 128),
        benchmark_repeats=3,
        benchmark_batch=8,
        volume_size=32,
        train_image_size=32,
        train_images=512,
        train_steps=200,
        batch_size=16,
        sample_every=50,
        num_samples=16,
        train_channels=(16, 32, 64),
        train_sampling_steps=25,
        resume_steps=20,
        pretrained_samples=8,
        pretrained_sampling_steps=50,
        train_threads=1,
        cond_image_size=32,
        cond_train_images=512,
        cond_unet_channels=(16, 32, 32),
        cond_batch_size=16,
        cond_train_steps=400,
        mask_train_steps=150,
        cond_guidance_scales=(0.0, 1.0, 3.0),
        cond_samples_per_class=16,
        cond_sampling_steps=20,
        seg_instrument_steps=300,
        seg_test_images=64,
        zoo_samples_per_arm=8,
        zoo_sampling_steps=20,
        zoo_guidance_scales=(0.0, 1.0, 2.0),
        seg_grid="classroom",
        eval_images=64,
        eval_ddim_steps=(10, 20, 50, 100),
        quiz_questions=10,
        eval_sampling_steps=50,
        eval_sweep_images=12,
        eval_train_search=512,
        eval_noise_levels=(50, 150, 300, 500),
        eval_restoration_images=6,
        eval_restoration_steps=10,
        eval_seg_images=8,
        eval_ms_ssim_pairs=300,
        eval_copy_calibration=192,
        app_test_images=8,
        app_calibration_images=8,
        app_train_pairs=128,
        app_doses=(0.25, 0.1, 0.02),
        app_supervised_steps=400,
        app_supervised_crop=32,
        app_posterior_samples=4,
        app_denoise_steps=10,
        app_bm3d_dose=0.1,
        app_sr_steps=50,
        app_inpaint_steps=25,
        app_repaint_resample=2,
        app_anomaly_images=64,
        app_healthy_images=128,
        app_autoencoder_steps=300,
        app_anomaly_timestep=250,
        app_anomaly_steps=10,
        ldm_image_size=128,
        ldm_train_images=384,
        ldm_eval_images=32,
        ldm_batch_size=8,
        ldm_plain_channels=(8, 16, 32),
        ldm_ae_channels=(8, 16, 32),
        ldm_ae_f8_channels=(8, 16, 32, 32),
        ldm_ae_steps=10_000,
        ldm_ae_seconds=20.0,
        ldm_unet_channels=(16, 32, 64),
        ldm_pixel_channels=(8, 16, 32, 32),
        ldm_arm_steps=10_000,
        ldm_arm_seconds=15.0,
        ldm_sampling_steps=10,
        ldm_step_sweep=(5, 10, 20),
        ldm_dpm_steps=(5, 10, 20),
        ldm_reference_steps=50,
        ldm_pretrained_samples=32,
        ldm_pretrained_steps=25,
    ),
    "full": ProfileSizes(
        image_size=128,
        num_images=2000,
        gallery_images=16,
        ct_side=256,
        ct_slices=48,
        split_patients=30805,
        registration_steps=200,
        num_train_timesteps=1000,
        forward_check_samples=100000,
        oracle_dataset_size=32,
        sampling_steps=100,
        ddim_step_sweep=(10, 20, 50, 100, 1000),
        trajectory_frames=20,
        gaussian_check_samples=65536,
        oracle_samples=16,
        unet_channels=(64, 128, 256),
        benchmark_repeats=10,
        benchmark_batch=32,
        volume_size=64,
        train_image_size=64,
        train_images=8000,
        train_steps=20000,
        batch_size=64,
        sample_every=2000,
        num_samples=64,
        train_channels=(32, 64, 128, 256),
        train_sampling_steps=50,
        resume_steps=200,
        pretrained_samples=16,
        pretrained_sampling_steps=50,
        train_threads=None,
        cond_image_size=64,
        cond_train_images=8000,
        cond_unet_channels=(64, 128, 256),
        cond_batch_size=64,
        cond_train_steps=20000,
        mask_train_steps=5000,
        cond_guidance_scales=(0.0, 1.0, 2.0, 3.0, 5.0),
        cond_samples_per_class=128,
        cond_sampling_steps=50,
        seg_instrument_steps=2000,
        seg_test_images=500,
        zoo_samples_per_arm=128,
        zoo_sampling_steps=50,
        zoo_guidance_scales=(0.0, 1.0, 2.0, 3.0, 5.0),
        seg_grid="notebook-full",
        eval_images=1000,
        eval_ddim_steps=(10, 20, 50, 100, 1000),
        quiz_questions=20,
        eval_sampling_steps=50,
        eval_sweep_images=256,
        eval_train_search=4000,
        eval_noise_levels=(50, 100, 200, 300, 500, 700),
        eval_restoration_images=64,
        eval_restoration_steps=20,
        eval_seg_images=32,
        eval_ms_ssim_pairs=2000,
        eval_copy_calibration=1000,
        app_test_images=64,
        app_calibration_images=32,
        app_train_pairs=1000,
        app_doses=(0.25, 0.1, 0.05, 0.02),
        app_supervised_steps=4000,
        app_supervised_crop=None,
        app_posterior_samples=16,
        app_denoise_steps=20,
        app_bm3d_dose=0.1,
        app_sr_steps=100,
        app_inpaint_steps=100,
        app_repaint_resample=5,
        app_anomaly_images=500,
        app_healthy_images=1000,
        app_autoencoder_steps=3000,
        app_anomaly_timestep=250,
        app_anomaly_steps=20,
        ldm_image_size=128,
        ldm_train_images=2000,
        ldm_eval_images=500,
        ldm_batch_size=32,
        ldm_plain_channels=(16, 32, 64),
        ldm_ae_channels=(16, 32, 64),
        ldm_ae_f8_channels=(16, 32, 64, 64),
        ldm_ae_steps=3000,
        ldm_ae_seconds=None,
        ldm_unet_channels=(32, 64, 128),
        ldm_pixel_channels=(32, 64, 128, 128),
        ldm_arm_steps=5000,
        ldm_arm_seconds=1800.0,
        ldm_sampling_steps=50,
        ldm_step_sweep=(5, 10, 20, 50, 100),
        ldm_dpm_steps=(5, 10, 20, 50),
        ldm_reference_steps=50,
        ldm_pretrained_samples=500,
        ldm_pretrained_steps=50,
    ),
}
_THREADS = {"ci": 1, "classroom": 1, "full": None}


@dataclass(frozen=True)
class Budget:
    """What one notebook may cost in a profile (the table at the top of this module); ``None``: no limit."""

    seconds: float | None
    memory_mb: float | None

    def overruns(self, seconds: float | None, memory_mb: float | None) -> list[str]:
        """What a run of ``seconds`` and ``memory_mb`` (peak) exceeds, in words; ``[]`` when it fits."""
        found = []
        if self.seconds is not None and seconds is not None and seconds > self.seconds:
            found.append(f"{seconds:.0f} s > {self.seconds:.0f} s")
        if self.memory_mb is not None and memory_mb is not None and memory_mb > self.memory_mb:
            found.append(f"{memory_mb:.0f} MB > {self.memory_mb:.0f} MB")
        return found


#: per-notebook budgets: the classroom profile must fit Binder (one thread, 1.5 GB, 5 min a notebook)
BUDGETS: Mapping[str, Budget] = MappingProxyType(
    {
        "ci": Budget(seconds=60, memory_mb=None),
        "classroom": Budget(seconds=300, memory_mb=1536),
        "full": Budget(seconds=None, memory_mb=None),
    }
)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {name: Profile(name, _THREADS[name], _SIZES[name]) for name in PROFILE_NAMES}
)


def default_profile_name() -> str:
    """The profile named by ``$MEDDIFF_PROFILE``, else ``"classroom"``."""
    return os.environ.get("MEDDIFF_PROFILE", DEFAULT_PROFILE)


def get_profile(name: str | None = None) -> Profile:
    """Return the :class:`Profile` called ``name`` (``None``: ``$MEDDIFF_PROFILE`` or ``"classroom"``).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    name = default_profile_name() if name is None else name
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}; expected one of {', '.join(PROFILE_NAMES)} "
            f"(set by the PROFILE parameter or $MEDDIFF_PROFILE)"
        )
    return PROFILES[name]


def setup(profile: str | Profile | None = None, seed: int = 0) -> Profile:
    """The first call of every notebook: resolve the profile, set its threads, seed everything."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    set_threads(prof.threads)
    seed_everything(seed)
    return prof


# ------------------------------------------------------------------------------- environment check
#: packages the course uses, and what to do when one is missing
KEY_PACKAGES = {
    "torch": "pip install torch==2.13.0 (CPU), or the CUDA build from pytorch.org",
    "monai": "pip install -e .  (a core dependency)",
    "diffusers": "pip install -e .  (a core dependency)",
    "numpy": "pip install -e .",
    "scipy": "pip install -e .  (MONAI's FID and Hausdorff metrics need it)",
    "einops": "pip install -e .  (MONAI's attention blocks need it)",
    "nibabel": "pip install -e .",
    "pydicom": "pip install -e .",
    "matplotlib": "pip install -e .",
    "ipywidgets": "pip install -e .  (sliders in 01-03 and 08)",
    "safetensors": "pip install -e .  (shipped weights)",
    "papermill": "pip install -e '.[test]'  (headless course runs)",
    "jupyterlab": "pip install -e '.[lab]'",
    "accelerate": "pip install -e '.[dist]'  (training on several GPUs; optional)",
    "itkwidgets": "pip install -e '.[lab]'  (3D viewer; optional: a matplotlib viewer is used otherwise)",
}

#: what to do when a dataset is missing (where each one lives: meddiff_lab.data.sources.find_source_root)
DATASET_TODO = {
    "synthetic": "make data  (or: meddiff-lab data write --out data/synthetic_cxr)",
    "chestxray14": "see data/README.md (NIH ChestX-ray14, ~45 GB)",
    "medmnist": "meddiff-lab data download medmnist --root data/downloads",
    "mednist": "meddiff-lab data download mednist --root data/downloads",
    "folder": "see data/README.md (a folder of PNGs per class, e.g. the Kermany pneumonia set)",
}


def hardware_description(threads: int | None = None) -> str:
    """One line saying where this process runs, for model cards and run records.

    On a GPU: its name and the torch version; on a CPU: the processor's model name, ``threads`` (the
    run's CPU threads; default ``torch.get_num_threads()``) of the machine's cores, and the torch version.
    """
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = threads if threads is not None else torch.get_num_threads()
    return f"{cpu}, {threads} thread(s) of {os.cpu_count()} cores, torch {torch.__version__}"


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment_check(data_dir: str | os.PathLike = "data") -> list[dict[str, str]]:
    """What this machine has for the course: one row per item with ``item``, ``status``, ``detail``, ``todo``.

    ``status`` is ``"ok"``, ``"missing"`` or ``"optional"`` (missing but not needed).
    """
    from pathlib import Path

    rows = []
    optional = {"accelerate", "itkwidgets", "jupyterlab"}
    for name, todo in KEY_PACKAGES.items():
        version = _package_version(name)
        status = "ok" if version else ("optional" if name in optional else "missing")
        rows.append(
            {"item": name, "status": status, "detail": version or "not installed", "todo": "" if version else todo}
        )
    device = get_device()
    rows.append(
        {
            "item": "device",
            "status": "ok",
            "detail": str(device),
            "todo": ""
            if device.type != "cpu"
            else "CPU only: fine for the classroom profile; the full profile wants a GPU",
        }
    )
    rows.append(
        {
            "item": "gpu",
            "status": "ok" if torch.cuda.is_available() else "optional",
            "detail": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "todo": "" if torch.cuda.is_available() else "optional: only the full profile needs one",
        }
    )
    rows.append(
        {
            "item": "threads",
            "status": "ok",
            "detail": str(torch.get_num_threads()),
            "todo": "" if torch.get_num_threads() > 1 else "one thread: use the classroom profile",
        }
    )
    rows.append({"item": "profile", "status": "ok", "detail": default_profile_name(), "todo": ""})
    from meddiff_lab.data.sources import find_source_root

    for source, todo in DATASET_TODO.items():
        folder = find_source_root(source, Path(data_dir))
        status = "ok" if folder else ("missing" if source == "synthetic" else "optional")
        rows.append(
            {
                "item": f"dataset: {source}",
                "status": status,
                "detail": str(folder) if folder else "not found",
                "todo": "" if folder else (todo if source == "synthetic" else f"optional: {todo}"),
            }
        )
    return rows
