"""Tests of meddiff_lab/data/cxr_labels.py: the 14 ChestX-ray14 findings and their label strings."""

from __future__ import annotations

import numpy as np
import pytest

from meddiff_lab.data.cxr_labels import CXR_LABELS, FINDING_MASKS, LABEL_INDEX, labels_from_string, labels_to_string

NIH_ORDER = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)


def test_labels_are_the_nih_fourteen_in_order():
    assert CXR_LABELS == NIH_ORDER
    assert set(FINDING_MASKS) == {n.lower() for n in NIH_ORDER} - {"cardiomegaly"}
    assert [LABEL_INDEX[name] for name in NIH_ORDER] == list(range(14))


def test_label_strings_round_trip():
    v = labels_from_string("Cardiomegaly|Emphysema")
    assert v.dtype == np.float32 and v.shape == (14,)
    assert v.sum() == 2 and v[1] == 1 and v[10] == 1
    assert labels_to_string(v) == "Cardiomegaly|Emphysema"
    assert labels_from_string("No Finding").sum() == 0 and labels_to_string(np.zeros(14)) == "No Finding"
    assert labels_from_string("Pleural Thickening")[12] == 1
    assert labels_from_string(" effusion | MASS ")[[2, 4]].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="Toothache"):
        labels_from_string("Effusion|Toothache")
