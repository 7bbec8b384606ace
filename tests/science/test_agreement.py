"""Agreement statistics on small frames whose answers are known by hand."""

import math

import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.science import agreement
from benchmark.science.agreement import RatingsMatrix

from .frames import long_frame

nan = np.nan


# --------------------------------------------------------------------------- the matrix


def test_matrix_keeps_unsure_apart_from_absent():
    df = long_frame([[10, nan], [20, 30]], unsure=[[False, True], [False, False]])
    m = RatingsMatrix.from_frame(df)
    assert m.n_ratings == 3 and m.n_unsure == 1
    assert np.isnan(m.values[0, 1]) and m.unsure[0, 1]


def test_matrix_refuses_duplicate_ratings():
    df = long_frame([[10, 20]])
    with pytest.raises(ValueError, match="twice"):
        RatingsMatrix.from_frame(pd.concat([df, df.iloc[:1]]))


def test_matrix_ignores_rows_without_ids():
    df = pd.DataFrame({"annotator": ["a", "b", None, "a"], "prompt": ["1", "1", "1", None], "rating": [1.0, 2, 3, 4]})
    m = RatingsMatrix.from_frame(df)
    assert list(m.annotators) == ["a", "b"] and m.values.ravel().tolist() == [1.0, 2.0]


def test_empty_prompts_give_missing_values_without_warnings():
    import warnings

    df = long_frame([[nan, 30.0], [nan, 40.0], [nan, 50.0]], unsure=[[True, False]] * 3)
    df["harm_level"] = df["prompt"].map({"q0": 0.1, "q1": 0.2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ps = agreement.prompt_stats(df, n_boot=20)
        assert math.isnan(agreement.spearman_harm_level_vs_mean(df))
    assert ps.loc["q0", "n"] == 0 and math.isnan(ps.loc["q0", "mean_ci_low"]) and pd.isna(ps.loc["q0", "quadrant"])
    assert ps.loc["q1", "mean"] == 40.0


# --------------------------------------------------------------------------- per prompt


def test_entropy_of_known_histograms():
    # q0: two bins, half each → 1 bit; q1: one rating in each of the ten bins → log2(10);
    # q2: 95 and 100 share the last bin → 0 bits.
    matrix = np.full((10, 3), nan)
    matrix[:, 0] = [5, 5, 5, 5, 5, 15, 15, 15, 15, 15]
    matrix[:, 1] = [0, 10, 20, 30, 40, 50, 60, 70, 80, 99.5]
    matrix[:2, 2] = [95, 100]
    ps = agreement.prompt_stats(long_frame(matrix), n_boot=0)
    assert ps.loc["q0", "entropy_bits"] == pytest.approx(1.0)
    assert ps.loc["q1", "entropy_bits"] == pytest.approx(math.log2(10))
    assert ps.loc["q2", "entropy_bits"] == pytest.approx(0.0)


def _bc_by_hand(x):
    x = np.asarray(x, dtype=float)
    n = len(x)
    d = x - x.mean()
    m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
    g1 = math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2**1.5
    g2 = (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * (m4 / m2**2 - 3) + 6)
    return (g1**2 + 1) / (g2 + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


def test_bimodality_coefficient_against_the_formula():
    # Two equal clusters at 0 and 100 (n = 8): G1 = 0, G2 = (7/30)(9·(−2) + 6) = −2.8,
    # correction 3·49/30 = 4.9, so BC = 1 / 2.1.
    two_points = [0, 0, 0, 0, 100, 100, 100, 100]
    skewed = [1, 2, 2, 3, 3, 3, 10, 10, 11, 12, 40]
    matrix = np.full((11, 2), nan)
    matrix[:8, 0] = two_points
    matrix[:, 1] = skewed
    ps = agreement.prompt_stats(long_frame(matrix), n_boot=0)
    assert ps.loc["q0", "bimodality"] == pytest.approx(1 / 2.1)
    assert ps.loc["q1", "bimodality"] == pytest.approx(_bc_by_hand(skewed))
    assert ps.loc["q1", "skewness"] == pytest.approx(stats.skew(skewed, bias=False))
    assert ps.loc["q1", "excess_kurtosis"] == pytest.approx(stats.kurtosis(skewed, bias=False))


def test_moments_shares_and_quadrants():
    matrix = [
        [10, 0, 90, 50],
        [10, 40, 90, 100],
        [12, 0, 92, 50],
        [12, 40, 92, 100],
        [nan, nan, nan, nan],
    ]
    unsure = np.zeros((5, 4), dtype=bool)
    unsure[4, 0] = True  # one Unsure on q0
    ps = agreement.prompt_stats(long_frame(matrix, unsure=unsure), n_boot=200, seed=1)
    assert ps["n"].tolist() == [4, 4, 4, 4]
    assert ps.loc["q0", "share_unsure"] == pytest.approx(1 / 5)
    assert ps.loc["q1", "mean"] == 20 and ps.loc["q1", "median"] == 20
    assert ps.loc["q1", "sd"] == pytest.approx(np.std([0, 40, 0, 40], ddof=1))
    assert ps.loc["q3", "share_ge_50"] == 1.0 and ps.loc["q1", "share_ge_50"] == 0.0
    # median SD splits agreement from disagreement; mean ≥ 50 is harmful
    assert ps["quadrant"].tolist() == [
        "benign-agreement",
        "benign-disagreement",
        "harmful-agreement",
        "harmful-disagreement",
    ]
    assert (ps["harm"] == ps["mean"]).all() and (ps["agreement"] == ps["sd"]).all()
    assert ((ps["mean_ci_low"] <= ps["mean"]) & (ps["mean"] <= ps["mean_ci_high"])).all()


def test_bootstrap_interval_is_seeded_and_sensible():
    rng = np.random.default_rng(3)
    matrix = rng.integers(0, 101, size=(400, 3)).astype(float)
    matrix[:, 2] = 50.0
    df = long_frame(matrix)
    a = agreement.prompt_stats(df, n_boot=500, seed=7)
    b = agreement.prompt_stats(df, n_boot=500, seed=7)
    pd.testing.assert_frame_equal(a, b)
    se = a["sd"] / np.sqrt(a["n"])
    width = a["mean_ci_high"] - a["mean_ci_low"]
    assert width.iloc[:2].to_numpy() == pytest.approx((2 * 1.96 * se).iloc[:2].to_numpy(), rel=0.15)
    assert a.loc["q2", "mean_ci_low"] == a.loc["q2", "mean_ci_high"] == 50.0


def test_bootstrap_multinomial_path_matches_index_path():
    # Many raters per prompt take the multinomial route; its spread must match the theory too.
    rng = np.random.default_rng(4)
    values = rng.integers(0, 11, size=(3000, 2)).astype(float) * 10
    m = RatingsMatrix.from_frame(long_frame(values))
    boots = agreement._bootstrap_means(m, m.mask.sum(axis=0).astype(float), 400, np.random.default_rng(0))
    assert boots.std(axis=0) == pytest.approx(values.std(axis=0) / np.sqrt(3000), rel=0.15)


# --------------------------------------------------------------------------- Krippendorff's alpha


def test_alpha_full_agreement_is_one():
    # every prompt rated the same by everyone (prompts differ): no disagreement at all
    assert agreement.krippendorff_alpha(long_frame([[10, 50, 90]] * 4)) == 1.0
    # even when there is a single value in the whole study (the package's formula is 0/0 there)
    assert agreement.krippendorff_alpha(long_frame([[30, 30]] * 3)) == 1.0
    assert agreement.krippendorff_alpha(long_frame([[10, 50, 90]] * 4), level="nominal") == 1.0


def test_alpha_undefined_without_pairable_prompts():
    assert math.isnan(agreement.krippendorff_alpha(long_frame([[10, 50, 90]])))
    assert math.isnan(agreement.krippendorff_alpha(long_frame([[10, nan], [nan, 20]])))


def test_alpha_tiny_hand_example():
    # unit 1 rated 1 and 2, unit 2 rated 3 and 3: D_o = 2/4, D_e = 22/12, α = 1 − 3/11 = 8/11
    df = long_frame([[1, 3], [2, 3]])
    assert agreement.krippendorff_alpha(df) == pytest.approx(8 / 11)
    m = RatingsMatrix.from_frame(df)
    assert krippendorff.alpha(reliability_data=m.values, level_of_measurement="interval") == pytest.approx(8 / 11)


def test_alpha_closed_form_equals_package_with_missing_cells():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 101, size=(30, 12)).astype(float) + rng.normal(0, 15, size=(1, 12)).round()
    values[rng.random(values.shape) < 0.2] = nan
    m = RatingsMatrix.from_frame(long_frame(values))
    domain, counts = agreement._value_counts(m)
    closed = float(agreement._alpha_interval_from_sums(*agreement._unit_sums(domain, counts)))
    package = krippendorff.alpha(reliability_data=m.values, level_of_measurement="interval")
    assert closed == pytest.approx(package, abs=1e-12)
    assert agreement.krippendorff_alpha(m) == pytest.approx(package, abs=1e-12)
    for level in ("nominal", "ordinal", "ratio"):
        assert agreement.krippendorff_alpha(m, level=level) == pytest.approx(
            krippendorff.alpha(reliability_data=m.values, level_of_measurement=level)
        )


def test_alpha_ci_brackets_alpha_and_is_seeded(release_long):
    m = RatingsMatrix.from_frame(release_long)
    ci = agreement.krippendorff_alpha_ci(m, n_boot=200, seed=0)
    assert ci["ci_low"] < ci["alpha"] < ci["ci_high"]
    assert ci == agreement.krippendorff_alpha_ci(m, n_boot=200, seed=0)
    # the vectorized interval bootstrap equals recomputing α on each resample with the package
    domain, counts = agreement._value_counts(m)
    idx = np.random.default_rng(0).integers(0, counts.shape[0], size=(5, counts.shape[0]))
    vectorized = agreement._alpha_interval_from_sums(*(a[idx] for a in agreement._unit_sums(domain, counts)))
    direct = [krippendorff.alpha(value_counts=counts[row], value_domain=domain) for row in idx]
    assert vectorized == pytest.approx(direct)


# --------------------------------------------------------------------------- ICC

SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_icc_equals_shrout_fleiss_on_their_complete_example():
    # Shrout & Fleiss (1979), Table 2: 6 targets × 4 judges; ICC(2,1) = .29, ICC(2,4) = .62, ICC(3,1) = .71.
    # Our annotators are the judges and prompts the targets, so transpose.
    result = agreement.icc(long_frame(np.asarray(SHROUT_FLEISS, dtype=float).T))
    assert result["icc_single"] == pytest.approx(0.2898, abs=5e-4)
    assert result["icc_mean_k"] == pytest.approx(0.6201, abs=5e-4)
    assert result["icc_consistency"] == pytest.approx(0.7148, abs=5e-4)
    assert result["k"] == 4 and result["reason"] is None


def test_icc_with_missing_cells_recovers_simulated_components():
    rng = np.random.default_rng(5)
    n_a, n_p = 300, 120
    values = 50 + rng.normal(0, 20, n_p)[None, :] + rng.normal(0, 10, n_a)[:, None] + rng.normal(0, 15, (n_a, n_p))
    values[rng.random(values.shape) < 0.5] = nan
    result = agreement.icc(long_frame(values))
    assert result["variance_prompt"] == pytest.approx(400, rel=0.3)
    assert result["variance_annotator"] == pytest.approx(100, rel=0.3)
    assert result["variance_residual"] == pytest.approx(225, rel=0.05)


def test_icc_needs_two_annotators():
    assert agreement.icc(long_frame([[1, 2, 3]]))["reason"]


# --------------------------------------------------------------------------- split halves, pairs, consensus


def test_split_half_on_identical_halves_is_one():
    df = long_frame([[10, 30, 50, 90]] * 6)
    result = agreement.split_half_reliability(df, n_splits=20, seed=0)
    assert result["mean"] == pytest.approx(1.0) and result["ci_low"] == pytest.approx(1.0)


def test_split_half_spearman_brown():
    # two annotators: the halves are the two people, r = their correlation, reliability = 2r / (1 + r)
    a, b = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    r = np.corrcoef(a, b)[0, 1]
    result = agreement.split_half_reliability(long_frame([a, b]), n_splits=10)
    assert result["mean"] == pytest.approx(2 * r / (1 + r))
    assert agreement.split_half_reliability(long_frame([a]))["reason"]


def test_mean_pairwise_correlation_by_hand():
    # r(A,B) = 1, r(A,C) = r(B,C) = −1; D shares only two prompts with anyone, so its pairs are skipped
    df = long_frame([[1, 2, 3, nan, nan], [2, 4, 6, nan, nan], [3, 2, 1, nan, nan], [nan, nan, 5, 6, 7]])
    result = agreement.mean_pairwise_correlation(df)
    assert result["mean"] == pytest.approx(-1 / 3) and result["n_pairs"] == 3 and not result["subset"]
    sub = agreement.mean_pairwise_correlation(df, max_annotators=2, seed=1)
    assert sub["subset"] and sub["n_annotators_used"] == 2


def test_annotator_consensus_leave_one_out():
    a = [0, 10, 20, 40]
    b = [0, 10, 20, 30]
    c = [10, 10, 10, 10]
    out = agreement.annotator_consensus(long_frame([a, b, c]))
    loo_a = (np.asarray(b) + np.asarray(c)) / 2  # [5, 10, 15, 20]
    assert out.loc["A0", "loo_r"] == pytest.approx(np.corrcoef(a, loo_a)[0, 1])
    assert out.loc["A2", "loo_r"] != out.loc["A2", "loo_r"]  # constant ratings: undefined
    means = (np.asarray(a) + np.asarray(b) + np.asarray(c)) / 3
    assert out.loc["A0", "mean_offset"] == pytest.approx(np.mean(np.asarray(a) - means))
    assert out["n"].tolist() == [4, 4, 4]


def test_annotator_consensus_reversed_rater():
    out = agreement.annotator_consensus(long_frame([[30, 20, 10, 0], [0, 10, 20, 30], [0, 10, 20, 30]]))
    assert out.loc["A0", "loo_r"] == pytest.approx(-1.0)
    assert math.isnan(out.loc["A1", "loo_r"])  # the others' mean is flat (15 everywhere)


# --------------------------------------------------------------------------- groups


def _two_camps(n_per_group, n_prompts, seed):
    rng = np.random.default_rng(seed)
    pattern = rng.uniform(0, 100, n_prompts)
    ratings = np.vstack([np.tile(pattern, (n_per_group, 1)), np.tile(100 - pattern, (n_per_group, 1))])
    return ratings + rng.normal(0, 2, ratings.shape), ["x"] * n_per_group + ["y"] * n_per_group


def test_group_agreement_perfectly_separated_groups():
    ratings, groups = _two_camps(8, 20, 0)
    table = agreement.group_agreement(long_frame(ratings, Gender=groups), column="Gender", n_perm=999, seed=0)
    assert table["tested"].all()
    assert (table["in_group_alpha"] > 0.95).all() and (table["cross_group_kappa"] < 0).all()
    # the observed labelling (and its swap) is the most extreme of C(16, 8) = 12,870 relabellings
    assert (table["p_value"] <= 0.01).all()
    assert table.attrs["overall"]["p_value"] <= 0.01


def test_group_agreement_random_labels_give_no_signal():
    p_values = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        ratings = rng.normal(50, 10, (1, 15)) + rng.normal(0, 20, (16, 15))
        labels = list(rng.permutation(["x"] * 8 + ["y"] * 8))
        table = agreement.group_agreement(long_frame(ratings, Gender=labels), column="Gender", n_perm=200, seed=seed)
        p_values.append(table.attrs["overall"]["p_value"])
    p_values = np.asarray(p_values)
    assert 0.3 < p_values.mean() < 0.7
    assert (p_values < 0.05).mean() <= 0.2


def test_group_statistics_by_hand():
    # in-group α of a group equals α computed on its own ratings; κx of two one-rater groups by hand:
    # d_o = (0 + 100)/2 = 50, d_e = (0 + 400 + 100 + 100)/4 = 150, κx = 1 − 50/150 = 2/3
    table = agreement.group_agreement(
        long_frame([[0, 10], [0, 20]], G=["a", "b"]), column="G", n_perm=0, min_group_size=1
    )
    assert table["cross_group_kappa"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert table["in_group_alpha"].isna().all()  # one rater: nothing to agree with
    ratings, groups = _two_camps(6, 10, 2)
    df = long_frame(ratings, G=groups)
    table = agreement.group_agreement(df, column="G", n_perm=0)
    own = agreement.krippendorff_alpha(df[df["G"] == "x"])
    assert table.set_index("group").loc["x", "in_group_alpha"] == pytest.approx(own)


def test_group_agreement_small_groups_and_labels():
    ratings = np.random.default_rng(0).uniform(0, 100, (9, 6))
    labels = [" Man", "Man ", "Man", "Man", "Man", "Woman", "Woman", None, ""]
    table = agreement.group_agreement(long_frame(ratings, Gender=labels), column="Gender", n_perm=50)
    assert table.set_index("group")["n_annotators"].to_dict() == {"Man": 5, "Woman": 2}
    assert table.set_index("group")["tested"].to_dict() == {"Man": True, "Woman": False}
    assert table.attrs["overall"]["n_labelled"] == 7
    with pytest.raises(KeyError):
        agreement.group_agreement(long_frame(ratings), column="Gender")


# --------------------------------------------------------------------------- harm level


def test_spearman_harm_level():
    df = long_frame([[10, 20, 30, 40], [12, 22, 28, 50]])
    df["harm_level"] = df["prompt"].map({"q0": 0.1, "q1": 0.2, "q2": 0.3, "q3": 0.9})
    assert agreement.spearman_harm_level_vs_mean(df) == pytest.approx(1.0)
    df["harm_level"] = df["prompt"].map({"q0": 0.9, "q1": 0.2, "q2": 0.3, "q3": 0.1})
    assert agreement.spearman_harm_level_vs_mean(df) == pytest.approx(
        stats.spearmanr([0.9, 0.2, 0.3, 0.1], [11, 21, 29, 45]).statistic
    )
    with pytest.raises(KeyError):
        agreement.spearman_harm_level_vs_mean(long_frame([[1, 2, 3]]))
