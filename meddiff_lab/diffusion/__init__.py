"""Diffusion: noise schedules, the forward and reverse processes, schedulers, sampling, losses.

Names are imported lazily from their modules (one concept per module), so
``from meddiff_lab.diffusion import X`` works for every public name listed in ``_PUBLIC``.
"""

from __future__ import annotations

from meddiff_lab._lazy import lazy_exports

# public name -> module that defines it. Add a line when you add a public name.
_PUBLIC = {
    "NoiseSchedule": "schedules",
    "SCHEDULE_NAMES": "schedules",
    "add_noise": "process",
    "forward_step": "process",
    "posterior_mean": "process",
    "posterior_variance": "process",
    "posterior_mean_coefficients": "process",
    "predict_x0_from_eps": "process",
    "predict_eps_from_x0": "process",
    "predict_x0_from_v": "process",
    "predict_eps_from_v": "process",
    "get_velocity": "process",
    "PREDICTION_TYPES": "process",
    "DDPMScheduler": "schedulers",
    "DDIMScheduler": "schedulers",
    "scheduler_from_config": "schedulers",
    "SchedulerOutput": "schedulers",
    "sample": "sampling",
    "ddim_invert": "sampling",
    "Trajectory": "sampling",
    "resolve_null_class": "sampling",
    "generate_samples": "sampling",
    "GaussianDenoiser": "oracle",
    "DatasetDenoiser": "oracle",
    "diffusion_loss": "losses",
    "diffusion_target": "losses",
    "hybrid_loss": "losses",
    "min_snr_weights": "losses",
    "ssim_loss": "losses",
    "RectifiedFlowScheduler": "flow",
    "flow_interpolate": "flow",
    "flow_velocity": "flow",
    "flow_matching_loss": "flow",
    "sample_flow_timesteps": "flow",
    "euler_sample": "flow",
    "IdentityOperator": "restoration",
    "AveragePoolOperator": "restoration",
    "MaskOperator": "restoration",
    "restoration_timesteps": "restoration",
    "matched_timestep": "restoration",
    "sdedit": "restoration",
    "ddnm_sample": "restoration",
    "repaint": "restoration",
    "SAMPLERS": "restoration",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
