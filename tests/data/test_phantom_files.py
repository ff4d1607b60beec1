"""Tests of meddiff_lab/data/phantom_files.py: a phantom set written in the NIH layout, packed masks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from meddiff_lab.data.phantom import generate_phantoms, write_synthetic_cxr
from meddiff_lab.data.phantom_files import NIH_2017_HEADER, load_phantom_masks, pack_masks, unpack_masks


def test_write_synthetic_cxr_nih_layout(tmp_path):
    root = write_synthetic_cxr(tmp_path / "syn", n=30, image_size=32, seed=0, images_per_folder=20, progress=False)
    text = (root / "Data_Entry_2017.csv").read_text().splitlines()
    assert text[0] == NIH_2017_HEADER
    rows = list(csv.reader(text[1:]))
    assert len(rows) == 30 and all(len(r) == 12 and r[-1] == "" for r in rows)
    assert rows[0][9] == rows[0][10] == "12.500"  # 400 mm field of view / 32 px
    pngs = sorted(root.glob("images_*/images/*.png"))
    assert len(pngs) == 30 and {p.parent.parent.name for p in pngs} == {"images_001", "images_002"}
    with Image.open(pngs[0]) as img:
        assert img.mode == "L" and img.size == (32, 32)
    train = (root / "train_val_list.txt").read_text().split()
    test = (root / "test_list.txt").read_text().split()
    assert sorted(train + test) == sorted(r[0] for r in rows)
    patient = {r[0]: r[3] for r in rows}
    assert not {patient[i] for i in train} & {patient[i] for i in test}
    truth = generate_phantoms(30, 32, seed=0)
    masks = load_phantom_masks(root, truth.metadata[3]["image_index"])
    assert list(masks) == list(truth.masks)
    assert all(np.array_equal(masks[k], truth.masks[k][3]) for k in truth.masks)
    with Image.open(root / "images_001" / "images" / truth.metadata[3]["image_index"]) as img:
        assert np.array_equal(np.asarray(img), np.round(truth.images[3] * 255.0).astype(np.uint8))
    assert [r[1] for r in rows] == truth.label_strings
    assert "n=30 image_size=32 seed=0 phantom_version=2." in (root / "README.txt").read_text()
    with pytest.raises(FileNotFoundError, match="no masks"):
        load_phantom_masks(root, "99999999_000.png")
    with pytest.raises(KeyError, match="spleen"):
        load_phantom_masks(root, truth.metadata[3]["image_index"], names=("heart", "spleen"))


def test_rewriting_replaces_an_earlier_set_and_spares_other_folders(tmp_path):
    root = write_synthetic_cxr(tmp_path / "syn", n=12, image_size=32, progress=False)
    write_synthetic_cxr(root, n=5, image_size=32, progress=False)
    assert len(list(root.glob("images_*/images/*.png"))) == 5 and len(list((root / "masks").glob("*.npz"))) == 5
    real = tmp_path / "nih"
    real.mkdir()
    (real / "Data_Entry_2017.csv").write_text(NIH_2017_HEADER + "\n")
    with pytest.raises(ValueError, match="refusing"):
        write_synthetic_cxr(real, n=2, image_size=32, progress=False)
    assert (real / "Data_Entry_2017.csv").read_text() == NIH_2017_HEADER + "\n"


def test_without_masks_no_mask_folder(tmp_path):
    root = write_synthetic_cxr(tmp_path / "syn", n=3, image_size=16, with_masks=False, progress=False)
    assert not (root / "masks").exists() and len(list(root.glob("images_*/images/*.png"))) == 3


def test_masks_pack_into_bits_and_back():
    rng = np.random.default_rng(0)
    masks = {f"m{i}": rng.random((5, 7)) < 0.5 for i in range(32)}
    bits, names = pack_masks(masks)
    assert bits.dtype == np.uint32 and bits.shape == (5, 7) and list(names) == list(masks)
    back = unpack_masks(bits, names)
    assert list(back) == list(masks) and all(np.array_equal(back[k], masks[k]) for k in masks)
    assert list(unpack_masks(bits, names, ["m31", "m0"])) == ["m31", "m0"]
    with pytest.raises(ValueError, match="at most 32"):
        pack_masks({**masks, "one_too_many": masks["m0"]})
