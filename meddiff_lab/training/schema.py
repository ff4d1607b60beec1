"""Typed, range-checked config fields: each key's kind and range written once, one message per bad key.

A config dataclass lists a :class:`Field` rule per key; :func:`check_fields` turns what a YAML file
hands over into the declared types and refuses everything else, naming the key, what was expected
and what was given::

    max_grad_norm: expected a number > 0 or null, got -1

YAML 1.1 (PyYAML) reads ``1e-4`` (no dot) as a *string*; a string that spells a number is accepted
for numeric keys. An integer key accepts ``100`` and ``100.0`` but not ``2.7``; a boolean never
counts as a number.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Field", "ConfigError", "check_fields", "read_yaml_mapping", "as_config"]

ConfigT = TypeVar("ConfigT")


class ConfigError(ValueError):
    """A config key has the wrong type or an out-of-range value (the message names the key)."""


@dataclass(frozen=True)
class Field:
    """What one config key may hold.

    Attributes:
        kind: ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"choice"`` (one of ``choices``),
            ``"path"`` (a string or path), ``"mapping"`` or ``"floats"`` (a list of ``length`` numbers).
        low, high: the allowed range (inclusive unless ``low_open`` / ``high_open``).
        optional: ``None`` (YAML ``null``) is allowed.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    choices: tuple = ()
    length: int | None = None

    def describe(self) -> str:
        """What is expected, in words: ``"an integer >= 1"``, ``"a number in [0, 1)"``."""
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind in ("int", "float"):
            noun = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                text = (
                    f"{noun} in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}"
                )
            elif self.low is not None:
                text = f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
            elif self.high is not None:
                text = f"{noun} {'<' if self.high_open else '<='} {self.high:g}"
            else:
                text = f"a finite {noun.split()[-1]}"
        else:
            text = {
                "bool": "true or false",
                "str": "a string",
                "path": "a path (string)",
                "mapping": "a mapping of keys",
                "floats": f"a list of {self.length} numbers",
            }[self.kind]
        return text + (" or null" if self.optional else "")

    def coerce(self, value: Any) -> Any:
        """``value`` in the declared type; raises ``ValueError`` (without the key) when it does not fit."""
        if value is None:
            if self.optional:
                return None
            raise ValueError
        if self.kind == "int":
            return self._in_range(_as_int(value))
        if self.kind == "float":
            return self._in_range(_as_float(value))
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError
        if self.kind == "str":
            if isinstance(value, str):
                return value
            raise ValueError
        if self.kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return value
            raise ValueError
        if self.kind == "path":
            if isinstance(value, (str, os.PathLike)) and str(value):
                return str(value)
            raise ValueError
        if self.kind == "mapping":
            if isinstance(value, Mapping):
                return dict(value)
            raise ValueError
        if self.kind == "floats":
            if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__") or len(value) != self.length:
                raise ValueError
            return tuple(self._in_range(_as_float(v)) for v in value)
        raise TypeError(f"unknown field kind {self.kind!r}")  # a bug in a rule table, not a user error

    def _in_range(self, number):
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            raise ValueError
        if self.high is not None and (number >= self.high if self.high_open else number > self.high):
            raise ValueError
        return number


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        number = float(value.strip())  # "1e-4": YAML 1.1 leaves it a string
    else:
        raise ValueError
    if not math.isfinite(number):
        raise ValueError
    return number


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, numbers.Integral):
        return int(value)
    number = _as_float(value)
    if not number.is_integer():
        raise ValueError
    return int(number)


def check_fields(values: Mapping[str, Any], rules: Mapping[str, Field]) -> dict[str, Any]:
    """Check and coerce every key of ``values`` that has a rule; returns the coerced values.

    Raises:
        ConfigError: naming every key whose value does not fit its rule (one line).
    """
    coerced, problems = {}, []
    for key, value in values.items():
        rule = rules.get(key)
        if rule is None:
            coerced[key] = value
            continue
        try:
            coerced[key] = rule.coerce(value)
        except (ValueError, TypeError, OverflowError):
            problems.append(f"{key}: expected {rule.describe()}, got {value!r}")
    if problems:
        raise ConfigError("; ".join(problems))
    return coerced


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping a YAML config file holds; every failure names the file (``what``: e.g. ``"training config"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, unreadable text, malformed YAML, an empty file, or not a mapping.
    """
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; expected a YAML file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {exc.start}); expected a YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{what} {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        raise ValueError(f"{what} {path} is empty; expected a mapping of keys (see the files in configs/)")
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} {path} must hold a mapping of keys, got a {type(data).__name__}")
    return dict(data)


def as_config(
    config: Any, cls: type[ConfigT], from_mapping: Callable[[Mapping[str, Any]], ConfigT], what: str
) -> ConfigT:
    """``config`` as a ``cls`` (a config dataclass): given one, a mapping, or the path of a YAML file.

    Args:
        config: a ``cls`` (returned as is), a mapping (built with ``from_mapping``) or a ``str`` /
            path-like naming a YAML file (read with :func:`read_yaml_mapping`, then built).
        cls: the config class, e.g. ``TrainConfig``.
        from_mapping: builds a ``cls`` from a mapping, e.g. ``TrainConfig.from_dict``.
        what: the config's name in messages, e.g. ``"training config"``.

    Raises:
        ValueError: a bad key or value; for a file the message starts with ``what`` and the path.
        TypeError: ``config`` is none of the three.
    """
    if isinstance(config, cls):
        return config
    if isinstance(config, Mapping):
        return from_mapping(config)
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        data = read_yaml_mapping(path, what)
        try:
            return from_mapping(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} {path}: {exc}") from None
    raise TypeError(
        f"{what}: expected a {cls.__name__}, a mapping or the path of a YAML file, got {type(config).__name__}"
    )
