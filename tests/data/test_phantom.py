"""Tests of meddiff_lab/data/phantom.py: the synthetic chest radiograph phantom and its ground truth."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from meddiff_lab.data import phantom
from meddiff_lab.data.phantom import (ANATOMY_MASKS, CXR_LABELS, FINDING_MASKS, NIH_2017_HEADER,
                                      cardiothoracic_ratio_from_masks, generate_phantoms, iter_phantoms,
                                      labels_from_string, labels_to_string, load_phantom_masks,
                                      write_synthetic_cxr)

NIH_ORDER = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
             "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


@pytest.fixture(scope="module")
def many():
    """Enough small images for prevalences and label/anatomy statistics."""
    return generate_phantoms(600, image_size=32, seed=0, masks=("heart", "left_lung", "right_lung"))


@pytest.fixture(scope="module")
def batch64():
    return generate_phantoms(160, image_size=64, seed=1)


def _col(values, name):
    return values[:, CXR_LABELS.index(name)]


def test_labels_are_the_nih_fourteen_in_order():
    assert CXR_LABELS == NIH_ORDER
    assert set(FINDING_MASKS) == {n.lower() for n in NIH_ORDER} - {"cardiomegaly"}


def test_contract_shapes_types_and_ranges(batch64):
    b = batch64
    n = 160
    assert b.images.shape == (n, 64, 64) and b.images.dtype == np.float32
    assert 0.0 <= b.images.min() and b.images.max() <= 1.0
    assert b.images.std() > 0.1                      # not a blank picture
    for name in ANATOMY_MASKS + FINDING_MASKS:
        assert b.masks[name].shape == (n, 64, 64) and b.masks[name].dtype == bool, name
    assert b.labels.shape == (n, len(CXR_LABELS)) and set(np.unique(b.labels)) <= {0.0, 1.0}
    assert b.cardiothoracic_ratio.shape == (n,) and np.all((b.cardiothoracic_ratio > 0.25) & (b.cardiothoracic_ratio < 0.75))
    for m in b.metadata:
        assert {"patient_id", "age", "sex", "view", "follow_up", "image_index"} <= set(m)
        assert m["sex"] in ("M", "F") and m["view"] in ("PA", "AP") and 18 <= m["age"] <= 100
        assert m["image_index"] == f"{m['patient_id']:08d}_{m['follow_up']:03d}.png"
    assert {m["view"] for m in b.metadata} == {"PA", "AP"} and {m["sex"] for m in b.metadata} == {"M", "F"}


def test_same_seed_same_bytes_and_other_seed_differs():
    a = generate_phantoms(6, 32, seed=3)
    b = generate_phantoms(6, 32, seed=3)
    assert a.images.tobytes() == b.images.tobytes()
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert np.array_equal(a.labels, b.labels) and a.metadata == b.metadata
    c = generate_phantoms(6, 32, seed=4)
    assert a.images.tobytes() != c.images.tobytes()


def test_bytes_do_not_depend_on_n_or_chunking():
    small = generate_phantoms(4, 32, seed=5)
    large = generate_phantoms(9, 32, seed=5)
    assert small.images.tobytes() == large.images[:4].tobytes()
    chunked = np.concatenate([b.images for b in iter_phantoms(9, 32, seed=5, chunk_size=2)])
    assert chunked.tobytes() == large.images.tobytes()


def test_lungs_are_darker_than_the_heart(batch64):
    b = batch64
    for i in range(len(b)):
        lungs = (b.masks["left_lung"][i] | b.masks["right_lung"][i]) & ~b.masks["lesion"][i]
        assert b.images[i][lungs].mean() < b.images[i][b.masks["heart"][i]].mean() - 0.1, b.metadata[i]


def test_heart_on_the_patients_left_which_is_the_viewers_right(batch64):
    b = batch64
    cols = np.arange(64)
    for i in range(len(b)):
        heart_x = (b.masks["heart"][i].sum(0) * cols).sum() / b.masks["heart"][i].sum()
        left_lung_x = (b.masks["left_lung"][i].sum(0) * cols).sum() / b.masks["left_lung"][i].sum()
        right_lung_x = (b.masks["right_lung"][i].sum(0) * cols).sum() / b.masks["right_lung"][i].sum()
        assert heart_x > 32.0 and left_lung_x > 32.0 > right_lung_x
        assert b.masks["heart"][i][:, 32:].sum() > 1.5 * b.masks["heart"][i][:, :32].sum()


def test_cardiomegaly_exactly_when_ratio_above_half(many):
    cardiomegaly = _col(many.labels, "Cardiomegaly") > 0.5
    assert np.array_equal(cardiomegaly, many.cardiothoracic_ratio > 0.5)
    assert 0 < cardiomegaly.sum() < len(many)


def test_ratio_is_what_the_masks_measure():
    b = generate_phantoms(24, 128, seed=2, masks=("heart", "left_lung", "right_lung"))
    measured = cardiothoracic_ratio_from_masks(b.masks["heart"], b.masks["right_lung"], b.masks["left_lung"])
    np.testing.assert_allclose(measured, b.cardiothoracic_ratio, atol=0.02)
    # the label margin around 0.5 (>= 0.01) keeps the label unambiguous at this resolution
    assert np.array_equal(measured > 0.5, b.cardiothoracic_ratio > 0.5)


def test_ap_films_magnify_the_heart(many):
    ap = np.array([m["view"] == "AP" for m in many.metadata])
    assert many.cardiothoracic_ratio[ap].mean() > many.cardiothoracic_ratio[~ap].mean() + 0.03


def test_nodules_and_masses_lie_inside_a_lung(batch64):
    b = batch64
    lungs = b.masks["left_lung"] | b.masks["right_lung"]
    for name in ("Nodule", "Mass"):
        rows = np.nonzero(_col(b.labels, name) > 0.5)[0]
        assert len(rows) > 0, name
        for i in rows:
            lesion = b.masks[name.lower()][i]
            assert lesion.any() and not (lesion & ~lungs[i]).any(), (name, b.metadata[i])
            assert not (lesion & b.masks["heart"][i]).any()


def test_every_finding_has_a_mask_exactly_when_labelled(batch64):
    b = batch64
    for name in CXR_LABELS:
        if name == "Cardiomegaly":
            continue
        labelled = _col(b.labels, name) > 0.5
        has_mask = b.masks[name.lower()].any(axis=(1, 2))
        assert labelled.any(), name
        assert np.array_equal(labelled, has_mask), name
    union = np.zeros_like(b.masks["lesion"])
    for name in FINDING_MASKS:
        union |= b.masks[name]
    assert np.array_equal(union, b.masks["lesion"])


def test_effusion_fills_a_lung_base(batch64):
    b = batch64
    rows = np.arange(64)[:, None]
    for i in np.nonzero(_col(b.labels, "Effusion") > 0.5)[0]:
        eff = b.masks["effusion"][i]
        lungs = b.masks["left_lung"][i] | b.masks["right_lung"][i] | b.masks["heart"][i]
        assert (eff * rows).sum() / eff.sum() > (lungs * rows).sum() / lungs.sum()   # lower than the lungs' centre
        assert eff.any(1).nonzero()[0].max() >= lungs.any(1).nonzero()[0].max() - 4      # reaches the base


def _cases_with_and_without(case_filter, change, n=80, seed=7):
    """The first case selected by ``case_filter``, as drawn and after ``change``."""
    cases = phantom._sample_cases(n, seed)
    case = next(c for c in cases if case_filter(c))
    other = dict(case, findings=dict(case["findings"]))
    change(other)
    return case, other


def test_pneumothorax_is_free_air_without_vessels():
    def remove(c):
        c["findings"]["Pneumothorax"] = False

    case, other = _cases_with_and_without(lambda c: c["findings"]["Pneumothorax"], remove)
    with_ptx, masks = phantom._attenuation(phantom._stack_cases([case]), 64)
    without, _ = phantom._attenuation(phantom._stack_cases([other]), 64)
    gap = masks["pneumothorax"][0]
    assert gap.sum() > 10
    # lung tissue and vessels are gone beyond the pleural line: less attenuation there ...
    assert np.mean((with_ptx - without)[0][gap] < 0) > 0.95
    # ... and no vascular markings: the vessels change nothing in the gap, but do in the collapsed lung
    no_vessels, _ = phantom._attenuation(phantom._stack_cases([dict(case, vessel_amp=0.0)]), 64)
    vessel_part = (with_ptx - no_vessels)[0]
    collapsed = (masks["left_lung"][0] | masks["right_lung"][0]) & ~gap
    assert np.abs(vessel_part[gap]).max() < 1e-5
    assert vessel_part[collapsed].max() > 0.05
    field = masks["left_lung"][0] | masks["right_lung"][0] | masks["heart"][0] | masks["_lung_field"][0]
    assert np.abs(with_ptx - without)[0][~field].max() < 1e-5         # outside the lungs nothing changes
    # the image (after the scanner's processing) is darker in the gap than in the collapsed lung beside it
    noise = np.zeros((1, 64, 64), np.float32)
    image, _ = phantom._render(phantom._stack_cases([case]), 64, noise)
    lung = (masks["left_lung"][0] | masks["right_lung"][0]) & ~gap & ~masks["lesion"][0]
    assert image[0][gap].mean() < image[0][lung].mean() + 0.05


def _breast_shadow(size):
    """The line integral a healthy female case's breast shadows add (the same case made male), and its masks."""
    def make_male(c):
        c["sex"], c["female"], c["breast"] = "M", 0.0, 0.0

    female, male = _cases_with_and_without(lambda c: c["sex"] == "F" and not any(c["findings"].values()), make_male)
    L_f, masks = phantom._attenuation(phantom._stack_cases([female]), size)
    L_m, _ = phantom._attenuation(phantom._stack_cases([male]), size)
    return L_f - L_m, masks


def test_breast_shadows_brighten_the_lower_zones_of_female_patients():
    shadow, masks = _breast_shadow(64)
    lower = (masks["left_lung"][0] | masks["right_lung"][0]).copy()
    lower[:40] = False
    upper = (masks["left_lung"][0] | masks["right_lung"][0]).copy()
    upper[26:] = False
    assert shadow[0][lower].mean() > 0.2
    assert np.abs(shadow)[0][upper].mean() < 0.05


def test_ap_view_enlarges_the_heart_of_the_same_patient():
    cases = phantom._sample_cases(200, 11)
    by_patient = {}
    for c in cases:
        by_patient.setdefault(c["patient_id"], []).append(c)
    pairs = [(min(cs, key=lambda c: c["view"] == "PA"), max(cs, key=lambda c: c["view"] == "PA"))
             for cs in by_patient.values() if {c["view"] for c in cs} == {"AP", "PA"}]
    assert pairs
    ratio = np.mean([ap["ctr"] / pa["ctr"] for ap, pa in pairs])
    assert 1.08 < ratio < 1.16


def test_prevalences_between_5_and_60_percent(many):
    prevalence = many.labels.mean(0)
    for name, p in zip(CXR_LABELS, prevalence):
        assert 0.05 <= p <= 0.60, (name, p)
    no_finding = (many.labels.sum(1) == 0).mean()
    assert 0.05 <= no_finding <= 0.60


def test_follow_ups_share_the_patient(many):
    by_patient: dict[int, list[dict]] = {}
    for m in many.metadata:
        by_patient.setdefault(m["patient_id"], []).append(m)
    assert len(by_patient) < len(many.metadata)                  # several films per patient
    for films in by_patient.values():
        assert len({f["sex"] for f in films}) == 1
        assert [f["follow_up"] for f in films] == list(range(len(films)))
        assert all(a["age"] <= b["age"] for a, b in zip(films, films[1:]))


def test_mask_selection_and_argument_errors():
    b = generate_phantoms(2, 32, seed=0, masks=("heart",))
    assert set(b.masks) == {"heart"}
    with pytest.raises(ValueError, match="unknown mask names"):
        generate_phantoms(2, 32, masks=("spleen",))
    with pytest.raises(ValueError, match="n must be"):
        generate_phantoms(0, 32)
    with pytest.raises(ValueError, match="image_size"):
        generate_phantoms(2, 8)
    with pytest.raises(ValueError, match="seed"):
        generate_phantoms(2, 32, seed=-1)


def test_label_strings_round_trip():
    v = labels_from_string("Cardiomegaly|Emphysema")
    assert v.sum() == 2 and v[1] == 1 and v[10] == 1
    assert labels_to_string(v) == "Cardiomegaly|Emphysema"
    assert labels_from_string("No Finding").sum() == 0 and labels_to_string(np.zeros(14)) == "No Finding"
    assert labels_from_string("Pleural Thickening")[12] == 1
    with pytest.raises(ValueError, match="Toothache"):
        labels_from_string("Effusion|Toothache")


def test_write_synthetic_cxr_nih_layout(tmp_path):
    from PIL import Image

    root = write_synthetic_cxr(tmp_path / "syn", n=30, image_size=32, seed=0, images_per_folder=20, progress=False)
    text = (root / "Data_Entry_2017.csv").read_text().splitlines()
    assert text[0] == NIH_2017_HEADER
    rows = list(csv.reader(text[1:]))
    assert len(rows) == 30 and all(len(r) == 12 and r[-1] == "" for r in rows)
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
    assert all(np.array_equal(masks[k], truth.masks[k][3]) for k in truth.masks)
    assert [r[1] for r in rows] == truth.label_strings
    with pytest.raises(FileNotFoundError, match="no masks"):
        load_phantom_masks(root, "99999999_000.png")


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


def test_gallery_writes_a_png(tmp_path):
    out = phantom.save_gallery(tmp_path / "gallery.png", n=2, image_size=32, cols=2)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=".png"):
        phantom.save_gallery(tmp_path / "gallery.jpg", n=1, image_size=32)


# ------------------------------------------------------------------ detector noise, dose, artefacts
def test_air_is_dark_but_never_a_constant(batch64):
    """Real detectors are noisy everywhere: the air beside the body is not clipped to one value."""
    corners = batch64.images[:, :6, :6].reshape(len(batch64), -1)
    assert (corners.std(1) > 0).all(), "every air corner has some noise or gradient"
    assert (corners == 0).mean() < 0.01, "air is not clipped to black"
    assert corners.mean() < 0.1, "air is still the darkest part of the image"


def test_lower_dose_means_more_quantum_noise_with_the_same_anatomy():
    clean = generate_phantoms(8, image_size=64, seed=3, quantum_noise=False)
    again = generate_phantoms(8, image_size=64, seed=3, quantum_noise=False)
    assert np.array_equal(clean.images, again.images)
    full, quarter = (generate_phantoms(8, image_size=64, seed=3, dose=d) for d in (1.0, 0.25))
    lung = clean.masks["left_lung"] | clean.masks["right_lung"]
    noise_full = (full.images - clean.images)[lung].std()
    noise_quarter = (quarter.images - clean.images)[lung].std()
    # Poisson noise: relative std ∝ 1/√dose, so a quarter of the dose doubles it (the display's curve
    # and edge enhancement are the same at both doses)
    assert noise_quarter / noise_full == pytest.approx(2.0, rel=0.15)
    for name in ("heart", "left_lung", "effusion"):
        assert np.array_equal(full.masks[name], quarter.masks[name]), "ground truth does not depend on dose"
    assert np.array_equal(full.labels, quarter.labels)
    assert np.array_equal(full.cardiothoracic_ratio, clean.cardiothoracic_ratio)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "full", True])
def test_dose_must_be_a_positive_fluence(bad):
    with pytest.raises(ValueError, match="dose"):
        generate_phantoms(2, image_size=32, seed=0, dose=bad)


def test_effusion_has_a_meniscus_not_a_straight_level():
    """The fluid's upper edge climbs the lateral chest wall (concave upward)."""
    def lateral_rise(image_size=128):
        cases = [c for c in phantom._sample_cases(300, 5) if c["findings"]["Effusion"]][:12]
        _, masks = phantom._attenuation(phantom._stack_cases(cases), image_size)
        rises = []
        for eff in masks["effusion"]:
            cols = np.nonzero(eff.any(0))[0]
            if len(cols) < 8:
                continue
            top = np.array([np.nonzero(eff[:, c])[0].min() for c in cols])
            left_end, right_end, middle = top[:3].mean(), top[-3:].mean(), top[len(top) // 2 - 1:len(top) // 2 + 2].mean()
            rises.append(middle - min(left_end, right_end))   # rows: the lateral end sits higher (smaller row)
        return np.array(rises)
    rises = lateral_rise()
    assert len(rises) >= 5
    assert np.median(rises) >= 3, f"the edge rises toward the chest wall by a few pixels, got {rises}"


def test_breast_shadow_tapers_at_its_rim():
    """Soft tissue thickness falls to zero smoothly at the rim: no step in the line integral."""
    shadow = _breast_shadow(128)[0][0]
    step = max(np.abs(np.diff(shadow, axis=0)).max(), np.abs(np.diff(shadow, axis=1)).max())
    assert step < 0.1 * shadow.max(), "no pixel-to-pixel jump larger than 10 % of the shadow's peak"
