"""Tests for meddiff_lab/models/conditioning.py: the zoo's condition vectors, conditional models and guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_runs import TINY_UNET

from meddiff_lab.models import UNet
from meddiff_lab.models.conditioning import (
    FINDINGS_METADATA_FIELDS,
    VectorGuidance,
    build_zoo_model,
    findings_metadata_to_cond,
)


def test_condition_vectors_encode_findings_and_patient_and_are_never_all_zero():
    labels = np.zeros((2, 14), np.float32)
    labels[0, 1] = 1  # Cardiomegaly
    cond = findings_metadata_to_cond(
        labels, [{"age": 70, "sex": "F", "view": "PA"}, {"age": 30, "sex": "M", "view": "AP"}]
    )
    assert cond.shape == (2, len(FINDINGS_METADATA_FIELDS)) == (2, 18)
    assert cond[0, 1] == 1 and cond[1, 1] == -1 and (cond[1, :14] == -1).all(), "No Finding is all -1, not zeros"
    assert cond[0, 14:].tolist() == [1.0, 1.0, 1.0, 1.0] and cond[1, 14:].tolist() == [-1.0, -1.0, -1.0, 1.0]
    assert (cond.abs().sum(1) > 0).all()
    with pytest.raises(ValueError, match="view"):
        findings_metadata_to_cond(labels[:1], [{"age": 50, "sex": "F", "view": "LL"}])
    with pytest.raises(ValueError, match="14"):
        findings_metadata_to_cond(np.zeros((1, 3)), [{"age": 50, "sex": "F", "view": "PA"}])


def test_models_start_where_they_should():
    vector_model = build_zoo_model("findings_metadata", TINY_UNET)
    assert isinstance(vector_model, UNet) and vector_model.cond_dim == 18
    base = UNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_UNET.items()}).eval()
    controlled = build_zoo_model("edges", TINY_UNET, base=base).eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 500])
    with torch.no_grad():
        assert torch.equal(controlled(x, t, mask=torch.ones(2, 1, 16, 16)), base(x, t)), "zero convolutions"
    assert not any(p.requires_grad for p in controlled.base.parameters())
    with pytest.raises(ValueError, match="base"):
        build_zoo_model("mask", TINY_UNET)


def test_guidance_one_is_the_conditional_model_and_zero_the_unconditional():
    torch.manual_seed(0)
    model = build_zoo_model("findings_metadata", TINY_UNET).eval()
    x, t = torch.randn(3, 1, 16, 16), torch.tensor(200)
    cond = torch.randn(3, 18)
    with torch.no_grad():
        assert torch.allclose(VectorGuidance(model, cond, 1.0)(x, t), model(x, t.expand(3), cond=cond), atol=1e-5)
        assert torch.allclose(
            VectorGuidance(model, cond, 0.0)(x, t), model(x, t.expand(3), cond=torch.zeros(3, 18)), atol=1e-5
        )
        w3 = VectorGuidance(model, cond, 3.0)(x, t)
        c, u = model(x, t.expand(3), cond=cond), model(x, t.expand(3), cond=torch.zeros(3, 18))
        assert torch.allclose(w3, u + 3 * (c - u), atol=1e-4)


def test_the_training_zoo_keeps_the_old_names():
    from meddiff_lab.training import zoo

    assert zoo.VectorGuidance is VectorGuidance and zoo.build_zoo_model is build_zoo_model
    assert zoo.findings_metadata_to_cond is findings_metadata_to_cond
