"""Automatic checks for the notebooks' exercises.

A check runs the student's function on fresh random inputs next to the reference implementation
and says what differs (shape, dtype, first mismatching values), instead of only "wrong"::

    from meddiff_lab import exercises
    exercises.check_forward_sample(my_forward_sample)

Every check returns a :class:`CheckResult` (truthy when passed) and displays a one-line verdict.
An exercise left as ``raise NotImplementedError`` is reported as "not attempted yet", not as an error,
so a notebook still runs headless before the student has answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch


@dataclass
class CheckResult:
    """The verdict of one exercise check."""

    name: str
    passed: bool
    message: str
    attempted: bool = True

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "PASS" if self.passed else ("TODO" if not self.attempted else "FAIL")
        return f"[{mark}] {self.name}: {self.message}"

    def _repr_markdown_(self) -> str:
        colour = "green" if self.passed else ("gray" if not self.attempted else "red")
        return f"<span style='color:{colour}'>**{str(self)}**</span>"


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def compare(name: str, got: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6) -> str | None:
    """Return ``None`` when ``got`` matches ``expected``, else a sentence saying what differs."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{name}: expected a sequence of {len(expected)} values, got {type(got).__name__}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare(f"{name}[{i}]", g, e, rtol, atol)
            if problem:
                return problem
        return None
    if got is None:
        return f"{name}: the function returned None (did you forget `return`?)"
    g, e = _as_numpy(got), _as_numpy(expected)
    if g.shape != e.shape:
        return f"{name}: shape {tuple(g.shape)} but expected {tuple(e.shape)}"
    if not np.all(np.isfinite(g)):
        return f"{name}: contains NaN or inf"
    close = np.isclose(g, e, rtol=rtol, atol=atol)
    if not close.all():
        idx = tuple(int(i) for i in np.argwhere(~close)[0])
        return (f"{name}: {int((~close).sum())} of {close.size} values differ; first at index {idx}: "
                f"got {g[idx]:.6g}, expected {e[idx]:.6g} (max abs difference {np.abs(g - e).max():.3g})")
    return None


def run_check(name: str, student_fn: Callable[..., Any], reference_fn: Callable[..., Any],
              make_inputs: Callable[[torch.Generator], dict[str, Any]], trials: int = 3, seed: int | None = None,
              rtol: float = 1e-5, atol: float = 1e-6, display_result: bool = True) -> CheckResult:
    """Call ``student_fn(**inputs)`` and ``reference_fn(**inputs)`` on ``trials`` fresh random inputs.

    ``make_inputs(generator)`` builds one keyword-argument dict; inputs are fresh on every call
    (``seed=None`` draws a new seed) so a hard-coded answer cannot pass.
    """
    seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed
    generator = torch.Generator().manual_seed(seed)
    result = CheckResult(name, True, f"matches the reference on {trials} random inputs")
    for trial in range(trials):
        inputs = make_inputs(generator)
        try:
            got = student_fn(**{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()})
        except NotImplementedError:
            result = CheckResult(name, False, "not attempted yet (the function raises NotImplementedError)", False)
            break
        except Exception as exc:  # the student's bug, reported rather than raised
            result = CheckResult(name, False, f"raised {type(exc).__name__}: {exc} (inputs: {_describe(inputs)})")
            break
        problem = compare("result", got, reference_fn(**inputs), rtol=rtol, atol=atol)
        if problem:
            result = CheckResult(name, False, f"trial {trial + 1}: {problem} (inputs: {_describe(inputs)})")
            break
    if display_result:
        _display(result)
    return result


def _describe(inputs: dict[str, Any]) -> str:
    parts = []
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor):
            parts.append(f"{k}: tensor{tuple(v.shape)}")
        elif isinstance(v, np.ndarray):
            parts.append(f"{k}: array{v.shape}")
        else:
            parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def _display(result: CheckResult) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(result._repr_markdown_()))
            return
    except ImportError:
        pass
    print(result)


# ------------------------------------------------------------------------------------------------
# The checks, grouped by notebook. Each is `check_<what>(student_fn) -> CheckResult`.
# ------------------------------------------------------------------------------------------------
# --- 00_welcome ---
def _reference_uint8_to_model_range(image_uint8: torch.Tensor) -> torch.Tensor:
    return image_uint8.float() / 255.0 * 2.0 - 1.0


def check_uint8_to_model_range(student_fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """Exercise 00.1: map an 8-bit radiograph (H, W) uint8 in [0, 255] to float32 in [-1, 1]."""
    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        size = int(torch.randint(4, 33, (1,), generator=g))
        return {"image_uint8": torch.randint(0, 256, (size, size), generator=g, dtype=torch.uint8)}

    return run_check("uint8 image to [-1, 1]", student_fn, _reference_uint8_to_model_range, make_inputs)


def _reference_stack_to_batch(images: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(images)[:, None]


def check_stack_to_batch(student_fn: Callable[[list], torch.Tensor]) -> CheckResult:
    """Exercise 00.2: turn a list of B images (H, W) into the batch layout (B, 1, H, W)."""
    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        count, size = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(4, 17, (1,), generator=g))
        return {"images": [torch.rand(size, size, generator=g) for _ in range(count)]}

    return run_check("list of images to a (B, 1, H, W) batch", student_fn, _reference_stack_to_batch, make_inputs)


