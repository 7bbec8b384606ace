"""The vectorised predictor and protocol code (issue 14, the benchmark at 10,000 annotators) against
the per-annotator code it replaced, kept here as the reference: same answers on small data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.science.predictors.common import (
    RampGrid,
    fit_ramps,
    grid_crps,
    grid_crps_counts,
    histogram_counts,
    histogram_on_support,
    ramp_losses,
    score_matrix,
)
from benchmark.science.predictors.personalized import FeatureRamp
from benchmark.science.predictors.traits_model import TraitsRamp
from benchmark.science.protocol import (
    _SharedWeights,
    _wasserstein_same_size,
    _weighted_maes,
    bootstrap_weights,
    condition_tasks,
    make_splits,
    rated,
    run_benchmark,
)


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


# ---------------------------------------------------------------------------------------------------
# traits_ramp: kernel distances by cdist, losses from fit_ramps


class _OldTraitsRamp(TraitsRamp):
    """`traits_ramp` with its distances, losses and bandwidth choice as they were before issue 14."""

    def fit(self, train):
        super().fit(train)
        pivot, Y = score_matrix(train)
        grid = self.ramps_["grid"]
        self.old_losses_ = np.stack([grid.losses(y).sum(axis=1) for y in Y])
        return self

    def _weights(self, X, bandwidth):
        d2 = ((X[:, None, :] - self.X_[None, :, :]) ** 2).sum(axis=2) / self.X_.shape[1]
        if bandwidth is None:
            return np.ones_like(d2)
        return np.exp(-d2 / (2.0 * bandwidth**2))

    def _choose_bandwidth(self):
        best, best_loss = None, self.losses_[:, int(np.argmin(self.losses_.sum(0)))].sum()
        for bandwidth in self.bandwidths:
            W = self._weights(self.X_, bandwidth)
            np.fill_diagonal(W, 0.0)
            choice = np.argmin(W @ self.losses_, axis=1)
            loss = self.losses_[np.arange(len(choice)), choice].sum()
            if loss < best_loss:
                best, best_loss = bandwidth, loss
        return best


def _new_annotator_task(n_annotators: int, seed: int):
    from bench.analytics_data import synthetic_long

    data = rated(synthetic_long(n_annotators, seed=seed))
    split = make_splits(data["prompt"].unique(), data["annotator"].unique(), n_splits=1, seed=seed)[0]
    return condition_tasks(data, split, "new_annotator")[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_traits_ramp_equals_the_broadcast_code(seed):
    task = _new_annotator_task(60, seed)
    old = _OldTraitsRamp(bandwidths=(0.25, 0.5, 1.0, 2.0)).fit(task.train)
    new = TraitsRamp(bandwidths=(0.25, 0.5, 1.0, 2.0)).fit(task.train)
    np.testing.assert_array_equal(new.losses_, old.old_losses_)
    assert new.bandwidth_ == old.bandwidth_
    np.testing.assert_allclose(new._weights(new.X_, 0.5), old._weights(old.X_, 0.5), rtol=1e-12, atol=0)
    np.testing.assert_allclose(new.predict(task.test), old.predict(task.test), rtol=0, atol=1e-9)


def test_traits_ramp_leave_one_out_on_a_sample_of_many_annotators(monkeypatch):
    task = _new_annotator_task(60, 4)
    monkeypatch.setattr(TraitsRamp, "LOO_ANNOTATORS", 20)
    first = TraitsRamp(bandwidths=(0.25, 0.5, 1.0, 2.0)).fit(task.train)
    second = TraitsRamp(bandwidths=(0.25, 0.5, 1.0, 2.0)).fit(task.train)
    assert first.bandwidth_ == second.bandwidth_  # a seeded sample
    prediction = first.predict(task.test)
    assert prediction.notna().all() and prediction.between(0, 1).all()


# ---------------------------------------------------------------------------------------------------
# The protocol's scores and the shared helpers


def test_shared_bootstrap_weights_equal_weighted_maes():
    rng = np.random.default_rng(0)
    n_a, n_p, n_boot = 40, 12, 200
    wa = bootstrap_weights(n_a, n_boot, rng)
    wp = bootstrap_weights(n_p, n_boot, rng)
    shared = _SharedWeights(wa, wp)
    for _ in range(3):
        a_codes = np.sort(rng.choice(n_a, 25, replace=False))
        p_codes = np.sort(rng.choice(n_p, 7, replace=False))
        rated_ = rng.random((25, 7)) < 0.6
        errors = np.where(rated_, rng.random((25, 7)), 0.0)
        expected = _weighted_maes(errors, rated_, wa[:, a_codes], wp[:, p_codes])
        np.testing.assert_allclose(shared.maes(errors, rated_, a_codes, p_codes), expected, rtol=1e-12, atol=0)


def test_same_size_wasserstein_equals_scipy():
    rng = np.random.default_rng(1)
    for n in (1, 2, 17, 500):
        u, v = rng.random(n) * 100, np.rint(rng.random(n) * 100)
        assert _wasserstein_same_size(u, v) == pytest.approx(stats.wasserstein_distance(u, v), abs=1e-9)


def test_score_matrix_equals_pivot_table():
    from bench.analytics_data import synthetic_long

    train = rated(synthetic_long(30, seed=5)).sample(frac=0.7, random_state=0)
    pivot, Y = score_matrix(train)
    expected = train.pivot_table(index="annotator", columns="prompt", values="score", aggfunc="mean", sort=False)
    pd.testing.assert_frame_equal(pivot, expected)
    np.testing.assert_array_equal(Y, expected.to_numpy(dtype=float))
    twice = pd.concat([train, train.iloc[:5].assign(score=0.0)])  # two ratings of a cell are averaged
    pd.testing.assert_frame_equal(
        score_matrix(twice)[0],
        twice.pivot_table(index="annotator", columns="prompt", values="score", aggfunc="mean", sort=False),
    )


def test_analogue_crps_from_counts_equals_the_histogram_code():
    s, Y = _ratings(50, 40, 12)
    predictor = FeatureRamp()
    predictor._fit_analogues(s, Y)
    n = len(s)
    distance = np.abs(s[:, None] - s[None, :])
    np.fill_diagonal(distance, np.inf)
    order = np.argsort(distance, axis=1, kind="stable")
    losses = {}
    for k in predictor.ANALOGUE_K:
        k = min(k, n - 1)
        losses[k] = sum(
            grid_crps(histogram_on_support(Y[:, order[j, :k]].ravel()), Y[:, j][np.isfinite(Y[:, j])])
            for j in range(n)
            if np.isfinite(Y[:, j]).any()
        )
    assert predictor.analogue_k_ == min(losses, key=losses.get)
    for j in range(5):
        y = Y[:, j][np.isfinite(Y[:, j])]
        h = histogram_on_support(Y[:, order[j, :10]].ravel())
        counts = histogram_counts(Y[:, order[j, :10]].ravel())
        assert grid_crps_counts(counts, *np.unique(y, return_counts=True)) == pytest.approx(grid_crps(h, y), abs=1e-12)


def test_aggregated_with_the_individual_fit_equals_its_own_fit():
    from bench.analytics_data import synthetic_long

    frame = synthetic_long(40, seed=6)
    names = ["annotator_median", "feature_ridge", "feature_ramp", "safetyanalyst_reference", "global_median"]
    both = run_benchmark(frame, names, conditions=("individual", "aggregated"), n_splits=2, n_boot=50).per_split
    alone = run_benchmark(frame, names, conditions=("aggregated",), n_splits=2, n_boot=50).per_split
    both = both[both["condition"] == "aggregated"].reset_index(drop=True)
    for column in ("predictor", "split", "mae", "ci_low", "ci_high", "spearman", "wasserstein", "crps"):
        pd.testing.assert_series_equal(both[column], alone[column], check_exact=True)


def test_safetyanalyst_reference_calibration_on_prompt_means_equals_the_per_rating_fit():
    """The calibration's least squares with one residual per distinct prompt score (weighted by its
    count, the spread kept as a constant) reaches the per-rating fit's optimum, on unequal counts."""
    from scipy import optimize, special

    from benchmark.science.harm_benefit import ACTION_FEATURE_COLUMNS, FeatureWeights
    from benchmark.science.predictors.safetyanalyst import SafetyAnalystReference

    rng = np.random.default_rng(3)
    columns = list(ACTION_FEATURE_COLUMNS)
    prompts = pd.DataFrame(rng.dirichlet(np.ones(len(columns)), 40), columns=columns).assign(prompt=range(40))
    reference = FeatureWeights.reference()
    h = prompts[columns].to_numpy() @ reference.action
    counts = rng.integers(1, 30, 40)
    rows = prompts.loc[np.repeat(np.arange(40), counts)].reset_index(drop=True)
    truth = special.expit(-2.0 + 5.0 * np.repeat(h, counts))
    rows["score"] = np.clip(truth + rng.normal(0, 0.15, len(rows)), 0, 1)
    per_rating = optimize.least_squares(
        lambda p: special.expit(p[1] + p[0] * np.repeat(h, counts)) - rows["score"].to_numpy(),
        x0=[1.0, 0.0],
        bounds=([0.0, -50.0], [200.0, 50.0]),
    ).x
    model = SafetyAnalystReference().fit(rows)
    np.testing.assert_allclose([model.weights_.scale, model.weights_.offset], per_rating, rtol=1e-6, atol=1e-6)
    assert per_rating[0] == pytest.approx(5.0, rel=0.2)  # a real fit, not the starting point
