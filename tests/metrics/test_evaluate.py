"""Tests for meddiff_lab/metrics/evaluate.py and the `meddiff-lab metrics evaluate` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from meddiff_lab.metrics import evaluate as EV


def _smooth(n: int, seed: int, size: int = 32) -> torch.Tensor:
    coarse = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) * 2 - 1


def _pixels(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(x, 8).flatten(1)  # a 16-d "feature extractor"


def test_evaluate_generated_puts_every_number_beside_its_floor():
    real, train = _smooth(40, 0), _smooth(30, 1)
    generated = torch.cat([train[:5], _smooth(15, 2)])  # 5 exact copies of training images
    results = EV.evaluate_generated(generated, real, train, extractor=_pixels)
    assert results["n"] == 20
    for name in ("fid", "kid", "precision", "recall", "ms_ssim"):
        assert set(results[name]) == {"model", "floor"} and np.isfinite(results[name]["model"])
    memo = results["memorisation"]
    assert memo["flagged"] >= 5 and set(range(5)) <= set(memo["flagged_index"])
    assert memo["nearest_index"][:5] == [0, 1, 2, 3, 4]
    assert "floor" in EV.format_results(results)


@pytest.mark.filterwarnings("ignore:FID on")  # 8 images, 16 features: the warning is the point of small sets
def test_evaluate_generated_cuts_n_to_half_the_real_set():
    results = EV.evaluate_generated(_smooth(20, 3), _smooth(16, 4), extractor=_pixels)
    assert results["n"] == 8 and "memorisation" not in results


def test_load_image_set_reads_npy_npz_pt_and_png_folders(tmp_path):
    from PIL import Image

    images = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", images)
    np.savez(tmp_path / "b.npz", images=images * 2 - 1)
    torch.save(torch.from_numpy(images), tmp_path / "c.pt")
    (tmp_path / "pngs").mkdir()
    for i, im in enumerate(images):
        Image.fromarray((im * 255).round().astype(np.uint8)).save(tmp_path / "pngs" / f"{i}.png")
    for name, expected_range in (("a.npy", (0.0, 1.0)), ("b.npz", (-1.0, 1.0)), ("c.pt", (0.0, 1.0)),
                                 ("pngs", (0.0, 1.0))):
        loaded, value_range = EV.load_image_set(tmp_path / name)
        assert loaded.shape == (3, 1, 8, 8) and value_range == expected_range
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EV.load_image_set(tmp_path / "missing.npy")


def test_cli_evaluate_on_files_writes_json(tmp_path, capsys):
    from meddiff_lab.cli import main

    np.save(tmp_path / "gen.npy", ((_smooth(6, 5) + 1) / 2).numpy())
    np.save(tmp_path / "real.npy", ((_smooth(12, 6) + 1) / 2).numpy())
    encoder_dir = tmp_path / "enc"
    from meddiff_lab.metrics.features import PhantomEncoder, save_phantom_encoder

    save_phantom_encoder(PhantomEncoder(channels=(8, 16), feature_dim=4), encoder_dir)
    import os

    os.environ["MEDDIFF_WEIGHTS_DIR"] = str(encoder_dir)
    try:
        code = main(["metrics", "evaluate", "--generated", str(tmp_path / "gen.npy"), "--real",
                     str(tmp_path / "real.npy"), "--out", str(tmp_path / "r.json")])
    finally:
        del os.environ["MEDDIFF_WEIGHTS_DIR"]
    assert code == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["n"] == 6 and "floor" in results["fid"]
    assert "floor" in capsys.readouterr().out
