r"""Which training recipe learns the most per image: ε vs v, min-SNR, noise schedule, learning rate, batch.

Every arm trains the zoo's unconditional network (``configs/pretrained_phantom64.yaml``: its U-Net,
data and optimiser) on the **same number of training images** and changes one thing of the zoo's
recipe (v-prediction, linear schedule, no min-SNR weighting, learning rate 1.5e-3):

============================  ==========================================================================
arm                           change from the zoo recipe
============================  ==========================================================================
v (zoo recipe)                none
v (zoo recipe), seed 1        another initialisation and noise draw: the seed-to-seed spread
ε                             ε-prediction
ε + min-SNR-5                 ε-prediction with min-SNR-5 loss weights (phantom64 version 1's recipe)
v + min-SNR-5                 min-SNR-5 loss weights
v, cosine schedule            the cosine noise schedule of Nichol & Dhariwal
v, learning rate × 2 / ÷ 2    the peak learning rate doubled / halved
v, batch × 2                  twice the batch, half the optimiser steps (the same images)
============================  ==========================================================================

Quality is measured like the model cards (:func:`~meddiff_lab.metrics.model_evaluation.evaluate_model`):
``N`` DDIM samples of each arm's EMA weights against ``N`` unseen phantoms on the course's domain
features (FID, KID with its spread over half-size subsets, precision, recall), beside the floor (two
real sets of ``N``). The seed-1 arm says how far two runs of the *same* recipe land apart: a recipe
only counts as better when it beats the zoo recipe by more than that.

A run is resumable at two levels: each arm's training checkpoint (``arms/<slug>/last.pt``, written
atomically every ``checkpoint_every`` steps) and each finished arm's ``result.json``; rerunning the
same command skips finished arms and resumes a started one. ``arms=`` runs a subset, so two
processes can share the grid (one CPU core each).

Example:
    >>> results = run_recipe_comparison(get_recipe_profile("ci"), out="runs/recipes-ci")
    >>> write_recipe_results(results, "runs/recipes-ci")      # results.json, results.md
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from meddiff_lab.checkpoint import atomic_write
from meddiff_lab.experiments._results import claim_folder, write_results
from meddiff_lab.metrics.model_evaluation import evaluate_model, unseen_phantoms
from meddiff_lab.models.pretrained import load_model
from meddiff_lab.runtime import hardware_description
from meddiff_lab.training.trainer import TrainConfig, train_from_config

__all__ = [
    "RecipeProfile",
    "RECIPE_PROFILES",
    "RECIPES",
    "REFERENCE_ARM",
    "SEED_ARM",
    "get_recipe_profile",
    "recipe_config",
    "run_recipe_comparison",
    "recipe_markdown",
    "write_recipe_results",
]

REFERENCE_ARM = "v (zoo recipe)"
SEED_ARM = "v (zoo recipe), seed 1"

#: arm -> changes to the zoo recipe. ``learning_rate_factor`` and ``batch_factor`` scale the profile's
#: values (``batch_factor`` keeps the images seen: the steps shrink by the same factor).
RECIPES: dict[str, dict[str, Any]] = {
    REFERENCE_ARM: {},
    SEED_ARM: {"seed": 1},
    "ε": {"prediction_type": "epsilon"},
    "ε + min-SNR-5": {"prediction_type": "epsilon", "min_snr_gamma": 5.0},
    "v + min-SNR-5": {"min_snr_gamma": 5.0},
    "v, cosine schedule": {"schedule": "cosine"},
    "v, learning rate × 2": {"learning_rate_factor": 2.0},
    "v, learning rate ÷ 2": {"learning_rate_factor": 0.5},
    "v, batch × 2": {"batch_factor": 2},
}


@dataclass(frozen=True)
class RecipeProfile:
    """The sizes of one comparison.

    Attributes:
        image_size: training and sampling resolution (the zoo's network at a smaller size trains 4x
            faster per image at 32 px than at 64 px).
        train_images: phantoms of seed 0 the arms draw their batches from.
        images_per_arm: the fixed budget: every arm sees this many training images.
        batch_size / learning_rate / warmup_steps / ema_decay: the zoo recipe at this budget.
        eval_images: samples per arm and the size of each real set (N).
        sample_steps: DDIM steps of the evaluation.
        checkpoint_every: optimiser steps between resumable checkpoints.
        model: the U-Net's keyword arguments replacing the base config's (``None``: the zoo's network).
    """

    name: str
    image_size: int
    train_images: int
    images_per_arm: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    ema_decay: float
    eval_images: int
    sample_steps: int
    checkpoint_every: int
    base_config: str = "configs/pretrained_phantom64.yaml"
    model: dict | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        for name in ("image_size", "train_images", "images_per_arm", "batch_size", "eval_images", "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"recipe profile {self.name!r}: {name} must be >= 1, got {getattr(self, name)}")
        if self.images_per_arm % (2 * self.batch_size):
            raise ValueError(
                f"recipe profile {self.name!r}: images_per_arm ({self.images_per_arm}) must be a "
                f"multiple of twice the batch ({2 * self.batch_size}), so 'batch x 2' sees the same images"
            )

    @property
    def steps(self) -> int:
        """Optimiser steps at the profile's batch size."""
        return self.images_per_arm // self.batch_size


RECIPE_PROFILES: dict[str, RecipeProfile] = {
    # seconds on one CPU thread: the tests
    "ci": RecipeProfile(
        name="ci",
        image_size=16,
        train_images=64,
        images_per_arm=64,
        batch_size=8,
        learning_rate=2e-3,
        warmup_steps=2,
        ema_decay=0.9,
        eval_images=8,
        sample_steps=3,
        checkpoint_every=4,
        model={
            "channels": [16, 32],
            "attention_levels": [False, True],
            "num_res_blocks": 1,
            "num_head_channels": 16,
            "norm_num_groups": 8,
        },
    ),
    # the committed comparison: about 5 minutes of training per arm on one CPU core with bf16
    "cpu": RecipeProfile(
        name="cpu",
        image_size=32,
        train_images=16000,
        images_per_arm=38400,
        batch_size=32,
        learning_rate=1.5e-3,
        warmup_steps=100,
        ema_decay=0.995,
        eval_images=500,
        sample_steps=50,
        checkpoint_every=200,
    ),
    # the same comparison at the zoo's size and batch, for a GPU
    "gpu": RecipeProfile(
        name="gpu",
        image_size=64,
        train_images=16000,
        images_per_arm=256000,
        batch_size=256,
        learning_rate=1.5e-3,
        warmup_steps=100,
        ema_decay=0.999,
        eval_images=1000,
        sample_steps=50,
        checkpoint_every=250,
    ),
}


def get_recipe_profile(name: str) -> RecipeProfile:
    """The named profile; ``ValueError`` naming the known ones otherwise."""
    if name not in RECIPE_PROFILES:
        raise ValueError(f"unknown recipe profile {name!r}; expected one of {', '.join(RECIPE_PROFILES)}")
    return RECIPE_PROFILES[name]


def arm_slug(arm: str) -> str:
    """A folder name for an arm: ``"v, learning rate × 2"`` -> ``"v-learning-rate-x-2"``."""
    text = arm.replace("×", "x").replace("÷", "div").replace("ε", "eps")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def recipe_config(profile: RecipeProfile, arm: str, threads: int | None = 1) -> TrainConfig:
    """The training config of one arm: the base config at the profile's sizes, with the arm's change."""
    if arm not in RECIPES:
        raise ValueError(f"unknown recipe arm {arm!r}; expected one of {', '.join(RECIPES)}")
    change = dict(RECIPES[arm])
    batch = profile.batch_size * int(change.pop("batch_factor", 1))
    learning_rate = profile.learning_rate * float(change.pop("learning_rate_factor", 1.0))
    config = TrainConfig.from_yaml(profile.base_config).replace(
        image_size=profile.image_size,
        num_images=profile.train_images,
        batch_size=batch,
        max_steps=profile.images_per_arm // batch,
        learning_rate=learning_rate,
        warmup_steps=profile.warmup_steps,
        ema_decay=profile.ema_decay,
        checkpoint_every=profile.checkpoint_every,
        sample_every=0,
        log_every=20,
        threads=threads,
        **({"model": dict(profile.model)} if profile.model else {}),
        **change,
    )
    config.validate()
    return config


def _train_arm(profile: RecipeProfile, arm: str, folder: Path, threads: int | None) -> dict[str, Any]:
    """Train (or resume) one arm in ``folder``; its time and speed as ``log.csv`` recorded them."""
    config = recipe_config(profile, arm, threads)
    trainer = train_from_config(config, folder, resume=(folder / "last.pt").is_file(), progress=False)
    with open(folder / "log.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    speeds = sorted(float(row["images_per_sec"]) for row in rows)
    precision_file = folder / "precision.json"
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "model"},
        "images_seen": config.max_steps * config.batch_size,
        "steps": int(trainer.step),
        "seconds": float(trainer.seconds),
        "median_images_per_sec": speeds[len(speeds) // 2] if speeds else None,
        "final_loss": sum(float(r["loss"]) for r in rows[-5:]) / max(1, len(rows[-5:])),
        "precision": json.loads(precision_file.read_text(encoding="utf-8")) if precision_file.is_file() else None,
    }


def run_arm(
    profile: RecipeProfile,
    arm: str,
    out,
    real: torch.Tensor,
    threads: int | None = 1,
    device=None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train (or resume) one arm, evaluate it and write ``out/arms/<slug>/result.json``; returns it.

    An arm whose ``result.json`` exists is read back, not rerun.
    """
    folder = Path(out) / "arms" / arm_slug(arm)
    result_path = folder / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    training = _train_arm(profile, arm, folder, threads)
    loaded = load_model(folder / "last.pt", device=device)
    evaluation = evaluate_model(
        loaded, profile.eval_images, steps=(profile.sample_steps,), real=real, readers=False, progress=progress
    )
    row = evaluation["by_steps"][profile.sample_steps]
    result = {
        "arm": arm,
        "change": RECIPES[arm],
        "training": training,
        "hardware": hardware_description(threads),
        "fid": row["fid"],
        "kid": row["kid"],
        "kid_spread": row["kid_spread"],
        "precision": row["precision"],
        "recall": row["recall"],
        "ms_ssim": row["ms_ssim"],
        "sampling_seconds": row["sampling_seconds"],
        "noisy_real_fid": evaluation["noisy_real"]["fid"]["model"],
    }
    text = json.dumps(result, indent=2, default=float) + "\n"
    atomic_write(result_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return result


def run_recipe_comparison(
    profile: RecipeProfile,
    out,
    arms: Sequence[str] | None = None,
    threads: int | None = 1,
    device=None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run ``arms`` (default: every arm of :data:`RECIPES`) and gather every finished arm under ``out``.

    Returns ``{"profile", "arms": {arm: result}, "missing": [...], "hardware"}``; arms finished by another
    process sharing ``out`` are included, unfinished ones listed in ``missing``.
    """
    out = Path(out)
    claim_folder(out, profile)
    chosen = list(RECIPES) if arms is None else list(arms)
    for arm in chosen:
        if arm not in RECIPES:
            raise ValueError(f"unknown recipe arm {arm!r}; expected one of {', '.join(RECIPES)}")
    real = unseen_phantoms(2 * profile.eval_images + 64, profile.image_size)
    for arm in chosen:
        run_arm(profile, arm, out, real, threads=threads, device=device, progress=progress)
    return gather_recipe_results(profile, out)


def gather_recipe_results(profile: RecipeProfile, out) -> dict[str, Any]:
    """Every finished arm's ``result.json`` under ``out``, in :data:`RECIPES` order."""
    found, missing = {}, []
    for arm in RECIPES:
        path = Path(out) / "arms" / arm_slug(arm) / "result.json"
        if path.is_file():
            found[arm] = json.loads(path.read_text(encoding="utf-8"))
            more = _more_steps(path.parent)
            if more:
                found[arm]["more_steps"] = more
        else:
            missing.append(arm)
    return {"profile": asdict(profile), "arms": found, "missing": missing}


def _more_steps(folder: Path) -> dict[str, dict[str, Any]]:
    """Evaluations of an arm at other step counts: ``folder/ddim<S>.json`` as written by
    ``meddiff-lab metrics evaluate --model folder/last.pt --n N --steps S --out folder/ddim<S>.json``
    (the same unseen real set and sampling seed as the arm's own evaluation)."""
    more = {}
    for path in sorted(folder.glob("ddim*.json"), key=lambda p: int(p.stem[4:]) if p.stem[4:].isdigit() else 0):
        evaluation = json.loads(path.read_text(encoding="utf-8"))
        for steps, row in evaluation["by_steps"].items():
            more[str(steps)] = {
                "fid": row["fid"],
                "kid_spread": row["kid_spread"],
                "precision": row["precision"],
                "recall": row["recall"],
                "n": evaluation["n"],
                "readers_sentence": evaluation.get("readers_sentence"),
            }
    return more


def seed_spread(results: dict[str, Any], metric: str = "fid") -> float | None:
    """How far the two seeds of the zoo recipe land apart on ``metric`` (``None`` until both ran)."""
    arms = results["arms"]
    if REFERENCE_ARM not in arms or SEED_ARM not in arms:
        return None
    return abs(arms[REFERENCE_ARM][metric]["model"] - arms[SEED_ARM][metric]["model"])


def recipe_verdicts(results: dict[str, Any]) -> dict[str, str]:
    """For each arm, how its FID compares with the zoo recipe's, judged against the seed-to-seed spread.

    ``"better"`` / ``"worse"``: the FID differs from the zoo recipe's by more than twice the spread of
    two seeds of the zoo recipe; ``"within seed spread"`` otherwise; ``"no yardstick"`` until both seeds ran.
    """
    arms, spread = results["arms"], seed_spread(results)
    if REFERENCE_ARM not in arms:
        return {}
    reference = arms[REFERENCE_ARM]["fid"]["model"]
    verdicts = {}
    for arm, result in arms.items():
        if arm in (REFERENCE_ARM, SEED_ARM):
            continue
        difference = result["fid"]["model"] - reference
        if spread is None:
            verdicts[arm] = "no yardstick"
        elif abs(difference) <= 2 * spread:
            verdicts[arm] = "within seed spread"
        else:
            verdicts[arm] = "better" if difference < 0 else "worse"
    return verdicts


def recipe_markdown(results: dict[str, Any]) -> str:
    """The results table (markdown): one row per arm, the floor, and the verdicts."""
    p = results["profile"]
    arms = results["arms"]
    verdicts = recipe_verdicts(results)
    spread = seed_spread(results)
    lines = [
        f"Recipe comparison, profile `{p['name']}`: every arm sees {p['images_per_arm']:,} training images "
        f"({p['image_size']} px, batch {p['batch_size']} unless the arm changes it); N = {p['eval_images']} "
        f"samples (DDIM-{p['sample_steps']}, EMA weights) against N unseen phantoms, domain features.",
        "",
        "| arm | FID | KID (± std over half-size subsets) | precision | recall | train img/s | verdict vs zoo recipe |",
        "|---|---|---|---|---|---|---|",
    ]
    first = None
    for arm, r in arms.items():
        first = first or r
        speed = r["training"]["median_images_per_sec"] or float("nan")
        verdict = verdicts.get(arm, "reference" if arm == REFERENCE_ARM else "the seed spread")
        lines.append(
            f"| {arm} | {r['fid']['model']:.2f} | {r['kid_spread']['value']:.4f} ± "
            f"{r['kid_spread']['std_over_subsets']:.4f} | {r['precision']['model']:.3f} | "
            f"{r['recall']['model']:.3f} | {speed:.0f} | {verdict} |"
        )
    if first is not None:
        lines.append(
            f"| floor (real vs real) | {first['fid']['floor']:.2f} | {first['kid']['floor']:.4f} | "
            f"{first['precision']['floor']:.3f} | {first['recall']['floor']:.3f} | | |"
        )
        lines.append(f"| noisy real (σ = 0.05) | {first['noisy_real_fid']:.2f} | | | | | |")
    lines.append("")
    lines.append(
        "Seed-to-seed spread of the zoo recipe (|FID seed 0 − FID seed 1|): "
        + (
            f"{spread:.2f}; an arm is called better or worse only beyond twice that."
            if spread is not None
            else "not measured yet."
        )
    )
    more = [(arm, steps, row) for arm, r in arms.items() for steps, row in r.get("more_steps", {}).items()]
    if more:
        lines += [
            "",
            "More sampling steps (the same arms' EMA weights, the same real set and seed):",
            "",
            f"| arm | DDIM steps | FID | KID (± std) | precision | recall | FID at {p['sample_steps']} steps |",
            "|---|---|---|---|---|---|---|",
        ]
        for arm, steps, row in more:
            lines.append(
                f"| {arm} | {steps} | {row['fid']['model']:.2f} | {row['kid_spread']['value']:.4f} ± "
                f"{row['kid_spread']['std_over_subsets']:.4f} | {row['precision']['model']:.3f} | "
                f"{row['recall']['model']:.3f} | {arms[arm]['fid']['model']:.2f} |"
            )
        lines.append("")
    if results.get("missing"):
        lines.append(f"Not run yet: {', '.join(results['missing'])}.")
    if first is not None:
        lines.append(
            f"Hardware: {first['hardware']}. Train img/s is the median over `log.csv`'s windows (on "
            f"a shared machine it varies with the load; the images seen do not)."
        )
    return "\n".join(lines) + "\n"


def write_recipe_results(results: dict[str, Any], out) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into ``out``."""
    return write_results(results, out, recipe_markdown(results))
