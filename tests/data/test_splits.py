"""Tests for meddiff_lab/data/splits.py: no patient in two parts, fractions respected, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from meddiff_lab.data.splits import image_split, leakage_report, patient_split, shared_patients


def chestxray14_like_ids(num_patients: int, seed: int = 0) -> np.ndarray:
    """Patient IDs with ChestX-ray14's skew: most patients have 1-3 images, a few have dozens."""
    rng = np.random.default_rng(seed)
    counts = np.minimum(rng.geometric(0.35, size=num_patients), 60)
    return np.repeat(np.arange(1, num_patients + 1), counts)


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.7, 0.1, 0.2), (0.5, 0.5), (0.6, 0.0, 0.4)])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_no_patient_in_two_parts_and_every_image_once(fractions, seed):
    ids = chestxray14_like_ids(400, seed)
    parts = patient_split(ids, fractions, seed=seed)
    assert len(parts) == len(fractions)
    all_idx = np.concatenate(parts)
    assert np.array_equal(np.sort(all_idx), np.arange(len(ids))), "every image exactly once"
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            assert len(shared_patients(ids, parts[i], parts[j])) == 0
    for part, f in zip(parts, fractions):
        assert abs(len(part) / len(ids) - f) < 0.05, (len(part) / len(ids), f)


def test_string_ids_and_order_independence():
    ids = np.array([f"{p:08d}" for p in chestxray14_like_ids(200, 3)])
    parts = patient_split(ids, (0.8, 0.2), seed=5)
    perm = np.random.default_rng(0).permutation(len(ids))
    parts_perm = patient_split(ids[perm], (0.8, 0.2), seed=5)
    # the same patients end up in test whatever the image order
    assert set(ids[parts[1]]) == set(ids[perm][parts_perm[1]])


def test_same_seed_same_split_other_seed_other_split():
    ids = chestxray14_like_ids(300)
    a, b, c = (patient_split(ids, (0.8, 0.2), seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_tiny_cohort_still_gives_every_part_a_patient():
    ids = ["p1", "p1", "p1", "p1", "p2", "p3"]
    parts = patient_split(ids, (0.7, 0.1, 0.2), seed=0)
    assert all(len(p) > 0 for p in parts)
    assert sum(len(p) for p in parts) == len(ids)


@pytest.mark.parametrize("bad", [(0.5, 0.4), (1.2, -0.2), (), ("a", "b")])
def test_bad_fractions_say_what_was_expected(bad):
    with pytest.raises(ValueError, match="fractions"):
        patient_split([1, 2, 3], bad)


def test_too_few_patients_and_empty_ids_raise():
    with pytest.raises(ValueError, match="1 patient"):
        patient_split([7, 7, 7], (0.5, 0.5))
    with pytest.raises(ValueError, match="empty"):
        patient_split([], (0.5, 0.5))


def test_image_split_leaks_and_patient_split_does_not():
    ids = chestxray14_like_ids(500)
    train, test = image_split(len(ids), (0.8, 0.2), seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(ids)))
    leaky = leakage_report(ids, train, test)
    assert leaky["shared_patients"] > 20
    assert 0.2 < leaky["test_images_with_patient_in_train"] <= 1.0
    train, test = patient_split(ids, (0.8, 0.2), seed=0)
    clean = leakage_report(ids, train, test)
    assert clean == {"shared_patients": 0, "test_patients_seen_in_train": 0.0, "test_images_with_patient_in_train": 0.0}


def test_leakage_report_takes_boolean_masks_like_indices():
    ids = chestxray14_like_ids(40)
    train, test = patient_split(ids, (0.8, 0.2), seed=0)
    in_train = np.zeros(len(ids), dtype=bool)
    in_train[train] = True
    clean = leakage_report(ids, in_train, ~in_train)  # once read as indices 0 and 1: "100 % leakage"
    assert clean == leakage_report(ids, train, test) and clean["shared_patients"] == 0
    leaky_train, leaky_test = image_split(len(ids), (0.8, 0.2), seed=0)
    mask = np.zeros(len(ids), dtype=bool)
    mask[leaky_train] = True
    assert leakage_report(ids, mask, ~mask) == leakage_report(ids, leaky_train, leaky_test)
    assert list(shared_patients(ids, mask, ~mask)) == list(shared_patients(ids, leaky_train, leaky_test))


@pytest.mark.parametrize(
    "train, message",
    [
        (np.ones(5, dtype=bool), "train_indices is a boolean mask of length 5 but there are 10 images"),
        (np.array([0.5, 1.0]), "train_indices must hold integer image indices"),
        (np.array([0, 10]), "train_indices holds index 10, out of range for 10 images"),
        (np.array(["a"]), "train_indices must hold integer image indices"),
    ],
)
def test_leakage_report_refuses_indices_that_do_not_fit(train, message):
    with pytest.raises(ValueError, match=message):
        leakage_report(np.arange(10), train, np.array([1, 2]))


@pytest.mark.parametrize(
    "ids, message",
    [
        ([1.0, 1.7, 2.0], "contains 1.7: a numeric patient ID must be a whole number"),
        ([1.0, float("inf")], "contains inf"),
    ],
)
def test_patient_ids_that_are_not_whole_numbers_are_refused(ids, message):
    with pytest.raises(ValueError, match=message):
        patient_split(ids, (0.5, 0.5))
