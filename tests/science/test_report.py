"""The report: release figures, JSON-safety, and studies too small or too plain for some statistics."""

import json
import time

import numpy as np
import pandas as pd
import pytest

from bench.analytics_data import synthetic_long
from benchmark.science import report
from benchmark.science.release import DEMOGRAPHIC_COLUMNS

from .frames import long_frame
from .test_mixed_effects import simulate


def _strict_json(value):
    return json.loads(json.dumps(value, allow_nan=False))


def test_release_descriptive_report(release_long):
    started = time.perf_counter()
    result = report.descriptive_report(release_long, seed=0)
    elapsed = time.perf_counter() - started
    assert elapsed < 6  # measured ≈1 s on the 2-core machine; the budget is 2 s, checked by the benchmark
    result = _strict_json(result)
    assert result["n_ratings"] == 14_725 and result["n_unsure"] == 275
    assert result["n_annotators"] == 100 and result["n_prompts"] == 150
    assert round(result["krippendorff_alpha_interval"], 3) == 0.413
    assert round(result["spearman_harm_level_vs_mean"], 3) == 0.589
    ci = result["krippendorff_alpha_ci"]
    assert ci["ci_low"] < 0.413 < ci["ci_high"]
    assert 0 < result["icc"]["icc_single"] < result["icc"]["icc_mean_k"] < 1
    assert result["split_half"]["mean"] > 0.9
    assert result["mean_pairwise_correlation"]["n_pairs"] == 4950
    assert len(result["prompts"]) == 150 and len(result["annotators"]) == 100
    first = result["prompts"][0]
    assert (
        first["prompt"] == "1"
        and first["harm_level"] == 0.5
        and first["quadrant"]
        in {"benign-agreement", "benign-disagreement", "harmful-agreement", "harmful-disagreement"}
    )
    assert set(result["groups"]) == set(DEMOGRAPHIC_COLUMNS)
    gender = result["groups"]["Gender"]
    assert {g["group"] for g in gender["groups"]} == {"Man", "Woman"}
    assert 0 < gender["overall"]["p_value"] <= 1
    assert result["reasons"] == {}
    # seeded: the same call gives the same numbers
    again = _strict_json(report.descriptive_report(release_long, seed=0))
    assert again["krippendorff_alpha_ci"] == result["krippendorff_alpha_ci"]
    assert again["groups"] == result["groups"]


def test_without_harm_level_and_without_group_columns():
    rng = np.random.default_rng(0)
    df = long_frame(rng.integers(0, 101, (6, 5)).astype(float), Gender=["Man", "Woman"] * 3)
    result = _strict_json(report.descriptive_report(df, n_boot=50, n_perm=20, alpha_boot=20))
    assert "spearman_harm_level_vs_mean" not in result
    assert "harm_level" not in result["prompts"][0]
    assert "no harm_level" in result["reasons"]["spearman_harm_level_vs_mean"]
    assert set(result["groups"]) == {"Gender"}
    assert result["reasons"]["groups"]["Age"] == "column absent from the data"
    # Gender has two groups of 3 < min_group_size 5: listed, not tested
    assert "no group" in result["reasons"]["groups"]["Gender"]
    assert all(not g["tested"] and g["p_value"] is None for g in result["groups"]["Gender"]["groups"])


@pytest.mark.parametrize("n_annotators", [1, 2])
def test_tiny_studies_do_not_crash(n_annotators):
    ratings = np.array([[10.0, 60.0, np.nan], [20.0, 80.0, 50.0]])[:n_annotators]
    df = long_frame(ratings, Gender=["Man", "Woman"][:n_annotators])
    df["harm_level"] = df["prompt"].map({"q0": 0.1, "q1": 0.7, "q2": 0.5})
    result = _strict_json(report.descriptive_report(df))
    assert result["n_annotators"] == n_annotators
    if n_annotators == 1:
        assert result["krippendorff_alpha_interval"] is None
        assert "krippendorff_alpha_interval" in result["reasons"]
        assert result["split_half"]["mean"] is None and result["reasons"]["split_half"]
        assert result["mean_pairwise_correlation"]["mean"] is None
        assert result["icc"]["icc_single"] is None and result["reasons"]["icc"]
    else:  # two people, two shared prompts: everything is defined, if barely
        assert result["krippendorff_alpha_interval"] is not None
        assert result["mean_pairwise_correlation"]["n_pairs"] == 0  # fewer than three common prompts
    assert all(p["sd"] is None for p in result["prompts"]) == (n_annotators == 1)
    full = _strict_json(report.full_report(df, n_boot=20, n_perm=10))
    assert "skipped" in full["mixed_effects"]["rq1"] or full["mixed_effects"] is None


def test_all_unsure_and_empty_prompt():
    df = long_frame([[np.nan, 30.0], [np.nan, 40.0], [np.nan, 50.0]], unsure=[[True, False]] * 3)
    result = _strict_json(report.descriptive_report(df, n_boot=20, n_perm=10))
    q0 = result["prompts"][0]
    assert q0["n"] == 0 and q0["share_unsure"] == 1.0 and q0["mean"] is None and q0["quadrant"] is None
    assert result["n_unsure"] == 3


def test_to_jsonable():
    value = {
        "a": np.float64("nan"),
        "b": [np.int64(3), np.inf, pd.NA],
        "c": np.bool_(True),
        4: None,
        "d": pd.DataFrame({"x": [1.0, np.nan]}),
    }
    assert report.to_jsonable(value) == {
        "a": None,
        "b": [3, None, None],
        "c": True,
        "4": None,
        "d": [{"x": 1.0}, {"x": None}],
    }


def test_full_report_adds_mixed_effects():
    df = simulate(21, n_annotators=40, n_prompts=30)
    df["Gender"] = np.where(df["annotator"].str[1:].astype(int) % 2 == 0, "Man", "Woman")
    result = _strict_json(report.full_report(df, n_boot=50, n_perm=50, alpha_boot=20))
    me = result["mixed_effects"]
    assert {"rq1", "rq2", "rq3", "bic_ladder"} <= set(me)
    assert me["rq1"]["n"] == result["n_ratings"]
    assert "Gender_man" in me["rq2"]["terms"]


def test_synthetic_generator_matches_the_release_shape(release_long):
    df = synthetic_long(60, seed=3)
    assert list(df.columns) == list(release_long.columns)
    assert len(df) == 60 * 150 and df["annotator"].nunique() == 60
    rated = df["rating"].dropna()
    assert ((rated % 1 == 0) & (rated >= 0) & (rated <= 100)).all()
    assert 0.005 < df["unsure"].mean() < 0.04
    assert (df["rating"].isna() == df["unsure"]).all()
    assert set(df["Gender"]) <= set(release_long["Gender"])
    pd.testing.assert_frame_equal(df, synthetic_long(60, seed=3))
    result = _strict_json(report.descriptive_report(df, n_boot=100, n_perm=50))
    assert 0.2 < result["krippendorff_alpha_interval"] < 0.7
    assert result["spearman_harm_level_vs_mean"] > 0.5
