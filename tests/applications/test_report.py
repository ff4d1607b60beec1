"""meddiff_lab/applications/report.py: restoration scores on exact cases and the Markdown table."""

from __future__ import annotations

import math

import pytest
import torch

from meddiff_lab.applications import markdown_table, score_restoration, to_display
from meddiff_lab.metrics.lesion import find_lesions


def test_to_display_maps_and_clips():
    assert torch.equal(to_display(torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0])), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_scores_of_a_known_error():
    truth = torch.zeros(2, 1, 16, 16)
    restored = truth + 0.2  # 0.1 on the [0, 1] convention: MSE 0.01, PSNR 20 dB
    row = score_restoration(restored, truth)
    assert row["psnr"] == pytest.approx(20.0, abs=1e-4)
    assert row["nmse"] == pytest.approx(0.01 / 0.25)
    assert score_restoration(truth, truth)["ssim"] == pytest.approx(1.0)


def test_region_scores_only_the_region_and_lesions_add_cnr():
    truth = torch.zeros(1, 1, 16, 16)
    restored = truth.clone()
    restored[..., :4, :4] = 0.2
    region = torch.zeros_like(truth, dtype=torch.bool)
    region[..., 8:, 8:] = True
    assert (
        math.isinf(score_restoration(restored, truth, region=region)["psnr"])
        or score_restoration(restored, truth, region=region)["psnr"] > 100
    )
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 6:10, 6:10] = True
    noisy = truth + 0.05 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    noisy[0, 0][masks[0]] += 0.6
    row = score_restoration(noisy, truth, lesions=find_lesions(masks))
    assert row["cnr"] > 3


def test_markdown_table():
    text = markdown_table(
        {"bicubic": {"psnr": 30.123, "note": "x"}, "net": {"psnr": float("nan")}}, {"psnr": ".2f", "note": "s"}
    )
    assert text.splitlines() == [
        "| method | psnr | note |",
        "|---|---:|---:|",
        "| bicubic | 30.12 | x |",
        "| net | – | – |",
    ]
