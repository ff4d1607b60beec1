"""Checkpoints that survive a crash and never run code when loaded.

Two rules:

* **Atomic writes.** A checkpoint is written to a temporary file in the same folder, flushed to
  disk, then renamed over the old one with :func:`os.replace` (atomic on POSIX and Windows). A run
  killed mid-save leaves the previous checkpoint intact, never a half-written file.
* **Safe loads.** ``torch.load(..., weights_only=True)`` only rebuilds tensors and plain containers
  (dict, list, tuple, str, int, float, bool, None). A file that carries pickled code (an object with
  a malicious ``__reduce__``) is refused before anything in it runs. Shipped weights use
  safetensors, a format with no code at all.

A training checkpoint is a dict with (at least) ``"model"`` (state dict), ``"step"`` (int, optimizer
updates done) and ``"config"`` (the training config as plain data); the trainer adds ``"ema"``,
``"optimizer"``, ``"lr_scheduler"``, ``"rng"`` and ``"loss"``.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

REQUIRED_KEYS = ("model", "step", "config")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write_fn) -> Path:
    """Call ``write_fn(tmp_path)`` then move the temporary file onto ``path`` atomically.

    Returns the final path. If ``write_fn`` fails the temporary file is removed and ``path`` is
    untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as handle:
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(path: str | Path, state: Mapping[str, Any] | None = None, **entries: Any) -> Path:
    """Write a checkpoint dict to ``path`` atomically (temporary file, then :func:`os.replace`).

    Args:
        path: destination, e.g. ``runs/x/last.pt``.
        state: the dict to save; keyword ``entries`` are merged into it. It must hold ``"model"``
            (a state dict), ``"step"`` (int) and ``"config"`` (plain data), and contain only tensors
            and plain containers, so that :func:`load_checkpoint` can read it without unpickling code.

    Returns:
        The path written.
    """
    payload = dict(state or {})
    payload.update(entries)
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint for {path} is missing {missing}; expected at least {list(REQUIRED_KEYS)}")
    payload["step"] = int(payload["step"])
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything that carries code.

    Uses ``torch.load(weights_only=True)``: only tensors and plain containers are rebuilt.

    Returns:
        The checkpoint dict, with at least ``"model"``, ``"step"`` and ``"config"``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file holds pickled objects other than tensors and plain data (it is
            refused, nothing in it runs), is not a checkpoint, or lacks the required keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"refusing to load checkpoint {path}: it contains pickled objects other than "
                         f"tensors and plain data, which could run code. ({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"checkpoint {path} is not a readable PyTorch checkpoint "
                         f"(truncated or another format?): {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} holds a {type(payload).__name__}, expected a dict")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint {path} is missing {missing}; expected at least {list(REQUIRED_KEYS)}")
    return payload


# ------------------------------------------------------------------------------ random number state
def capture_rng_state(data_generator: torch.Generator | None = None) -> dict[str, Any]:
    """The state of every random number generator a run uses, as tensors and plain data only."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), torch.tensor(mt_state, dtype=torch.int64), gauss],
        "numpy": [str(np_name), torch.from_numpy(np.asarray(np_keys, dtype=np.int64)), int(np_pos),
                  int(np_has_gauss), float(np_cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if data_generator is not None:
        state["data"] = data_generator.get_state()
    return state


def restore_rng_state(state: Mapping[str, Any], data_generator: torch.Generator | None = None) -> None:
    """Undo :func:`capture_rng_state`: put every generator back where it was."""
    if "python" in state:
        version, mt_state, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in mt_state.tolist()), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    if data_generator is not None and "data" in state:
        data_generator.set_state(state["data"])
