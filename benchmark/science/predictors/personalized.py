"""Personalized models: a population prompt score passed through each annotator's own ramp.

    prediction(a, p) = clip(v_lo(a) + (v_hi(a) − v_lo(a)) · (s_p − s_lo) / (s_hi − s_lo), 0, 1)

`s_p` is a population model's score for prompt p (its predicted mean rating); the ramp of annotator a
is fitted on that annotator's alignment ratings for absolute error, shrunk toward the pooled ramp with
a penalty chosen by cross-validation over the alignment prompts (see `common.fit_ramps`).  The ramp is
allowed to run past [0, 1] at its anchors, i.e. to saturate: MAE rewards conditional medians and the
ratings are bimodal, so a least-squares calibration is too timid.  The population scores of alignment
prompts are out-of-fold, so the ramps are fitted on scores as noisy as those of unseen prompts.

In the aggregated condition (annotator = AGGREGATE) the pooled ramp — the same objective over every
annotator's ratings, i.e. an estimate of the per-prompt median — gives the one value per prompt.

Distribution (aggregated condition, `predict_distribution`): a prompt's rating distribution is
predicted by its analogues: the pooled ratings of the k alignment prompts whose out-of-fold
population scores are nearest to its own (point masses at 0 and 100 included, as rated).  k ∈ {5, 10,
20, 40} is chosen by leave-one-prompt-out CRPS over the alignment prompts.

Optional per-annotator content effect (`residual_k`, candidate k values; off by default): the mean of
the annotator's own residuals on their k most similar alignment prompts (MiniLM cosine), times γ, is
added to the prediction; k and γ ∈ {0, .25, .5, .75, 1} are chosen by leave-one-prompt-out over the
alignment prompts.  On a development subset of the release it moved MAE by −0.0004, so it is not in
`ensemble_ramp`'s defaults.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from benchmark.science.predictors.base import Predictor, register
from benchmark.science.predictors.common import (
    apply_ramp,
    embed_texts,
    fit_ramps,
    grid_crps_counts,
    histogram_counts,
    histogram_on_support,
    is_aggregate,
    prompt_table,
    score_matrix,
)
from benchmark.science.predictors.features import POPULATION_MODELS, population_oof, population_predict


class RampPredictor(Predictor):
    """Population model(s) + per-annotator saturating ramp fitted for absolute error."""

    conditions = ("individual", "aggregated")
    models: tuple[str, ...] = POPULATION_MODELS

    def __init__(self, folds: int = 5, seed: int = 0, residual_k: tuple[int, ...] = ()):
        self.folds = folds
        self.seed = seed
        self.residual_k = residual_k

    def fit(self, train: pd.DataFrame):
        pivot, Y = score_matrix(train)
        self.train_table_ = prompt_table(train).loc[pivot.columns]
        self.y_ = np.nanmean(Y, axis=0)
        s = population_oof(self.train_table_, self.y_, models=self.models, folds=self.folds, seed=self.seed)
        self.ramps_ = fit_ramps(s, Y, seed=self.seed)
        self.params_ = pd.DataFrame(self.ramps_["params"], index=pivot.index.astype(str), columns=["v_lo", "v_hi"])
        self._fit_residuals(s, Y)
        self._fit_analogues(s, Y)
        return self

    ANALOGUE_K = (5, 10, 20, 40)

    def _fit_analogues(self, s: np.ndarray, Y: np.ndarray) -> None:
        """Keep the alignment prompts' scores and ratings; choose k by leave-one-prompt-out CRPS.

        A prompt's analogue histogram is the sum of its neighbours' rating counts on `SUPPORT` and its
        CRPS is taken over its distinct ratings with their counts: the same figures as
        `grid_crps(histogram_on_support(Y[:, neighbours].ravel()), Y[:, j])` without building a row of
        length annotators × k for every prompt and k (up to 400,000 values at 10,000 annotators)."""
        self.analogue_s_, self.analogue_Y_ = np.asarray(s, dtype=float), Y
        n = len(self.analogue_s_)
        if n < 3:
            self.analogue_k_ = max(1, n)
            return
        distance = np.abs(self.analogue_s_[:, None] - self.analogue_s_[None, :])
        np.fill_diagonal(distance, np.inf)
        order = np.argsort(distance, axis=1, kind="stable")
        counts = np.stack([histogram_counts(Y[:, j]) for j in range(n)])  # n × |SUPPORT|
        observed = [np.unique(Y[:, j][np.isfinite(Y[:, j])], return_counts=True) for j in range(n)]
        best = (np.inf, self.ANALOGUE_K[0])
        for k in self.ANALOGUE_K:
            k = min(k, n - 1)
            loss = sum(
                grid_crps_counts(counts[order[j, :k]].sum(axis=0), *observed[j])
                for j in range(n)
                if len(observed[j][0])
            )
            if loss < best[0]:
                best = (loss, k)
        self.analogue_k_ = best[1]

    def predict_distribution(self, test: pd.DataFrame) -> np.ndarray:
        """Per row, probabilities over `common.SUPPORT`: the ratings of the prompt's k analogues."""
        s = self._population(test).to_numpy()
        k = min(self.analogue_k_, len(self.analogue_s_))
        out = []
        for value in s:
            nearest = np.argsort(np.abs(self.analogue_s_ - value), kind="stable")[:k]
            out.append(histogram_on_support(self.analogue_Y_[:, nearest].ravel()))
        return np.vstack(out) if out else np.zeros((0, len(self.analogue_s_)))

    def _population(self, test: pd.DataFrame) -> pd.Series:
        table = prompt_table(test)
        s = population_predict(self.train_table_, self.y_, table, models=self.models, seed=self.seed)
        return pd.Series(test["prompt"].map(pd.Series(s, index=table.index)).to_numpy(dtype=float), index=test.index)

    def _row_params(self, test: pd.DataFrame) -> np.ndarray:
        centre = np.asarray(self.ramps_["centre"], dtype=float)
        params = np.array(self.params_.reindex(test["annotator"].astype(str)).to_numpy(dtype=float))
        missing = np.isnan(params).any(axis=1) | is_aggregate(test)
        params[missing] = centre
        return params

    def predict(self, test: pd.DataFrame) -> pd.Series:
        s = self._population(test).to_numpy()
        values = apply_ramp(self.ramps_["anchors"], self._row_params(test), s)
        if self.residual_gamma_ > 0:
            values = np.clip(values + self.residual_gamma_ * self._residual_shift(test), 0.0, 1.0)
        return pd.Series(values, index=test.index)

    def _fit_residuals(self, s: np.ndarray, Y: np.ndarray) -> None:
        """Choose (k, γ) for the content effect by leave-one-prompt-out over the alignment prompts."""
        self.residual_gamma_, self.residual_k_ = 0.0, 0
        if not self.residual_k or Y.shape[1] < 4:
            return
        P = apply_ramp(self.ramps_["anchors"], self.ramps_["params"][:, None, :], s[None, :])
        self.residuals_ = Y - P
        self.E_ = embed_texts(self.train_table_["text"].astype(str).tolist())
        S = self.E_ @ self.E_.T
        np.fill_diagonal(S, -np.inf)
        order = np.argsort(-S, axis=1)
        best = np.nansum(np.abs(Y - P))
        for k in self.residual_k:
            k = min(k, Y.shape[1] - 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                shift = np.nan_to_num(np.nanmean(self.residuals_[:, order[:, :k]], axis=2))
            for gamma in (0.25, 0.5, 0.75, 1.0):
                loss = np.nansum(np.abs(Y - np.clip(P + gamma * shift, 0, 1)))
                if loss < best:
                    best, self.residual_gamma_, self.residual_k_ = loss, gamma, k

    def _residual_shift(self, test: pd.DataFrame) -> np.ndarray:
        table = prompt_table(test)
        order = np.argsort(-(embed_texts(table["text"].astype(str).tolist()) @ self.E_.T), axis=1)[
            :, : self.residual_k_
        ]
        column = {p: j for j, p in enumerate(table.index.astype(str))}
        rows = self.params_.index.get_indexer(test["annotator"].astype(str))
        cols = np.array([column[p] for p in test["prompt"].astype(str)])
        shift = np.zeros(len(test))
        known = rows >= 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmean(self.residuals_[rows[known][:, None], order[cols[known]]], axis=1)
        shift[known] = np.nan_to_num(values)
        return shift


@register
class FeatureRamp(RampPredictor):
    name = "feature_ramp"
    description = "Ridge on prompt features → prompt mean, then each annotator's saturating ramp (MAE fit, shrunk)."
    models = ("ridge_features",)


@register
class EmbeddingRamp(RampPredictor):
    name = "embedding_ramp"
    description = "Ridge on MiniLM embeddings → prompt mean, then each annotator's saturating ramp."
    models = ("ridge_embeddings",)


@register
class EnsembleRamp(RampPredictor):
    name = "ensemble_ramp"
    description = (
        "Average of ridge (features), ridge (MiniLM), gradient boosting and extra-trees → prompt mean, "
        "then each annotator's saturating ramp fitted for absolute error, shrunk toward the pooled ramp."
    )
    models = POPULATION_MODELS
