r"""Holes to inpaint, placed by the phantom's anatomy, and the heart's size measured after filling.

* :func:`heart_border_holes`: a square over the patient's left heart border (the image's right heart
  edge, radiological display) at the heart's widest row, the edge the cardiothoracic ratio measures.
* :func:`lesion_holes`: a square centred on the largest lesion of each image that has one (on the lesion
  pixel nearest its centroid, so a crescent's hole still covers it).
* :func:`ctr_after_fill`: the cardiothoracic ratio of an inpainted image. Outside the hole the heart
  mask is known; inside, a pixel counts as heart when it is brighter than the midpoint between the
  truth's mean heart and mean lung intensity in that hole, and only the part connected to the known
  heart is kept (a bright rib in the hole is not heart). Applied to the truth itself the rule gives
  the floor: the error of the measurement, not of the inpainting.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from meddiff_lab.data.phantom import cardiothoracic_ratio_from_masks


def hole_around(row: float, col: float, side: int, size: int) -> np.ndarray:
    """(size, size) bool: a ``side × side`` square centred on (row, col), moved inside the image."""
    if not 0 < side <= size:
        raise ValueError(f"hole side must be in 1..{size} pixels, got {side!r}")
    top = int(np.clip(round(row) - side // 2, 0, size - side))
    left = int(np.clip(round(col) - side // 2, 0, size - side))
    hole = np.zeros((size, size), bool)
    hole[top : top + side, left : left + side] = True
    return hole


def heart_border_holes(heart_masks: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W) bool: one hole per image over the heart's right-hand (image) edge at its widest row."""
    holes = []
    for heart in np.asarray(heart_masks, bool):
        if not heart.any():
            raise ValueError("an image has an empty heart mask; heart-border holes need a heart")
        row = int(np.argmax(heart.sum(1)))
        holes.append(hole_around(row, np.nonzero(heart[row])[0].max(), side, heart.shape[-1]))
    return np.stack(holes)


def lesion_holes(lesion_masks: np.ndarray, side: int, min_pixels: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Holes centred on the lesion pixels of the images with at least ``min_pixels`` of them.

    Returns:
        (index of those images (K,), holes (K, H, W) bool).
    """
    masks = np.asarray(lesion_masks, bool)
    index = np.nonzero(masks.reshape(len(masks), -1).sum(1) >= min_pixels)[0]
    size = masks.shape[-1]
    holes = []
    for i in index:
        labels, count = ndimage.label(masks[i], np.ones((3, 3), bool))
        largest = labels == 1 + int(np.argmax(ndimage.sum(masks[i], labels, range(1, count + 1))))
        pixels = np.argwhere(largest)
        centre = pixels[np.argmin(((pixels - pixels.mean(0)) ** 2).sum(1))]  # a lesion pixel near its centroid
        holes.append(hole_around(*centre, side, size))
    return index, (np.stack(holes) if holes else np.zeros((0, size, size), bool))


def ctr_after_fill(
    filled, truth, heart: np.ndarray, right_lung: np.ndarray, left_lung: np.ndarray, holes: np.ndarray
) -> np.ndarray:
    """(N,) cardiothoracic ratio of ``filled`` images, the heart re-measured inside ``holes``.

    Args:
        filled, truth: (N, 1, H, W) in [-1, 1] (the inpainted images and the truth, for the threshold).
        heart, right_lung, left_lung, holes: (N, H, W) bool masks of the truth.
    """
    x = torch.as_tensor(filled)[:, 0].numpy()
    t = torch.as_tensor(truth)[:, 0].numpy()
    lungs = right_lung | left_lung
    out = []
    for j in range(len(x)):
        in_heart, in_lung = holes[j] & heart[j], holes[j] & lungs[j]
        if not in_heart.any() or not in_lung.any():  # no border in the hole: nothing to re-measure
            estimate = heart[j]
        else:
            cut = (t[j][in_heart].mean() + t[j][in_lung].mean()) / 2
            candidate = np.where(holes[j], x[j] > cut, heart[j])
            labels, _ = ndimage.label(candidate)
            keep = np.unique(labels[heart[j] & ~holes[j] & candidate])
            estimate = np.isin(labels, keep[keep > 0])
        out.append(cardiothoracic_ratio_from_masks(estimate, right_lung[j] & ~estimate, left_lung[j] & ~estimate))
    return np.asarray(out, np.float32)


__all__ = ["hole_around", "heart_border_holes", "lesion_holes", "ctr_after_fill"]
