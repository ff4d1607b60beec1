"""The 14 ChestX-ray14 findings, and the label strings of its metadata file.

ChestX-ray14 (NIH) writes the findings of an image as one string, ``"Cardiomegaly|Effusion"``, or
``"No Finding"``. Models want a multi-hot vector instead: ``(14,)`` float32, 1 where the finding is
present, in the order of :data:`CXR_LABELS`. The phantom, the real-dataset readers and the
conditioning code all use this one order.

Example:
    >>> labels_from_string("Cardiomegaly|Effusion")[:3]     # Atelectasis, Cardiomegaly, Effusion
    array([0., 1., 1.], dtype=float32)
    >>> labels_to_string(labels_from_string("No Finding"))
    'No Finding'
"""

from __future__ import annotations

import numpy as np

__all__ = ["CXR_LABELS", "FINDING_MASKS", "LABEL_INDEX", "labels_to_string", "labels_from_string"]

#: The 14 ChestX-ray14 findings in the NIH order (ChestMNIST uses the same order). "No Finding" is
#: all zeros.
CXR_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
#: finding name -> its column in a multi-hot vector
LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(CXR_LABELS)}

#: Masks of findings (key = label name in lower case). Cardiomegaly has none: its ground truth is
#: the ``heart`` mask and the cardiothoracic ratio.
FINDING_MASKS: tuple[str, ...] = tuple(name.lower() for name in CXR_LABELS if name != "Cardiomegaly")


def labels_to_string(multi_hot) -> str:
    """(14,) multi-hot → ChestX-ray14 ``Finding Labels`` string (``"No Finding"`` when empty)."""
    names = [CXR_LABELS[i] for i, v in enumerate(np.asarray(multi_hot).reshape(-1)) if v > 0.5]
    return "|".join(names) if names else "No Finding"


def labels_from_string(text: str) -> np.ndarray:
    """ChestX-ray14 ``Finding Labels`` string (``"Cardiomegaly|Emphysema"``) → (14,) float32 multi-hot.

    Accepts ``"No Finding"`` (all zeros), spaces around names, and ``Pleural Thickening`` for
    ``Pleural_Thickening``.

    Raises:
        ValueError: for a name that is not one of ``CXR_LABELS``.
    """
    out = np.zeros(len(CXR_LABELS), dtype=np.float32)
    for part in str(text).split("|"):
        name = part.strip().replace(" ", "_")
        if not name or name.lower() in ("no_finding", "nan"):
            continue
        match = LABEL_INDEX.get(name)
        if match is None:
            match = {k.lower(): v for k, v in LABEL_INDEX.items()}.get(name.lower())
        if match is None:
            raise ValueError(
                f"unknown finding {part!r} in Finding Labels {text!r}; expected names from "
                f"{', '.join(CXR_LABELS)} or 'No Finding'"
            )
        out[match] = 1.0
    return out
