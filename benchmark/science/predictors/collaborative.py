"""Collaborative models for the warm condition: other people's ratings of the very prompt are known.

- `observed_ramp`: the other annotators' mean rating of the prompt through the annotator's own ramp
  (fitted for absolute error on their alignment ratings against leave-self-out prompt means, shrunk
  toward the pooled ramp; see `common.fit_ramps`).
- `soft_impute`: global mean + annotator and prompt biases (regularised alternating means) + a
  low-rank residual by soft-impute (iterative SVD with singular values shrunk by λ; Mazumder, Hastie &
  Tibshirani 2010).  λ is chosen on a seeded 10% of the *training* cells held out, then the model is
  refitted on all of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from benchmark.science.predictors.base import Predictor, register
from benchmark.science.predictors.common import apply_ramp, fit_ramps, score_matrix


def _leave_self_out_means(Y: np.ndarray) -> np.ndarray:
    observed = ~np.isnan(Y)
    total = np.nansum(Y, axis=0)[None, :] - np.where(observed, Y, 0.0)
    count = observed.sum(axis=0)[None, :] - observed
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@register
class ObservedRamp(Predictor):
    name = "observed_ramp"
    description = "Other annotators' mean rating of the prompt through the annotator's own saturating ramp."
    conditions = ("warm",)

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train: pd.DataFrame) -> ObservedRamp:
        pivot, Y = score_matrix(train)
        self.s_ = pd.Series(np.nanmean(Y, axis=0), index=pivot.columns.astype(str))
        # Fit only on prompts the annotator rated; the others' leave-self-out mean is its input.
        self.ramps_ = fit_ramps(self.s_.to_numpy(), Y, S=_leave_self_out_means(Y), seed=self.seed)
        self.params_ = pd.DataFrame(self.ramps_["params"], index=pivot.index.astype(str), columns=["v_lo", "v_hi"])
        self.fallback_ = float(np.nanmean(Y))
        return self

    def predict(self, test: pd.DataFrame) -> pd.Series:
        s = test["prompt"].astype(str).map(self.s_).to_numpy(dtype=float)
        params = np.array(self.params_.reindex(test["annotator"].astype(str)).to_numpy(dtype=float))
        params[np.isnan(params).any(axis=1)] = self.ramps_["centre"]
        values = apply_ramp(self.ramps_["anchors"], params, np.where(np.isnan(s), self.fallback_, s))
        return pd.Series(values, index=test.index)


def _biases(Y: np.ndarray, mask: np.ndarray, reg: float = 5.0, rounds: int = 10):
    mu = float(Y[mask].mean()) if mask.any() else 0.5
    R = np.where(mask, Y - mu, 0.0)
    b_a = np.zeros(Y.shape[0])
    b_p = np.zeros(Y.shape[1])
    for _ in range(rounds):
        b_a = (np.where(mask, R - b_p[None, :], 0.0)).sum(1) / (mask.sum(1) + reg)
        b_p = (np.where(mask, R - b_a[:, None], 0.0)).sum(0) / (mask.sum(0) + reg)
    return mu, b_a, b_p


def _soft_impute(
    R: np.ndarray, mask: np.ndarray, lam: float, Z: np.ndarray | None = None, iters: int = 60, tol: float = 1e-4
):

    Z = np.zeros_like(R) if Z is None else Z
    # One BLAS thread: on a 100 × 150 matrix, thread start-up costs more than the SVD itself.
    with threadpool_limits(limits=1, user_api="blas"):
        return _soft_impute_loop(R, mask, lam, Z, iters, tol)


def _soft_impute_loop(R, mask, lam, Z, iters, tol):
    for _ in range(iters):
        X = np.where(mask, R, Z)
        U, s, Vt = np.linalg.svd(X, full_matrices=False)
        s = np.maximum(s - lam, 0.0)
        Z_new = (U * s) @ Vt
        change = np.linalg.norm(Z_new - Z) / max(np.linalg.norm(Z), 1e-12)
        Z = Z_new
        if change < tol:
            break
    return Z


@register
class SoftImpute(Predictor):
    name = "soft_impute"
    description = "Biases + low-rank soft-impute (iterative shrunk SVD) of the annotator × prompt matrix."
    conditions = ("warm",)

    def __init__(self, lambdas: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0), holdout: float = 0.1, seed: int = 0):
        self.lambdas = lambdas
        self.holdout = holdout
        self.seed = seed

    def fit(self, train: pd.DataFrame) -> SoftImpute:
        pivot, Y = score_matrix(train)
        mask = ~np.isnan(Y)
        rng = np.random.default_rng(self.seed)
        cells = np.argwhere(mask)
        chosen = cells[rng.random(len(cells)) < self.holdout]
        fit_mask = mask.copy()
        fit_mask[chosen[:, 0], chosen[:, 1]] = False
        mu, b_a, b_p = _biases(Y, fit_mask)
        R = np.where(fit_mask, Y - mu - b_a[:, None] - b_p[None, :], 0.0)
        Z, best, best_loss = None, self.lambdas[0], np.inf
        for lam in sorted(self.lambdas, reverse=True):  # warm starts from the most shrunk
            Z = _soft_impute(R, fit_mask, lam, Z)
            pred = np.clip(mu + b_a[:, None] + b_p[None, :] + Z, 0, 1)[chosen[:, 0], chosen[:, 1]]
            loss = np.abs(pred - Y[chosen[:, 0], chosen[:, 1]]).mean() if len(chosen) else 0.0
            if loss < best_loss:
                best, best_loss = lam, loss
        self.lambda_ = best
        self.mu_, b_a, b_p = _biases(Y, mask)
        R = np.where(mask, Y - self.mu_ - b_a[:, None] - b_p[None, :], 0.0)
        Z = _soft_impute(R, mask, best)
        self.b_a_ = pd.Series(b_a, index=pivot.index.astype(str))
        self.b_p_ = pd.Series(b_p, index=pivot.columns.astype(str))
        self.Z_ = pd.DataFrame(Z, index=pivot.index.astype(str), columns=pivot.columns.astype(str))
        return self

    def predict(self, test: pd.DataFrame) -> pd.Series:
        annotators = test["annotator"].astype(str)
        prompts = test["prompt"].astype(str)
        b_a = annotators.map(self.b_a_).fillna(0.0).to_numpy(dtype=float)
        b_p = prompts.map(self.b_p_).fillna(0.0).to_numpy(dtype=float)
        rows = self.Z_.index.get_indexer(annotators)
        cols = self.Z_.columns.get_indexer(prompts)
        Z = self.Z_.to_numpy()
        low_rank = np.where((rows >= 0) & (cols >= 0), Z[np.maximum(rows, 0), np.maximum(cols, 0)], 0.0)
        return pd.Series(np.clip(self.mu_ + b_a + b_p + low_rank, 0.0, 1.0), index=test.index)
