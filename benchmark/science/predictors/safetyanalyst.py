"""SafetyAnalyst aggregation as PluriHarms predictors (feature level: prompts carry category distributions).

The PluriHarms prompts come with SafetyAnalyst's action-category (16 ``action_*`` columns) and
effect-category (7 ``effect_*`` columns) distributions, not with trees, so both predictors use
:class:`~benchmark.science.harm_benefit.FeatureLevelSafetyAnalyst`:
``score = sigmoid(scale * (p . action) * (q . effect) + offset)``.

What both predictors see: only the 16 released action-category probabilities of each prompt (the
``action_*`` columns). SafetyAnalyst-8B itself reasons over a harm-benefit tree -- stakeholders,
harmful and beneficial actions and effects, with extent, likelihood and immediacy -- none of which
the release carries, so neither predictor is SafetyAnalyst-8B or a stand-in for it (the paper's
SafetyAnalyst-8B figures, 0.311 / 0.361, are of the full system).

* ``safetyanalyst_reference`` -- the published action weights kept as they are, with an intercept
  and a scale calibrated on the alignment ratings: ``sigmoid(offset + scale * (p . action))``, the two
  numbers fitted by least squares over the training ratings (equivalently the prompt means, weighted
  by their counts). Without them (``calibrate=False``, the weights as published) the scores live in
  [0.5, 0.73]: the reference weights are in [0, 1] and the reference aggregation has no intercept, so
  the MAE (0.337) was that of a near-constant.
* ``safetyanalyst_fit`` -- the same model steered to the training ratings. A population model is
  fitted to the per-prompt mean score (one row per prompt, so the L2 pull toward the reference weights
  is weighed against prompts, not ratings). Then every annotator in the training data gets their own
  refit on their own ratings, starting from and shrunk toward the population weights (``shrinkage``
  on the effective category weights ``scale * action``, ``shrinkage_offset`` on the offset) -- the
  steering idea applied per person. Rows of annotators without a refit, and ``AGGREGATE`` rows, get
  the population model.

Rows whose prompt lacks the SafetyAnalyst features (a study's own prompts may have none) are predicted
as NaN, which the protocol leaves out of the scores and reports as lower ``coverage``.

With ``benchmark.science.protocol.run_benchmark`` (3 seeded splits, seed 0): ``safetyanalyst_fit``
individual MAE 0.259 (``annotator_mean`` 0.301), aggregated 0.305; Spearman of predicted and true
test-prompt means 0.54. ``safetyanalyst_reference`` (calibrated), over the 10 locked seeds of
BENCHMARKS.md: 0.335 (95% CI 0.320-0.351), 0.029 worse than ``annotator_mean`` individually and 0.007
better in aggregated; Spearman 0.24. The published weights rank the release's prompts poorly, so the
calibrated curve stays close to the mean; the intercept removes the offset, not the weak ranking.

Defaults were chosen inside the alignment prompts only (4 seeded 70/30 splits of the 100 alignment
prompts, MAE per annotator). The penalties are in units of the summed squared error on the 0-1
scale, whose curvature per rating is small, hence the small values: population ``l2`` 0.01 (0.003 to
0.1 within 0.002 of it), ``shrinkage`` 0.003 (0.267; 0.03 gives 0.269, 0.3 gives 0.274),
``shrinkage_offset`` 0 (a free personal offset). The effect term (``use_effects=True``) changed the
inner MAE by less than 0.001 (0.2668), so it is off for simplicity; the smoothed absolute loss per
annotator was worse (0.272) than squared error through the sigmoid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special

from benchmark.science.harm_benefit import (
    ACTION_FEATURE_COLUMNS,
    EFFECT_FEATURE_COLUMNS,
    FeatureLevelSafetyAnalyst,
    FeatureWeights,
)
from benchmark.science.predictors.base import AGGREGATE, Predictor, register

_ACTIONS = list(ACTION_FEATURE_COLUMNS)
_EFFECTS = list(EFFECT_FEATURE_COLUMNS)


def _columns(use_effects: bool) -> list[str]:
    return _ACTIONS + (_EFFECTS if use_effects else [])


def _usable(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows whose SafetyAnalyst features are all present (a study's own prompts may lack them)."""
    if not set(columns) <= set(frame.columns):
        return pd.Series(False, index=frame.index)
    values = frame[columns]
    if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in values.dtypes):
        values = values.apply(pd.to_numeric, errors="coerce")  # text in a column counts as missing
    return values.notna().all(axis=1)


def _predict(weights: FeatureWeights, rows: pd.DataFrame, use_effects: bool) -> pd.Series:
    """P(harmful) for rows with features, NaN (left out of the scores) for rows without."""
    columns = _columns(use_effects)
    out = pd.Series(np.nan, index=rows.index, dtype=float, name="score")
    usable = _usable(rows, columns)
    if usable.any():
        model = FeatureLevelSafetyAnalyst(weights, use_effects=use_effects)
        out[usable] = model.p_harmful(rows.loc[usable, columns].astype(float))
    return out


SEES = "sees only the 16 released action-category probabilities (no effects, extent, likelihood, immediacy or benefits)"


@register
class SafetyAnalystReference(Predictor):
    name = "safetyanalyst_reference"
    description = (
        "SafetyAnalyst's published action weights (kept) with an intercept and scale calibrated on the "
        f"alignment ratings: sigmoid(a + b · expected action weight); {SEES}"
    )

    def __init__(self, calibrate: bool = True):
        self.calibrate = calibrate

    def fit(self, train: pd.DataFrame) -> SafetyAnalystReference:
        reference = FeatureWeights.reference()
        self.weights_ = reference
        if not self.calibrate:
            return self
        usable = _usable(train, _ACTIONS)
        if not usable.all():  # every row usable (the release, any study with its features): no copy
            train = train[usable]
        if len(train) == 0 or train["score"].nunique() < 2:
            return self
        h = train[_ACTIONS].astype(float).to_numpy() @ reference.action
        y = train["score"].to_numpy(dtype=float)
        # The squared error over rows sharing one h (a prompt's ratings) is n·(f(h) − mean)² plus their
        # spread around the mean, which no parameter changes: the same sum of squares, its gradient and
        # J'J from one residual per distinct h (150 instead of ~1 million at 10,000 annotators), the
        # spread kept as a constant residual so that the optimiser's stopping rule sees the same cost.
        values, inverse = np.unique(h, return_inverse=True)
        n = np.bincount(inverse, minlength=len(values)).astype(float)
        mean = np.bincount(inverse, weights=y, minlength=len(values)) / n
        spread = np.sqrt(np.sum((y - mean[inverse]) ** 2))
        root_n = np.sqrt(n)

        def residuals(params):
            return np.append(root_n * (special.expit(params[1] + params[0] * values) - mean), spread)

        fit = optimize.least_squares(residuals, x0=[1.0, 0.0], bounds=([0.0, -50.0], [200.0, 50.0]))
        scale, offset = (float(v) for v in fit.x)
        self.weights_ = FeatureWeights(reference.action, reference.effect, scale, offset)
        return self

    def predict(self, test: pd.DataFrame) -> pd.Series:
        return _predict(getattr(self, "weights_", None) or FeatureWeights.reference(), test, use_effects=False)


@register
class SafetyAnalystFit(Predictor):
    name = "safetyanalyst_fit"
    description = (
        "SafetyAnalyst feature-level aggregation fitted to the alignment ratings (population), "
        f"then refitted per annotator and shrunk toward the population; {SEES}"
    )

    def __init__(
        self,
        use_effects: bool = False,
        l2: float = 0.01,
        population_loss: str = "squared",
        per_annotator: bool = True,
        individual_loss: str = "squared",
        shrinkage: float = 0.003,
        shrinkage_offset: float = 0.0,
        min_ratings: int = 5,
    ):
        self.use_effects = use_effects
        self.l2 = l2
        self.population_loss = population_loss
        self.per_annotator = per_annotator
        self.individual_loss = individual_loss
        self.shrinkage = shrinkage
        self.shrinkage_offset = shrinkage_offset
        self.min_ratings = min_ratings

    def fit(self, train: pd.DataFrame) -> SafetyAnalystFit:
        columns = _columns(self.use_effects)
        train = train[_usable(train, columns)]
        self.annotator_weights_: dict[str, FeatureWeights] = {}
        if train.empty:  # no prompt carries the features: predict NaN rather than guess
            self.population_weights_ = None
            return self
        # one row per prompt, so the pull toward the reference is weighed against prompts, not ratings
        features = train.groupby("prompt", sort=True)[columns].first().astype(float)
        mean = train.groupby("prompt", sort=True)["score"].mean().loc[features.index]
        population = FeatureLevelSafetyAnalyst(
            None,
            use_effects=self.use_effects,
            l2=self.l2,
            loss=self.population_loss,
            rating_scale=1.0,
        ).fit(features, mean.to_numpy())
        self.population_weights_ = population.weights_
        if self.per_annotator:
            for annotator, rows in train.groupby("annotator", sort=True):
                if annotator == AGGREGATE or len(rows) < self.min_ratings:
                    continue
                model = FeatureLevelSafetyAnalyst(
                    self.population_weights_,
                    use_effects=self.use_effects,
                    l2=self.shrinkage,
                    l2_offset=self.shrinkage_offset,
                    loss=self.individual_loss,
                    rating_scale=1.0,
                ).fit(rows[columns].astype(float), rows["score"].to_numpy())
                self.annotator_weights_[annotator] = model.weights_
        return self

    def predict(self, test: pd.DataFrame) -> pd.Series:
        if self.population_weights_ is None:
            return pd.Series(np.nan, index=test.index, dtype=float, name="score")
        out = _predict(self.population_weights_, test, self.use_effects)
        for annotator, rows in test.groupby("annotator", sort=False):
            weights = self.annotator_weights_.get(annotator)
            if weights is not None:
                out.loc[rows.index] = _predict(weights, rows, self.use_effects)
        return out
