"""One row per method: restoration scores against the truth, and the tables notebook 09 shows.

:func:`score_restoration` computes, for restored images against their noiseless truth, on the [0, 1]
display convention (outputs clipped to the valid range first, the same for every method): PSNR,
SSIM and NMSE (:mod:`meddiff_lab.metrics.image`), and the median lesion contrast-to-noise ratio
(:mod:`meddiff_lab.metrics.lesion`) when lesions are given. The tables are written by
:func:`meddiff_lab.viz.tables.markdown_table` (kept importable from here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from meddiff_lab.metrics.image import nmse, psnr, ssim
from meddiff_lab.metrics.lesion import Lesion, lesion_cnr
from meddiff_lab.viz.tables import markdown_table, show_table


def to_display(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) in [-1, 1] → [0, 1], clipped."""
    return ((torch.as_tensor(images).float() + 1) / 2).clamp(0, 1)


def score_restoration(
    restored: torch.Tensor,
    truth: torch.Tensor,
    lesions: Sequence[Lesion] | None = None,
    region: torch.Tensor | None = None,
) -> dict[str, float]:
    """PSNR (dB), SSIM, NMSE of ``restored`` against ``truth`` (both (N, 1, H, W) in [-1, 1]), and lesion CNR.

    Args:
        lesions: lesions of the truth (:func:`meddiff_lab.metrics.lesion.find_lesions`): adds ``"cnr"``,
            the median CNR over them.
        region: (N, 1, H, W) bool: score only these pixels (PSNR and NMSE only; e.g. an inpainted hole).
    """
    x, t = to_display(restored), to_display(truth)
    if x.shape != t.shape:
        raise ValueError(f"restored {tuple(x.shape)} and truth {tuple(t.shape)} must have the same shape")
    if region is not None:
        r = torch.as_tensor(region).bool().expand_as(t)
        mse = float(((x - t)[r] ** 2).mean())
        return {
            "psnr": 10 * float(np.log10(1.0 / max(mse, 1e-12))),
            "nmse": float(((x - t)[r] ** 2).sum() / (t[r] ** 2).sum()),
        }
    row = {"psnr": psnr(x, t, 1.0), "ssim": ssim(x, t, 1.0), "nmse": nmse(x, t)}
    if lesions:
        row["cnr"] = float(np.median(lesion_cnr(x, list(lesions))))
    return row


__all__ = ["to_display", "score_restoration", "markdown_table", "show_table"]
