"""The vectorised predictor and protocol code (issue 14, the benchmark at 10,000 annotators) against
the per-annotator code it replaced, kept here as the reference: same answers on small data."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.science.predictors.common import RampGrid, fit_ramps, ramp_losses


def _old_fit_ramps(s, Y, *, lambdas=(0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0), folds=5, seed=0, anchors=None, S=None):
    """`common.fit_ramps` as it was before issue 14: one annotator at a time."""
    s = np.asarray(s, dtype=float)
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    grid = RampGrid(s, anchors)
    n = len(s)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(np.arange(n) % max(2, min(folds, n)))
    onehot = np.eye(fold_of.max() + 1, dtype=np.float32)[fold_of]
    pooled = np.zeros(len(grid.v_lo), dtype=np.float64)
    per_fold, totals = [], []
    for i, y in enumerate(Y):
        error = grid.losses(y, None if S is None else S[i])
        totals.append(error.sum(axis=1))
        pooled += error.sum(axis=1)
        per_fold.append(error @ onehot)
    best = int(np.argmin(pooled))
    centre = (float(grid.v_lo[best]), float(grid.v_hi[best]))
    penalty = grid.penalty(centre)
    lambdas = tuple(lambdas)
    cv = np.zeros(len(lambdas))
    if len(lambdas) > 1:
        for F in per_fold:
            total = F.sum(axis=1)
            for k in range(F.shape[1]):
                train_loss = total - F[:, k]
                for j, lam in enumerate(lambdas):
                    choice = np.argmin(train_loss + lam * penalty)
                    cv[j] += F[choice, k]
    lam = lambdas[int(np.argmin(cv))]
    params = np.empty((len(Y), 2))
    for i, F in enumerate(per_fold):
        choice = int(np.argmin(F.sum(axis=1) + lam * penalty))
        params[i] = grid.v_lo[choice], grid.v_hi[choice]
    return {"centre": centre, "lambda": lam, "params": params, "cv": cv, "losses": np.stack(totals)}


def _ratings(n_annotators, n_prompts, seed, *, unsure=0.05):
    """Integer ratings (as on the 0–100 scale) from a latent prompt score through personal ramps."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.05, 0.95, n_prompts)
    offset = rng.normal(0, 0.2, (n_annotators, 1))
    slope = rng.uniform(0.3, 2.5, (n_annotators, 1))
    latent = 0.5 + offset + slope * (s[None, :] - 0.5) + rng.normal(0, 0.2, (n_annotators, n_prompts))
    Y = np.clip(np.rint(100 * latent), 0, 100) / 100
    Y[rng.random(Y.shape) < unsure] = np.nan
    return s, Y


@pytest.mark.parametrize(
    ("n_annotators", "n_prompts", "seed", "kwargs"),
    [
        (7, 12, 0, {}),
        (40, 100, 1, {}),
        (130, 37, 2, {"folds": 3, "seed": 5}),
        (25, 60, 3, {"lambdas": (0.0,)}),
        (1, 9, 4, {}),
    ],
)
def test_fit_ramps_equals_the_per_annotator_loop(n_annotators, n_prompts, seed, kwargs):
    s, Y = _ratings(n_annotators, n_prompts, seed)
    Y[0, :] = np.nan  # an annotator with nothing rated here
    if n_annotators > 2:
        Y[1, 1:] = np.nan  # and one with a single rating
    old = _old_fit_ramps(s, Y, **kwargs)
    new = fit_ramps(s, Y, **kwargs)
    assert new["centre"] == old["centre"]
    assert new["lambda"] == old["lambda"]
    np.testing.assert_array_equal(new["params"], old["params"])
    np.testing.assert_allclose(new["cv"], old["cv"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(new["losses"], old["losses"], rtol=0, atol=1e-9)


def test_fit_ramps_with_own_scores_equals_the_per_annotator_loop():
    s, Y = _ratings(30, 40, 7)
    rng = np.random.default_rng(8)
    S = np.clip(s[None, :] + rng.normal(0, 0.05, Y.shape), 0, 1)
    S[2, 5] = np.nan
    old = _old_fit_ramps(s, Y, S=S)
    new = fit_ramps(s, Y, S=S)
    assert (new["centre"], new["lambda"]) == (old["centre"], old["lambda"])
    np.testing.assert_array_equal(new["params"], old["params"])
    np.testing.assert_allclose(new["cv"], old["cv"], rtol=0, atol=1e-9)


def test_ramp_losses_in_blocks_equal_one_annotator_at_a_time(monkeypatch):
    from benchmark.science.predictors import common

    s, Y = _ratings(23, 30, 9)
    grid = RampGrid(s)
    onehot = np.eye(3, dtype=np.float32)[np.arange(30) % 3]
    monkeypatch.setattr(common, "_BLOCK_VALUES", len(grid.v_lo) * 30 * 4)  # blocks of 4 annotators
    totals, per_fold, fold_totals = ramp_losses(grid, Y, onehot)
    for i, y in enumerate(Y):
        error = grid.losses(y)
        np.testing.assert_array_equal(totals[i], error.sum(axis=1))
        np.testing.assert_array_equal(per_fold[i], (error @ onehot).T)
        np.testing.assert_array_equal(fold_totals[i], (error @ onehot).sum(axis=1))


def test_fit_ramps_memo_returns_fresh_arrays():
    s, Y = _ratings(10, 20, 11)
    first = fit_ramps(s, Y)
    first["params"][:] = -1.0
    second = fit_ramps(s, Y)
    assert (second["params"] != -1.0).all()
