"""Steering: refit the weights to a group's ratings and see which items change side."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .aggregation import AggregationWeights, compile_trees, tree_scores
from .features import FeatureLevelSafetyAnalyst, FeatureWeights
from .fitting import SafetyAnalystAggregator


@dataclass
class SteeringResult:
    """New weights fitted to a group, and the items whose side (``H > 0`` = harmful) changed."""

    weights: AggregationWeights | FeatureWeights
    old_score: np.ndarray
    new_score: np.ndarray
    model: SafetyAnalystAggregator | FeatureLevelSafetyAnalyst

    @property
    def changed(self) -> np.ndarray:
        """Boolean mask of items that cross H = 0."""
        return (self.old_score > 0) != (self.new_score > 0)

    @property
    def became_harmful(self) -> np.ndarray:
        return np.flatnonzero((self.old_score <= 0) & (self.new_score > 0))

    @property
    def became_benign(self) -> np.ndarray:
        return np.flatnonzero((self.old_score > 0) & (self.new_score <= 0))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "old_score": self.old_score,
                "new_score": self.new_score,
                "old_harmful": self.old_score > 0,
                "new_harmful": self.new_score > 0,
                "changed": self.changed,
            }
        )


def steer(
    weights: AggregationWeights | FeatureWeights | None,
    *,
    trees_or_features,
    ratings,
    target: str = "rating",
    l2: float | None = None,
    loss: str = "squared",
    sample_weight=None,
    use_effects: bool = False,
    rating_scale: float = 100.0,
) -> SteeringResult:
    """Fit weights to a group's ratings (or labels) starting from, and pulled toward, `weights`.

    With trees, the tree-level weights are refitted without calibration, so the new
    :class:`AggregationWeights` alone are the group's classifier (``H > 0`` <=> predicted rating > 50).
    With a DataFrame / array of category features, a :class:`FeatureLevelSafetyAnalyst` is refitted
    (its offset and scale are part of the model, so its H includes them). Ratings for the same item
    from several people may be given as repeated rows. ``l2`` (pull toward `weights`) defaults to the
    model's own default (1.0 for trees, 0.01 for features).
    """
    kwargs = {} if l2 is None else {"l2": l2}
    if isinstance(trees_or_features, (pd.DataFrame, np.ndarray)):
        start = (
            FeatureWeights.reference()
            if weights is None
            else (FeatureWeights.from_aggregation(weights) if isinstance(weights, AggregationWeights) else weights)
        )
        before = FeatureLevelSafetyAnalyst(start, use_effects=use_effects, rating_scale=rating_scale)
        model = FeatureLevelSafetyAnalyst(
            start, use_effects=use_effects, loss=loss, rating_scale=rating_scale, **kwargs
        )
        model.fit(trees_or_features, ratings, target=target, sample_weight=sample_weight)
        old, new = before.decision_function(trees_or_features), model.decision_function(trees_or_features)
    else:
        compiled = compile_trees(trees_or_features)
        start = weights if weights is not None else AggregationWeights.reference()
        if isinstance(start, FeatureWeights):
            raise TypeError("trees need AggregationWeights")
        model = SafetyAnalystAggregator(start, loss=loss, calibrate=False, rating_scale=rating_scale, **kwargs)
        model.fit(compiled, ratings, target=target, sample_weight=sample_weight)
        old, new = tree_scores(start, compiled), model.score_many(compiled)
    return SteeringResult(model.weights_, np.asarray(old), np.asarray(new), model)
