"""Tests for meddiff_lab/metrics/model_evaluation.py: a zoo model's card numbers, each beside its floor."""

from __future__ import annotations

import pytest
import torch
from tiny_runs import tiny_run_config

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
    assert good["by_steps"][2]["kid_spread"]["std_over_subsets"] > 0, "half-size subsets differ"
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


def test_the_evaluate_command_samples_a_model_and_writes_its_card(tmp_path, capsys):
    """`meddiff-lab metrics evaluate --model FILE --n N --steps A B --card F`: the zoo cards' command."""
    from meddiff_lab import cli
    from meddiff_lab.models.pretrained import export_checkpoint
    from meddiff_lab.training.trainer import train_from_config

    tiny = tiny_run_config()
    train_from_config(tiny, tmp_path / "run", progress=False)
    model = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "tiny.safetensors")
    code = cli.main(
        [
            "metrics",
            "evaluate",
            "--model",
            str(model),
            "--n",
            "12",
            "--steps",
            "2",
            "3",
            "--card",
            str(tmp_path / "card.md"),
            "--out",
            str(tmp_path / "eval.json"),
        ]
    )
    assert code == 0
    card = (tmp_path / "card.md").read_text()
    assert "DDIM-2" in card and "DDIM-3" in card and "floor (real vs real)" in card and "| reader |" in card
    assert "metrics evaluate --model" in card and "--steps 2 3" in card
    assert (
        cli.main(["metrics", "evaluate", "--generated", str(tmp_path / "eval.json"), "--card", str(tmp_path / "c.md")])
        == 2
    )
    assert "--card needs --model" in capsys.readouterr().err
