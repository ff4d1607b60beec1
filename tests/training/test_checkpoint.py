"""Checkpoints: atomic writes, exact round trips, and refusal of files that carry code."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from meddiff_lab.training import load_checkpoint, save_checkpoint
from meddiff_lab.training.checkpoint import atomic_write, capture_rng_state, restore_rng_state


def _state(step=3):
    return {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "step": step, "config": {"lr": 1e-3, "sizes": [1, 2]}}


def test_round_trip_keeps_tensors_step_and_config(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", _state())
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(6.0).reshape(2, 3))
    assert loaded["step"] == 3 and loaded["config"] == {"lr": 1e-3, "sizes": [1, 2]}


def test_save_requires_model_step_and_config(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        save_checkpoint(tmp_path / "x.pt", {"model": {}, "step": 1})


def test_failed_write_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", _state(step=1))

    def crash(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise KeyboardInterrupt  # e.g. the run is interrupted mid-save

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert load_checkpoint(path)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


class _Payload:
    """Unpickling this object would create a marker file (stands in for any code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_carrying_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "code_ran.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "step": 0, "config": {}, "payload": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_missing_and_garbage_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(junk)


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    generator = torch.Generator().manual_seed(5)
    state = capture_rng_state(generator)
    save_checkpoint(tmp_path / "rng.pt", model={}, step=0, config={}, rng=state)
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=generator).item())
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], generator)
    again = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=generator).item())
    assert again == expected
