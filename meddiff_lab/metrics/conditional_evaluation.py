r"""Does a conditional zoo model do what its condition asks? The checks its model card reports.

A conditional generator is judged with *instruments* trained and validated on real phantoms only,
and every number on samples is set beside the same instrument's number on real images:

* **segmenter**: MONAI's U-Net for the lung fields and heart, trained on real phantoms
  (:func:`meddiff_lab.training.instruments.build_instruments`); it measures the cardiothoracic ratio
  (CTR) and the Dice of a sample against the mask that controlled it
  (:mod:`meddiff_lab.metrics.segmentation`);
* **finding detector**: the label head of the shipped domain encoder (trained on real phantoms,
  :mod:`meddiff_lab.metrics.features`), with one threshold per finding chosen on a validation set
  (Youden's J) and its AUROC measured on a separate test set. A finding it cannot see on real
  64 px images (AUROC < ``VISIBLE_AUROC``) is listed as invisible rather than counted;
* **view and sex readers**: the same encoder's view/sex head.

Three sets of real phantoms, none seen by a zoo model (those trained on seed 0): the segmenter's
training set (seed 2), the detector's validation set (seed 4) and the test set (seed 3) whose
conditions the samples copy. Conditioning on a *real* image's condition vector makes the comparison
paired: samples conditioned on the findings, age, sex and view of the real images with a finding
are scored against those real images.

``calibrate_instruments`` sets the instruments up around a trained segmenter (training them is
:func:`meddiff_lab.training.instruments.build_instruments`'s work); ``evaluate_findings_model`` runs
the checks of a findings/metadata model (``phantom64-cond``), ``evaluate_controlnet`` those of a mask
or edge ControlNet; ``format_conditional_card`` writes the markdown the model cards carry.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from meddiff_lab.data.edges import edge_maps, edges_to_condition
from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.data.phantom import CXR_LABELS, generate_phantoms
from meddiff_lab.diffusion.sampling import generate_samples
from meddiff_lab.metrics.detection import image_auroc
from meddiff_lab.metrics.edges import edge_f1
from meddiff_lab.metrics.features import load_phantom_encoder
from meddiff_lab.metrics.segmentation import (
    SEG_STRUCTURES,
    dice_per_structure,
    masks_to_condition,
    measure_cardiothoracic_ratio,
    predict_masks,
    stack_masks,
)
from meddiff_lab.models.conditioning import VectorGuidance, findings_metadata_to_cond
from meddiff_lab.models.controlnet import BoundCondition

__all__ = [
    "VISIBLE_AUROC",
    "Instruments",
    "calibrate_instruments",
    "evaluate_findings_model",
    "evaluate_controlnet",
    "format_conditional_card",
]

#: A finding counts as visible to the detector at this AUROC on held-out real phantoms.
VISIBLE_AUROC = 0.8
#: Seeds of the real phantom sets (none is a zoo model's training seed, 0).
SEGMENTER_SEED, TEST_SEED, VALIDATION_SEED = 2, 3, 4


@dataclass
class Instruments:
    """The measuring instruments, trained and validated on real phantoms (see the module docstring).

    Attributes:
        segmenter: MONAI U-Net, outputs (right lung, left lung, heart) logits.
        encoder: the domain encoder with its heads (:class:`~meddiff_lab.metrics.features.PhantomEncoder`).
        thresholds: ``(14,)`` detector thresholds on the finding probabilities.
        auroc: ``(14,)`` detector AUROC on the real test set.
        test: the real test set (a :class:`~meddiff_lab.data.PhantomBatch`, seed ``TEST_SEED``).
        test_images: its images ``(N, 1, S, S)`` in [-1, 1].
        segmenter_dice: mean Dice per structure of the segmenter on the real test set.
    """

    segmenter: torch.nn.Module
    encoder: torch.nn.Module
    thresholds: np.ndarray
    auroc: np.ndarray
    test: Any
    test_images: torch.Tensor
    segmenter_dice: dict[str, float]


@torch.no_grad()
def _encoder_outputs(encoder: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> dict[str, np.ndarray]:
    """Finding probabilities ``(N, 14)``, P(AP view) and P(female) ``(N,)`` from the encoder's heads."""
    probs, view_sex = [], []
    for i in range(0, len(images), batch):
        out = encoder(images[i : i + batch])
        probs.append(torch.sigmoid(out["label_logits"]))
        view_sex.append(torch.sigmoid(out["view_sex_logits"]))
    p, vs = torch.cat(probs).numpy(), torch.cat(view_sex).numpy()
    return {"findings": p, "p_ap": vs[:, 0], "p_female": vs[:, 1]}


def _youden_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per finding, the threshold that maximises sensitivity + specificity on a validation set."""
    thresholds = np.full(probs.shape[1], 0.5)
    for f in range(probs.shape[1]):
        positive = labels[:, f] > 0.5
        if positive.all() or not positive.any():
            continue
        candidates = np.unique(probs[:, f])
        tpr = np.array([(probs[positive, f] >= c).mean() for c in candidates])
        fpr = np.array([(probs[~positive, f] >= c).mean() for c in candidates])
        thresholds[f] = candidates[int(np.argmax(tpr - fpr))]
    return thresholds


def calibrate_instruments(
    segmenter: torch.nn.Module,
    image_size: int = 64,
    n_validation: int = 2000,
    n_test: int = 2000,
    encoder: torch.nn.Module | None = None,
) -> Instruments:
    """The instruments around a trained segmenter: calibrate the detector and make the real test set.

    Args:
        segmenter: a network trained on real phantoms to outline :data:`SEG_STRUCTURES` (see
            :func:`meddiff_lab.training.instruments.build_instruments`, which trains one and calls this).
        image_size: side of the images (the zoo's 64).
        n_validation: real phantoms that choose the detector thresholds (seed ``VALIDATION_SEED``).
        n_test: real phantoms of the test set (seed ``TEST_SEED``): AUROC, floors, and the conditions.
        encoder: the domain encoder with its heads (default: the shipped one, :func:`load_phantom_encoder`).
    """
    encoder = (load_phantom_encoder(output="encoder") if encoder is None else encoder).eval()
    validation = generate_phantoms(n_validation, image_size, VALIDATION_SEED, masks=())
    thresholds = _youden_thresholds(
        _encoder_outputs(encoder, to_model_batch(validation.images))["findings"], validation.labels
    )
    test = generate_phantoms(n_test, image_size, TEST_SEED, masks=SEG_STRUCTURES)
    test_images = to_model_batch(test.images)
    probs = _encoder_outputs(encoder, test_images)["findings"]
    auroc = np.array([image_auroc(probs[:, f], test.labels[:, f] > 0.5) for f in range(probs.shape[1])])
    per_image = dice_per_structure(predict_masks(segmenter, test_images), stack_masks(test.masks))
    dice = {s: float(per_image[:, i].mean()) for i, s in enumerate(SEG_STRUCTURES)}
    return Instruments(segmenter, encoder, thresholds, auroc, test, test_images, dice)


def _sample_in_chunks(
    make_model, conditions: torch.Tensor, loaded, steps: int, seed: int, chunk: int = 100
) -> torch.Tensor:
    """Sample one image per condition row, ``chunk`` at a time (the noise depends on ``seed`` and the chunk)."""
    size = loaded.config["image_size"]
    out = []
    for k, start in enumerate(range(0, len(conditions), chunk)):
        rows = conditions[start : start + chunk]
        out.append(generate_samples(make_model(rows), loaded.scheduler, len(rows), size, steps, seed=seed + k))
    return torch.cat(out)


def _mean_and_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def evaluate_findings_model(
    loaded,
    instruments: Instruments,
    guidance: float = 2.0,
    steps: int = 50,
    n_per_finding: int = 50,
    n_ctr: int = 100,
    n_pairs: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """The checks of a model conditioned on findings and patient (``conditioning: findings_metadata``).

    Samples are conditioned on the condition vectors of real test images (findings, age, sex, view)
    with classifier-free guidance ``guidance`` (:class:`~meddiff_lab.models.conditioning.VectorGuidance`).

    Returns a dict with ``ctr`` (Cardiomegaly vs No Finding: share with CTR > 0.5 in samples and in
    the real images, by the segmenter), ``findings`` (per finding: detector AUROC, visible or not,
    real and sample detection rates, real and sample false-positive rates on No Finding), ``sex`` and
    ``view`` (paired effects on the encoder's readers, real effect beside them), and ``passes``.
    """
    started = time.perf_counter()
    test = instruments.test
    cond_all = findings_metadata_to_cond(test.labels, test.metadata)
    labels = test.labels > 0.5
    no_finding = ~labels.any(1)
    cardiomegaly = labels[:, CXR_LABELS.index("Cardiomegaly")]

    def guided(rows):
        return VectorGuidance(loaded.model, rows, guidance)

    def say(text):
        if progress:
            print(f"[{time.perf_counter() - started:6.0f} s] {text}", flush=True)

    # CTR: Cardiomegaly vs No Finding, samples conditioned on real images' vectors
    real_ctr = measure_cardiothoracic_ratio(instruments.segmenter, instruments.test_images)
    idx_cm, idx_nf = np.flatnonzero(cardiomegaly)[:n_ctr], np.flatnonzero(no_finding)[:n_ctr]
    samples_cm = _sample_in_chunks(guided, cond_all[idx_cm], loaded, steps, seed)
    samples_nf = _sample_in_chunks(guided, cond_all[idx_nf], loaded, steps, seed + 1000)
    say(f"sampled {len(idx_cm)} Cardiomegaly and {len(idx_nf)} No Finding images")
    ctr_cm = measure_cardiothoracic_ratio(instruments.segmenter, samples_cm)
    ctr_nf = measure_cardiothoracic_ratio(instruments.segmenter, samples_nf)
    ctr = {
        "n": [len(idx_cm), len(idx_nf)],
        "samples_cardiomegaly_above_0.5": float(np.mean(ctr_cm > 0.5)),
        "samples_no_finding_above_0.5": float(np.mean(ctr_nf > 0.5)),
        "real_cardiomegaly_above_0.5": float(np.mean(real_ctr[cardiomegaly] > 0.5)),
        "real_no_finding_above_0.5": float(np.mean(real_ctr[no_finding] > 0.5)),
        "truth_cardiomegaly_above_0.5": float(np.mean(test.cardiothoracic_ratio[cardiomegaly] > 0.5)),
        "samples_cardiomegaly_mean_ctr": float(np.nanmean(ctr_cm)),
        "samples_no_finding_mean_ctr": float(np.nanmean(ctr_nf)),
    }

    # findings: detector rates on samples vs on the real images whose conditions they copy
    real_probs = _encoder_outputs(instruments.encoder, instruments.test_images)["findings"]
    real_fires = real_probs >= instruments.thresholds
    nf_fires = _encoder_outputs(instruments.encoder, samples_nf)["findings"] >= instruments.thresholds
    findings = {}
    for f, name in enumerate(CXR_LABELS):
        index = np.flatnonzero(labels[:, f])[:n_per_finding]
        samples = (
            samples_cm
            if name == "Cardiomegaly" and n_per_finding <= n_ctr
            else _sample_in_chunks(guided, cond_all[index], loaded, steps, seed + 2000 + 100 * f)
        )
        fires = _encoder_outputs(instruments.encoder, samples)["findings"][:, f] >= instruments.thresholds[f]
        real_rate = float(real_fires[labels[:, f], f].mean())
        real_fp = float(real_fires[no_finding, f].mean())
        sample_rate, sample_fp = float(fires[: len(index)].mean()), float(nf_fires[:, f].mean())
        visible = bool(instruments.auroc[f] >= VISIBLE_AUROC)
        findings[name] = {
            "auroc": float(instruments.auroc[f]),
            "visible": visible,
            "n_samples": int(len(index)),
            "real_rate": real_rate,
            "sample_rate": sample_rate,
            "real_false_positive_rate": real_fp,
            "sample_false_positive_rate": sample_fp,
            "passes": bool(sample_rate >= 0.8 * real_rate and sample_fp <= 2 * real_fp),
        }
        say(f"{name}: detector fires on {sample_rate:.2f} of samples vs {real_rate:.2f} of real images")

    # sex and view: the same conditions and noise, one entry flipped (paired)
    readers = _encoder_outputs(instruments.encoder, instruments.test_images)
    effects = {}
    for what, column, reader, real_yes in (
        ("sex", 15, "p_female", [m["sex"] == "F" for m in test.metadata]),
        ("view", 16, "p_ap", [m["view"] == "AP" for m in test.metadata]),
    ):
        base = cond_all[:n_pairs].clone()
        yes, no = base.clone(), base.clone()
        yes[:, column], no[:, column] = (1.0, -1.0) if what == "sex" else (-1.0, 1.0)  # female / AP first
        p_yes = _encoder_outputs(instruments.encoder, _sample_in_chunks(guided, yes, loaded, steps, seed + 5000))[
            reader
        ]
        p_no = _encoder_outputs(instruments.encoder, _sample_in_chunks(guided, no, loaded, steps, seed + 5000))[reader]
        effect, se = _mean_and_se(p_yes - p_no)
        real_yes = np.asarray(real_yes)
        real_effect = float(readers[reader][real_yes].mean() - readers[reader][~real_yes].mean())
        effects[what] = {
            "n_pairs": int(n_pairs),
            "sample_effect": effect,
            "sample_effect_se": se,
            "real_effect": real_effect,
            "passes": bool(effect >= 0.5 * real_effect and effect > 2 * se),
        }
        say(f"{what}: effect {effect:.3f} ± {se:.3f} in samples vs {real_effect:.3f} in real images")

    visible = [n for n, r in findings.items() if r["visible"]]
    needed = min(10, len(visible))
    passes = {
        "ctr": ctr["samples_cardiomegaly_above_0.5"] >= 0.9 and ctr["samples_no_finding_above_0.5"] <= 0.1,
        "findings": sum(findings[n]["passes"] for n in visible) >= needed,
        "sex": effects["sex"]["passes"],
        "view": effects["view"]["passes"],
    }
    return {
        "kind": "findings_metadata",
        "guidance": float(guidance),
        "steps": int(steps),
        "ctr": ctr,
        "findings": findings,
        "visible_findings": visible,
        "findings_needed": needed,
        "effects": effects,
        "passes": passes,
        "instruments": _instrument_summary(instruments),
        "seconds": time.perf_counter() - started,
    }


def _instrument_summary(instruments: Instruments) -> dict[str, Any]:
    return {
        "segmenter_test_dice": instruments.segmenter_dice,
        "test_images": int(len(instruments.test_images)),
        "seeds": {"segmenter": SEGMENTER_SEED, "validation": VALIDATION_SEED, "test": TEST_SEED},
    }


def evaluate_controlnet(
    loaded, instruments: Instruments, n: int = 200, steps: int = 50, seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """The checks of a mask or edge ControlNet (``conditioning: mask`` / ``edges``).

    Controls come from ``n`` real test phantoms. Mask: the segmenter's Dice on samples against their
    control masks, beside its Dice on the real images of those masks and the chance level (the masks of
    another phantom). Edges: edge F1 (:func:`~meddiff_lab.metrics.edges.edge_f1`, 1 px tolerance) of the
    samples' edges against the control, beside the same phantoms rendered without detector noise (same
    anatomy, another image) and the chance level (another phantom's edges).
    """
    started = time.perf_counter()
    kind = loaded.config.get("conditioning")
    if kind not in ("mask", "edges"):
        raise ValueError(f"evaluate_controlnet needs a mask or edge ControlNet, got conditioning {kind!r}")
    test = instruments.test
    real = instruments.test_images[:n]

    def bound(rows):
        return BoundCondition(loaded.model, mask=rows)

    if kind == "mask":
        truth = stack_masks({s: test.masks[s][:n] for s in SEG_STRUCTURES})
        samples = _sample_in_chunks(
            bound, masks_to_condition({s: test.masks[s][:n] for s in SEG_STRUCTURES}), loaded, steps, seed
        )
        on_samples = dice_per_structure(predict_masks(instruments.segmenter, samples), truth).mean(0)
        on_real = dice_per_structure(predict_masks(instruments.segmenter, real), truth).mean(0)
        chance = dice_per_structure(torch.roll(truth, 1, 0), truth).mean(0)
        per = {
            s: {"samples": float(on_samples[i]), "real": float(on_real[i]), "chance": float(chance[i])}
            for i, s in enumerate(SEG_STRUCTURES)
        }
        gap = float(on_real.mean() - on_samples.mean())
        result = {
            "dice": per,
            "mean_dice_samples": float(on_samples.mean()),
            "mean_dice_real": float(on_real.mean()),
            "gap": gap,
            "passes": {"dice_within_0.03": gap <= 0.03},
        }
    else:
        control = edge_maps(test.images[:n])
        samples = _sample_in_chunks(bound, edges_to_condition(control), loaded, steps, seed)
        sample_f1 = edge_f1(edge_maps(((samples[:, 0] + 1) / 2).numpy()), control)["f1"]
        clean = generate_phantoms(n, test.images.shape[-1], TEST_SEED, masks=(), quantum_noise=False).images
        same_anatomy = edge_f1(edge_maps(clean), control)["f1"]
        chance = edge_f1(np.roll(control, 1, 0), control)["f1"]
        gap = float(same_anatomy.mean() - sample_f1.mean())
        result = {
            "edge_f1": {
                "samples": _mean_and_se(sample_f1),
                "same_anatomy_noiseless": _mean_and_se(same_anatomy),
                "chance_other_phantom": _mean_and_se(chance),
            },
            "gap": gap,
            "passes": {"edge_f1_within_0.1": gap <= 0.1},
        }
    if progress:
        print(f"[{time.perf_counter() - started:6.0f} s] {kind} ControlNet: gap {result['gap']:.3f}", flush=True)
    return dict(
        result,
        kind=kind,
        n=int(n),
        steps=int(steps),
        instruments=_instrument_summary(instruments),
        seconds=time.perf_counter() - started,
    )


def format_conditional_card(results: dict[str, Any]) -> str:
    """The markdown section a conditional model's card carries (every number beside its real reference)."""
    lines = []
    if results["kind"] == "findings_metadata":
        c = results["ctr"]
        lines += [
            f"Classifier-free guidance {results['guidance']:g}, DDIM-{results['steps']}; samples conditioned on "
            f"the condition vectors of real test phantoms (seed {TEST_SEED}), scored by instruments trained "
            f"on other real phantoms.",
            "",
            "| CTR > 0.5 (segmenter) | samples | real images, same instrument | truth |",
            "|---|---|---|---|",
            f"| Cardiomegaly (n = {c['n'][0]}) | {c['samples_cardiomegaly_above_0.5']:.0%} | "
            f"{c['real_cardiomegaly_above_0.5']:.0%} | {c['truth_cardiomegaly_above_0.5']:.0%} |",
            f"| No Finding (n = {c['n'][1]}) | {c['samples_no_finding_above_0.5']:.0%} | "
            f"{c['real_no_finding_above_0.5']:.0%} | 0% |",
            "",
            "| finding | detector AUROC (real) | fires on samples | on real images with it | "
            "false positives on No-Finding samples | on real No Finding | passes |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in results["findings"].items():
            mark = ("yes" if r["passes"] else "no") if r["visible"] else "not visible (excluded)"
            lines.append(
                f"| {name} | {r['auroc']:.3f} | {r['sample_rate']:.2f} (n = {r['n_samples']}) | "
                f"{r['real_rate']:.2f} | {r['sample_false_positive_rate']:.2f} | "
                f"{r['real_false_positive_rate']:.2f} | {mark} |"
            )
        visible = results["visible_findings"]
        passed = sum(results["findings"][n]["passes"] for n in visible)
        everywhere = sum(r["passes"] for r in results["findings"].values())
        lines += [
            "",
            f"{passed} of {len(visible)} visible findings pass (needed: {results['findings_needed']}); counting "
            f"the findings the detector cannot see at AUROC ≥ {VISIBLE_AUROC:g} too, {everywhere} of "
            f"{len(results['findings'])} meet the same rates (where the detector is near chance, matching its rates "
            f"says little).",
            "",
            "| effect (paired, encoder reader) | samples ± SE | real images |",
            "|---|---|---|",
        ]
        for what, e in results["effects"].items():
            lines.append(
                f"| {what} ({e['n_pairs']} pairs) | {e['sample_effect']:.3f} ± {e['sample_effect_se']:.3f} | "
                f"{e['real_effect']:.3f} |"
            )
    elif results["kind"] == "mask":
        lines += [
            f"DDIM-{results['steps']}, masks of {results['n']} real test phantoms as controls; Dice of the "
            f"segmenter (trained on other real phantoms).",
            "",
            "| structure | Dice on samples | on the real images of those masks | chance (another phantom's mask) |",
            "|---|---|---|---|",
        ]
        for s, d in results["dice"].items():
            lines.append(f"| {s} | {d['samples']:.3f} | {d['real']:.3f} | {d['chance']:.3f} |")
        lines.append(f"\nGap (real − samples, mean over structures): {results['gap']:.3f} (must be ≤ 0.03).")
    else:
        e = results["edge_f1"]
        lines += [
            f"DDIM-{results['steps']}, Canny edges of {results['n']} real test phantoms as controls; edge F1 "
            f"with 1 px tolerance against the control.",
            "",
            "| edges of | F1 ± SE |",
            "|---|---|",
            f"| samples | {e['samples'][0]:.3f} ± {e['samples'][1]:.3f} |",
            f"| the same phantoms without detector noise (same anatomy) | "
            f"{e['same_anatomy_noiseless'][0]:.3f} ± {e['same_anatomy_noiseless'][1]:.3f} |",
            f"| another phantom (chance) | {e['chance_other_phantom'][0]:.3f} ± {e['chance_other_phantom'][1]:.3f} |",
            f"\nGap (same anatomy − samples): {results['gap']:.3f} (must be ≤ 0.1).",
        ]
    verdict = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in results["passes"].items())
    lines.append(f"\nMust-show checks: {verdict}.")
    return "\n".join(lines) + "\n"
