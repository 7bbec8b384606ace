"""The one interface every predictor follows, and the registry that names them.

A predictor is shaped like a scikit-learn estimator: hyperparameters are stored by `__init__`
unchanged, learned state lives in attributes ending in `_`, `fit` returns `self`.

Data (long DataFrames, one row per annotator × prompt; see `benchmark.science.protocol`):
  - `annotator` (str), `prompt` (str), `text` (prompt text), `harm_level` and the prompt feature
    columns (`action_*`, `effect_*`, `value_topic_*`), the annotator's trait columns (demographics as
    strings, `Factor_1..3`), and in training data `score`: the rating on the 0–1 scale (rating / 100;
    Unsure rows are never present).
  - `fit(train)` sees only what the condition allows (see `Condition`).
  - `predict(test)` gets the rows to predict (no `score` column) and returns a Series of 0–1 scores
    aligned with `test.index`. In the aggregated condition, `test.annotator` is `AGGREGATE` and one
    prediction per prompt is expected.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import pandas as pd

AGGREGATE = "*"
CONDITIONS = ("individual", "aggregated", "new_annotator", "warm")


class Predictor:
    """Base class: subclasses set `name`, `conditions`, and implement `fit` and `predict`."""

    name: ClassVar[str] = ""
    conditions: ClassVar[tuple[str, ...]] = CONDITIONS
    description: ClassVar[str] = ""

    def fit(self, train: pd.DataFrame) -> Predictor:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, test: pd.DataFrame) -> pd.Series:  # pragma: no cover - interface
        raise NotImplementedError

    def get_params(self) -> dict:
        """Hyperparameters as passed to __init__ (stored unchanged, scikit-learn style)."""

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}


REGISTRY: dict[str, type[Predictor]] = {}


def register(cls: type[Predictor]) -> type[Predictor]:
    """Class decorator: make a predictor available by its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"two predictors are named {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


def get_predictor(name: str, **params) -> Predictor:
    if name not in REGISTRY:
        raise KeyError(f"unknown predictor {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**params)
