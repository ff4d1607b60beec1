r"""Low-dose radiographs from the phantom's own photon model, with the noiseless image as truth.

The phantom counts photons: a pixel expecting :math:`\lambda` photons receives
:math:`\lambda + \sqrt{\lambda}\,z` (Poisson's variance equals its mean), so at a relative dose
:math:`d` the relative quantum noise grows as :math:`1/\sqrt d` before the detector blur, the log and
the scanner's display curve. ``generate_phantoms(..., dose=d)`` draws the same ``z`` at every dose, so
the same seed gives the same patients and the noise of dose :math:`d` is, to first order,
:math:`1/\sqrt d` times that of full dose (the curve and the clipping bend it a little).
``quantum_noise=False`` renders the expected counts: the truth a denoiser should recover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from meddiff_lab.data.intensity import to_model_batch
from meddiff_lab.data.phantom import generate_phantoms

#: Phantom images (N, H, W) in [0, 1] → (N, 1, H, W) float32 in [-1, 1]: :func:`meddiff_lab.data.to_model_batch`
#: under the name this module has always exported.
to_model_range = to_model_batch


@dataclass
class LowDoseSet:
    """The same phantoms at several doses.

    Attributes:
        truth: (N, 1, H, W) float32 in [-1, 1], the noiseless images.
        noisy: dose → (N, 1, H, W) float32 in [-1, 1].
        masks: name → (N, H, W) bool (``lesion``, organs and one per finding).
        labels: (N, 14) multi-hot over ``CXR_LABELS``.
        cardiothoracic_ratio: (N,).
    """

    truth: torch.Tensor
    noisy: dict[float, torch.Tensor]
    masks: dict[str, np.ndarray]
    labels: np.ndarray
    cardiothoracic_ratio: np.ndarray
    metadata: list[dict] = field(default_factory=list)

    def noise_std(self, dose: float) -> float:
        """Measured std of ``noisy[dose] - truth`` (model units, [-1, 1])."""
        return float((self.noisy[dose] - self.truth).std())

    def __len__(self) -> int:
        return len(self.truth)


def simulate_low_dose(n: int, image_size: int, seed: int, doses: Sequence[float] = (1.0, 0.25, 0.1)) -> LowDoseSet:
    """``n`` phantoms at every dose in ``doses`` (relative photon fluence; 1.0 = full) and without noise.

    Raises:
        ValueError: for a dose outside (0, 100] (from the phantom), or no doses.
    """
    doses = [float(d) for d in doses]
    if not doses:
        raise ValueError("doses must name at least one relative dose, e.g. (1.0, 0.25, 0.1)")
    clean = generate_phantoms(n, image_size, seed, quantum_noise=False)
    noisy = {d: to_model_range(generate_phantoms(n, image_size, seed, masks=(), dose=d).images) for d in doses}
    return LowDoseSet(
        to_model_range(clean.images), noisy, clean.masks, clean.labels, clean.cardiothoracic_ratio, clean.metadata
    )


__all__ = ["LowDoseSet", "simulate_low_dose", "to_model_range"]
