"""Checkpoints that survive a crash and never run code when loaded.

Training writes them (:mod:`meddiff_lab.training`) and the models load them (``load_model`` of a
``.pt``, ``export_checkpoint``), so this module sits below both and imports neither; the training
names ``meddiff_lab.training.save_checkpoint`` and ``load_checkpoint`` are these functions.

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

import errno
import os
import pickle
import pickletools
import random
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

REQUIRED_KEYS = ("model", "step", "config")
#: what a checkpoint needs to continue a run (``Trainer.load``), beyond the weights
RESUME_KEYS = ("model", "ema", "optimizer", "lr_scheduler", "rng", "step", "config")
#: pickle opcodes that import or call something: a file using them asks the loader to run code
_CODE_OPCODES = {
    "GLOBAL",
    "STACK_GLOBAL",
    "INST",
    "OBJ",
    "REDUCE",
    "NEWOBJ",
    "NEWOBJ_EX",
    "BUILD",
    "EXT1",
    "EXT2",
    "EXT4",
}


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
    remove_stale_temporaries(path)
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


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files (``.NAME.*.tmp``) that a killed :func:`atomic_write` of ``path`` left.

    Called before each write, so the next run (or the next save) cleans up after a kill -9 mid-save.
    Returns the files removed.
    """
    path = Path(path)
    removed = []
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            stale.unlink()
            removed.append(stale)
        except OSError:  # already gone, or not ours to remove
            pass
    return removed


def _write_error(path: Path, exc: BaseException) -> OSError:
    """An ``OSError`` naming ``path`` and the free space, for a failed write (e.g. a full disk)."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free on that disk"
    except OSError:
        free = "free space unknown"
    code = getattr(exc, "errno", None) or errno.EIO
    reason = getattr(exc, "strerror", None) or _first_line(exc)
    hint = "; the disk may be full" if code in (errno.ENOSPC, errno.EIO, errno.EDQUOT) else ""
    return OSError(
        code,
        f"could not write checkpoint {path}: {reason} ({free}{hint}); the previous checkpoint, if any, is untouched",
        str(path),
    )


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
    path = Path(path)
    try:
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError from inline_container.cc
        raise _write_error(path, exc) from None


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
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; expected a .pt file (e.g. {path / 'last.pt'})")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes): not a checkpoint (a write that never finished?)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except Exception as exc:  # torch.load raises many types for a file that is not a checkpoint
        if _carries_code(path, exc):
            raise ValueError(
                f"refusing to load checkpoint {path}: it contains pickled objects other than "
                f"tensors and plain data, which could run code; nothing in it was run"
            ) from None
        raise ValueError(
            f"checkpoint {path} is corrupt or not a PyTorch checkpoint: {_what_is_wrong(path)}; "
            f"expected a file written by torch.save / meddiff-lab train"
        ) from None
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} holds a {type(payload).__name__}, expected a dict")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint {path} is missing {missing}; expected at least {list(REQUIRED_KEYS)}")
    if not isinstance(payload["model"], Mapping) or not all(
        isinstance(v, torch.Tensor) for v in payload["model"].values()
    ):
        raise ValueError(f"checkpoint {path}: 'model' must be a state dict (names -> tensors)")
    if isinstance(payload["step"], bool) or not isinstance(payload["step"], int) or payload["step"] < 0:
        raise ValueError(f"checkpoint {path}: 'step' must be a non-negative integer, got {payload['step']!r}")
    if not isinstance(payload["config"], Mapping):
        raise ValueError(f"checkpoint {path}: 'config' must be a mapping, got {type(payload['config']).__name__}")
    return payload


def check_resumable(state: Mapping[str, Any], path: str | Path) -> None:
    """Raise ``ValueError`` naming ``path`` unless ``state`` holds everything a resume needs."""
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise ValueError(
            f"checkpoint {path} cannot be resumed: it lacks {missing} (it holds weights only?); "
            f"a resumable checkpoint has {list(RESUME_KEYS)}. Start a new run in another folder, "
            f"or sample/export from it instead"
        )


def nonfinite_tensors(state_dict: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``state_dict`` that hold NaN or inf (empty when all are finite)."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _what_is_wrong(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == b"PK\x03\x04":
        return (
            "a zip archive (the PyTorch format) that is incomplete: truncated, or damaged"
            if not zipfile.is_zipfile(path)
            else "a zip archive without readable PyTorch data"
        )
    if head[:1] == b"\x80":
        return "a damaged or truncated pickle"
    return "neither a PyTorch zip archive nor a pickle"


def _carries_code(path: Path, exc: BaseException) -> bool:
    """Whether a file torch refused holds a pickle that imports or calls something (vs. being corrupt).

    Reads the pickle's opcodes with :mod:`pickletools` (which never executes anything).
    """
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and (
        "GLOBAL" in text and "blocked" in text or "Unsupported global" in text
    ):
        return True
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not names:
                    return False
                data = archive.read(names[0])
        else:
            data = path.read_bytes()
        opcodes = {op.name for op, _, _ in pickletools.genops(data)}
    except Exception:  # not a parsable pickle at all: corrupt, truncated or another format
        return False
    return bool(opcodes & _CODE_OPCODES)


# ------------------------------------------------------------------------------ random number state
def capture_rng_state(data_generator: torch.Generator | None = None) -> dict[str, Any]:
    """The state of every random number generator a run uses, as tensors and plain data only."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), torch.tensor(mt_state, dtype=torch.int64), gauss],
        "numpy": [
            str(np_name),
            torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if data_generator is not None:
        state["data"] = data_generator.get_state()
    return state


def restore_rng_state(state: Mapping[str, Any], data_generator: torch.Generator | None = None) -> None:
    """Undo :func:`capture_rng_state`: put every generator back where it was.

    Raises:
        ValueError: naming the generator whose saved state is malformed.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"the saved random number state must be a mapping, got {type(state).__name__}")
    for name in ("python", "numpy", "torch", "cuda", "data"):
        if name in state:
            try:
                _restore_one(name, state[name], data_generator)
            except (TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError) as exc:
                raise ValueError(f"the saved {name!r} random number state is malformed ({_first_line(exc)})") from None


def _restore_one(name: str, saved: Any, data_generator: torch.Generator | None) -> None:
    state = {name: saved}
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
