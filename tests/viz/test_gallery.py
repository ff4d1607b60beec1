"""Tests of meddiff_lab/viz/gallery.py: phantoms with their lung, heart and finding outlines."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from meddiff_lab.data.phantom import generate_phantoms
from meddiff_lab.viz.gallery import phantom_gallery, save_gallery


def test_one_titled_panel_per_phantom_with_outlines():
    batch = generate_phantoms(3, 32, seed=0)
    fig = phantom_gallery(batch, cols=2)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 4 and len(shown) == 3  # 2 x 2 grid, the last cell empty
    assert shown[0].get_title().startswith(batch.metadata[0]["image_index"])
    assert "CTR" in shown[0].get_title()
    assert any(ax.collections for ax in shown), "the masks are outlined"
    assert fig.legends
    plain = phantom_gallery(batch, cols=3, outlines=False)
    assert not any(ax.collections for ax in plain.axes) and not plain.legends
    plt.close("all")


def test_gallery_writes_a_png(tmp_path):
    out = save_gallery(tmp_path / "sub" / "gallery.png", n=2, image_size=32, cols=2)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=".png"):
        save_gallery(tmp_path / "gallery.jpg", n=1, image_size=32)
