"""Models for annotators known by their traits only (the new_annotator condition).

`traits_ramp`: the population score of a prompt passed through a ramp predicted from the new
annotator's traits.
  - population score: the mean training rating of the prompt where other annotators rated it (in
    new_annotator they rated every prompt), else the feature-ridge population model;
  - the new annotator's ramp is the one (on the grid of `common.RampGrid`) with the least absolute
    error over the training annotators' ratings, each annotator weighted by a Gaussian kernel of the
    trait distance (one-hot demographics and factor scores, standardised).  The kernel width is chosen
    by leave-one-annotator-out among the training annotators; "no width" (equal weights, i.e. the
    pooled ramp) is among the candidates, so traits are used only where they helped there.  With more
    than `LOO_ANNOTATORS` (500) training annotators the left-out annotators are a seeded sample of that
    many (each still scored against all the others): the full leave-one-out costs annotators² ×
    candidates (8,000 × 8,000 × 1,681 per width at 10,000 annotators), the sample 16 times less.

`pooled_ramp` is the same without traits (everyone gets the pooled ramp): the yardstick that says
what traits add.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import distance

from benchmark.science.predictors.base import Predictor, register
from benchmark.science.predictors.common import (
    apply_ramp,
    fit_ramps,
    prompt_table,
    score_matrix,
    trait_columns,
)
from benchmark.science.predictors.features import population_predict


def encode_traits(frame: pd.DataFrame, columns: list[str], categories: dict | None = None):
    """Numeric trait matrix: one-hot for text columns (fixed `categories` if given), numbers as they are.

    Returns (matrix, categories) — pass the categories back to encode test rows the same way.
    """
    if categories is None:
        categories = {}
        for column in columns:
            if not pd.api.types.is_numeric_dtype(frame[column]):
                categories[column] = sorted(frame[column].dropna().astype(str).unique())
    parts = []
    for column in columns:
        if column in categories:
            values = frame[column].astype(str).to_numpy()
            parts.append(
                np.stack([(values == c).astype(float) for c in categories[column]], axis=1)
                if categories[column]
                else np.zeros((len(frame), 0))
            )
        else:
            parts.append(pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)[:, None])
    matrix = np.hstack(parts) if parts else np.zeros((len(frame), 0))
    return matrix, categories


class _ObservedRamp(Predictor):
    conditions = ("new_annotator",)
    use_traits = True

    def __init__(self, seed: int = 0, bandwidths: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)):
        self.seed = seed
        self.bandwidths = bandwidths

    def fit(self, train: pd.DataFrame):
        pivot, Y = score_matrix(train)
        self.table_ = prompt_table(train).loc[pivot.columns]
        self.s_ = pd.Series(np.nanmean(Y, axis=0), index=pivot.columns.astype(str))
        self.ramps_ = fit_ramps(self.s_.to_numpy(), Y, seed=self.seed, lambdas=(0.0,))
        # Each training annotator's loss for every candidate ramp, over all their ratings (A × C).
        self.losses_ = self.ramps_["losses"]
        self.bandwidth_ = None
        columns = trait_columns(train)
        if self.use_traits and columns and len(Y) >= 3:
            people = train.drop_duplicates("annotator").set_index("annotator").loc[pivot.index]
            X, self.categories_ = encode_traits(people, columns)
            self.columns_ = columns
            self.means_ = np.nanmean(X, axis=0)
            X = np.where(np.isnan(X), self.means_, X)
            self.scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
            self.X_ = (X - self.means_) / self.scale_
            self.bandwidth_ = self._choose_bandwidth()
        return self

    LOO_ANNOTATORS = 500

    def _distances(self, X: np.ndarray) -> np.ndarray:
        """Mean squared trait difference of each row of X to each training annotator (scipy's cdist: the
        broadcast difference of 2,000 × 8,000 annotators × 60 trait columns would be 7 GB)."""
        return distance.cdist(X, self.X_, "sqeuclidean") / self.X_.shape[1]

    @staticmethod
    def _kernel(d2: np.ndarray, bandwidth: float | None) -> np.ndarray:
        if bandwidth is None:
            return np.ones_like(d2)
        return np.exp(-d2 / (2.0 * bandwidth**2))

    def _weights(self, X: np.ndarray, bandwidth: float | None) -> np.ndarray:
        return self._kernel(self._distances(X), bandwidth)

    def _choose_bandwidth(self):
        """Leave-one-annotator-out: which kernel width picks ramps that fit the left-out best."""
        left_out = np.arange(len(self.X_))
        if len(left_out) > self.LOO_ANNOTATORS:
            rng = np.random.default_rng([self.seed, len(left_out)])
            left_out = np.sort(rng.choice(len(left_out), self.LOO_ANNOTATORS, replace=False))
        own = self.losses_[left_out]
        best, best_loss = None, own[:, int(np.argmin(self.losses_.sum(0)))].sum()
        d2 = self._distances(self.X_[left_out])
        for bandwidth in self.bandwidths:
            W = self._kernel(d2, bandwidth)
            W[np.arange(len(left_out)), left_out] = 0.0  # nobody votes for their own ramp
            choice = np.argmin(W @ self.losses_, axis=1)
            loss = own[np.arange(len(choice)), choice].sum()
            if loss < best_loss:
                best, best_loss = bandwidth, loss
        return best

    def _scores(self, test: pd.DataFrame) -> np.ndarray:
        s = test["prompt"].astype(str).map(self.s_).to_numpy(dtype=float)
        missing = np.isnan(s)
        if missing.any():
            table = prompt_table(test[missing])
            fallback = population_predict(self.table_, self.s_.to_numpy(), table, models=("ridge_features",))
            s[missing] = test["prompt"][missing].map(pd.Series(fallback, index=table.index)).to_numpy(dtype=float)
        return s

    def predict(self, test: pd.DataFrame) -> pd.Series:
        grid = self.ramps_["grid"]
        params = np.tile(np.asarray(self.ramps_["centre"], dtype=float), (len(test), 1))
        if self.bandwidth_ is not None and all(c in test.columns for c in self.columns_):
            people = test.drop_duplicates("annotator").set_index("annotator")
            known = ~people[self.columns_].isna().all(axis=1).to_numpy()
            people = people[known]
            if len(people):
                X, _ = encode_traits(people, self.columns_, self.categories_)
                X = (np.where(np.isnan(X), self.means_, X) - self.means_) / self.scale_
                choice = np.argmin(self._weights(X, self.bandwidth_) @ self.losses_, axis=1)
                ramp = pd.DataFrame({"v_lo": grid.v_lo[choice], "v_hi": grid.v_hi[choice]}, index=people.index)
                found = ramp.reindex(test["annotator"]).to_numpy(dtype=float)
                has = ~np.isnan(found).any(axis=1)
                params[has] = found[has]
        return pd.Series(apply_ramp(self.ramps_["anchors"], params, self._scores(test)), index=test.index)


@register
class TraitsRamp(_ObservedRamp):
    name = "traits_ramp"
    description = (
        "Other annotators' prompt mean through the ramp that best fits the training annotators with "
        "similar traits (kernel weights; width by leave-one-annotator-out)."
    )
    use_traits = True


@register
class PooledRamp(_ObservedRamp):
    name = "pooled_ramp"
    description = "Other annotators' prompt mean through the pooled ramp (no traits): what traits must beat."
    use_traits = False
