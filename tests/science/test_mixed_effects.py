"""Mixed models: the estimator against statsmodels and OLS, designs, parameter recovery, the release."""

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from benchmark.science import mixed_effects as me
from benchmark.science.mixed_effects import CrossedRandomInterceptsLM

FEATURES = [f"value_topic_{k}" for k in range(6)]
BETA = {
    "value_topic_0": 6.0,
    "value_topic_1": -4.0,
    "value_topic_2": 0.0,
    "value_topic_3": 3.0,
    "value_topic_4": 0.0,
    "value_topic_5": 0.0,
}
GAMMA = {"Factor_1": 3.0, "Factor_2": -2.0, "Factor_3": 0.0}
DELTA = {"Factor_1:value_topic_1": 3.0, "Factor_2:value_topic_3": -2.5}
INTERCEPT = 50.0


def _z(x):
    return (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)


def simulate(seed, *, n_annotators=150, n_prompts=100, sd_annotator=8.0, sd_prompt=6.0, sd_noise=12.0):
    """Ratings with known effects of z-scored features, traits and their products, crossed random
    intercepts and noise; 2% Unsure. Features and traits get arbitrary raw scales (the code z-scores)."""
    rng = np.random.default_rng(seed)
    raw_f = rng.normal(size=(n_prompts, len(FEATURES))) * [1, 2, 0.5, 1, 3, 1] + [0, 5, 1, -2, 0, 9]
    raw_t = rng.normal(size=(n_annotators, 3)) * [4, 1, 2] + [1, 0, -3]
    fz, tz = _z(raw_f), _z(raw_t)
    mean = INTERCEPT + (fz @ np.array(list(BETA.values())))[None, :] + (tz @ np.array(list(GAMMA.values())))[:, None]
    mean = mean + DELTA["Factor_1:value_topic_1"] * tz[:, [0]] * fz[None, :, 1]
    mean = mean + DELTA["Factor_2:value_topic_3"] * tz[:, [1]] * fz[None, :, 3]
    y = (
        mean
        + rng.normal(0, sd_annotator, (n_annotators, 1))
        + rng.normal(0, sd_prompt, (1, n_prompts))
        + rng.normal(0, sd_noise, (n_annotators, n_prompts))
    )
    unsure = rng.random(y.shape) < 0.02
    a = np.repeat(np.arange(n_annotators), n_prompts)
    p = np.tile(np.arange(n_prompts), n_annotators)
    frame = pd.DataFrame(
        {
            "annotator": [f"A{i}" for i in a],
            "prompt": [f"q{j}" for j in p],
            "rating": np.where(unsure, np.nan, y).ravel(),
            "unsure": unsure.ravel(),
            "trial": p + 1,
        }
    )
    for k in range(3):
        frame[f"Factor_{k + 1}"] = raw_t[a, k]
    for k, name in enumerate(FEATURES):
        frame[name] = raw_f[p, k]
    return frame


def _coef(result):
    return {row["term"]: row for row in result["coefficients"]}


# --------------------------------------------------------------------------- the estimator


def test_matches_statsmodels_mixedlm_on_crossed_data():
    rng = np.random.default_rng(1)
    n_a, n_p = 25, 20
    a, p = np.repeat(np.arange(n_a), n_p), np.tile(np.arange(n_p), n_a)
    keep = rng.random(n_a * n_p) > 0.1
    a, p = a[keep], p[keep]
    x = pd.DataFrame({"x1": rng.normal(size=n_p)[p], "x2": rng.normal(size=n_a)[a]})
    y = 10 + 2 * x["x1"] - x["x2"] + rng.normal(0, 3, n_a)[a] + rng.normal(0, 2, n_p)[p] + rng.normal(0, 4, len(a))
    groups = pd.DataFrame({"annotator": a, "prompt": p})
    for reml in (True, False):
        ours = CrossedRandomInterceptsLM(reml=reml).fit(x, y, groups)
        ref = CrossedRandomInterceptsLM(reml=reml, engine="statsmodels").fit(x, y, groups)
        assert ours.params_.to_numpy() == pytest.approx(ref.params_.to_numpy(), abs=1e-5)
        assert ours.bse_.to_numpy() == pytest.approx(ref.bse_.to_numpy(), rel=1e-3)
        for name in ("annotator", "prompt", "residual"):
            assert ours.variance_components_[name] == pytest.approx(ref.variance_components_[name], rel=1e-3)
        assert ours.llf_ == pytest.approx(ref.llf_, abs=1e-4)


def test_without_random_effects_it_is_ols():
    rng = np.random.default_rng(2)
    x = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50)})
    y = 1 + 2 * x["a"] + rng.normal(size=50)
    fit = CrossedRandomInterceptsLM().fit(x, y, None)
    design = np.column_stack([np.ones(50), x])
    beta, rss = np.linalg.lstsq(design, y, rcond=None)[:2]
    assert fit.params_.to_numpy() == pytest.approx(beta)
    sigma2 = rss[0] / (50 - 3)
    assert fit.bse_.to_numpy() == pytest.approx(np.sqrt(np.diag(sigma2 * np.linalg.inv(design.T @ design))))


def test_collinear_and_constant_columns_are_dropped_not_fatal():
    rng = np.random.default_rng(8)
    x = pd.DataFrame({"a": rng.normal(size=80), "flat": 3.0})
    x["twice_a"] = 2 * x["a"] - 1
    x["b"] = rng.normal(size=80)
    y = 1 + x["a"] + rng.normal(size=80)
    groups = pd.DataFrame({"g": np.arange(80) % 8})
    fit = CrossedRandomInterceptsLM().fit(x, y, groups)
    assert fit.dropped_ == ["flat", "twice_a"]
    assert list(fit.params_.index) == ["Intercept", "a", "b"]
    columns = me.RowColumns.from_frame(x[["a", "b"]])
    columns.block_rows = 7  # cross products accumulated over 12 blocks of rows
    chunked = CrossedRandomInterceptsLM().fit(columns, y, groups)
    assert chunked.params_.to_numpy() == pytest.approx(fit.params_.to_numpy())
    assert chunked.fixed_fitted_ == pytest.approx(fit.fixed_fitted_)


def test_r2_follows_nakagawa_schielzeth():
    df = simulate(3, n_annotators=60, n_prompts=40)
    result = me.FeatureModel().fit(df).result_
    comps = result["variance_components"]
    design = me.build_design(df)
    beta = pd.Series({c["term"]: c["estimate"] for c in result["coefficients"]})
    fixed = beta["Intercept"] + design.feature_rows()[beta.index[1:]].to_numpy() @ beta.iloc[1:].to_numpy()
    var_f = fixed.var()
    total = var_f + comps["annotator"] + comps["prompt"] + comps["residual"]
    assert result["r2_marginal"] == pytest.approx(var_f / total)
    assert result["r2_conditional"] == pytest.approx((var_f + comps["annotator"] + comps["prompt"]) / total)


# --------------------------------------------------------------------------- designs


def test_design_drops_block_reference_constant_and_collinear_columns():
    df = simulate(4, n_annotators=20, n_prompts=30)
    rng = np.random.default_rng(0)
    shares = rng.dirichlet([5, 1, 1], size=30)  # action_a is the most common category
    prompt_index = df["prompt"].str[1:].astype(int).to_numpy()
    for k, name in enumerate(["action_a", "action_b", "action_c"]):
        df[name] = shares[prompt_index, k]
    df["value_topic_flat"] = 1.0
    df["value_topic_copy"] = 2 * df["value_topic_0"] + 1
    design = me.build_design(df)
    dropped = design.notes["dropped_features"]
    assert "action_a" in dropped and "reference" in dropped["action_a"]
    assert "constant" in dropped["value_topic_flat"]
    assert "collinear" in dropped["value_topic_copy"]
    assert {"action_b", "action_c", *FEATURES} == set(design.features.columns)
    assert design.features.mean().abs().max() < 1e-12
    assert design.features.std(ddof=1).to_numpy() == pytest.approx(np.ones(design.features.shape[1]))
    assert list(design.traits.columns) == ["Factor_1", "Factor_2", "Factor_3"]
    assert len(design.y) == int(df["rating"].notna().sum())


def test_design_trait_missing_impute_or_drop():
    df = simulate(5, n_annotators=30, n_prompts=10)
    df.loc[df["annotator"] == "A3", "Factor_2"] = np.nan
    imputed = me.build_design(df)
    dropped = me.build_design(df, trait_missing="drop")
    assert imputed.notes["annotators_with_missing_traits"] == 1
    assert len(imputed.y) == int(df["rating"].notna().sum())
    assert len(dropped.y) == int(df.loc[df["annotator"] != "A3", "rating"].notna().sum())


def test_residualize_is_exact_two_way_demeaning():
    df = simulate(6, n_annotators=40, n_prompts=25)
    design = me.build_design(df)
    noise = np.random.default_rng(0).normal(size=(len(design.y), 3))
    out = me._residualize(noise, design)
    assert np.abs(pd.DataFrame(out).groupby(design.annotator).mean().to_numpy()).max() < 1e-10
    assert np.abs(pd.DataFrame(out).groupby(design.prompt).mean().to_numpy()).max() < 1e-10


# --------------------------------------------------------------------------- recovery


def _checks(seed):
    df = simulate(seed)
    result = me.fit_all(df, seed=seed)
    rows = []
    for model, truth in (
        ("rq1", {"Intercept": INTERCEPT, **BETA}),
        ("rq2", {"Intercept": INTERCEPT, **GAMMA}),
        ("rq3", {"Intercept": INTERCEPT, **BETA, **GAMMA, **DELTA}),
    ):
        coef = _coef(result[model])
        for term, true in truth.items():
            assert term in coef, f"{model} lacks {term}"
            c = coef[term]
            rows.append((model, term, true, c["estimate"], c["ci_low"], c["ci_high"]))
    return result, rows


def test_parameter_recovery_true_effects_inside_reported_intervals():
    rows = []
    for seed in (11, 12, 13):
        result, seed_rows = _checks(seed)
        rows += seed_rows
        # the lasso finds both true interactions
        assert set(DELTA) <= set(result["rq3"]["lasso"]["selected"])
        assert result["bic_ladder"][-1]["delta_bic"] < 0  # the interactions earn their parameters
    table = pd.DataFrame(rows, columns=["model", "term", "true", "estimate", "ci_low", "ci_high"])
    inside = (table["ci_low"] <= table["true"]) & (table["true"] <= table["ci_high"])
    half_width = (table["ci_high"] - table["ci_low"]) / 2
    # 69 checks (23 per seed). No estimate may miss its truth by more than twice the interval's
    # half-width (~3.9 SE: about 1 in 10,000 per check for honest intervals). Misses of the 95%
    # intervals come in pairs (RQ1 and RQ3 estimate the same feature effects from the same data):
    # over 40 other seeds they averaged 1.45 per seed, and more than 13 of 69 (the bound below)
    # happened for 0.1% of seed triples, so this fails for biased or too-narrow intervals, not by luck.
    assert ((table["estimate"] - table["true"]).abs() <= 2 * half_width).all(), table
    assert inside.mean() >= 0.8, table[~inside]


def test_interval_coverage_over_replications():
    # 95% Wald intervals from the crossed model cover the true feature and trait effects about 95% of
    # the time; a model without the prompt (or annotator) intercept would cover far less.
    hits, total = 0, 0
    for seed in range(30):
        df = simulate(1000 + seed, n_annotators=60, n_prompts=40)
        design = me.build_design(df)
        x = pd.concat([design.feature_rows(), design.trait_rows()], axis=1)
        fit = CrossedRandomInterceptsLM().fit(x, design.y, design.groups)
        table = fit.coefficients().set_index("term")
        for term, true in {**BETA, **GAMMA}.items():
            # the interactions are left out here, which is harmless: they average to zero per unit
            hits += bool(table.loc[term, "ci_low"] <= true <= table.loc[term, "ci_high"])
            total += 1
    assert 0.88 <= hits / total <= 0.99


# --------------------------------------------------------------------------- the release


def test_fit_all_on_the_release(release_long):
    started = time.perf_counter()
    result = me.fit_all(release_long, seed=0)
    elapsed = time.perf_counter() - started
    # a sanity bound, not a target (timings are in docs/analysis.md): stability selection fits 20 × 6 lasso paths
    assert elapsed < 300
    text = json.dumps(result, allow_nan=False)
    assert {"rq1", "rq2", "rq3", "bic_ladder"} <= set(json.loads(text))
    rq1, rq2, rq3 = result["rq1"], result["rq2"], result["rq3"]
    assert rq1["n"] == rq2["n"] == rq3["n"] == 14_725
    assert 0.2 < rq1["r2_marginal"] < 0.35  # the paper: about 27%
    assert 0.0 < rq2["r2_marginal"] < 0.06  # the paper: about 2%
    assert rq1["r2_conditional"] > rq1["r2_marginal"]
    assert "harm_level" not in rq1["terms"] and len(rq1["terms"]) == 60
    row = rq1["coefficients"][1]
    assert set(row) == {"term", "estimate", "se", "ci_low", "ci_high", "p"}
    assert [step["model"] for step in result["bic_ladder"]] == ["null", "features", "traits", "interactions"]
    assert result["bic_ladder"][0]["delta_bic"] is None
    assert all(math.isfinite(step["bic"]) for step in result["bic_ladder"])
    # 14 of 19 traits may enter interactions: 5 race indicators have fewer than 10 annotators in a level
    assert rq3["lasso"]["n_candidates"] == 60 * 14 and len(rq3["lasso"]["traits_left_out"]) == 5
    assert set(rq3["lasso"]["selected"]) <= set(rq3["terms"])


def test_fit_all_on_a_tiny_study_says_why():
    df = simulate(7, n_annotators=2, n_prompts=5)
    result = me.fit_all(df)
    assert "skipped" in result["rq1"] and result["bic_ladder"] == []
    json.dumps(result, allow_nan=False)
