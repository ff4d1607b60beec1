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
    for name, expected_range in (
        ("a.npy", (0.0, 1.0)),
        ("b.npz", (-1.0, 1.0)),
        ("c.pt", (0.0, 1.0)),
        ("pngs", (0.0, 1.0)),
    ):
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
        code = main(
            [
                "metrics",
                "evaluate",
                "--generated",
                str(tmp_path / "gen.npy"),
                "--real",
                str(tmp_path / "real.npy"),
                "--out",
                str(tmp_path / "r.json"),
            ]
        )
    finally:
        del os.environ["MEDDIFF_WEIGHTS_DIR"]
    assert code == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["n"] == 6 and "floor" in results["fid"]
    assert "floor" in capsys.readouterr().out


# ------------------------------------------------------------------------ bad sets are refused
def test_uint8_sets_are_read_as_0_to_255(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", images)
    loaded, value_range = EV.load_image_set(tmp_path / "u8.npy")  # once read as if in [0, 1]
    assert value_range == (0.0, 255.0) and float(loaded.max()) == images.max()
    np.save(tmp_path / "u16.npy", images.astype(np.uint16) * 257)
    assert EV.load_image_set(tmp_path / "u16.npy")[1] == (0.0, 65535.0)


def _write_bad(tmp_path, kind):
    path = (
        tmp_path
        / {
            "float255": "a.npy",
            "empty-array": "a.npy",
            "zero-bytes": "a.npy",
            "truncated-npy": "a.npy",
            "truncated-npz": "a.npz",
            "nan": "a.npy",
            "bool": "a.npy",
            "pickled-npy": "a.npy",
            "pt-not-tensor": "a.pt",
        }[kind]
    )
    good = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    if kind == "float255":
        np.save(path, good * 255)
    elif kind == "empty-array":
        np.save(path, np.zeros((0, 8, 8), np.float32))
    elif kind == "zero-bytes":
        path.write_bytes(b"")
    elif kind == "truncated-npy":
        np.save(path, good)
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "truncated-npz":
        np.savez_compressed(path, images=good)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "nan":
        good[2, 3, 3] = np.nan
        np.save(path, good)
    elif kind == "bool":
        np.save(path, good > 0.5)
    elif kind == "pickled-npy":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif kind == "pt-not-tensor":
        torch.save({"images": torch.zeros(2, 8, 8)}, path)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("float255", r"has values in \[.*\]; expected uint8 0-255, or floats in \[0, 1\] or \[-1, 1\]"),
        ("empty-array", "holds no images"),
        ("zero-bytes", r"is an empty file \(0 bytes\)"),
        ("truncated-npy", "is not a readable .npy array"),
        ("truncated-npz", "is not a readable .npz archive"),
        ("nan", "contains NaN or inf"),
        ("bool", "holds bool values; expected numbers"),
        ("pickled-npy", "is not a readable .npy array"),
        ("pt-not-tensor", "holds a dict, expected a tensor"),
    ],
)
def test_unreadable_or_out_of_range_sets_name_the_file(tmp_path, kind, message):
    path = _write_bad(tmp_path, kind)
    with pytest.raises(ValueError, match=message) as caught:
        EV.load_image_set(path)
    assert str(path) in str(caught.value)


def test_png_folders_with_a_truncated_file_or_mixed_sizes_are_refused(tmp_path):
    from PIL import Image

    (tmp_path / "pngs").mkdir()
    for i, size in enumerate((8, 8, 16)):
        Image.fromarray(np.zeros((size, size), np.uint8)).save(tmp_path / "pngs" / f"{i}.png")
    with pytest.raises(ValueError, match=r"the PNGs in .* differ in size: 0.png is \(8, 8\) px, 2.png is \(16, 16\)"):
        EV.load_image_set(tmp_path / "pngs")
    (tmp_path / "pngs" / "2.png").unlink()
    broken = tmp_path / "pngs" / "1.png"
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(ValueError, match="1.png: cannot be read as a PNG image"):
        EV.load_image_set(tmp_path / "pngs")


def test_an_explicit_value_range_must_hold_the_values(tmp_path):
    np.save(tmp_path / "a.npy", np.full((2, 4, 4), 3.0, np.float32))
    with pytest.raises(ValueError, match=r"outside value_range \(0, 1\)"):
        EV.load_image_set(tmp_path / "a.npy", value_range=(0, 1))


def test_evaluate_generated_refuses_sets_that_cannot_be_compared():
    real = _smooth(20, 0)
    with pytest.raises(
        ValueError,
        match=r"real images are \(1, 16, 16\) \(C, H, W\) but generated images are "
        r"\(1, 32, 32\)",
    ):
        EV.evaluate_generated(_smooth(8, 1), _smooth(20, 0, size=16), extractor=_pixels)
    with pytest.raises(ValueError, match=r"train images are \(1, 16, 16\)"):
        EV.evaluate_generated(_smooth(8, 1), real, _smooth(8, 2, size=16), extractor=_pixels)
    uint8_like = (_smooth(8, 1) + 1) * 127.5  # 0-255 passed as if in [-1, 1]
    with pytest.raises(ValueError, match=r"generated images span \[.*\] but value_range is \(-1, 1\)"):
        EV.evaluate_generated(uint8_like, real, extractor=_pixels)
    with pytest.raises(ValueError, match="generated holds no images"):
        EV.evaluate_generated(torch.zeros(0, 1, 32, 32), real, extractor=_pixels)
