"""Baselines: where arithmetic alone puts a method.

`annotator_mean` / `annotator_median` use the annotator's own training ratings where the condition
gives them (individual, warm); for a row whose annotator has none — every row in aggregated
(annotator = AGGREGATE) and new_annotator (held-out people) — they fall back to the global mean /
median of the training scores.  `prompt_mean` / `prompt_median` need ratings of the predicted prompts
by other people, so they run only where those exist (new_annotator, warm).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.science.predictors.base import Predictor, register
from benchmark.science.predictors.common import histogram_on_support


@register
class UniformRandom(Predictor):
    name = "uniform_random"
    description = "Uniform on [0, 1], seeded: the chance level (expected MAE ≈ 0.39 on the release)."

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train: pd.DataFrame) -> UniformRandom:
        self.n_train_ = len(train)
        return self

    def predict_distribution(self, test: pd.DataFrame) -> np.ndarray:
        """Chance as a distribution: uniform over the rating grid."""
        return np.full((len(test), 101), 1.0 / 101)

    def predict(self, test: pd.DataFrame) -> pd.Series:
        rng = np.random.default_rng([self.seed, self.n_train_, len(test)])
        return pd.Series(rng.uniform(0.0, 1.0, size=len(test)), index=test.index)


@register
class GlobalMean(Predictor):
    name = "global_mean"
    description = "The mean training score, for every row."

    def fit(self, train: pd.DataFrame) -> GlobalMean:
        self.value_ = float(train["score"].mean())
        return self

    def predict(self, test: pd.DataFrame) -> pd.Series:
        return pd.Series(self.value_, index=test.index, dtype=float)


@register
class GlobalMedian(Predictor):
    name = "global_median"
    description = (
        "The median training score (the best constant for MAE), for every row; in aggregated, the "
        "distribution of all training ratings as its distributional prediction."
    )

    def fit(self, train: pd.DataFrame) -> GlobalMedian:
        self.value_ = float(train["score"].median())
        self.histogram_ = histogram_on_support(train["score"].to_numpy(dtype=float))
        return self

    def predict_distribution(self, test: pd.DataFrame) -> np.ndarray:
        """The same distribution for every prompt: the yardstick for distributional predictions."""
        return np.tile(self.histogram_, (len(test), 1))

    def predict(self, test: pd.DataFrame) -> pd.Series:
        return pd.Series(self.value_, index=test.index, dtype=float)


class _GroupStatistic(Predictor):
    """A statistic of the training scores grouped by `key`, with the global statistic as fallback."""

    key = "annotator"
    how = "mean"

    def fit(self, train: pd.DataFrame):
        grouped = train.groupby(self.key, sort=False)["score"]
        self.values_ = grouped.median() if self.how == "median" else grouped.mean()
        self.fallback_ = float(train["score"].median() if self.how == "median" else train["score"].mean())
        return self

    def predict(self, test: pd.DataFrame) -> pd.Series:
        values = test[self.key].astype(str).map(self.values_).astype(float)
        return values.fillna(self.fallback_)


@register
class AnnotatorMean(_GroupStatistic):
    name = "annotator_mean"
    description = "The annotator's mean training rating (global mean for unseen annotators / aggregated)."
    how = "mean"


@register
class AnnotatorMedian(_GroupStatistic):
    name = "annotator_median"
    description = "The annotator's median training rating (global median for unseen annotators / aggregated)."
    how = "median"


@register
class PromptMean(_GroupStatistic):
    name = "prompt_mean"
    description = "Other annotators' mean rating of the same prompt."
    conditions = ("new_annotator", "warm")
    key = "prompt"
    how = "mean"


@register
class PromptMedian(_GroupStatistic):
    name = "prompt_median"
    description = "Other annotators' median rating of the same prompt (the best per-prompt constant for MAE)."
    conditions = ("new_annotator", "warm")
    key = "prompt"
    how = "median"
