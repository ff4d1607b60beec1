"""Evaluate a zoo model the way its model card reports it: every number beside its floor.

``evaluate_model(loaded, n, steps=(50, 100))`` samples ``n`` images at each DDIM step count and
compares them with ``n`` unseen real phantoms on the domain features (:func:`evaluate_generated`),
and adds what a reader of the card needs to judge the numbers:

* the **floor**: the same metrics between two disjoint real sets of ``n`` (a perfect generator);
* a **perturbed reference**: real phantoms with Gaussian noise of standard deviation ``noise_sigma``
  (0.05 on the [-1, 1] scale, a perturbation a reader barely sees) scored like a model, so "FID 6"
  can be read as "worse or better than real images with faint noise";
* **KID's spread** over its random subsets, to judge whether 100 steps are worse than 50;
* **readers** (:func:`meddiff_lab.metrics.readers.reader_study`): how often a trivial or trained
  reader tells samples from real images, with 95 % intervals;
* **near-copies** of training images (the memorisation check), when the training images are given.

``format_model_card(results)`` writes the markdown table the model cards carry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.data.phantom import generate_phantoms
from meddiff_lab.metrics.evaluate import evaluate_generated
from meddiff_lab.metrics.features import extract_features, load_phantom_encoder
from meddiff_lab.metrics.generative import kid
from meddiff_lab.metrics.readers import describe_study, reader_study

__all__ = ["evaluate_model", "format_model_card", "unseen_phantoms"]


def unseen_phantoms(n: int, image_size: int, seed: int = 1) -> torch.Tensor:
    """``n`` real phantoms of patients a seed-0 model never saw: ``(n, 1, S, S)`` float32 in [-1, 1]."""
    if seed == 0:
        raise ValueError("seed 0 is the shipped models' training set; unseen phantoms need another seed")
    return to_model_batch(generate_phantoms(n, image_size, seed, masks=()).images)


def _kid_with_spread(real_features, generated_features, seed: int) -> dict[str, float]:
    """KID on the whole sets, and its spread over 100 random half-size subsets (a subset as large as
    the set would always be the same set, with no spread)."""
    value = kid(real_features, generated_features, seed=seed)
    half = max(2, min(len(real_features), len(generated_features)) // 2)
    _, spread = kid(real_features, generated_features, subset_size=half, seed=seed, return_std=True)
    return {"value": float(value), "std_over_subsets": float(spread), "subset_size": half}


def evaluate_model(
    loaded,
    n: int,
    steps: Sequence[int] = (50,),
    seed: int = 0,
    noise_sigma: float = 0.05,
    train: torch.Tensor | None = None,
    readers: bool = True,
    real: torch.Tensor | None = None,
    progress: bool = True,
    classifier_steps: int = 200,
) -> dict[str, Any]:
    """Sample ``loaded`` (a :class:`~meddiff_lab.models.pretrained.PretrainedModel`) and evaluate it.

    Args:
        loaded: an unconditional zoo model with ``.sample(n, steps, seed)`` and ``.config["image_size"]``.
        n: samples per step count (and the size of each real set).
        steps: DDIM step counts to evaluate (the first one also gets the readers and the copy check).
        seed: sampling seed (the real sets are fixed: phantoms of seed 1, unseen in training).
        noise_sigma: standard deviation of the perturbed real reference on the [-1, 1] scale.
        train: the model's training images for the memorisation check (optional).
        readers: run the reader study on the first step count's samples.
        real: ``(>= 2n + 64, 1, S, S)`` unseen real images (default: :func:`unseen_phantoms`).
        classifier_steps: training steps of the reader study's classifier two-sample test.

    Returns:
        ``{"n", "image_size", "by_steps": {steps: evaluate_generated(...) + kid spread + seconds},
        "noisy_real": {...}, "readers": {...}}``.
    """
    size = int(loaded.config["image_size"])
    real = unseen_phantoms(2 * n + 64, size) if real is None else real
    if len(real) < 2 * n:
        raise ValueError(f"real holds {len(real)} images; evaluating n={n} needs at least {2 * n}")
    encoder = load_phantom_encoder()
    real_a_features = extract_features(real[:n], encoder)
    sampler = "Euler" if "RectifiedFlow" in type(getattr(loaded, "scheduler", None)).__name__ else "DDIM"
    results: dict[str, Any] = {"n": n, "image_size": size, "sampler": sampler, "by_steps": {}}
    first = None
    for count in steps:
        start = time.perf_counter()
        samples = loaded.sample(n, steps=int(count), seed=seed, progress=progress).cpu()
        seconds = time.perf_counter() - start
        row = evaluate_generated(samples, real, train if first is None else None, extractor=encoder, seed=seed)
        row["kid_spread"] = _kid_with_spread(real_a_features, extract_features(samples, encoder), seed)
        row["sampling_seconds"] = seconds
        results["by_steps"][int(count)] = row
        first = samples if first is None else first
    generator = torch.Generator().manual_seed(seed + 7)
    # the second real set plus faint noise, scored against the first like a model
    noisy = (real[n : 2 * n] + noise_sigma * torch.randn(real[n : 2 * n].shape, generator=generator)).clamp(-1, 1)
    reference = evaluate_generated(noisy, real[: 2 * n], extractor=encoder, seed=seed)
    reference["noise_sigma"] = noise_sigma
    results["noisy_real"] = reference
    if readers:
        study = reader_study(real[n : 2 * n], first, seed=seed, classifier_steps=classifier_steps)
        results["readers"] = {
            name: {"accuracy": r.accuracy, "interval": list(r.interval), "questions": r.questions, "correct": r.correct}
            for name, r in study.items()
        }
        results["readers_sentence"] = describe_study(study)
    return results


def format_model_card(results: dict[str, Any]) -> str:
    """The model card's evaluation section (markdown) from :func:`evaluate_model`'s results."""
    by_steps = results["by_steps"]
    first = next(iter(by_steps.values()))
    noisy = results["noisy_real"]
    lines = [
        f"Evaluated on {results['n']} samples per row against {results['n']} unseen phantoms (seed 1), "
        f"domain features of the phantom encoder. Floor: two disjoint real sets of {results['n']}. "
        f"Noisy real: real phantoms + Gaussian noise σ = {noisy['noise_sigma']} (on [-1, 1]) scored like a model.",
        "",
        "| | FID | KID (± std over half-size subsets) | precision | recall | MS-SSIM | sampling s |",
        "|---|---|---|---|---|---|---|",
    ]
    for count, row in by_steps.items():
        lines.append(
            f"| model, {results.get('sampler', 'DDIM')}-{count} | {row['fid']['model']:.2f} | "
            f"{row['kid_spread']['value']:.4f} ± "
            f"{row['kid_spread']['std_over_subsets']:.4f} | {row['precision']['model']:.3f} | "
            f"{row['recall']['model']:.3f} | {row['ms_ssim']['model']:.3f} | {row['sampling_seconds']:.0f} |"
        )
    lines.append(
        f"| noisy real (σ = {noisy['noise_sigma']}) | {noisy['fid']['model']:.2f} | {noisy['kid']['model']:.4f} | "
        f"{noisy['precision']['model']:.3f} | {noisy['recall']['model']:.3f} | {noisy['ms_ssim']['model']:.3f} | |"
    )
    lines.append(
        f"| floor (real vs real) | {first['fid']['floor']:.2f} | {first['kid']['floor']:.4f} | "
        f"{first['precision']['floor']:.3f} | {first['recall']['floor']:.3f} | {first['ms_ssim']['floor']:.3f} | |"
    )
    if "memorisation" in first:
        m = first["memorisation"]
        lines += [
            "",
            f"Near-copies: {m['flagged']} of {first['n']} samples above the copy threshold {m['threshold']:.4f} "
            f"(real unseen images above it: {m['flagged_real']}).",
        ]
    if "readers" in results:
        lines += ["", "| reader | accuracy | 95 % interval | questions |", "|---|---|---|---|"]
        for name, r in results["readers"].items():
            lines.append(
                f"| {name} | {100 * r['accuracy']:.0f} % | {100 * r['interval'][0]:.0f}–{100 * r['interval'][1]:.0f} % "
                f"| {r['questions']} |"
            )
        lines += ["", results["readers_sentence"]]
    return "\n".join(lines)
