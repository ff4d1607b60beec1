"""Tests for meddiff_lab/metrics/model_evaluation.py: a zoo model's card numbers, each beside its floor."""

from __future__ import annotations

import pytest
import torch

from meddiff_lab.metrics import evaluate_model, format_model_card, unseen_phantoms


class _RealImagesAsModel:
    """A 'model' whose samples are real phantoms of yet other patients: it should score near the floor."""

    config = {"image_size": 32}

    def sample(self, n, steps=50, seed=0, progress=False):
        return unseen_phantoms(n, 32, seed=5 + seed + steps)


class _BlankModel:
    config = {"image_size": 32}

    def sample(self, n, steps=50, seed=0, progress=False):
        return (torch.full((n, 1, 32, 32), -1.0) + 0.01 * torch.randn(n, 1, 32, 32)).clamp(-1, 1)


def test_real_images_score_like_the_floor_and_blank_images_do_not():
    good = evaluate_model(_RealImagesAsModel(), n=40, steps=(2, 3), readers=False, progress=False)
    bad = evaluate_model(_BlankModel(), n=40, steps=(2,), readers=False, progress=False)
    assert set(good["by_steps"]) == {2, 3}
    fid_good = good["by_steps"][2]["fid"]["model"]
    assert fid_good < 3 * good["by_steps"][2]["fid"]["floor"] + 1.0
    assert bad["by_steps"][2]["fid"]["model"] > 10 * fid_good
    assert good["by_steps"][2]["kid_spread"]["std_over_subsets"] >= 0
    # the perturbed reference is worse than the floor (noise moves the features) but far from blank images
    noisy = good["noisy_real"]["fid"]["model"]
    assert good["by_steps"][2]["fid"]["floor"] < noisy < bad["by_steps"][2]["fid"]["model"]
    card = format_model_card(good)
    assert "floor (real vs real)" in card and "DDIM-3" in card and "noisy real" in card


def test_readers_tell_blank_images_apart():
    results = evaluate_model(_BlankModel(), n=40, steps=(2,), progress=False, classifier_steps=40)
    assert max(r["accuracy"] for r in results["readers"].values()) > 0.9
    assert "distinguishable" in results["readers_sentence"]
    assert "| reader |" in format_model_card(results)


def test_unseen_phantoms_refuse_the_training_seed():
    with pytest.raises(ValueError, match="seed 0"):
        unseen_phantoms(4, 32, seed=0)
