"""Image grids as PNG files (no matplotlib): what the trainer writes during a run and ``meddiff-lab sample``
writes at the end. For a grid in a figure use :func:`meddiff_lab.viz.plots.show_images`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: black pixels between and around the images of a grid
GUTTER = 2


def save_image_grid(images: torch.Tensor, path: str | Path, ncols: int | None = None) -> Path:
    """Write images as one grey PNG grid with 2 px black gutters; returns ``path``.

    Args:
        images: ``(N, 1, H, W)`` in [-1, 1] (values outside are clipped).
        path: the PNG to write (its folder is created).
        ncols: images per row; default ``ceil(sqrt(N))``.
    """
    if images.ndim != 4 or images.shape[1] != 1 or len(images) == 0:
        raise ValueError(f"save_image_grid expects (N, 1, H, W) images with N >= 1, got shape {tuple(images.shape)}")
    arr = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).numpy()[:, 0]
    n, h, w = arr.shape
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    pad = GUTTER
    grid = np.zeros((nrows * (h + pad) + pad, ncols * (w + pad) + pad), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = arr[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
