"""Training checkpoints: atomic saves, exact resume, safe loads.

The code lives in :mod:`meddiff_lab.checkpoint`, below both ``training/`` (which writes checkpoints)
and ``models/`` (which loads them), so neither subpackage imports the other's checkpoint code. The
names stay importable from here, as ``meddiff_lab.training.save_checkpoint`` and
``meddiff_lab.training.load_checkpoint`` are part of the public contract.
"""

from __future__ import annotations

from meddiff_lab.checkpoint import (
    REQUIRED_KEYS,
    RESUME_KEYS,
    atomic_write,
    capture_rng_state,  # noqa: F401
    check_resumable,
    load_checkpoint,
    nonfinite_tensors,
    remove_stale_temporaries,
    restore_rng_state,
    save_checkpoint,
)

__all__ = [
    "REQUIRED_KEYS",
    "RESUME_KEYS",
    "atomic_write",
    "capture_rng_state",
    "check_resumable",
    "load_checkpoint",
    "nonfinite_tensors",
    "remove_stale_temporaries",
    "restore_rng_state",
    "save_checkpoint",
]
