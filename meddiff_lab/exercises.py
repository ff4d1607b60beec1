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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from meddiff_lab.training.lr_schedule import warmup_cosine


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

    def _ipython_display_(self) -> None:
        """Show the verdict once: a check already displays it, so a cell ending in the call adds nothing."""
        if not getattr(self, "_shown", False):
            _display(self)


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
        return (
            f"{name}: {int((~close).sum())} of {close.size} values differ; first at index {idx}: "
            f"got {g[idx]:.6g}, expected {e[idx]:.6g} (max abs difference {np.abs(g - e).max():.3g})"
        )
    return None


def run_check(
    name: str,
    student_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    make_inputs: Callable[[torch.Generator], dict[str, Any]],
    trials: int = 3,
    seed: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    display_result: bool = True,
) -> CheckResult:
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
    result._shown = True
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


# --- 02_forward_diffusion ---
def _random_alphas_cumprod(g: torch.Generator, num_train_timesteps: int) -> torch.Tensor:
    """A random but valid schedule: linear betas with a random range, float32 ᾱ (T,)."""
    beta_start = float(torch.empty(1).uniform_(5e-5, 5e-4, generator=g))
    beta_end = float(torch.empty(1).uniform_(0.01, 0.04, generator=g))
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


def _reference_forward_sample(
    x0: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    alpha_bar = alphas_cumprod[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise


def check_forward_sample(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 02.1: the closed-form forward sample ``x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε``.

    ``student_fn(x0, noise, alphas_cumprod, t)``: x0 and noise (B, 1, H, W); alphas_cumprod (T,);
    t (B,) int64, one timestep per image. Returns x_t (B, 1, H, W).
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        batch, size, steps = (
            int(torch.randint(1, 6, (1,), generator=g)),
            int(torch.randint(4, 17, (1,), generator=g)),
            1000,
        )
        return {
            "x0": torch.rand(batch, 1, size, size, generator=g) * 2 - 1,
            "noise": torch.randn(batch, 1, size, size, generator=g),
            "alphas_cumprod": _random_alphas_cumprod(g, steps),
            "t": torch.randint(0, steps, (batch,), generator=g),
        }

    return run_check(
        "closed-form forward sample q(x_t | x_0)",
        student_fn,
        _reference_forward_sample,
        make_inputs,
        rtol=1e-4,
        atol=1e-5,
    )


def _reference_alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1 - betas.double(), 0).to(betas.dtype)


def check_alphas_cumprod(student_fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """Exercise 02.2: ``ᾱ_t = ∏_{s≤t} (1 − β_s)`` from the betas (T,) float32; returns (T,)."""

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        steps = int(torch.randint(10, 1001, (1,), generator=g))
        return {"betas": torch.empty(steps).uniform_(1e-4, 0.03, generator=g).sort().values}

    return run_check(
        "alphas_cumprod from betas", student_fn, _reference_alphas_cumprod, make_inputs, rtol=1e-4, atol=1e-6
    )


def _reference_cosine_betas(num_train_timesteps: int) -> torch.Tensor:
    from meddiff_lab.diffusion.schedules import cosine_betas

    return cosine_betas(num_train_timesteps)


def check_cosine_betas(student_fn: Callable[[int], torch.Tensor]) -> CheckResult:
    """Exercise 02.3: the cosine schedule's betas (s = 0.008, capped at 0.999) for T steps; returns (T,)."""

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        return {"num_train_timesteps": int(torch.randint(10, 2001, (1,), generator=g))}

    return run_check("cosine schedule betas", student_fn, _reference_cosine_betas, make_inputs, rtol=1e-4, atol=1e-6)


# --- 03_reverse_diffusion ---
def _reference_posterior_mean(x0: torch.Tensor, x_t: torch.Tensor, t: int, betas: torch.Tensor) -> torch.Tensor:
    betas = betas.double()
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    alpha_bar_prev = alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64)
    coef1 = alpha_bar_prev.sqrt() * betas[t] / (1 - alphas_cumprod[t])
    coef2 = (1 - betas[t]).sqrt() * (1 - alpha_bar_prev) / (1 - alphas_cumprod[t])
    return coef1 * x0.double() + coef2 * x_t.double()


def check_posterior_mean(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 03.1: the posterior mean μ̃_t(x_t, x_0) of q(x_{t−1} | x_t, x_0) (Ho et al. eq. 7).

    ``student_fn(x0, x_t, t, betas)``: x0 and x_t (B, 1, H, W); t an int in 0..T−1 (0-based, with
    ᾱ_{−1} = 1); betas (T,) float64. Returns the mean (B, 1, H, W).
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        batch, size, steps = (
            int(torch.randint(1, 5, (1,), generator=g)),
            int(torch.randint(4, 13, (1,), generator=g)),
            1000,
        )
        betas = torch.linspace(
            float(torch.empty(1).uniform_(5e-5, 5e-4, generator=g)), 0.02, steps, dtype=torch.float64
        )
        u = float(torch.rand(1, generator=g))  # t = 0, a small t (where x0 weighs most), or any t
        t = 0 if u < 0.2 else int(torch.randint(1, 50 if u < 0.6 else steps, (1,), generator=g))
        return {
            "x0": torch.rand(batch, 1, size, size, generator=g) * 2 - 1,
            "x_t": torch.randn(batch, 1, size, size, generator=g),
            "t": t,
            "betas": betas,
        }

    return run_check(
        "posterior mean of q(x_{t-1} | x_t, x_0)",
        student_fn,
        _reference_posterior_mean,
        make_inputs,
        trials=5,
        rtol=1e-4,
        atol=1e-5,
    )


def _reference_predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float) -> torch.Tensor:
    return (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5


def check_predict_x0(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 03.2: x̂_0 from x_t and the predicted noise: ``(x_t − sqrt(1−ᾱ_t)·ε̂) / sqrt(ᾱ_t)``.

    ``student_fn(x_t, eps, alpha_bar_t)`` with alpha_bar_t a float in (0, 1).
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        size = int(torch.randint(4, 13, (1,), generator=g))
        return {
            "x_t": torch.randn(2, 1, size, size, generator=g),
            "eps": torch.randn(2, 1, size, size, generator=g),
            "alpha_bar_t": float(torch.empty(1).uniform_(0.05, 0.999, generator=g)),
        }

    return run_check("predicted x0 from epsilon", student_fn, _reference_predict_x0, make_inputs, rtol=1e-4, atol=1e-5)


def _reference_ddim_step(
    x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float, alpha_bar_prev: float
) -> torch.Tensor:
    x0 = (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5
    return alpha_bar_prev**0.5 * x0 + (1 - alpha_bar_prev) ** 0.5 * eps


def check_ddim_step(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 03.3: one deterministic DDIM step (η = 0), no clipping:
    ``x_prev = sqrt(ᾱ_prev)·x̂_0 + sqrt(1−ᾱ_prev)·ε̂``.

    ``student_fn(x_t, eps, alpha_bar_t, alpha_bar_prev)`` with 0 < alpha_bar_t < alpha_bar_prev <= 1.
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        size = int(torch.randint(4, 13, (1,), generator=g))
        alpha_bar_t = float(torch.empty(1).uniform_(0.01, 0.95, generator=g))
        alpha_bar_prev = (
            1.0
            if float(torch.rand(1, generator=g)) < 0.2
            else float(torch.empty(1).uniform_(alpha_bar_t + 0.01, 0.999, generator=g))
        )
        return {
            "x_t": torch.randn(2, 1, size, size, generator=g),
            "eps": torch.randn(2, 1, size, size, generator=g),
            "alpha_bar_t": alpha_bar_t,
            "alpha_bar_prev": alpha_bar_prev,
        }

    return run_check("one DDIM step (eta = 0)", student_fn, _reference_ddim_step, make_inputs, rtol=1e-4, atol=1e-5)


# --- 08_evaluation ---
def _random_feature_sets(g: torch.Generator) -> dict[str, Any]:
    """Two Gaussian feature sets (N, F) and (M, F) with different means and covariances, float64."""
    dim = int(torch.randint(2, 9, (1,), generator=g))
    n, m = (int(v) for v in torch.randint(40, 201, (2,), generator=g))
    mix_a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    mix_b = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    shift = torch.randn(dim, generator=g, dtype=torch.float64)
    return {
        "real_features": torch.randn(n, dim, generator=g, dtype=torch.float64) @ mix_a,
        "generated_features": torch.randn(m, dim, generator=g, dtype=torch.float64) @ mix_b + shift,
    }


def _reference_fid(real_features: torch.Tensor, generated_features: torch.Tensor) -> float:
    from meddiff_lab.metrics.generative import fid

    return fid(real_features, generated_features)


def check_fid(student_fn: Callable[[torch.Tensor, torch.Tensor], float]) -> CheckResult:
    """Exercise 08.1: FID from two feature matrices (N, F) and (M, F): fit a Gaussian (mean, covariance
    with N-1) to each, then ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r^1/2 S_g S_r^1/2)^1/2)``."""
    return run_check(
        "FID from feature matrices", student_fn, _reference_fid, _random_feature_sets, rtol=1e-3, atol=1e-6
    )


def _reference_precision(real_features: torch.Tensor, generated_features: torch.Tensor, k: int) -> float:
    from meddiff_lab.metrics.generative import precision_recall

    return precision_recall(real_features, generated_features, k=k)[0]


def check_precision(student_fn: Callable[[torch.Tensor, torch.Tensor, int], float]) -> CheckResult:
    """Exercise 08.2: improved precision: the share of generated feature vectors that lie within the
    k-th-nearest-neighbour radius of at least one real feature vector (the radius of a real point is
    the distance to its k-th nearest *other* real point)."""

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        inputs = _random_feature_sets(g)
        inputs["generated_features"] = inputs["generated_features"] * 0.5  # overlap partly with the real set
        inputs["k"] = int(torch.randint(1, 6, (1,), generator=g))
        return inputs

    return run_check(
        "improved precision (k-NN manifold)", student_fn, _reference_precision, make_inputs, rtol=1e-9, atol=1e-9
    )


# --- 01_preprocessing ---
def _reference_to_hounsfield(pixels: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    return pixels.astype(np.float64) * slope + intercept


def check_to_hounsfield(student_fn: Callable[..., Any]) -> CheckResult:
    """Exercise 01.1: stored CT pixel values to Hounsfield units, ``HU = pixels · slope + intercept``.

    ``student_fn(pixels, slope, intercept)`` with ``pixels`` an int16 or uint16 NumPy array (as
    ``dataset.pixel_array`` gives), returning HU as floats of the same shape.
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        rows, cols = (int(v) for v in torch.randint(4, 17, (2,), generator=g))
        signed = bool(torch.rand(1, generator=g) < 0.5)
        low, high = (-1024, 3000) if signed else (0, 4095)
        pixels = torch.randint(low, high, (rows, cols), generator=g).numpy().astype(np.int16 if signed else np.uint16)
        slope = [1.0, 0.5, 2.0, 1.25][int(torch.randint(0, 4, (1,), generator=g))]
        intercept = [-1024.0, -1000.0, 0.0, -2048.0][int(torch.randint(0, 4, (1,), generator=g))]
        return {"pixels": pixels, "slope": slope, "intercept": intercept}

    def guarded(pixels, slope, intercept):  # the student's function gets a copy: the reference sees the original
        return student_fn(pixels.copy(), slope, intercept)

    return run_check(
        "stored pixels to Hounsfield units", guarded, _reference_to_hounsfield, make_inputs, rtol=1e-6, atol=1e-3
    )


def _reference_ct_window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.clip((hu - (center - width / 2.0)) / width, 0.0, 1.0)


def check_ct_window(student_fn: Callable[..., Any]) -> CheckResult:
    """Exercise 01.2: a CT window ``y = clip((x − (c − w/2)) / w, 0, 1)``.

    ``student_fn(hu, center, width)`` with ``hu`` a float NumPy array in HU, returning values in [0, 1].
    """
    presets = [(-600.0, 1500.0), (50.0, 350.0), (400.0, 1800.0), (40.0, 80.0)]

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        n = int(torch.randint(50, 400, (1,), generator=g))
        hu = (torch.rand(n, generator=g, dtype=torch.float64) * 3700 - 1200).numpy()
        center, width = presets[int(torch.randint(0, len(presets), (1,), generator=g))]
        center += float(torch.randn(1, generator=g)) * 20
        width *= float(torch.empty(1).uniform_(0.8, 1.2, generator=g))
        return {"hu": hu, "center": center, "width": width}

    def guarded(hu, center, width):
        return student_fn(hu.copy(), center, width)

    return run_check("CT window to [0, 1]", guarded, _reference_ct_window, make_inputs, rtol=1e-5, atol=1e-6)


def _chestxray14_like_patient_ids(g: torch.Generator, num_patients: int) -> np.ndarray:
    """Patient IDs with ChestX-ray14's skew: most patients have a few films, some have many."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
    counts = 1 + np.minimum(rng.negative_binomial(0.5, 0.5 / (0.5 + 2.6), size=num_patients), 80)
    ids = np.repeat(rng.choice(10**6, size=num_patients, replace=False), counts)
    return ids[rng.permutation(len(ids))]


def check_patient_split(student_fn: Callable[..., Any], trials: int = 3, display_result: bool = True) -> CheckResult:
    """Exercise 01.3: split images into train and test *by patient*.

    ``student_fn(patient_ids, test_fraction, seed)`` gets one patient ID per image and returns
    ``(train_indices, test_indices)``. Passes when, on fresh ChestX-ray14-like ID lists, every image
    is in exactly one part, no patient is in both, and the test part holds ``test_fraction`` of the
    images (or of the patients) within ±0.1. There is no single right answer, so the check tests
    these properties instead of comparing numbers.
    """
    name = "patient-level split"
    g = torch.Generator().manual_seed(int(np.random.SeedSequence().entropy % 2**31))
    result = CheckResult(name, True, f"no patient in both parts, every image once, sizes right on {trials} ID lists")
    for trial in range(trials):
        ids = _chestxray14_like_patient_ids(g, int(torch.randint(150, 600, (1,), generator=g)))
        test_fraction = [0.1, 0.2, 0.3][trial % 3]
        try:
            out = student_fn(ids.copy(), test_fraction, trial)
        except NotImplementedError:
            result = CheckResult(name, False, "not attempted yet (the function raises NotImplementedError)", False)
            break
        except Exception as exc:
            result = CheckResult(name, False, f"raised {type(exc).__name__}: {exc} ({len(ids)} images)")
            break
        problem = _split_problem(ids, out, test_fraction)
        if problem:
            result = CheckResult(
                name,
                False,
                f"trial {trial + 1} ({len(ids)} images, {len(np.unique(ids))} patients, "
                f"test_fraction={test_fraction}): {problem}",
            )
            break
    if display_result:
        _display(result)
    return result


def _split_problem(ids: np.ndarray, out: Any, test_fraction: float) -> str | None:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return f"expected (train_indices, test_indices), got {type(out).__name__}"
    try:
        train, test = (np.asarray(part).astype(np.int64).reshape(-1) for part in out)
    except (TypeError, ValueError):
        return "the two parts must be arrays of integer indices"
    together = np.concatenate([train, test])
    if len(together) and (together.min() < 0 or together.max() >= len(ids)):
        return f"indices must lie in 0..{len(ids) - 1}"
    if len(together) != len(ids) or len(np.unique(together)) != len(ids):
        missing = len(ids) - len(np.unique(together))
        return f"every image must be in exactly one part: {len(train)} + {len(test)} indices for {len(ids)} images" + (
            f" ({missing} images missing)" if missing > 0 else " (some images appear twice)"
        )
    shared = np.intersect1d(ids[train], ids[test])
    if len(shared):
        return f"{len(shared)} patients have images in both parts (e.g. patient {shared[0]}): that is leakage"
    image_share = len(test) / len(ids)
    patient_share = len(np.unique(ids[test])) / len(np.unique(ids))
    if min(abs(image_share - test_fraction), abs(patient_share - test_fraction)) > 0.1:
        return (
            f"the test part holds {image_share:.0%} of the images and {patient_share:.0%} of the patients; "
            f"expected about {test_fraction:.0%}"
        )
    return None


# --- 04_building_the_unet ---
def _reference_timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    from meddiff_lab.models.embeddings import timestep_embedding

    return timestep_embedding(timesteps, dim)


def check_timestep_embedding(student_fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckResult:
    """Exercise 04.1: the sinusoidal timestep embedding, cosines first.

    ``student_fn(timesteps, dim)`` with timesteps (B,) int64 and an even ``dim``; returns (B, dim)
    ``[cos(t·ω_0) … cos(t·ω_{d/2−1}), sin(t·ω_0) … sin(t·ω_{d/2−1})]`` with ``ω_k = 10000^(−k/(d/2))``.
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        batch, dim = int(torch.randint(1, 9, (1,), generator=g)), 2 * int(torch.randint(2, 65, (1,), generator=g))
        return {"timesteps": torch.randint(0, 1000, (batch,), generator=g), "dim": dim}

    return run_check(
        "sinusoidal timestep embedding", student_fn, _reference_timestep_embedding, make_inputs, rtol=1e-4, atol=1e-4
    )


def _reference_resblock_parameters(spatial_dims: int, in_channels: int, out_channels: int, emb_channels: int) -> int:
    from meddiff_lab.models.blocks import ResBlock

    return sum(p.numel() for p in ResBlock(spatial_dims, in_channels, out_channels, emb_channels).parameters())


def check_resblock_parameters(student_fn: Callable[..., int]) -> CheckResult:
    """Exercise 04.2: count the parameters of a residual block, with pencil and paper (no model built).

    ``student_fn(spatial_dims, in_channels, out_channels, emb_channels)`` returns the number of learned
    numbers in ``ResBlock(spatial_dims, in_channels, out_channels, emb_channels)``: two GroupNorms (a
    scale and a shift per channel), two 3×3 (or 3×3×3) convolutions with biases, the embedding
    projection to a scale and a shift per output channel, and a 1×1 skip convolution when the channel
    count changes.
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        in_channels, out_channels = (32 * int(v) for v in torch.randint(1, 5, (2,), generator=g))
        if float(torch.rand(1, generator=g)) < 0.3:
            out_channels = in_channels
        return {
            "spatial_dims": int(torch.randint(2, 4, (1,), generator=g)),
            "in_channels": in_channels,
            "out_channels": out_channels,
            "emb_channels": 32 * int(torch.randint(1, 9, (1,), generator=g)),
        }

    return run_check(
        "parameters of a residual block", student_fn, _reference_resblock_parameters, make_inputs, rtol=0, atol=0
    )


# --- 05_training_chestxray ---
def _reference_ema_update(ema_weights: torch.Tensor, weights: torch.Tensor, decay: float) -> torch.Tensor:
    return decay * ema_weights + (1 - decay) * weights


def check_ema_update(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 05.1: one EMA step ``θ_ema ← d·θ_ema + (1 − d)·θ``.

    ``student_fn(ema_weights, weights, decay)``: two tensors of the same shape and a float ``decay`` in
    [0, 1); returns the new EMA weights (a new tensor, same shape).
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        shape = tuple(int(s) for s in torch.randint(1, 6, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g))
        return {
            "ema_weights": torch.randn(shape, generator=g),
            "weights": torch.randn(shape, generator=g),
            "decay": float(torch.empty(1).uniform_(0.5, 0.9999, generator=g)),
        }

    return run_check("EMA update", student_fn, _reference_ema_update, make_inputs, rtol=1e-5, atol=1e-6)


def _reference_warmup_cosine_lr(step: int, base_lr: float, warmup_steps: int, max_steps: int) -> float:
    return base_lr * warmup_cosine(step, warmup_steps, max_steps, min_lr_ratio=0.0)


def check_warmup_cosine_lr(student_fn: Callable[..., float]) -> CheckResult:
    """Exercise 05.2: the learning rate at optimizer step ``step`` (0-based).

    Linear warm-up ``base_lr·(step + 1)/warmup_steps`` while ``step < warmup_steps``, then a cosine
    ``base_lr·½(1 + cos(π·p))`` with ``p = (step − warmup_steps)/(max_steps − warmup_steps)`` (clipped to
    [0, 1]). ``student_fn(step, base_lr, warmup_steps, max_steps)`` returns a float.
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        warmup = int(torch.randint(1, 50, (1,), generator=g))
        max_steps = warmup + int(torch.randint(10, 500, (1,), generator=g))
        return {
            "step": int(torch.randint(0, max_steps + 1, (1,), generator=g)),
            "base_lr": float(torch.empty(1).uniform_(1e-5, 1e-2, generator=g)),
            "warmup_steps": warmup,
            "max_steps": max_steps,
        }

    return run_check(
        "warm-up + cosine learning rate",
        student_fn,
        _reference_warmup_cosine_lr,
        make_inputs,
        trials=8,
        rtol=1e-6,
        atol=1e-12,
    )


# --- 06_conditioning ---
def _random_blob(
    g: torch.Generator,
    size: int,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    radius_range: tuple[float, float],
) -> np.ndarray:
    """A random filled ellipse (H, W) bool, for checks on anatomy-like masks."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    cx, cy = (float(torch.empty(1).uniform_(*r, generator=g)) for r in (x_range, y_range))
    rx, ry = (float(torch.empty(1).uniform_(*radius_range, generator=g)) for _ in range(2))
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def _reference_cardiothoracic_ratio(heart: np.ndarray, right_lung: np.ndarray, left_lung: np.ndarray) -> float:
    from meddiff_lab.data.phantom import cardiothoracic_ratio_from_masks

    return float(cardiothoracic_ratio_from_masks(heart, right_lung, left_lung))


def check_cardiothoracic_ratio(student_fn: Callable[..., float]) -> CheckResult:
    """Exercise 06.1: cardiothoracic ratio of one image from (H, W) bool masks of heart, right and left lung.

    Heart width = the number of columns the heart spans; thoracic width = from the leftmost to the
    rightmost column of heart or lungs.
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        size = int(torch.randint(24, 65, (1,), generator=g))
        return {
            "heart": _random_blob(g, size, (0.45, 0.6), (0.5, 0.7), (0.1, 0.25)),
            "right_lung": _random_blob(g, size, (0.2, 0.35), (0.3, 0.6), (0.08, 0.2)),
            "left_lung": _random_blob(g, size, (0.65, 0.8), (0.3, 0.6), (0.08, 0.2)),
        }

    return run_check(
        "cardiothoracic ratio from masks", student_fn, _reference_cardiothoracic_ratio, make_inputs, trials=5
    )


def _reference_guided_prediction(
    eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float
) -> torch.Tensor:
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def check_guided_prediction(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 06.2: classifier-free guidance, eps_uncond + w (eps_cond - eps_uncond)."""

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        shape = (int(torch.randint(1, 5, (1,), generator=g)), 1, 8, 8)
        return {
            "eps_uncond": torch.randn(shape, generator=g),
            "eps_cond": torch.randn(shape, generator=g),
            "guidance_scale": float(torch.empty(1).uniform_(0.0, 7.0, generator=g)),
        }

    return run_check("classifier-free guidance", student_fn, _reference_guided_prediction, make_inputs)


def _reference_adaptive_group_norm(
    h: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, num_groups: int
) -> torch.Tensor:
    normalised = torch.nn.functional.group_norm(h, num_groups, eps=1e-5)
    return normalised * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


def check_adaptive_group_norm(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 06.3: AdaGN, GroupNorm(h) * (1 + scale) + shift with per-image, per-channel scale and shift."""

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        groups = int(torch.randint(1, 5, (1,), generator=g))
        batch, channels = (
            int(torch.randint(1, 4, (1,), generator=g)),
            groups * int(torch.randint(1, 4, (1,), generator=g)),
        )
        return {
            "h": torch.randn(batch, channels, 6, 6, generator=g) * 3 + 1,
            "scale": torch.randn(batch, channels, generator=g) * 0.5,
            "shift": torch.randn(batch, channels, generator=g) * 0.5,
            "num_groups": groups,
        }

    return run_check(
        "adaptive group norm", student_fn, _reference_adaptive_group_norm, make_inputs, rtol=1e-4, atol=1e-4
    )


# --- 07_segmentation_augmentation ---
def _reference_dice_score(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    total = pred.sum() + target.sum()
    return 1.0 if total == 0 else float(2.0 * (pred & target).sum() / total)


def check_dice_score(student_fn: Callable[..., float]) -> CheckResult:
    """Exercise 07.1: Dice of two (H, W) bool masks, 2|P ∩ T| / (|P| + |T|); two empty masks score 1."""
    trial = {"n": 0}

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        trial["n"] += 1
        size = int(torch.randint(16, 49, (1,), generator=g))
        target = _random_blob(g, size, (0.3, 0.7), (0.3, 0.7), (0.1, 0.3))
        pred = _random_blob(g, size, (0.3, 0.7), (0.3, 0.7), (0.1, 0.3))
        if trial["n"] % 4 == 0:  # every fourth trial: both empty
            pred, target = np.zeros_like(pred), np.zeros_like(target)
        return {"pred": pred, "target": target}

    return run_check("Dice score", student_fn, _reference_dice_score, make_inputs, trials=8)


def _reference_hd95(pred_points: np.ndarray, target_points: np.ndarray) -> float:
    a, b = np.asarray(pred_points, np.float64), np.asarray(target_points, np.float64)
    distances = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return float(max(np.percentile(distances.min(1), 95), np.percentile(distances.min(0), 95)))


def check_hd95(student_fn: Callable[..., float]) -> CheckResult:
    """Exercise 07.2: HD95 between two boundary point sets (n, 2) and (m, 2): the larger of the two directed
    95th percentiles of nearest-neighbour distances (linear interpolation, as ``np.percentile``)."""

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        n, m = (int(torch.randint(5, 60, (1,), generator=g)) for _ in range(2))
        return {
            "pred_points": (torch.rand(n, 2, generator=g) * 32).numpy(),
            "target_points": (torch.rand(m, 2, generator=g) * 32 + float(torch.rand(1, generator=g)) * 4).numpy(),
        }

    return run_check(
        "HD95 from boundary points", student_fn, _reference_hd95, make_inputs, trials=5, rtol=1e-6, atol=1e-6
    )


# --- 09_applications ---
def _reference_matched_timestep(alphas_cumprod: torch.Tensor, sigma: float) -> int:
    from meddiff_lab.diffusion.restoration import matched_timestep

    return matched_timestep(type("Schedule", (), {"alphas_cumprod": alphas_cumprod})(), sigma)


def check_matched_timestep(student_fn: Callable[..., int]) -> CheckResult:
    """Exercise 09.1: the smallest timestep t with (1 - ᾱ_t)/ᾱ_t >= sigma² (T - 1 if there is none).

    ``student_fn(alphas_cumprod, sigma)``: alphas_cumprod (T,) float32, sigma a float. Returns an int.
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        return {
            "alphas_cumprod": _random_alphas_cumprod(g, 1000),
            "sigma": float(torch.empty(1).uniform_(0.005, 0.8, generator=g)),
        }

    return run_check(
        "the noise-matched timestep", student_fn, _reference_matched_timestep, make_inputs, trials=5, rtol=0, atol=0
    )


def _reference_null_space_correction(x0: torch.Tensor, y: torch.Tensor, factor: int) -> torch.Tensor:
    from meddiff_lab.diffusion.restoration import AveragePoolOperator

    operator = AveragePoolOperator(factor)
    return x0 - operator.pinv(operator(x0) - y)


def check_null_space_correction(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 09.2: DDNM's correction for super-resolution, ``x0 - A⁺(A x0 - y)`` with A = average pooling
    by ``factor`` and A⁺ = nearest-neighbour upsampling.

    ``student_fn(x0, y, factor)``: x0 (B, 1, H, W), y (B, 1, H/factor, W/factor). Returns (B, 1, H, W).
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        factor = int(torch.randint(2, 5, (1,), generator=g))
        batch, low = int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(2, 9, (1,), generator=g))
        return {
            "x0": torch.rand(batch, 1, low * factor, low * factor, generator=g) * 2 - 1,
            "y": torch.rand(batch, 1, low, low, generator=g) * 2 - 1,
            "factor": factor,
        }

    return run_check(
        "DDNM's null-space correction (super-resolution)",
        student_fn,
        _reference_null_space_correction,
        make_inputs,
        rtol=1e-5,
        atol=1e-6,
    )


# --- 10_latent_diffusion ---
def _reference_flow_interpolate(x0: torch.Tensor, noise: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return (1 - s.reshape(-1, 1, 1, 1)) * x0 + s.reshape(-1, 1, 1, 1) * noise


def check_flow_interpolate(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 10.1: the rectified-flow path ``x_s = (1 - s)·x0 + s·noise``, one ``s`` in [0, 1] per image.

    ``student_fn(x0, noise, s)``: x0 and noise (B, C, H, W), s (B,). Returns (B, C, H, W).
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        batch, channels = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 5, (1,), generator=g))
        size = int(torch.randint(4, 13, (1,), generator=g))
        return {
            "x0": torch.randn(batch, channels, size, size, generator=g),
            "noise": torch.randn(batch, channels, size, size, generator=g),
            "s": torch.rand(batch, generator=g),
        }

    return run_check(
        "the rectified-flow interpolation", student_fn, _reference_flow_interpolate, make_inputs, rtol=1e-5, atol=1e-6
    )


def _reference_euler_step(x: torch.Tensor, velocity: torch.Tensor, s: float, s_next: float) -> torch.Tensor:
    return x + (s_next - s) * velocity


def check_euler_step(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Exercise 10.2: one Euler step of the flow ODE from time ``s`` down to ``s_next`` with the predicted
    velocity ``v = noise - x0``: ``x + (s_next - s)·v``.

    ``student_fn(x, velocity, s, s_next)`` with floats 0 <= s_next < s <= 1.
    """

    def make_inputs(g: torch.Generator) -> dict[str, Any]:
        size = int(torch.randint(4, 13, (1,), generator=g))
        s = float(torch.empty(1).uniform_(0.05, 1.0, generator=g))
        s_next = 0.0 if float(torch.rand(1, generator=g)) < 0.2 else float(torch.empty(1).uniform_(0.0, s, generator=g))
        return {
            "x": torch.randn(2, 4, size, size, generator=g),
            "velocity": torch.randn(2, 4, size, size, generator=g),
            "s": s,
            "s_next": s_next,
        }

    return run_check("one Euler step of the flow", student_fn, _reference_euler_step, make_inputs, rtol=1e-5, atol=1e-6)
