"""The conditional zoo checks: instruments calibrated on real phantoms, every sample number beside a real one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meddiff_lab.metrics.conditional_evaluation import (
    _youden_thresholds,
    evaluate_controlnet,
    evaluate_findings_model,
    format_conditional_card,
)
from meddiff_lab.models import UNet
from meddiff_lab.models.conditioning import FINDINGS_METADATA_FIELDS
from meddiff_lab.models.controlnet import ControlledUNet
from meddiff_lab.models.pretrained import PretrainedModel
from meddiff_lab.training.instruments import build_instruments


def test_youden_threshold_separates_a_separable_finding():
    probs = np.array([[0.1], [0.2], [0.3], [0.7], [0.8]])
    labels = np.array([[0], [0], [0], [1], [1]])
    assert _youden_thresholds(probs, labels)[0] == pytest.approx(0.7)


@pytest.fixture(scope="module")
def instruments():
    torch.manual_seed(0)
    return build_instruments(image_size=64, n_train=48, n_validation=96, n_test=80, segmenter_steps=4)


def _loaded(model, conditioning):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    return PretrainedModel(
        model=model.eval(), scheduler=scheduler, name="tiny", config={"image_size": 64, "conditioning": conditioning}
    )


KW = dict(channels=(8, 16), attention_levels=(False, False), num_head_channels=8, norm_num_groups=8)


def test_findings_model_checks_report_real_references(instruments):
    torch.manual_seed(0)
    loaded = _loaded(UNet(**KW, cond_dim=len(FINDINGS_METADATA_FIELDS)), "findings_metadata")
    results = evaluate_findings_model(
        loaded, instruments, guidance=2.0, steps=2, n_per_finding=2, n_ctr=3, n_pairs=3, progress=False
    )
    assert results["ctr"]["truth_cardiomegaly_above_0.5"] > 0.9  # the phantom's own definition
    assert set(results["findings"]) and all(
        0 <= r["auroc"] <= 1 for r in results["findings"].values() if not np.isnan(r["auroc"])
    )
    # an untrained network cannot move the sex reader the way real anatomy does
    assert results["effects"]["sex"]["real_effect"] > 0.5
    assert not results["passes"]["sex"]
    card = format_conditional_card(results)
    assert "Cardiomegaly" in card and "NOT met" in card


@pytest.mark.parametrize("kind", ["mask", "edges"])
def test_controlnet_checks_beat_chance_only_when_the_control_is_followed(instruments, kind):
    torch.manual_seed(0)
    loaded = _loaded(ControlledUNet(UNet(**KW), mask_channels=1), kind)
    results = evaluate_controlnet(loaded, instruments, n=4, steps=2, progress=False)
    if kind == "edges":
        e = results["edge_f1"]
        assert e["same_anatomy_noiseless"][0] > e["chance_other_phantom"][0]  # the reference is meaningful
    assert "Must-show checks" in format_conditional_card(results)
    with pytest.raises(ValueError, match="ControlNet"):
        evaluate_controlnet(_loaded(UNet(**KW), "none"), instruments, n=2, steps=1, progress=False)
