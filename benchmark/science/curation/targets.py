"""Targets for the selection: `paper` (PluriHarms' harm-level target, uniform for the rest), `uniform`, or
a JSON object read from a file.

A targets file holds any of the dimensions `harm_level`, `actions`, `effects`, `values`, each either a
list of non-negative numbers (one per category, in the pool's order: 0.0 … 1.0 for the harm level) or
an object from category to number (harm levels as "0.5"; categories by their name with or without the
column prefix, e.g. "Privacy" or "action_Privacy"; categories left out get 0), and optionally `weights`
(dimension → non-negative weight in the objective; 0 leaves a dimension out).  Numbers are normalised
to sum to 1.  A dimension the file leaves out gets the default: the paper's target for the harm level,
uniform for the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .objective import DIMENSION_NAMES, HARM_LEVELS, PAPER_HARM_TARGET

TARGET_PRESETS = ("paper", "uniform")


class TargetsError(ValueError):
    """A targets specification that cannot be used; the message says what is wrong and where."""


def default_target(name: str, labels: tuple[str, ...], preset: str = "paper") -> np.ndarray:
    if preset not in TARGET_PRESETS:
        raise TargetsError(f"unknown targets {preset!r}: use one of {', '.join(TARGET_PRESETS)} or a JSON file")
    if name == "harm_level" and preset == "paper":
        return np.asarray(PAPER_HARM_TARGET, dtype=np.float64)
    return np.full(len(labels), 1.0 / len(labels))


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TargetsError(f"{where}: {value!r} is not a number")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise TargetsError(f"{where}: {value!r} must be a non-negative finite number")
    return value


def _harm_key(key: str) -> int:
    try:
        level = float(key)
    except ValueError:
        level = float("nan")
    index = round(level * 10) if math.isfinite(level) else -1
    if not 0 <= index < len(HARM_LEVELS) or abs(level - HARM_LEVELS[index]) > 1e-9:
        raise TargetsError(f"harm_level: {key!r} is not one of {', '.join(f'{x:.1f}' for x in HARM_LEVELS)}")
    return index


def target_parse(name: str, spec, labels: tuple[str, ...], prefix: str = "") -> np.ndarray:
    """One dimension's target from a list or an object (see the module docstring) → shares summing to 1."""
    values = np.zeros(len(labels))
    if isinstance(spec, list):
        if len(spec) != len(labels):
            raise TargetsError(f"{name}: {len(spec)} numbers given, the pool has {len(labels)} categories")
        for i, value in enumerate(spec):
            values[i] = _number(value, f"{name}[{i}]")
    elif isinstance(spec, Mapping):
        positions = {label: i for i, label in enumerate(labels)}
        for key, value in spec.items():
            if name == "harm_level":
                index = _harm_key(str(key))
            else:
                bare = str(key).removeprefix(prefix) if prefix else str(key)
                if bare not in positions:
                    known = ", ".join(labels[:8]) + (", …" if len(labels) > 8 else "")
                    raise TargetsError(f"{name}: unknown category {key!r} (the pool has {known})")
                index = positions[bare]
            values[index] = _number(value, f"{name}[{key!r}]")
    else:
        raise TargetsError(f"{name}: expected a list of numbers or an object, not {type(spec).__name__}")
    total = values.sum()
    if total <= 0:
        raise TargetsError(f"{name}: the target has no positive share")
    return values / total


def targets_resolve(spec: str | Mapping, available: Mapping[str, tuple[tuple[str, ...], str]]):
    """(targets, weights) for the dimensions the pool has.

    `spec` is a preset name or a parsed JSON object; `available` maps each dimension the pool has to
    (its category labels, its column prefix).  Raises `TargetsError` naming the problem.
    """
    if isinstance(spec, str):
        return {name: default_target(name, labels, spec) for name, (labels, _) in available.items()}, {}
    if not isinstance(spec, Mapping):
        raise TargetsError("a targets file must hold a JSON object")
    unknown = [key for key in spec if key not in (*DIMENSION_NAMES, "weights")]
    if unknown:
        raise TargetsError(
            f"unknown key(s) {', '.join(map(repr, unknown))}: use {', '.join(DIMENSION_NAMES)} and weights"
        )
    targets = {}
    for name, (labels, prefix) in available.items():
        if name in spec:
            targets[name] = target_parse(name, spec[name], labels, prefix)
        else:
            targets[name] = default_target(name, labels)
    missing = [name for name in DIMENSION_NAMES if name in spec and name not in available]
    if missing:
        raise TargetsError(f"the pool has no {', '.join(missing)} features, but the targets file sets them")
    weights_spec = spec.get("weights", {})
    if not isinstance(weights_spec, Mapping):
        raise TargetsError("weights: expected an object from dimension to number")
    weights = {}
    for key, value in weights_spec.items():
        if key not in DIMENSION_NAMES:
            raise TargetsError(f"weights: unknown dimension {key!r}")
        weights[key] = _number(value, f"weights[{key!r}]")
    if available and all(weights.get(name, 1.0) == 0 for name in available):
        raise TargetsError("weights: every dimension of the pool has weight 0")
    return targets, weights
