"""Tests of meddiff_lab/data/phantom.py: the synthetic chest radiograph phantom and its ground truth.

These check what ``generate_phantoms`` gives as a whole; the parts have their own tests beside this
file (test_phantom_anatomy.py, test_phantom_findings.py, test_phantom_patients.py, test_phantom_xray.py,
test_phantom_files.py, test_cxr_labels.py).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from meddiff_lab.data import phantom
from meddiff_lab.data.phantom import (
    ANATOMY_MASKS,
    CXR_LABELS,
    FINDING_MASKS,
    cardiothoracic_ratio_from_masks,
    generate_phantoms,
    iter_phantoms,
)


@pytest.fixture(scope="module")
def many():
    """Enough small images for prevalences and label/anatomy statistics."""
    return generate_phantoms(600, image_size=32, seed=0, masks=("heart", "left_lung", "right_lung"))


@pytest.fixture(scope="module")
def batch64():
    return generate_phantoms(160, image_size=64, seed=1)


def _col(values, name):
    return values[:, CXR_LABELS.index(name)]


def test_contract_shapes_types_and_ranges(batch64):
    b = batch64
    n = 160
    assert b.images.shape == (n, 64, 64) and b.images.dtype == np.float32
    assert 0.0 <= b.images.min() and b.images.max() <= 1.0
    assert b.images.std() > 0.1  # not a blank picture
    for name in ANATOMY_MASKS + FINDING_MASKS:
        assert b.masks[name].shape == (n, 64, 64) and b.masks[name].dtype == bool, name
    assert b.labels.shape == (n, len(CXR_LABELS)) and set(np.unique(b.labels)) <= {0.0, 1.0}
    assert b.cardiothoracic_ratio.shape == (n,) and np.all(
        (b.cardiothoracic_ratio > 0.25) & (b.cardiothoracic_ratio < 0.75)
    )
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
        assert (eff * rows).sum() / eff.sum() > (lungs * rows).sum() / lungs.sum()  # lower than the lungs' centre
        assert eff.any(1).nonzero()[0].max() >= lungs.any(1).nonzero()[0].max() - 4  # reaches the base


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
    assert len(by_patient) < len(many.metadata)  # several films per patient
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


def test_the_moved_names_stay_importable_from_phantom():
    """Older code imports these from meddiff_lab.data.phantom; they now live in the modules beside it."""
    from meddiff_lab.data import cxr_labels, phantom_files, phantom_xray

    for name, module in [
        ("CXR_LABELS", cxr_labels),
        ("FINDING_MASKS", cxr_labels),
        ("labels_to_string", cxr_labels),
        ("labels_from_string", cxr_labels),
        ("load_phantom_masks", phantom_files),
        ("NIH_2017_HEADER", phantom_files),
        ("CM_PER_UNIT", phantom_xray),
        ("MU_SOFT", phantom_xray),
        ("MU_BONE", phantom_xray),
    ]:
        assert getattr(phantom, name) is getattr(module, name), name


# ------------------------------------------------------------------------------- pinned output
def _digest(array) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(str(array.dtype).encode() + str(array.shape).encode() + array.tobytes()).hexdigest()[:16]


#: SHA-256 (first 16 hex digits) of every output of generate_phantoms(n, image_size, seed), recorded when
#: phantom.py was split into cxr_labels / phantom_patients / phantom_anatomy / phantom_findings /
#: phantom_xray / phantom_files (the split left these bytes unchanged). ``images`` lists the hashes of
#: the float32 images as numpy computes them with its AVX-512 and with its AVX2 kernels (numpy 2.4,
#: x86-64; checked with NPY_DISABLE_CPU_FEATURES): the last bits of float32 exp/log/sin depend on the
#: CPU's vector instructions. The masks, labels, ratios and metadata do not.
PINNED = {
    (64, 64, 0): dict(
        truth={
            "mask:atelectasis": "eb9cdf683b3b7b38",
            "mask:body": "f940f8d9aaa3e665",
            "mask:consolidation": "aa8a7cc2ea682235",
            "mask:edema": "b56c0ed361b0456d",
            "mask:effusion": "51672b8acac3b6df",
            "mask:emphysema": "584841ed9f0163fc",
            "mask:fibrosis": "9ee20eed513e7634",
            "mask:heart": "25a968b70b39e141",
            "mask:hernia": "8c6ec20061ef864d",
            "mask:infiltration": "6575d0b6f925b05b",
            "mask:left_lung": "1f1130c132ab14c8",
            "mask:lesion": "de9ca63bc0df2989",
            "mask:mass": "29c6e1ef407ea107",
            "mask:nodule": "de5d532919f2baf4",
            "mask:pleural_thickening": "79f45bc06d57943f",
            "mask:pneumonia": "7961ba0cdaee1534",
            "mask:pneumothorax": "c6833e1524b01af2",
            "mask:right_lung": "64627db3547521aa",
            "labels": "c094a95a1834b53e",
            "cardiothoracic_ratio": "be57ce0bffe6f04a",
            "metadata": "c039905c867dd85c",
        },
        images={"da44dc347e15ee05", "59b617af5e91da3a"},
        mean=0.54232580652,
        std=0.32229116229,
    ),
    (32, 128, 3): dict(
        truth={
            "mask:atelectasis": "a48b8bfc0095a6d2",
            "mask:body": "8a492404dc63c480",
            "mask:consolidation": "1821183a6dff8a12",
            "mask:edema": "355754e87fa6da70",
            "mask:effusion": "c51d58bd2762bb72",
            "mask:emphysema": "bca437fe582523af",
            "mask:fibrosis": "d2f6e6426f87c38f",
            "mask:heart": "b9f6622a22ba22fd",
            "mask:hernia": "354ce1fb8017ba82",
            "mask:infiltration": "106dee45469fa204",
            "mask:left_lung": "9de5b90edf3c021e",
            "mask:lesion": "6fa3acbe12a57d51",
            "mask:mass": "b6e31ebcb27d42b4",
            "mask:nodule": "d256579fd414c24d",
            "mask:pleural_thickening": "bfb4047cd76c97ba",
            "mask:pneumonia": "254393362174fa22",
            "mask:pneumothorax": "63c662904c09a83b",
            "mask:right_lung": "754eef7deb803123",
            "labels": "773f4f6b933fd0c4",
            "cardiothoracic_ratio": "05f5b2cc71369b0b",
            "metadata": "0b9e51b427e8ef69",
        },
        images={"7bb1402e6dfbc783", "729887a8e6388b01"},
        mean=0.55153504964,
        std=0.31162762919,
    ),
}


@pytest.mark.parametrize("n, image_size, seed", sorted(PINNED))
def test_the_phantoms_bytes_are_pinned(n, image_size, seed):
    """Guards "same seed, same bytes" across refactors: a change to any mask, label, ratio or metadata
    of generate_phantoms fails here, and so does any change to the images.

    Masks, labels, ratios and metadata must match exactly everywhere. The images must match one of
    the pinned float32 hashes; on a platform whose numpy kernels give other last bits (not x86-64
    with AVX2 or AVX-512, another numpy), their mean and standard deviation must still match to
    1e-7, which a real change to the physics does not. A deliberate change to the phantom bumps
    ``PHANTOM_VERSION`` and re-pins these numbers.
    """
    assert phantom.PHANTOM_VERSION == "2", "a new phantom version: re-pin PINNED for it"
    batch = generate_phantoms(n, image_size, seed=seed)
    truth = {f"mask:{k}": _digest(v) for k, v in sorted(batch.masks.items())}
    truth["labels"] = _digest(batch.labels)
    truth["cardiothoracic_ratio"] = _digest(batch.cardiothoracic_ratio)
    truth["metadata"] = hashlib.sha256(json.dumps(batch.metadata, sort_keys=True).encode()).hexdigest()[:16]
    pinned = PINNED[(n, image_size, seed)]
    changed = sorted(k for k in pinned["truth"].keys() | truth.keys() if pinned["truth"].get(k) != truth.get(k))
    assert not changed, f"generate_phantoms({n}, {image_size}, seed={seed}) changed: {changed}"
    if _digest(batch.images) not in pinned["images"]:
        pixels = batch.images.astype(np.float64)
        assert pixels.mean() == pytest.approx(pinned["mean"], abs=1e-7), "the images changed"
        assert pixels.std() == pytest.approx(pinned["std"], abs=1e-7), "the images changed"


def test_the_data_package_draws_no_figures():
    """Figures live in meddiff_lab/viz (the phantom's gallery: viz/gallery.py); data/ never imports matplotlib."""
    import ast
    from pathlib import Path

    folder = Path(phantom.__file__).parent
    offenders = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "matplotlib"]
    assert not offenders, offenders
