"""Plain JSON values from what the package records: numbers, tensors, arrays, tuples, dataclass dicts."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: tensors and arrays become lists (``.tolist()``), tuples lists,
    dict keys strings, NaN and infinities the strings ``"nan"``/``"inf"``/``"-inf"``, anything else
    that is not a str, int, float, bool or None its ``str()``."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
