"""A gallery of phantom radiographs with their ground truth drawn on: lung fields, heart, findings.

What ``meddiff-lab data gallery`` draws (``data/gallery.png``), and a quick look at a
:class:`~meddiff_lab.data.phantom.PhantomBatch` in a notebook::

    from meddiff_lab.data import generate_phantoms
    from meddiff_lab.viz.gallery import phantom_gallery

    phantom_gallery(generate_phantoms(8, image_size=128, seed=0))
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from meddiff_lab.data.cxr_labels import labels_to_string
from meddiff_lab.data.phantom import PhantomBatch, generate_phantoms

__all__ = ["phantom_gallery", "save_gallery"]

#: (mask, colour) drawn as outlines, in drawing order
OUTLINES = (("right_lung", "#35b7ff"), ("left_lung", "#35b7ff"), ("heart", "#ff5a5a"), ("lesion", "#ffd23f"))
_LEGEND = (("lung fields", "#35b7ff"), ("heart", "#ff5a5a"), ("findings", "#ffd23f"))


def phantom_gallery(batch: PhantomBatch, cols: int = 4, size: float = 3.0, outlines: bool = True):
    """A grid of phantoms with lungs (blue), heart (red) and findings (yellow) outlined and labels written.

    Args:
        batch: the phantoms; ``images`` (N, H, W) in [0, 1] shown black..white, and the masks of
            ``OUTLINES`` that it has ((N, H, W) bool).
        cols: images per row.
        size: side of one image in inches.
        outlines: draw the mask outlines and their legend.

    Returns:
        The matplotlib figure. Each title gives the image index, view, sex, age, cardiothoracic ratio
        and findings.
    """
    n = len(batch)
    cols = max(1, min(cols, n))
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.9), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(batch.images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="bilinear")
        if outlines:
            for name, colour in OUTLINES:
                if name in batch.masks and batch.masks[name][i].any():
                    ax.contour(batch.masks[name][i].astype(float), levels=[0.5], colors=[colour], linewidths=0.8)
        meta = batch.metadata[i]
        findings = labels_to_string(batch.labels[i]).replace("|", ", ")
        ax.set_title(
            f"{meta['image_index']}  {meta['view']} {meta['sex']} {meta['age']} y  "
            f"CTR {batch.cardiothoracic_ratio[i]:.2f}\n{findings}",
            fontsize=7.5,
        )
    if outlines:
        handles = [Line2D([], [], color=colour, label=label) for label, colour in _LEGEND]
        fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=9)
    fig.suptitle(
        "Synthetic chest radiographs (radiological display: patient's left on the viewer's right)", fontsize=11
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def save_gallery(path, n: int = 12, image_size: int = 256, seed: int = 0, cols: int = 4, dpi: int = 110) -> Path:
    """Generate ``n`` phantoms and save :func:`phantom_gallery` as a PNG at ``path``; returns ``path``.

    Raises:
        ValueError: when ``path`` does not end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"gallery path must end in .png, got {path}")
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        plt.switch_backend("Agg")  # a file needs no window (and a headless machine has none)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = phantom_gallery(generate_phantoms(n, image_size, seed), cols=cols)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
