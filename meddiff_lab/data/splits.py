"""Patient-level splits: every image of one patient goes to the same part.

ChestX-ray14 has 112,120 images of 30,805 patients; some patients have more than a hundred
follow-up films. Splitting *images* at random puts the same patient in train and test, so a model
can score well by recognising the patient rather than the disease (leakage). Split *patients*:

    >>> train_idx, val_idx, test_idx = patient_split(patient_ids, (0.7, 0.1, 0.2), seed=0)

:func:`image_split` is the naive split, kept to measure the leakage it causes with
:func:`shared_patients` / :func:`leakage_report`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["patient_split", "image_split", "shared_patients", "leakage_report"]


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    try:
        fr = np.asarray([float(f) for f in fractions], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"fractions must be a sequence of numbers such as (0.8, 0.2), got {fractions!r}") from None
    if fr.ndim != 1 or len(fr) == 0:
        raise ValueError(f"fractions must be a non-empty sequence of numbers such as (0.8, 0.2), got {fractions!r}")
    if np.any(~np.isfinite(fr)) or np.any(fr < 0):
        raise ValueError(f"fractions must be finite and >= 0, got {tuple(fr.tolist())}")
    if abs(fr.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must add up to 1, got {tuple(fr.tolist())} (sum {fr.sum():.6g})")
    return fr


def _as_id_array(patient_ids, name: str = "patient_ids") -> np.ndarray:
    ids = np.asarray(list(patient_ids) if not isinstance(patient_ids, np.ndarray) else patient_ids)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be one ID per image (a 1-D sequence), got shape {ids.shape}")
    if len(ids) == 0:
        raise ValueError(f"{name} is empty: expected one patient ID per image")
    if ids.dtype.kind == "f" and np.isnan(ids).any():
        raise ValueError(f"{name} contains NaN: every image needs a patient ID")
    if ids.dtype.kind == "f" and not np.isfinite(ids).all():
        raise ValueError(f"{name} contains inf: every patient ID must be a finite number or a string")
    if ids.dtype.kind == "f" and not np.all(ids == np.round(ids)):
        bad = ids[ids != np.round(ids)][0].item()
        raise ValueError(f"{name} contains {bad!r}: a numeric patient ID must be a whole number")
    if ids.dtype == object and any(i is None for i in ids):
        raise ValueError(f"{name} contains None: every image needs a patient ID")
    return ids


def patient_split(patient_ids, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0) -> tuple[np.ndarray, ...]:
    """Split images into parts so that no patient appears in two parts.

    Patients (not images) are shuffled with ``seed`` and assigned to parts in turn, cutting where the
    running *image* count crosses each fraction, so each part holds about ``fraction`` of the images.
    The result depends only on the set of (image, patient) pairs and the seed, not on the order of
    distinct IDs in memory (IDs are sorted before shuffling).

    Args:
        patient_ids: one patient ID per image, length N (strings or integers).
        fractions: the share of images per part, each >= 0, adding up to 1, e.g. ``(0.7, 0.1, 0.2)``.
        seed: seed of the patient shuffle (same seed, same split).

    Returns:
        One sorted ``int64`` index array per fraction, indexing into ``patient_ids``; together they
        cover every image exactly once.

    Raises:
        ValueError: for fractions that are negative or do not add up to 1, empty IDs, or fewer patients
            than parts with a non-zero fraction.
    """
    fr = _check_fractions(fractions)
    ids = _as_id_array(patient_ids)
    unique, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    wanted_parts = int((fr > 0).sum())
    if len(unique) < wanted_parts:
        raise ValueError(
            f"cannot split {len(unique)} patient(s) into {wanted_parts} non-empty parts "
            f"(fractions {tuple(fr.tolist())}): every part needs at least one patient"
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    # Cumulative image count at the *middle* of each patient decides its part: a patient straddling a
    # cut goes to the side holding most of its images.
    cum = np.cumsum(counts[order])
    middle = (cum - counts[order] / 2.0) / cum[-1]
    edges = np.cumsum(fr)[:-1]
    part_of_ordered = np.searchsorted(edges, middle, side="right")
    part_of_ordered = _ensure_nonempty(part_of_ordered, fr)
    part_of_patient = np.empty(len(unique), dtype=np.int64)
    part_of_patient[order] = part_of_ordered
    part_of_image = part_of_patient[inverse.reshape(-1)]
    return tuple(np.flatnonzero(part_of_image == p).astype(np.int64) for p in range(len(fr)))


def _ensure_nonempty(parts: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Give each part with a non-zero fraction at least one patient (tiny cohorts), moving one from the
    largest part. ``parts`` is the part of each patient in shuffled order."""
    parts = parts.copy()
    for p in np.flatnonzero(fractions > 0):
        if not np.any(parts == p):
            sizes = np.bincount(parts, minlength=len(fractions))
            donor = int(np.argmax(sizes))
            # take the donor's patient nearest to this part in the shuffled order
            candidates = np.flatnonzero(parts == donor)
            parts[candidates[0] if p < donor else candidates[-1]] = p
    return parts


def image_split(num_images: int, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0) -> tuple[np.ndarray, ...]:
    """The naive split: shuffle *images* and cut by ``fractions``, ignoring patients (leaks; see module doc).

    Returns one sorted ``int64`` index array per fraction.
    """
    fr = _check_fractions(fractions)
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    order = np.random.default_rng(seed).permutation(int(num_images))
    cuts = np.round(np.cumsum(fr)[:-1] * num_images).astype(int)
    return tuple(np.sort(part).astype(np.int64) for part in np.split(order, cuts))


def _as_indices(indices, count: int, name: str) -> np.ndarray:
    """Image indices from an index array or a boolean mask of length ``count``; checked against ``count``."""
    array = np.asarray(indices.cpu() if hasattr(indices, "cpu") else indices)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D index array or boolean mask, got shape {array.shape}")
    if array.dtype == bool:
        if len(array) != count:
            raise ValueError(
                f"{name} is a boolean mask of length {len(array)} but there are {count} images; "
                f"give one True/False per image, or an array of indices"
            )
        return np.flatnonzero(array)
    if len(array) == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iuf" or (array.dtype.kind == "f" and not np.all(array == np.round(array))):
        raise ValueError(
            f"{name} must hold integer image indices (or be a boolean mask), got {array.dtype} "
            f"values such as {array[:3].tolist()}"
        )
    array = array.astype(np.int64)
    if array.min() < -count or array.max() >= count:
        raise ValueError(
            f"{name} holds index {int(array.max() if array.max() >= count else array.min())}, "
            f"out of range for {count} images"
        )
    return array % count


def shared_patients(patient_ids, indices_a, indices_b) -> np.ndarray:
    """The patient IDs that have images in both index sets (empty for a correct patient-level split).

    ``indices_a`` / ``indices_b``: integer indices into ``patient_ids`` or boolean masks of the same length.
    """
    ids = _as_id_array(patient_ids)
    return np.intersect1d(
        ids[_as_indices(indices_a, len(ids), "indices_a")], ids[_as_indices(indices_b, len(ids), "indices_b")]
    )


def leakage_report(patient_ids, train_indices, test_indices) -> dict[str, float]:
    """How much a split leaks patients from train into test.

    Returns a dict with ``shared_patients`` (count), ``test_patients_seen_in_train`` (fraction of test
    patients that also have a training image) and ``test_images_with_patient_in_train`` (fraction of
    test images whose patient has a training image). ``train_indices`` / ``test_indices`` are integer
    indices into ``patient_ids`` or boolean masks of the same length.
    """
    ids = _as_id_array(patient_ids)
    train_ids = ids[_as_indices(train_indices, len(ids), "train_indices")]
    test_ids = ids[_as_indices(test_indices, len(ids), "test_indices")]
    shared = np.intersect1d(train_ids, test_ids)
    test_unique = np.unique(test_ids)
    return {
        "shared_patients": int(len(shared)),
        "test_patients_seen_in_train": float(len(shared) / max(len(test_unique), 1)),
        "test_images_with_patient_in_train": float(np.isin(test_ids, shared).mean()) if len(test_ids) else 0.0,
    }
