"""meddiff_lab/metrics/lesion.py: lesion contrast, CNR, and vanished/appeared lesions on exact cases."""

from __future__ import annotations

import numpy as np
import pytest

from meddiff_lab.metrics.lesion import find_lesions, lesion_changes, lesion_cnr, lesion_contrast


def _scene(seed=0):
    rng = np.random.default_rng(seed)
    truth = 0.2 + 0.01 * rng.standard_normal((2, 32, 32))
    masks = np.zeros((2, 32, 32), bool)
    masks[0, 5:9, 5:9] = True
    masks[0, 20:25, 20:24] = True
    masks[1, 10:14, 14:18] = True
    truth[masks] += 0.3
    return truth, masks


def test_find_lesions_counts_components_and_rings_avoid_lesions():
    truth, masks = _scene()
    lesions = find_lesions(masks, ring=2)
    assert len(lesions) == 3
    for lesion in lesions:
        assert not (lesion.ring & masks[lesion.image]).any()
        assert lesion.inside.sum() in (16, 20)


def test_contrast_and_cnr_closed_form():
    truth = np.full((1, 16, 16), 0.2)
    masks = np.zeros((1, 16, 16), bool)
    masks[0, 6:10, 6:10] = True
    truth[masks] = 0.5
    ring_noise = np.zeros((16, 16))
    ring_noise[::2, :] = 0.05
    ring_noise[1::2, :] = -0.05  # ring std = 0.05 exactly (equal counts of +-0.05 rows in the ring)
    noisy = truth + ring_noise * ~masks[0]
    lesions = find_lesions(masks, ring=2)
    assert lesion_contrast(truth, lesions) == pytest.approx([0.3])
    cnr = lesion_cnr(noisy, lesions)[0]
    ring = noisy[0][lesions[0].ring]
    assert cnr == pytest.approx(abs(0.5 - ring.mean()) / ring.std())
    assert np.isinf(lesion_cnr(truth, lesions)[0])


def test_identical_image_changes_nothing():
    truth, masks = _scene()
    changes = lesion_changes(truth, truth, masks)
    assert (changes.lesions, changes.vanished, changes.appeared) == (3, 0, 0)


def test_erased_lesion_vanishes_and_planted_blob_appears():
    truth, masks = _scene()
    restored = truth.copy()
    restored[0, 5:9, 5:9] = 0.2  # erase the first lesion
    restored[1, 24:29, 3:8] += 0.3  # plant a lesion-sized blob far from any lesion
    changes = lesion_changes(restored, truth, masks)
    assert changes.vanished == 1
    assert changes.appeared == 1
    assert changes.appeared_mask[1, 26, 5] and not changes.appeared_mask[0].any()


def test_single_pixel_noise_does_not_count_as_a_lesion():
    truth, masks = _scene()
    restored = truth.copy()
    restored[1, 28, 28] += 0.3
    assert lesion_changes(restored, truth, masks).appeared == 0


def test_shapes_are_checked():
    truth, masks = _scene()
    with pytest.raises(ValueError, match="same shape"):
        lesion_changes(truth[:1], truth, masks)
