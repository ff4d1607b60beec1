"""meddiff_lab/_json.py: one conversion to plain JSON values, for recorded metrics and model cards."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import torch

from meddiff_lab._json import to_jsonable


def test_tensors_arrays_tuples_keys_and_non_finite_numbers_become_plain_json():
    value = {
        "t": torch.tensor([1.5, 2.0]),
        "a": np.arange(3),
        "tup": (1, (2, 3)),
        4: float("nan"),
        "inf": float("-inf"),
        "none": None,
        "flag": True,
        "path": object,
    }
    out = to_jsonable(value)
    assert out["t"] == [1.5, 2.0] and out["a"] == [0, 1, 2] and out["tup"] == [1, [2, 3]]
    assert out["4"] == "nan" and out["inf"] == "-inf" and out["none"] is None and out["flag"] is True
    assert out["path"] == str(object)
    json.dumps(out, allow_nan=False)


def test_course_and_encoder_card_use_the_same_conversion():
    from meddiff_lab import course
    from meddiff_lab.training import encoder as encoder_training

    assert course._jsonable is to_jsonable
    assert encoder_training.to_jsonable is to_jsonable
    config = asdict(encoder_training.EncoderConfig())
    assert to_jsonable(config) == json.loads(json.dumps(config))
