"""meddiff_lab/checkpoint.py: atomic saves, safe loads, random number state, resume checks."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from meddiff_lab.checkpoint import atomic_write, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint


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


# ------------------------------------------------------------------ corrupt files vs. refused code
def _good_bytes(tmp_path):
    return save_checkpoint(tmp_path / "good.pt", _state()).read_bytes()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda good: good[: len(good) // 2], "corrupt or not a PyTorch checkpoint: a zip archive .* incomplete"),
        (
            lambda good: bytes(random.Random(0).getrandbits(8) for _ in range(4000)),
            "corrupt or not a PyTorch checkpoint: neither a PyTorch zip archive nor a pickle",
        ),
        (lambda good: b"hello world\n", "corrupt or not a PyTorch checkpoint"),
        (lambda good: b"", r"is empty \(0 bytes\)"),
        (lambda good: b"\x80\x02}q\x00(X\x05", "corrupt or not a PyTorch checkpoint: a damaged or truncated pickle"),
    ],
    ids=["truncated", "random-bytes", "text", "empty", "truncated-pickle"],
)
def test_a_corrupt_checkpoint_is_reported_as_corrupt_not_as_code(tmp_path, make, message):
    path = tmp_path / "last.pt"
    path.write_bytes(make(_good_bytes(tmp_path)))
    with pytest.raises(ValueError, match=message) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value) and "could run code" not in str(caught.value)


@pytest.mark.parametrize("kind", ["zip", "legacy", "plain-pickle"])
def test_every_pickle_carrying_code_is_refused_as_code(tmp_path, kind):
    import pickle

    marker = tmp_path / "code_ran.txt"
    evil = tmp_path / "evil.pt"
    payload = {"model": {}, "step": 0, "config": {}, "payload": _Payload(marker)}
    if kind == "plain-pickle":
        evil.write_bytes(pickle.dumps(payload, protocol=4))
    else:
        torch.save(payload, evil, _use_new_zipfile_serialization=kind == "zip")
    with pytest.raises(ValueError, match="refusing to load checkpoint .*could run code; nothing in it was run"):
        load_checkpoint(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    "state, message",
    [
        ({"model": [1, 2], "step": 0, "config": {}}, "'model' must be a state dict"),
        ({"model": {}, "step": -1, "config": {}}, "'step' must be a non-negative integer"),
        ({"model": {}, "step": 1, "config": "lr=1"}, "'config' must be a mapping"),
        ([1, 2, 3], "holds a list, expected a dict"),
    ],
)
def test_a_checkpoint_with_malformed_entries_names_the_entry(tmp_path, state, message):
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=message) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)


def test_a_folder_given_as_checkpoint_is_named(tmp_path):
    with pytest.raises(ValueError, match="is a folder; expected a .pt file"):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------ writing: full disk, stale files
def test_a_full_disk_names_the_checkpoint_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    path = save_checkpoint(tmp_path / "last.pt", _state(step=1))

    def disk_full(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"PK\x03\x04 partial")
        # what torch raises when the disk fills up mid-save (no file named, no word of disk space)
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError) as caught:
        save_checkpoint(path, _state(step=2))
    message = str(caught.value)
    assert f"could not write checkpoint {path}" in message and "MB free on that disk" in message
    assert "disk may be full" in message and caught.value.filename == str(path)
    assert caught.value.errno == errno.EIO
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_temporary_files_left_by_a_kill_are_removed_on_the_next_save(tmp_path):
    from meddiff_lab.checkpoint import remove_stale_temporaries

    path = save_checkpoint(tmp_path / "last.pt", _state(step=1))
    stale = [tmp_path / ".last.pt.abc123.tmp", tmp_path / ".last.pt.zz_9.tmp"]
    for file in stale:
        file.write_bytes(b"half a checkpoint")  # what kill -9 during torch.save leaves
    other = tmp_path / ".other.pt.x.tmp"
    other.write_bytes(b"not ours")
    save_checkpoint(path, _state(step=2))
    assert not any(file.exists() for file in stale) and other.exists()
    assert load_checkpoint(path)["step"] == 2
    assert remove_stale_temporaries(path) == []


# ------------------------------------------------------------------ resumable, RNG state, weights
def test_check_resumable_names_what_is_missing(tmp_path):
    from meddiff_lab.checkpoint import check_resumable

    with pytest.raises(ValueError, match=r"weights.pt cannot be resumed: it lacks \['ema', 'optimizer'"):
        check_resumable(_state(), tmp_path / "weights.pt")


@pytest.mark.parametrize(
    "broken, name",
    [
        ({"python": [3, torch.zeros(3, dtype=torch.int64), None]}, "python"),
        ({"numpy": ["MT19937", "not a tensor", 0, 0, 0.0]}, "numpy"),
        ({"torch": torch.zeros(5, dtype=torch.uint8)}, "torch"),
        ({"data": torch.tensor([1.5])}, "data"),
    ],
)
def test_a_malformed_rng_state_names_the_generator(broken, name):
    with pytest.raises(ValueError, match=f"the saved '{name}' random number state is malformed"):
        restore_rng_state(broken, torch.Generator())


def test_nonfinite_tensors_lists_the_bad_weights():
    from meddiff_lab.checkpoint import nonfinite_tensors

    weights = {
        "a": torch.ones(2),
        "b": torch.tensor([1.0, float("nan")]),
        "c": torch.tensor([float("inf")]),
        "steps": torch.tensor([3]),
    }
    assert nonfinite_tensors(weights) == ["b", "c"]
    assert nonfinite_tensors({"a": torch.ones(2)}) == []


def test_the_training_names_are_the_same_functions():
    """``meddiff_lab.training`` keeps its public checkpoint names (and the old module path) after the move."""
    import meddiff_lab.checkpoint as files
    import meddiff_lab.training.checkpoint as old
    from meddiff_lab import training

    assert training.save_checkpoint is files.save_checkpoint and training.load_checkpoint is files.load_checkpoint
    for name in old.__all__:
        assert getattr(old, name) is getattr(files, name)
