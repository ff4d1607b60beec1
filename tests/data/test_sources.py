"""Tests of meddiff_lab/data/sources.py (and download.py): every reader on small files written here
in the real formats."""

from __future__ import annotations

import io
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from meddiff_lab.data import download
from meddiff_lab.data.phantom import CXR_LABELS, generate_phantoms, write_synthetic_cxr
from meddiff_lab.data.sources import (
    ChestXray14,
    ImageFolderDataset,
    MedMNIST,
    MedNIST,
    SyntheticCXR,
    check_source,
    load_dataset,
    read_nih_metadata,
)

# The header of NIH's Data_Entry_2017.csv: the bracketed names contain commas (so they split into
# two columns each) and the line ends in a comma (an unnamed 12th column). Rows end in a comma too.
HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
ROWS_2017 = [
    "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143,",
    "00000001_002.png,Cardiomegaly|Effusion,2,1,58,M,PA,2500,2048,0.168,0.168,",
    "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,",
    "00000003_000.png,Hernia,0,3,81,F,PA,2582,2991,0.143,0.143,",
    "00000003_001.png,Hernia,1,3,74,F,PA,2500,2048,0.168,0.168,",
    "00000004_000.png,Mass|Nodule,0,4,82,M,AP,2500,2048,0.168,0.168,",
    "00000005_000.png,No Finding,0,5,69,F,PA,2048,2500,0.168,0.168,",
    "00000005_001.png,Pleural_Thickening|Infiltration,1,5,69,F,AP,2048,2500,0.168,0.168,",
]
# The 2020 revision renames the size/spacing columns (no brackets, no trailing column).
HEADER_2020 = (
    "Image Index,Finding Labels,Follow Up #,Patient ID,Patient Age,Patient Sex,View Position,"
    "OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,OriginalImagePixelSpacing_y"
)
TRAIN_VAL = [
    "00000001_000.png",
    "00000001_001.png",
    "00000001_002.png",
    "00000003_000.png",
    "00000003_001.png",
    "00000005_000.png",
    "00000005_001.png",
]
TEST = ["00000002_000.png", "00000004_000.png"]


def _write_png(path, size=40, mode="L", seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGBA":
        Image.fromarray(rng.integers(0, 256, (size, size, 4), dtype=np.uint8), mode="RGBA").save(path)
    elif mode == "I;16":
        Image.fromarray(rng.integers(0, 65536, (size, size), dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(path)


@pytest.fixture
def nih_root(tmp_path):
    """A miniature ChestX-ray14: real header and rows, images in images_001/ and images_002/."""
    root = tmp_path / "nih"
    for i, line in enumerate(ROWS_2017):
        name = line.split(",")[0]
        folder = "images_001" if i < 5 else "images_002"
        mode = "RGBA" if i == 1 else ("I;16" if i == 2 else "L")  # a few real files are RGBA
        _write_png(root / folder / "images" / name, mode=mode, seed=i)
    (root / "Data_Entry_2017.csv").write_text(HEADER_2017 + "\n" + "\n".join(ROWS_2017) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(TRAIN_VAL) + "\n")
    (root / "test_list.txt").write_text("\n".join(TEST) + "\n")
    return root


# --------------------------------------------------------------------------------- ChestX-ray14
def test_nih_2017_metadata_columns_and_labels(nih_root):
    records = read_nih_metadata(nih_root / "Data_Entry_2017.csv")
    assert len(records) == len(ROWS_2017)
    r = records[1]
    assert r["image_index"] == "00000001_001.png" and r["patient_id"] == 1 and r["follow_up"] == 1
    assert r["age"] == 58 and r["sex"] == "M" and r["view"] == "PA"
    assert (r["width"], r["height"], r["spacing_x"], r["spacing_y"]) == (2894, 2729, 0.143, 0.143)
    assert [CXR_LABELS[i] for i in np.nonzero(r["labels"])[0]] == ["Cardiomegaly", "Emphysema"]
    assert records[3]["labels"].sum() == 0  # "No Finding"
    assert [CXR_LABELS[i] for i in np.nonzero(records[8]["labels"])[0]] == ["Infiltration", "Pleural_Thickening"]


@pytest.mark.parametrize("follow_up", ["Follow Up #", "Follow-up #"])
def test_nih_2020_header(tmp_path, follow_up):
    header = HEADER_2020.replace("Follow Up #", follow_up)
    rows = [line.rstrip(",").replace(",58,", ",57,", 1) for line in ROWS_2017[:3]]
    path = tmp_path / "Data_Entry_2017_v2020.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    records = read_nih_metadata(path)
    assert [r["follow_up"] for r in records] == [0, 1, 2]
    assert records[0]["age"] == 57 and records[0]["sex"] == "M"
    assert (records[0]["width"], records[0]["height"], records[0]["spacing_y"]) == (2682, 2749, 0.143)
    assert records[2]["labels"][CXR_LABELS.index("Effusion")] == 1


def test_nih_metadata_odd_values_and_errors(tmp_path):
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text(HEADER_2017 + "\n00000009_000.png, Nodule | Mass ,0,9,058Y,F,PA,1,1,1,1,\n")
    (r,) = read_nih_metadata(path)
    assert (
        r["age"] == 58 and r["labels"][CXR_LABELS.index("Nodule")] == 1 and r["labels"][CXR_LABELS.index("Mass")] == 1
    )
    path.write_text(HEADER_2017 + "\n00000009_000.png,Toothache,0,9,58,F,PA,1,1,1,1,\n")
    with pytest.raises(ValueError, match="line 2.*Toothache"):
        read_nih_metadata(path)
    path.write_text("name,label\na.png,Mass\n")
    with pytest.raises(ValueError, match="not ChestX-ray14 metadata"):
        read_nih_metadata(path)
    with pytest.raises(FileNotFoundError, match="Data_Entry_2017.csv"):
        read_nih_metadata(tmp_path / "nope.csv")


def test_chestxray14_reads_the_nih_layout(nih_root):
    train_val = ChestXray14(nih_root, "train_val", image_size=32)
    test = ChestXray14(nih_root, "test", image_size=32)
    assert sorted(train_val.image_indices) == sorted(TRAIN_VAL) and sorted(test.image_indices) == sorted(TEST)
    item = train_val[train_val.image_indices.index("00000001_001.png")]  # an RGBA file
    assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0 and item["image"].std() > 0.1
    assert item["patient_id"] == 1 and item["image_index"] == "00000001_001.png"
    assert item["labels"].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    sixteen_bit = train_val[train_val.image_indices.index("00000001_002.png")]["image"]
    assert sixteen_bit.std() > 0.1  # 16-bit PNG scaled, not clipped
    assert train_val.label_counts()["Hernia"] == 2
    native = ChestXray14(nih_root, "all", image_size=None)
    assert native[0]["image"].shape == (1, 40, 40) and len(native) == len(ROWS_2017)


def test_chestxray14_train_val_split_is_by_patient(nih_root):
    train = ChestXray14(nih_root, "train", image_size=16, val_fraction=0.3)
    val = ChestXray14(nih_root, "val", image_size=16, val_fraction=0.3)
    assert len(train) and len(val)
    assert not set(train.patient_ids.tolist()) & set(val.patient_ids.tolist())
    assert sorted(train.image_indices + val.image_indices) == sorted(TRAIN_VAL)


def test_chestxray14_partial_download_and_errors(nih_root, tmp_path):
    (nih_root / "images_002" / "images" / "00000005_001.png").unlink()
    with pytest.warns(UserWarning, match="1 of 7 images"):
        ds = ChestXray14(nih_root, "train_val", 16)
    assert len(ds) == 6
    with pytest.raises(FileNotFoundError, match="not under"):
        ChestXray14(nih_root, "train_val", 16, missing="error")
    with pytest.raises(ValueError, match="unknown split"):
        ChestXray14(nih_root, "holdout", 16)
    with pytest.raises(FileNotFoundError, match="ChestX-ray14 folder not found"):
        ChestXray14(tmp_path / "missing", "train", 16)
    (nih_root / "test_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test_list.txt"):
        ChestXray14(nih_root, "test", 16)


def test_synthetic_set_reads_back_split_by_patient(tmp_path):
    root = write_synthetic_cxr(tmp_path / "synthetic_cxr", n=40, image_size=32, seed=2, progress=False)
    train_val = ChestXray14(root, "train_val", image_size=32, masks=("heart", "left_lung", "lesion"))
    test = ChestXray14(root, "test", image_size=32)
    assert len(train_val) + len(test) == 40 and len(test) > 0
    assert not set(train_val.patient_ids.tolist()) & set(test.patient_ids.tolist())
    truth = generate_phantoms(40, 32, seed=2)
    index = {m["image_index"]: i for i, m in enumerate(truth.metadata)}
    for k in (0, len(train_val) - 1):
        item = train_val[k]
        i = index[item["image_index"]]
        np.testing.assert_allclose((item["image"][0].numpy() + 1) / 2, truth.images[i], atol=0.5 / 255 + 1e-6)
        assert np.array_equal(item["labels"].numpy(), truth.labels[i])
        assert item["patient_id"] == truth.metadata[i]["patient_id"]
        assert item["masks"].shape == (3, 32, 32)
        assert np.array_equal(item["masks"][0].numpy() > 0.5, truth.masks["heart"][i])
    smaller = ChestXray14(root, "test", image_size=16, masks=("heart",))
    assert smaller[0]["image"].shape == (1, 16, 16) and smaller[0]["masks"].shape == (1, 16, 16)


# ------------------------------------------------------------------------------------ MedMNIST
def _write_medmnist(path, n_labels, size=28, rgb=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, n_labels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays


def test_chestmnist_npz(tmp_path):
    arrays = _write_medmnist(tmp_path / "medmnist" / "chestmnist.npz", 14)
    ds = MedMNIST(tmp_path, "val", image_size=32)
    assert len(ds) == 4
    item = ds[2]
    assert item["image"].shape == (1, 32, 32) and -1 <= item["image"].min() and item["image"].max() <= 1
    assert np.array_equal(item["labels"].numpy(), arrays["val_labels"][2].astype(np.float32))
    native = MedMNIST(tmp_path / "medmnist" / "chestmnist.npz", "test", image_size=None)
    np.testing.assert_allclose((native[0]["image"][0].numpy() + 1) / 2 * 255, arrays["test_images"][0], atol=1e-3)


def test_pneumoniamnist_and_medmnist_plus_size(tmp_path):
    arrays = _write_medmnist(tmp_path / "pneumoniamnist_64.npz", 1, size=64)
    ds = MedMNIST(tmp_path, "train", image_size=None, flag="pneumoniamnist", size=64)
    assert ds[0]["image"].shape == (1, 64, 64)
    pneumonia = ds.labels[:, CXR_LABELS.index("Pneumonia")]
    assert np.array_equal(pneumonia, arrays["train_labels"][:, 0].astype(np.float32))
    assert ds.labels.sum() == pneumonia.sum()


def test_medmnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data download medmnist"):
        MedMNIST(tmp_path, "train", 28)
    np.savez(tmp_path / "chestmnist.npz", images=np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match="train_images"):
        MedMNIST(tmp_path, "train", 28)
    with pytest.raises(ValueError, match="unknown split"):
        MedMNIST(tmp_path, "holdout", 28)


# --------------------------------------------------------------------------- MedNIST and folders
def _write_jpeg(path, size=64, rgb=False, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size + 8, 3) if rgb else (size, size)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path, quality=90)


def test_mednist_cxr_class_and_splits(tmp_path):
    for cls in ("CXR", "Hand", "HeadCT"):
        for i in range(10):
            _write_jpeg(tmp_path / "MedNIST" / cls / f"{i:06d}.jpeg", seed=i)
    everything = MedNIST(tmp_path, "all", image_size=None)
    assert len(everything) == 10 and {everything[i]["class_name"] for i in range(10)} == {"CXR"}
    assert everything[0]["image"].shape == (1, 64, 64) and not everything.labels_known
    parts = [MedNIST(tmp_path, split, image_size=32) for split in ("train", "val", "test")]
    names = [set(p[i]["image_index"] for i in range(len(p))) for p in parts]
    assert sum(len(n) for n in names) == 10 and not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    two = MedNIST(tmp_path, "all", 32, classes=("CXR", "Hand"))
    assert len(two) == 20 and sorted(set(two[i]["label"] for i in range(20))) == [0, 1]
    with pytest.raises(FileNotFoundError, match="data download mednist"):
        MedNIST(tmp_path / "elsewhere", "all", 32)


def test_kermany_pneumonia_folder_layout(tmp_path):
    top = tmp_path / "chest_xray"
    files = {
        "train": {
            "NORMAL": ["IM-0115-0001.jpeg", "NORMAL2-IM-1427-0001.jpeg"],
            "PNEUMONIA": ["person1_bacteria_1.jpeg", "person1_bacteria_2.jpeg", "person22_virus_55.jpeg"],
        },
        "test": {"NORMAL": ["IM-0001-0001.jpeg"], "PNEUMONIA": ["person100_bacteria_475.jpeg"]},
        "val": {"NORMAL": ["NORMAL2-IM-1431-0001.jpeg"], "PNEUMONIA": ["person1946_bacteria_4874.jpeg"]},
    }
    for split, classes in files.items():
        for cls, names in classes.items():
            for i, name in enumerate(names):
                _write_jpeg(top / split / cls / name, size=50 + 10 * i, rgb=(i == 0))
    (top / "__MACOSX").mkdir()
    train = ImageFolderDataset(tmp_path, "train", image_size=32)
    assert train.classes == ["NORMAL", "PNEUMONIA"] and len(train) == 5
    items = [train[i] for i in range(len(train))]
    assert all(it["image"].shape == (1, 32, 32) for it in items)
    by_name = {it["image_index"]: it for it in items}
    assert by_name["person1_bacteria_2.jpeg"]["label"] == 1 and by_name["person1_bacteria_2.jpeg"]["patient_id"] == 1
    assert by_name["person1_bacteria_1.jpeg"]["labels"][CXR_LABELS.index("Pneumonia")] == 1
    assert by_name["IM-0115-0001.jpeg"]["labels"].sum() == 0 and by_name["IM-0115-0001.jpeg"]["class_name"] == "NORMAL"
    assert by_name["NORMAL2-IM-1427-0001.jpeg"]["patient_id"] != by_name["IM-0115-0001.jpeg"]["patient_id"]
    assert len(ImageFolderDataset(top, "test", 32)) == 2 and len(ImageFolderDataset(top, "all", 32)) == 9


def test_flat_class_folders_split_by_patient(tmp_path):
    for p in range(8):
        for k in range(2):
            _write_jpeg(tmp_path / "PNEUMONIA" / f"person{p}_bacteria_{k}.jpeg", size=24, seed=p * 2 + k)
    for k in range(6):
        _write_jpeg(tmp_path / "NORMAL" / f"IM-{k:04d}-0001.jpeg", size=24, seed=50 + k)
    parts = [
        ImageFolderDataset(tmp_path, split, 16, val_fraction=0.2, test_fraction=0.3)
        for split in ("train", "val", "test")
    ]
    assert sum(len(p) for p in parts) == 22
    patients = [set(p.patient_ids.tolist()) for p in parts]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    with pytest.raises(FileNotFoundError, match="CT"):
        ImageFolderDataset(tmp_path, "all", 16, classes=("CT",))


# ---------------------------------------------------------------------------- one interface
def test_load_dataset_picks_the_reader(tmp_path, nih_root):
    with pytest.raises(ValueError, match="unknown DATA_SOURCE"):
        load_dataset("imagenet", tmp_path)
    with pytest.raises(FileNotFoundError, match="README"):
        load_dataset("chestxray14", tmp_path / "empty")
    generated = load_dataset("synthetic", tmp_path / "empty", "val", 32, n=30)
    assert isinstance(generated, SyntheticCXR) and generated[0]["image"].shape == (1, 32, 32)
    write_synthetic_cxr(tmp_path / "synthetic_cxr", n=12, image_size=32, progress=False)
    on_disk = load_dataset("synthetic", tmp_path, "train_val", 16)
    assert isinstance(on_disk, ChestXray14) and on_disk[0]["image"].shape == (1, 16, 16)
    assert isinstance(load_dataset("chestxray14", nih_root, "test", 16), ChestXray14)
    _write_medmnist(tmp_path / "downloads" / "medmnist" / "chestmnist.npz", 14)  # the git-ignored place
    assert isinstance(load_dataset("medmnist", tmp_path, "test", 16), MedMNIST)
    report = check_source("synthetic", tmp_path)
    assert "train_val" in report and "test" in report and "images" in report


def test_synthetic_dataset_in_memory_is_split_by_patient():
    parts = [SyntheticCXR(60, split, 32, seed=0, masks=("lesion",)) for split in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 60
    patients = [set(p.patient_ids.tolist()) for p in parts]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    item = parts[0][0]
    assert item["masks"].shape == (1, 32, 32) and item["labels"].shape == (14,)


# ----------------------------------------------------------------------------------- downloads
def test_download_offline_fails_clearly(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(download.DownloadError, match="offline") as info:
        download.download_medmnist(tmp_path, flags=("chestmnist",), progress=False)
    assert str(tmp_path / "medmnist" / "chestmnist.npz") in str(info.value)
    assert not list((tmp_path / "medmnist").glob("*.part"))
    with pytest.raises(download.DownloadError, match="MedNIST.tar.gz"):
        download.download_mednist(tmp_path, progress=False)
    with pytest.raises(ValueError, match="size"):
        download.download_medmnist(tmp_path, size=100)


def test_mednist_resource_matches_monai():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("monai")
    source = (Path(spec.origin).parent / "apps" / "datasets.py").read_text()  # read, not imported: fast
    assert download.MEDNIST_URL in source and download.MEDNIST_MD5 in source


def test_download_checks_the_checksum(tmp_path, monkeypatch):
    class Response(io.BytesIO):
        headers = {"Content-Length": "5"}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Response(b"wrong"))
    with pytest.raises(download.DownloadError, match="corrupted"):
        download.download_medmnist(tmp_path, flags=("chestmnist",), progress=False)
    assert not (tmp_path / "medmnist" / "chestmnist.npz").exists()
    # files without a published checksum (MedMNIST+ sizes) are accepted as they come
    paths = download.download_medmnist(tmp_path, flags=("chestmnist",), size=64, progress=False)
    assert paths[0].name == "chestmnist_64.npz" and paths[0].read_bytes() == b"wrong"


def test_cli_data_commands(tmp_path, monkeypatch, capsys):
    from meddiff_lab import cli

    out = tmp_path / "synthetic_cxr"
    assert cli.main(["data", "write", "--out", str(out), "--n", "10", "--image-size", "32"]) == 0
    assert (out / "Data_Entry_2017.csv").is_file() and len(list(out.glob("images_*/images/*.png"))) == 10
    assert cli.main(["data", "write", "--out", str(out), "--n", "10", "--image-size", "32"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(["data", "check", "--source", "synthetic", "--root", str(tmp_path)]) == 0
    assert "train_val" in capsys.readouterr().out
    assert cli.main(["data", "check", "--source", "mednist", "--root", str(tmp_path)]) == 2
    assert "no data found" in capsys.readouterr().err

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    assert cli.main(["data", "download", "medmnist", "--root", str(tmp_path)]) == 3
    assert "offline" in capsys.readouterr().err


# ------------------------------------------------------------------------ bad input never passes
@pytest.mark.parametrize(
    "rows, message",
    [
        (
            ["00000009_000.png,Mass,0,9,58,F,PA,1,1,1,1,", "00000009_000.png,Mass,0,9,58,F,PA,1,1,1,1,"],
            r"line 3: image 00000009_000.png is listed twice \(first on line 2\)",
        ),
        (
            ["00000009_000.png,,0,9,58,F,PA,1,1,1,1,"],
            "line 2: empty Finding Labels for 00000009_000.png; write 'No Finding'",
        ),
        (["00000009_000.png,Mass,0,1.7,58,F,PA,1,1,1,1,"], "line 2: Patient ID '1.7' is not a whole number"),
        (["00000009_000.png,Mass,0,inf,58,F,PA,1,1,1,1,"], "line 2: Patient ID 'inf' is not a whole number"),
        (["00000009_000.png,Mass,0,-3,58,F,PA,1,1,1,1,"], "line 2: Patient ID '-3' is not a whole number"),
        ([",Mass,0,9,58,F,PA,1,1,1,1,"], "line 2: empty Image Index"),
    ],
    ids=["duplicate-row", "empty-label", "patient-1.7", "patient-inf", "patient-negative", "empty-image-index"],
)
def test_nih_metadata_refuses_rows_that_would_be_read_wrongly(tmp_path, rows, message):
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text(HEADER_2017 + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=message) as caught:
        read_nih_metadata(path)
    assert str(path) in str(caught.value)


def test_nih_metadata_accepts_zero_padded_and_spreadsheet_patient_ids(tmp_path):
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text(
        HEADER_2017 + "\n00000009_000.png,Mass,0,00009,58,F,PA,1,1,1,1,\n"
        "00000010_000.png,No Finding,0,10.0,58,F,PA,1,1,1,1,\n"
    )
    assert [r["patient_id"] for r in read_nih_metadata(path)] == [9, 10]


def test_nih_metadata_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_bytes((HEADER_2017 + "\n00000009_000.png,Mass,0,9,58,F,PA,1,1,1,1,\n").encode() + b"\xff\xfe,\n")
    with pytest.raises(ValueError, match="Data_Entry_2017.csv is not UTF-8 text"):
        read_nih_metadata(path)


def test_official_lists_that_share_a_patient_are_refused(nih_root):
    # patient 1's third image moves to the test list: patient 1 is then in train_val and test
    (nih_root / "train_val_list.txt").write_text("\n".join(n for n in TRAIN_VAL if n != "00000001_002.png") + "\n")
    (nih_root / "test_list.txt").write_text("\n".join(TEST + ["00000001_002.png"]) + "\n")
    for split in ("train_val", "test", "train", "val"):
        with pytest.raises(
            ValueError,
            match="patient 1 has images in both train_val_list.txt and test_list.txt "
            r"\(e.g. 00000001_002.png",
        ):
            ChestXray14(nih_root, split, image_size=16)
    ChestXray14(nih_root, "all", image_size=16)  # without the lists there is nothing to leak
    (nih_root / "train_val_list.txt").write_text("\n".join(TRAIN_VAL) + "\n")
    with pytest.raises(ValueError, match="image 00000001_002.png is in both"):
        ChestXray14(nih_root, "test", image_size=16)


def test_medmnist_with_nan_or_a_truncated_file_is_refused(tmp_path):
    arrays = _write_medmnist(tmp_path / "chestmnist.npz", 14)
    arrays = {k: v.astype(np.float32) / 255 if k.endswith("images") else v for k, v in arrays.items()}
    arrays["train_images"][3, 2, 2] = np.nan
    arrays["train_images"][5, 0, 0] = np.inf
    np.savez(tmp_path / "chestmnist.npz", **arrays)
    with pytest.raises(ValueError, match=r"2 image\(s\) of train_images hold NaN or inf \(first: index 3\)"):
        MedMNIST(tmp_path, "train", 28)
    MedMNIST(tmp_path, "val", 28)  # the other splits are clean
    data = (tmp_path / "chestmnist.npz").read_bytes()
    (tmp_path / "chestmnist.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="chestmnist.npz as a MedMNIST .npz"):
        MedMNIST(tmp_path, "val", 28)


def test_check_source_reads_every_item_and_reports_every_bad_file(nih_root, capsys):
    from meddiff_lab import cli
    from meddiff_lab.data.sources import DataCheckError

    assert "train_val" in check_source("chestxray14", nih_root)
    bad = [
        nih_root / "images_001" / "images" / "00000001_002.png",
        nih_root / "images_002" / "images" / "00000004_000.png",
    ]
    for path in bad:  # two later images, not the first of their split, are truncated
        path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataCheckError) as caught:
        check_source("chestxray14", nih_root)
    assert len(caught.value.problems) == 2 and "00000001_002.png" in caught.value.problems[0]
    assert "00000004_000.png" in caught.value.problems[1]
    assert cli.main(["data", "check", "--source", "chestxray14", "--root", str(nih_root)]) == 2
    captured = capsys.readouterr()
    assert "train_val" in captured.out and "00000001_002.png" in captured.err and "00000004_000.png" in captured.err
    assert "Traceback" not in captured.err and "2 problem(s) in chestxray14" in captured.err


def test_check_source_reports_official_lists_that_leak(nih_root, capsys):
    from meddiff_lab import cli

    (nih_root / "train_val_list.txt").write_text("\n".join(n for n in TRAIN_VAL if n != "00000001_002.png") + "\n")
    (nih_root / "test_list.txt").write_text("\n".join(TEST + ["00000001_002.png"]) + "\n")
    assert cli.main(["data", "check", "--source", "chestxray14", "--root", str(nih_root)]) == 2
    assert "patient 1 has images in both" in capsys.readouterr().err


def test_load_images_gives_one_batch_in_minus_one_one(tmp_path):
    from meddiff_lab.data import load_images

    synthetic = load_images("synthetic", tmp_path / "ignored", n=4, image_size=16, seed=3)
    expected = torch.from_numpy(generate_phantoms(4, 16, seed=3, masks=()).images)[:, None] * 2 - 1
    assert torch.equal(synthetic, expected), "synthetic: the seed's phantoms, whatever is on disk"
    _write_medmnist(tmp_path / "medmnist" / "chestmnist.npz", 14)
    test = load_images("medmnist", tmp_path, n=100, image_size=16, split="test")
    assert test.shape == (6, 1, 16, 16) and test.dtype == torch.float32, "at most what the split holds"
    assert float(test.min()) >= -1 and float(test.max()) <= 1
    assert torch.equal(test[0], load_dataset("medmnist", tmp_path, "test", 16)[0]["image"])
    with pytest.raises(FileNotFoundError):
        load_images("chestxray14", tmp_path / "empty", n=2, image_size=16)
