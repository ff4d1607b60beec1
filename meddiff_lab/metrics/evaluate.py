"""Evaluate a set of generated images in one call, every number beside its real-vs-real floor.

``evaluate_generated(generated, real, train)`` is what notebook 08 builds step by step, and what
``meddiff-lab metrics evaluate`` prints. The floor of each metric is the same metric between two
*disjoint* real sets of the size of the generated set: what a perfect generator would score at
that sample size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meddiff_lab.metrics._inputs import image_batch
from meddiff_lab.metrics.features import _LOADERS, extract_features, load_phantom_encoder
from meddiff_lab.metrics.generative import (
    fid,
    kid,
    memorisation_threshold,
    ms_ssim_diversity,
    nearest_training_images,
    precision_recall,
)


def evaluate_generated(
    generated,
    real,
    train=None,
    heldout=None,
    extractor="phantom",
    copy_extractor=None,
    value_range: Sequence[float] = (-1.0, 1.0),
    k: int = 3,
    seed: int = 0,
    ms_ssim_pairs: int = 500,
) -> dict[str, Any]:
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
    sets = {"generated": generated_b, "real": real_b}
    if train is not None:
        train = sets["train"] = image_batch(train, "train")
    if heldout is not None:
        heldout = sets["heldout"] = image_batch(heldout, "heldout")
    _check_sets_agree(sets, value_range)
    n = min(len(generated_b), len(real_b) // 2)
    if n < k + 1:
        raise ValueError(
            f"need at least {2 * (k + 1)} real and {k + 1} generated images, got {len(real_b)} and {len(generated_b)}"
        )
    generated_b, real_a, real_b2, real_rest = generated_b[:n], real_b[:n], real_b[n : 2 * n], real_b[n:]
    extractor_name = extractor if isinstance(extractor, str) else getattr(extractor, "name", type(extractor).__name__)
    if isinstance(extractor, str):
        extractor = _LOADERS[extractor]()
    feats = {
        name: extract_features(x, extractor, value_range=value_range)
        for name, x in (("generated", generated_b), ("real_a", real_a), ("real_b", real_b2))
    }
    results: dict[str, Any] = {"n": n, "extractor": extractor_name}
    results["fid"] = {"model": fid(feats["real_a"], feats["generated"]), "floor": fid(feats["real_a"], feats["real_b"])}
    results["kid"] = {
        "model": kid(feats["real_a"], feats["generated"], seed=seed),
        "floor": kid(feats["real_a"], feats["real_b"], seed=seed),
    }
    model_pr, floor_pr = (precision_recall(feats["real_a"], feats[other], k=k) for other in ("generated", "real_b"))
    results["precision"] = {"model": model_pr[0], "floor": floor_pr[0]}
    results["recall"] = {"model": model_pr[1], "floor": floor_pr[1]}
    results["ms_ssim"] = {
        "model": ms_ssim_diversity(generated_b, value_range, ms_ssim_pairs, seed=seed),
        "floor": ms_ssim_diversity(real_b2, value_range, ms_ssim_pairs, seed=seed),
    }
    if train is not None:
        if copy_extractor is None:
            copy_extractor = load_phantom_encoder(output="copy_embedding") if extractor_name == "phantom" else extractor
        calibration = real_rest if heldout is None else heldout
        embed = {
            name: extract_features(x, copy_extractor, value_range=value_range)
            for name, x in (("generated", generated_b), ("real_a", real_a), ("heldout", calibration), ("train", train))
        }
        threshold = memorisation_threshold(embed["heldout"], embed["train"])
        nearest = nearest_training_images(embed["generated"], embed["train"])
        flagged = torch.nonzero(nearest.similarity > threshold).flatten()
        fresh = nearest_training_images(embed["real_a"], embed["train"])
        results["memorisation"] = {
            "threshold": threshold,
            "flagged": int(len(flagged)),
            "flagged_real": int((fresh.similarity > threshold).sum()),
            "flagged_index": flagged.tolist(),
            "nearest_index": nearest.index[flagged].tolist(),
            "similarity": nearest.similarity[flagged].tolist(),
            "median_similarity": {
                "model": float(nearest.similarity.median()),
                "floor": float(fresh.similarity.median()),
            },
        }
    return results


def _check_sets_agree(sets: dict[str, torch.Tensor], value_range: Sequence[float]) -> None:
    """Every set non-empty, in ``value_range`` and of one resolution and channel count (else a ValueError
    naming the sets): FID between 64 px and 32 px images, or uint8 read as [-1, 1], is meaningless."""
    low, high = float(value_range[0]), float(value_range[1])
    if not low < high:
        raise ValueError(f"value_range must be (min, max) with min < max, got {tuple(value_range)}")
    tolerance = 0.05 * (high - low)  # a sampler's slight overshoot is fine; 0-255 read as [-1, 1] is not
    for name, images in sets.items():
        if len(images) == 0:
            raise ValueError(f"{name} holds no images")
        found = (float(images.min()), float(images.max()))
        if found[0] < low - tolerance or found[1] > high + tolerance:
            raise ValueError(
                f"{name} images span [{found[0]:.4g}, {found[1]:.4g}] but value_range is ({low:g}, "
                f"{high:g}); pass the images' real range (e.g. value_range=(0, 255) for uint8) or "
                f"rescale them"
            )
    reference, shape = next(iter(sets.items()))[0], tuple(next(iter(sets.values())).shape[1:])
    for name, images in sets.items():
        if tuple(images.shape[1:]) != shape:
            raise ValueError(
                f"{name} images are {tuple(images.shape[1:])} (C, H, W) but {reference} images are "
                f"{shape}; compare sets of the same resolution and channels"
            )


def format_results(results: dict[str, Any]) -> str:
    """A small text table: metric, model, real-vs-real floor."""
    lines = [
        f"{results['n']} generated images vs {results['n']} real; features: {results['extractor']}",
        f"{'metric':<12}{'model':>12}{'floor':>12}",
    ]
    for name in ("fid", "kid", "precision", "recall", "ms_ssim"):
        lines.append(f"{name:<12}{results[name]['model']:>12.4f}{results[name]['floor']:>12.4f}")
    if "memorisation" in results:
        m = results["memorisation"]
        lines.append(
            f"memorisation: {m['flagged']} of {results['n']} generated images above the copy threshold "
            f"{m['threshold']:.4f} (real held-out images: {m['flagged_real']})"
        )
    return "\n".join(lines)


def load_image_set(path, value_range: Sequence[float] | None = None) -> tuple[torch.Tensor, tuple[float, float]]:
    """Read a set of grey images: ``.npy``, ``.npz`` (key ``images`` or its only array), ``.pt`` (a tensor)
    or a folder of PNG files. Returns ``(images (N, 1, H, W) float32, value_range)``; PNGs are [0, 1].

    ``value_range`` defaults from the data: (0, 255) for uint8 (and integer arrays within 0..255),
    (0, 65535) for uint16, (0, 1) for PNGs and float arrays within [0, 1], (-1, 1) for float arrays
    within [-1, 1]. Anything else is refused: the metrics would be meaningless.

    Raises:
        FileNotFoundError: no such file or folder, or a folder without PNGs.
        ValueError: naming the file: unreadable or truncated, empty, NaN/inf, PNGs of different sizes,
            values outside every known range (or outside the ``value_range`` given).
    """
    path = Path(path)
    if path.is_dir():
        array = _read_png_folder(path)
    elif not path.is_file():
        raise FileNotFoundError(f"image set {path} does not exist (expected .npy, .npz, .pt or a folder of PNGs)")
    elif path.stat().st_size == 0:
        raise ValueError(f"image set {path} is an empty file (0 bytes); expected an array of images")
    elif path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(
                f"image set {path} is not a readable .npy array (truncated or another format?): {_first_line(exc)}"
            ) from None
    elif path.suffix == ".npz":
        array = _read_npz(path)
    elif path.suffix == ".pt":
        try:
            array = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch.load raises many types for a file that is not a tensor file
            raise ValueError(
                f"image set {path} is not a readable tensor file holding only tensors (truncated, "
                f"another format, or pickled objects, which are refused): {_first_line(exc)}"
            ) from None
        if not isinstance(array, torch.Tensor):
            raise ValueError(f"{path} holds a {type(array).__name__}, expected a tensor of images")
    else:
        raise ValueError(f"{path}: unknown image-set format {path.suffix!r}; expected .npy, .npz, .pt or a folder")
    if (
        isinstance(array, np.ndarray)
        and array.dtype.kind not in "uif"
        or isinstance(array, torch.Tensor)
        and (array.dtype == torch.bool or array.is_complex())
    ):
        raise ValueError(f"image set {path} holds {array.dtype} values; expected numbers (uint8 or float)")
    dtype = str(array.dtype).replace("torch.", "")
    images = image_batch(array, str(path))
    if len(images) == 0 or images[0].numel() == 0:
        raise ValueError(f"image set {path} holds no images (shape {tuple(images.shape)})")
    low, high = float(images.min()), float(images.max())
    if value_range is None:
        value_range = _infer_value_range(dtype, low, high)
        if value_range is None:
            raise ValueError(
                f"image set {path} ({dtype}) has values in [{low:.4g}, {high:.4g}]; expected uint8 "
                f"0-255, or floats in [0, 1] or [-1, 1]. Rescale the images (or pass value_range)"
            )
    elif low < value_range[0] - 1e-3 or high > value_range[1] + 1e-3:
        raise ValueError(
            f"image set {path} has values in [{low:.4g}, {high:.4g}], outside value_range {tuple(value_range)}"
        )
    return images, (float(value_range[0]), float(value_range[1]))


def _infer_value_range(dtype: str, low: float, high: float) -> tuple[float, float] | None:
    if dtype == "uint16":
        return (0.0, 65535.0)
    if dtype in ("uint8", "int8", "int16", "int32", "int64"):
        return (0.0, 255.0) if low >= 0 and high <= 255 else None
    if low >= 0 and high <= 1:
        return (0.0, 1.0)
    if low >= -1 and high <= 1:
        return (-1.0, 1.0)
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _read_png_folder(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.rglob("*.png"))
    if not files:
        raise FileNotFoundError(f"no PNG files in {path}")
    images = []
    for file in files:
        try:
            with Image.open(file) as img:
                img.load()
                images.append(np.asarray(img.convert("L"), dtype=np.uint8))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ValueError(
                f"{file}: cannot be read as a PNG image (truncated or damaged?): {_first_line(exc)}"
            ) from None
        if images[-1].shape != images[0].shape:
            raise ValueError(
                f"the PNGs in {path} differ in size: {files[0].name} is {images[0].shape} px, "
                f"{file.name} is {images[-1].shape} px; expected one resolution"
            )
    return np.stack(images).astype(np.float32) / 255.0


def _read_npz(path: Path) -> np.ndarray:
    import zipfile
    import zlib

    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "images" not in keys and len(keys) != 1:
                raise ValueError(f"{path} holds {keys}; expected an array called 'images'")
            return archive["images" if "images" in keys else keys[0]]
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise ValueError(
            f"image set {path} is not a readable .npz archive (truncated or another format?): {_first_line(exc)}"
        ) from None
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"image set {path} cannot be read: {_first_line(exc)}") from None


__all__ = ["evaluate_generated", "format_results", "load_image_set"]
