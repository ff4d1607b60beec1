"""Evaluate a set of generated images in one call, every number beside its real-vs-real floor.

``evaluate_generated(generated, real, train)`` is what notebook 08 builds step by step, and what
``meddiff-lab metrics evaluate`` prints. The floor of each metric is the same metric between two
*disjoint* real sets of the size of the generated set: what a perfect generator would score at
that sample size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from meddiff_lab.metrics._inputs import image_batch
from meddiff_lab.metrics.features import extract_features, load_phantom_encoder
from meddiff_lab.metrics.generative import (fid, kid, memorisation_threshold, ms_ssim_diversity,
                                            nearest_training_images, precision_recall)


def evaluate_generated(generated, real, train=None, heldout=None, extractor="phantom", copy_extractor=None,
                       value_range: Sequence[float] = (-1.0, 1.0), k: int = 3, seed: int = 0,
                       ms_ssim_pairs: int = 500) -> dict[str, Any]:
    """FID, KID, precision/recall and MS-SSIM diversity of ``generated`` against ``real``, with floors;
    with ``train``, the memorisation check too.

    Args:
        generated: ``(N, 1, H, W)`` / ``(N, H, W)`` generated images in ``value_range``.
        real: at least ``2 N`` real images *not* used for training (two disjoint sets of N make the
            floor: ``real[:N]`` and ``real[N:2N]``); with fewer, N is cut to ``len(real) // 2`` (and
            said so in ``"n"``). Extra images beyond ``2 N`` help calibrate the copy threshold.
        train: the model's training images (optional), for the nearest-neighbour memorisation check.
        heldout: real images never trained on that calibrate the copy threshold (default: every real
            image after the first N; 128 or more give a steadier threshold).
        extractor: ``"phantom"``, ``"inception"``, ``"radimagenet"`` or a module (see ``extract_features``).
        copy_extractor: what the memorisation check compares: a module, or ``None`` for the domain
            encoder's copy embedding when ``extractor`` is ``"phantom"`` (else ``extractor`` itself).
        value_range: the images' (min, max); k: precision/recall neighbourhood; seed: KID subsets and
            MS-SSIM pairs; ms_ssim_pairs: image pairs averaged for MS-SSIM diversity.
    Returns:
        a dict: ``n``, ``extractor``, and for each of ``fid``, ``kid``, ``precision``, ``recall``,
        ``ms_ssim``: ``{"model": ..., "floor": ...}``; with ``train``: ``memorisation`` (threshold,
        flagged count, the flagged images' indices, their nearest training image and similarity).
    """
    generated_b, real_b = image_batch(generated, "generated"), image_batch(real, "real")
    n = min(len(generated_b), len(real_b) // 2)
    if n < k + 1:
        raise ValueError(f"need at least {2 * (k + 1)} real and {k + 1} generated images, got {len(real_b)} and "
                         f"{len(generated_b)}")
    generated_b, real_a, real_b2, real_rest = generated_b[:n], real_b[:n], real_b[n:2 * n], real_b[n:]
    extractor_name = extractor if isinstance(extractor, str) else getattr(extractor, "name", type(extractor).__name__)
    if isinstance(extractor, str):
        from meddiff_lab.metrics.features import _LOADERS

        extractor = _LOADERS[extractor]()
    feats = {name: extract_features(x, extractor, value_range=value_range)
             for name, x in (("generated", generated_b), ("real_a", real_a), ("real_b", real_b2))}
    results: dict[str, Any] = {"n": n, "extractor": extractor_name}
    results["fid"] = {"model": fid(feats["real_a"], feats["generated"]), "floor": fid(feats["real_a"], feats["real_b"])}
    results["kid"] = {"model": kid(feats["real_a"], feats["generated"], seed=seed),
                      "floor": kid(feats["real_a"], feats["real_b"], seed=seed)}
    model_pr, floor_pr = (precision_recall(feats["real_a"], feats[other], k=k) for other in ("generated", "real_b"))
    results["precision"] = {"model": model_pr[0], "floor": floor_pr[0]}
    results["recall"] = {"model": model_pr[1], "floor": floor_pr[1]}
    results["ms_ssim"] = {"model": ms_ssim_diversity(generated_b, value_range, ms_ssim_pairs, seed=seed),
                          "floor": ms_ssim_diversity(real_b2, value_range, ms_ssim_pairs, seed=seed)}
    if train is not None:
        if copy_extractor is None:
            copy_extractor = load_phantom_encoder(output="copy_embedding") if extractor_name == "phantom" else extractor
        calibration = real_rest if heldout is None else image_batch(heldout, "heldout")
        embed = {name: extract_features(x, copy_extractor, value_range=value_range)
                 for name, x in (("generated", generated_b), ("real_a", real_a), ("heldout", calibration),
                                 ("train", image_batch(train, "train")))}
        threshold = memorisation_threshold(embed["heldout"], embed["train"])
        nearest = nearest_training_images(embed["generated"], embed["train"])
        flagged = torch.nonzero(nearest.similarity > threshold).flatten()
        fresh = nearest_training_images(embed["real_a"], embed["train"])
        results["memorisation"] = {
            "threshold": threshold, "flagged": int(len(flagged)), "flagged_real": int((fresh.similarity > threshold).sum()),
            "flagged_index": flagged.tolist(), "nearest_index": nearest.index[flagged].tolist(),
            "similarity": nearest.similarity[flagged].tolist(),
            "median_similarity": {"model": float(nearest.similarity.median()), "floor": float(fresh.similarity.median())},
        }
    return results


def format_results(results: dict[str, Any]) -> str:
    """A small text table: metric, model, real-vs-real floor."""
    lines = [f"{results['n']} generated images vs {results['n']} real; features: {results['extractor']}",
             f"{'metric':<12}{'model':>12}{'floor':>12}"]
    for name in ("fid", "kid", "precision", "recall", "ms_ssim"):
        lines.append(f"{name:<12}{results[name]['model']:>12.4f}{results[name]['floor']:>12.4f}")
    if "memorisation" in results:
        m = results["memorisation"]
        lines.append(f"memorisation: {m['flagged']} of {results['n']} generated images above the copy threshold "
                     f"{m['threshold']:.4f} (real held-out images: {m['flagged_real']})")
    return "\n".join(lines)


def load_image_set(path, value_range: Sequence[float] | None = None) -> tuple[torch.Tensor, tuple[float, float]]:
    """Read a set of grey images: ``.npy``, ``.npz`` (key ``images`` or its only array), ``.pt`` (a tensor)
    or a folder of PNG files. Returns ``(images (N, 1, H, W) float32, value_range)``; PNGs are [0, 1].

    ``value_range`` defaults to (0, 1) for PNGs and for arrays whose values are all >= 0, else (-1, 1).
    """
    path = Path(path)
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.rglob("*.png"))
        if not files:
            raise FileNotFoundError(f"no PNG files in {path}")
        images = np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255.0 for f in files])
        return torch.from_numpy(images)[:, None], tuple(value_range or (0.0, 1.0))
    if not path.is_file():
        raise FileNotFoundError(f"image set {path} does not exist (expected .npy, .npz, .pt or a folder of PNGs)")
    if path.suffix == ".npy":
        array = np.load(path)
    elif path.suffix == ".npz":
        with np.load(path) as archive:
            keys = list(archive.keys())
            if "images" not in keys and len(keys) != 1:
                raise ValueError(f"{path} holds {keys}; expected an array called 'images'")
            array = archive["images" if "images" in keys else keys[0]]
    elif path.suffix == ".pt":
        array = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(array, torch.Tensor):
            raise ValueError(f"{path} holds a {type(array).__name__}, expected a tensor of images")
    else:
        raise ValueError(f"{path}: unknown image-set format {path.suffix!r}; expected .npy, .npz, .pt or a folder")
    images = image_batch(array, str(path))
    if value_range is None:
        value_range = (0.0, 1.0) if float(images.min()) >= 0 else (-1.0, 1.0)
    return images, (float(value_range[0]), float(value_range[1]))


__all__ = ["evaluate_generated", "format_results", "load_image_set"]
