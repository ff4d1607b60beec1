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

import os
import platform
import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

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
class Profile:
    """Every size a notebook uses, for one profile. Read values as attributes or with ``[]``.

    Attributes:
        name: ``"ci"``, ``"classroom"`` or ``"full"``.
        threads: CPU threads the notebook should use (``None``: PyTorch's default).
        sizes: the sizes themselves (see ``PROFILES`` for the keys and their meaning).
    """

    name: str
    threads: int | None
    sizes: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        sizes = object.__getattribute__(self, "sizes")
        if key in sizes:
            return sizes[key]
        raise AttributeError(f"profile {object.__getattribute__(self, 'name')!r} has no size {key!r}; "
                             f"known: {sorted(sizes)}")

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__(key)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "threads": self.threads, **dict(self.sizes)}


# One dict per profile. Keys are grouped by the notebook that introduces them; later notebooks reuse them.
_SIZES: dict[str, dict[str, Any]] = {
    "ci": {
        # data (01, and every notebook that loads radiographs)
        "image_size": 32, "num_images": 48, "gallery_images": 4,
        "ct_side": 64, "ct_slices": 16, "split_patients": 3000, "registration_steps": 40,
        # diffusion math (02, 03)
        "num_train_timesteps": 1000, "forward_check_samples": 2000, "oracle_dataset_size": 8,
        "sampling_steps": 20, "ddim_step_sweep": (5, 10, 20), "trajectory_frames": 5,
        "gaussian_check_samples": 2048, "oracle_samples": 4,
        # U-Net (04)
        "unet_channels": (32, 32, 64), "benchmark_repeats": 2, "benchmark_batch": 4, "volume_size": 16,
        # training (05, 06)
        "train_image_size": 16, "train_images": 64, "train_steps": 20, "batch_size": 8,
        "sample_every": 10, "num_samples": 4, "train_channels": (16, 32), "train_sampling_steps": 10,
        "resume_steps": 4, "pretrained_samples": 4, "pretrained_sampling_steps": 10, "train_threads": 1,
        # segmentation augmentation (07)
        # conditioning (06) and segmentation augmentation (07); zoo_*: 06 samples the pretrained conditional models
        "cond_image_size": 32, "cond_train_images": 64, "cond_unet_channels": (16, 32, 32), "cond_batch_size": 8,
        "cond_train_steps": 12, "mask_train_steps": 8, "cond_guidance_scales": (0.0, 1.0, 3.0),
        "cond_samples_per_class": 4, "cond_sampling_steps": 8, "seg_instrument_steps": 20, "seg_test_images": 16,
        "zoo_samples_per_arm": 2, "zoo_sampling_steps": 4, "zoo_guidance_scales": (0.0, 2.0),
        "seg_labelled_sizes": (4,), "seg_seeds": (0,), "seg_epochs": 3, "synthetic_per_image": 1,
        "seg_generator_steps": 10, "seg_reference_images": 32, "seg_combined_arm": False,
        # evaluation (08)
        "eval_images": 36, "eval_ddim_steps": (2, 5), "quiz_questions": 4,
        "eval_sampling_steps": 5, "eval_sweep_images": 8, "eval_train_search": 128,
        "eval_noise_levels": (100, 400), "eval_restoration_images": 3, "eval_restoration_steps": 3,
        "eval_seg_images": 4, "eval_ms_ssim_pairs": 100, "eval_copy_calibration": 64,
        # applications (09): test/calibration/training sets, doses, sampler steps, anomaly detection
        "app_test_images": 4, "app_calibration_images": 2, "app_train_pairs": 16, "app_doses": (0.1,),
        "app_supervised_steps": 5, "app_supervised_crop": 32, "app_posterior_samples": 2, "app_denoise_steps": 3,
        "app_bm3d_dose": None, "app_sr_steps": 4, "app_inpaint_steps": 4, "app_repaint_resample": 1,
        "app_anomaly_images": 12, "app_healthy_images": 16, "app_autoencoder_steps": 5, "app_anomaly_timestep": 250,
        "app_anomaly_steps": 2,
        # latent diffusion (10): live tiny autoencoders and latent models; equal-compute arms
        "ldm_image_size": 32, "ldm_train_images": 32, "ldm_eval_images": 8, "ldm_batch_size": 4,
        "ldm_plain_channels": (8, 16, 16), "ldm_ae_channels": (8, 16, 16), "ldm_ae_f8_channels": (8, 16, 16, 16),
        "ldm_ae_steps": 3, "ldm_ae_seconds": 10.0, "ldm_unet_channels": (16, 32), "ldm_pixel_channels": (8, 16, 16),
        "ldm_arm_steps": 3, "ldm_arm_seconds": 10.0, "ldm_sampling_steps": 3, "ldm_step_sweep": (2, 3),
        "ldm_dpm_steps": (2, 3), "ldm_reference_steps": 4, "ldm_pretrained_samples": 4, "ldm_pretrained_steps": 3,
    },
    "classroom": {
        "image_size": 64, "num_images": 256, "gallery_images": 8,
        "ct_side": 128, "ct_slices": 24, "split_patients": 30805, "registration_steps": 100,
        "num_train_timesteps": 1000, "forward_check_samples": 20000, "oracle_dataset_size": 16,
        "sampling_steps": 50, "ddim_step_sweep": (10, 20, 50, 100), "trajectory_frames": 10,
        "gaussian_check_samples": 8192, "oracle_samples": 8,
        "unet_channels": (32, 64, 128), "benchmark_repeats": 3, "benchmark_batch": 8, "volume_size": 32,
        "train_image_size": 32, "train_images": 512, "train_steps": 200, "batch_size": 16,
        "sample_every": 50, "num_samples": 16, "train_channels": (16, 32, 64), "train_sampling_steps": 25,
        "resume_steps": 20, "pretrained_samples": 8, "pretrained_sampling_steps": 50, "train_threads": 1,
        "cond_image_size": 32, "cond_train_images": 512, "cond_unet_channels": (16, 32, 32), "cond_batch_size": 16,
        "cond_train_steps": 400, "mask_train_steps": 150, "cond_guidance_scales": (0.0, 1.0, 3.0),
        "cond_samples_per_class": 16, "cond_sampling_steps": 20, "seg_instrument_steps": 300, "seg_test_images": 64,
        "zoo_samples_per_arm": 8, "zoo_sampling_steps": 20, "zoo_guidance_scales": (0.0, 1.0, 2.0),
        "seg_labelled_sizes": (8, 32), "seg_seeds": (0, 1), "seg_epochs": 20, "synthetic_per_image": 2,
        "seg_generator_steps": 120, "seg_reference_images": 256, "seg_combined_arm": False,
        "eval_images": 64, "eval_ddim_steps": (10, 20, 50, 100), "quiz_questions": 10,
        "eval_sampling_steps": 50, "eval_sweep_images": 12, "eval_train_search": 512,
        "eval_noise_levels": (50, 150, 300, 500), "eval_restoration_images": 6, "eval_restoration_steps": 10,
        "eval_seg_images": 8, "eval_ms_ssim_pairs": 300, "eval_copy_calibration": 192,
        "app_test_images": 8, "app_calibration_images": 8, "app_train_pairs": 128, "app_doses": (0.25, 0.1, 0.02),
        "app_supervised_steps": 400, "app_supervised_crop": 32, "app_posterior_samples": 4, "app_denoise_steps": 10,
        "app_bm3d_dose": 0.1, "app_sr_steps": 50, "app_inpaint_steps": 25, "app_repaint_resample": 2,
        "app_anomaly_images": 64, "app_healthy_images": 128, "app_autoencoder_steps": 300,
        "app_anomaly_timestep": 250, "app_anomaly_steps": 10,
        "ldm_image_size": 128, "ldm_train_images": 384, "ldm_eval_images": 32, "ldm_batch_size": 8,
        "ldm_plain_channels": (8, 16, 32), "ldm_ae_channels": (8, 16, 32), "ldm_ae_f8_channels": (8, 16, 32, 32),
        "ldm_ae_steps": 10_000, "ldm_ae_seconds": 20.0, "ldm_unet_channels": (16, 32, 64),
        "ldm_pixel_channels": (8, 16, 32, 32), "ldm_arm_steps": 10_000, "ldm_arm_seconds": 15.0,
        "ldm_sampling_steps": 10, "ldm_step_sweep": (5, 10, 20), "ldm_dpm_steps": (5, 10, 20),
        "ldm_reference_steps": 50, "ldm_pretrained_samples": 32, "ldm_pretrained_steps": 50,
    },
    "full": {
        "image_size": 128, "num_images": 2000, "gallery_images": 16,
        "ct_side": 256, "ct_slices": 48, "split_patients": 30805, "registration_steps": 200,
        "num_train_timesteps": 1000, "forward_check_samples": 100000, "oracle_dataset_size": 32,
        "sampling_steps": 100, "ddim_step_sweep": (10, 20, 50, 100, 1000), "trajectory_frames": 20,
        "gaussian_check_samples": 65536, "oracle_samples": 16,
        "unet_channels": (64, 128, 256), "benchmark_repeats": 10, "benchmark_batch": 32, "volume_size": 64,
        "train_image_size": 64, "train_images": 8000, "train_steps": 20000, "batch_size": 64,
        "sample_every": 2000, "num_samples": 64, "train_channels": (32, 64, 128, 256), "train_sampling_steps": 50,
        "resume_steps": 200, "pretrained_samples": 16, "pretrained_sampling_steps": 50, "train_threads": None,
        "cond_image_size": 64, "cond_train_images": 8000, "cond_unet_channels": (64, 128, 256), "cond_batch_size": 64,
        "cond_train_steps": 20000, "mask_train_steps": 5000, "cond_guidance_scales": (0.0, 1.0, 2.0, 3.0, 5.0),
        "cond_samples_per_class": 128, "cond_sampling_steps": 50, "seg_instrument_steps": 2000, "seg_test_images": 500,
        "zoo_samples_per_arm": 128, "zoo_sampling_steps": 50, "zoo_guidance_scales": (0.0, 1.0, 2.0, 3.0, 5.0),
        "seg_labelled_sizes": (8, 32, 128), "seg_seeds": (0, 1, 2), "seg_epochs": 100, "synthetic_per_image": 4,
        "seg_generator_steps": 5000, "seg_reference_images": 2000, "seg_combined_arm": True,
        "eval_images": 1000, "eval_ddim_steps": (10, 20, 50, 100, 1000), "quiz_questions": 20,
        "eval_sampling_steps": 50, "eval_sweep_images": 256, "eval_train_search": 4000,
        "eval_noise_levels": (50, 100, 200, 300, 500, 700), "eval_restoration_images": 64,
        "eval_restoration_steps": 20, "eval_seg_images": 32, "eval_ms_ssim_pairs": 2000,
        "eval_copy_calibration": 1000,
        "app_test_images": 64, "app_calibration_images": 32, "app_train_pairs": 1000,
        "app_doses": (0.25, 0.1, 0.05, 0.02), "app_supervised_steps": 4000, "app_supervised_crop": None,
        "app_posterior_samples": 16, "app_denoise_steps": 20, "app_bm3d_dose": 0.1, "app_sr_steps": 100,
        "app_inpaint_steps": 100,
        "app_repaint_resample": 5, "app_anomaly_images": 500, "app_healthy_images": 1000,
        "app_autoencoder_steps": 3000, "app_anomaly_timestep": 250, "app_anomaly_steps": 20,
        "ldm_image_size": 128, "ldm_train_images": 2000, "ldm_eval_images": 500, "ldm_batch_size": 32,
        "ldm_plain_channels": (16, 32, 64), "ldm_ae_channels": (16, 32, 64), "ldm_ae_f8_channels": (16, 32, 64, 64),
        "ldm_ae_steps": 3000, "ldm_ae_seconds": None, "ldm_unet_channels": (32, 64, 128),
        "ldm_pixel_channels": (32, 64, 128, 128), "ldm_arm_steps": 5000, "ldm_arm_seconds": 1800.0,
        "ldm_sampling_steps": 50, "ldm_step_sweep": (5, 10, 20, 50, 100), "ldm_dpm_steps": (5, 10, 20, 50),
        "ldm_reference_steps": 50, "ldm_pretrained_samples": 500, "ldm_pretrained_steps": 50,
    },
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
BUDGETS: Mapping[str, Budget] = MappingProxyType({
    "ci": Budget(seconds=60, memory_mb=None),
    "classroom": Budget(seconds=300, memory_mb=1536),
    "full": Budget(seconds=None, memory_mb=None),
})

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {name: Profile(name, _THREADS[name], MappingProxyType(_SIZES[name])) for name in PROFILE_NAMES}
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
        raise ValueError(f"unknown profile {name!r}; expected one of {', '.join(PROFILE_NAMES)} "
                         f"(set by the PROFILE parameter or $MEDDIFF_PROFILE)")
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
        rows.append({"item": name, "status": status, "detail": version or "not installed",
                     "todo": "" if version else todo})
    device = get_device()
    rows.append({"item": "device", "status": "ok", "detail": str(device),
                 "todo": "" if device.type != "cpu" else "CPU only: fine for the classroom profile; "
                 "the full profile wants a GPU"})
    rows.append({"item": "gpu", "status": "ok" if torch.cuda.is_available() else "optional",
                 "detail": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
                 "todo": "" if torch.cuda.is_available() else "optional: only the full profile needs one"})
    rows.append({"item": "threads", "status": "ok", "detail": str(torch.get_num_threads()),
                 "todo": "" if torch.get_num_threads() > 1 else "one thread: use the classroom profile"})
    rows.append({"item": "profile", "status": "ok", "detail": default_profile_name(), "todo": ""})
    from meddiff_lab.data.sources import find_source_root

    for source, todo in DATASET_TODO.items():
        folder = find_source_root(source, Path(data_dir))
        status = "ok" if folder else ("missing" if source == "synthetic" else "optional")
        rows.append({"item": f"dataset: {source}", "status": status,
                     "detail": str(folder) if folder else "not found",
                     "todo": "" if folder else (todo if source == "synthetic" else f"optional: {todo}")})
    return rows
