"""The jury view's science (issue 13): error by group, raking, the jury and its validation."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.science.jury import (
    MixError,
    census_names,
    census_read,
    error_by_group,
    group_labels,
    jury_draw,
    jury_fit,
    jury_validate,
    marginals,
    people_table,
    rake,
)
from tests.science.frames import long_frame

# --------------------------------------------------------------------------------------------------
# Error by group


def _toy_errors(rng, n=60, worse=0.0):
    """Annotators in three groups; group "C" has `worse` added to every annotator's MAE."""
    group = np.array(["A", "B", "C"] * (n // 3))
    mae = rng.normal(0.2, 0.05, size=n) + np.where(group == "C", worse, 0.0)
    ids = [f"P{i:03d}" for i in range(n)]
    per_annotator = pd.DataFrame({"annotator": ids, "mae": mae})
    people = pd.DataFrame({"group": group, "score": rng.normal(size=n)}, index=ids)
    return per_annotator, people


def test_the_gap_and_its_test_find_the_group_served_worse():
    per_annotator, people = _toy_errors(np.random.default_rng(1), worse=0.08)
    result = {r["column"]: r for r in error_by_group(per_annotator, people, n_perm=999, seed=0)}
    group = result["group"]
    assert group["worst"] == "C"
    assert group["levels"][-1]["level"] == "C"  # sorted by MAE, worst last
    assert group["gap"] == pytest.approx(0.08, abs=0.04)
    assert group["p_value"] < 0.01
    c = group["levels"][-1]
    assert c["n"] == 20 and c["ci_low"] < c["mae"] < c["ci_high"]
    # the numeric column is grouped by tertiles and shows no difference
    assert result["score"]["kind"] == "tertiles" and len(result["score"]["levels"]) == 3
    assert result["score"]["p_value"] > 0.01


def test_the_permutation_p_value_is_uniform_when_no_group_differs():
    """Over 400 seeds of data with no difference the p-values are uniform (KS test and 10-bin
    frequencies), and the same checks reject the p-values of data where a group is served worse."""

    def p_values(worse):
        out = []
        for seed in range(400):
            per_annotator, people = _toy_errors(np.random.default_rng(seed), n=30, worse=worse)
            out.append(error_by_group(per_annotator, people, columns=["group"], n_perm=199, seed=seed)[0]["p_value"])
        return np.array(out)

    null = p_values(0.0)
    assert stats.kstest(null, "uniform").pvalue > 0.01
    counts = np.histogram(null, bins=10, range=(0, 1))[0]
    assert stats.chisquare(counts).pvalue > 0.01
    shifted = p_values(0.03)
    assert stats.kstest(shifted, "uniform").pvalue < 1e-6


def test_small_levels_are_listed_but_left_out_of_the_gap():
    ids = [f"P{i}" for i in range(12)]
    per_annotator = pd.DataFrame({"annotator": ids, "mae": [0.1] * 5 + [0.2] * 5 + [0.9, 0.9]})
    people = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 5 + ["c"] * 2}, index=ids)
    (entry,) = error_by_group(per_annotator, people, min_group=5, n_perm=99)
    assert [r["level"] for r in entry["levels"]] == ["a", "b", "c"]
    assert entry["worst"] == "b" and entry["gap"] == pytest.approx(0.1)


def test_tertile_labels_cover_every_value():
    labels = group_labels(pd.Series(np.arange(9.0)))
    assert labels.str.startswith("low").sum() == 3 and labels.str.startswith("high").sum() == 3


# --------------------------------------------------------------------------------------------------
# Raking on the release's annotators

AGES = [
    "18-24 years old",
    "25-34 years old",
    "35-44 years old",
    "45-54 years old",
    "55-64 years old",
    "65 years old or above",
]


@pytest.fixture(scope="module")
def release_people(release_long):
    return people_table(release_long)


@pytest.mark.parametrize(
    "mix",
    [
        {  # the example: half over 55, 70% religious
            "Age": dict(zip(AGES, [0.05, 0.15, 0.15, 0.15, 0.25, 0.25])),
            "Religion_Importance": {"Very important": 0.7, "Somewhat important": 0.2, "Not at all important": 0.1},
        },
        {
            "Gender": {"Man": 0.3, "Woman": 0.7},
            "Political_Affiliation": {
                "Very conservative": 0.3,
                "Somewhat conservative": 0.2,
                "Moderate": 0.2,
                "Somewhat liberal": 0.15,
                "Very liberal": 0.1,
                "Other": 0.05,
            },
            "Education": {
                "High school diploma or GED": 0.3,
                "Some college, but no degree": 0.2,
                "Associates or technical degree": 0.1,
                "Bachelor’s degree": 0.25,
                "Graduate or professional degree (MA, MS, MBA, PhD, JD, MD, DDS etc.)": 0.15,
            },
        },
        "census",
    ],
)
def test_raking_meets_a_feasible_mix_within_one_point_on_the_release(release_people, mix):
    if mix == "census":
        mix = census_read("us_acs_2022_adults")["mix"]
    result = rake(release_people, mix)
    assert result.feasible and not result.problems
    assert result.weights.sum() == pytest.approx(1.0)
    achieved = marginals(release_people, result.weights, list(mix))
    for column, levels in mix.items():
        for level, share in levels.items():
            assert abs(achieved[column][level] - share) <= 0.01, (column, level)
    assert 1 < result.effective_n < len(release_people)


def test_raking_names_a_level_no_annotator_has(release_people):
    result = rake(release_people, {"Age": {"Under 18": 0.2, "25-34 years old": 0.8}})
    assert not result.feasible
    assert any("Age = Under 18" in p and "no annotator has this level" in p for p in result.problems)
    # what can be placed is still met, renormalised
    assert result.achieved["Age"]["25-34 years old"] == pytest.approx(1.0)


def test_raking_names_marginals_that_cannot_be_met_together(release_people):
    # no annotator of 18–24 in the release says religion is not at all important
    mix = {"Age": {"18-24 years old": 1.0}, "Religion_Importance": {"Not at all important": 1.0}}
    result = rake(release_people, mix, max_iter=200)
    assert not result.feasible and result.max_error > 0.01
    assert any("no annotator is in the requested levels of every column at once" in p for p in result.problems)
    # shares that can each be met alone, not together: IPF does not converge and says which levels
    mix = {
        "Age": {"18-24 years old": 0.9, "25-34 years old": 0.1},
        "Religion_Importance": {"Not at all important": 0.9, "Very important": 0.1},
    }
    result = rake(release_people, mix, max_iter=200)
    assert not result.feasible
    assert any(p.startswith("Age = 18-24 years old: requested 90.0%, reached") for p in result.problems)


@pytest.mark.parametrize(
    "mix, message",
    [
        ({"Height": {"tall": 1.0}}, "unknown column"),
        ({"Gender": {"Man": 0.5, "Woman": 0.3}}, "sum to 0.8000"),
        ({"Gender": {"Man": -0.5, "Woman": 1.5}}, "≥ 0"),
        ({"Gender": {"Man": "half", "Woman": 0.5}}, "not a number"),
        ({}, "at least one column"),
    ],
)
def test_a_mix_that_cannot_be_read_is_refused(release_people, mix, message):
    with pytest.raises(MixError, match=message):
        rake(release_people, mix)


def test_the_shipped_census_has_its_source():
    assert "us_acs_2022_adults" in census_names()
    census = census_read("us_acs_2022_adults")
    assert census["source"]["url"].startswith("https://data.census.gov/")
    assert "S0101" in census["source"]["table"]
    for levels in census["mix"].values():
        assert sum(levels.values()) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# The jury


def _polarised_frame(n=40, n_prompts=12, seed=0):
    """Half the annotators ("religious") rate every prompt ~85, the others ~15."""
    rng = np.random.default_rng(seed)
    religious = np.arange(n) % 2 == 0
    base = np.where(religious[:, None], 85.0, 15.0)
    ratings = np.clip(base + rng.normal(0, 5, size=(n, n_prompts)), 0, 100).round()
    return long_frame(
        ratings.tolist(),
        Religion=["Very important" if r else "Not at all important" for r in religious],
        Gender=["Man", "Woman"] * (n // 2),
    )


def test_a_jury_of_the_religious_says_harmful_and_the_collected_population_is_split():
    frame = _polarised_frame()
    fit = jury_fit(frame, predictor="traits_ramp", n_fits=2, folds=4, seed=0)
    people = people_table(frame)
    weights = rake(people, {"Religion": {"Very important": 1.0}}).weights
    result = jury_draw(fit, weights, size=200, n_juries=50, threshold=50, columns=["Religion"])
    for row in result["prompts"]:
        assert row["share_harmful"] > 0.9 and row["verdict"] == "harmful"
        assert row["collected_share"] == pytest.approx(0.5, abs=0.15)
        assert row["shift_ci_low"] > 0.2  # the move against the collected population, with its interval
        assert row["ci_low"] <= row["share_harmful"] <= row["ci_high"]
        assert sum(row["distribution"]) == pytest.approx(1.0)
    assert result["jury_marginals"]["Religion"] == {"Not at all important": 0.0, "Very important": 1.0}


def test_a_jury_as_collected_with_a_predictor_that_ignores_traits_gives_back_the_observed_share():
    frame = _polarised_frame(seed=3)
    fit = jury_fit(frame, predictor="pooled_ramp", n_fits=2, folds=4)
    equal = pd.Series(1.0, index=fit.annotators)
    result = jury_draw(fit, equal, size=2000, n_juries=100, threshold=50)
    for row in result["prompts"]:
        assert row["share_harmful"] == pytest.approx(row["observed_share"], abs=0.05)


def test_the_jury_refuses_a_predictor_that_needs_an_annotators_ratings():
    with pytest.raises(ValueError, match="predictor of new annotators"):
        jury_fit(_polarised_frame(), predictor="soft_impute")


def test_validation_compares_the_jury_with_the_naive_answer():
    frame = _polarised_frame(n=60, seed=5)
    out = jury_validate(
        frame, n_held=20, repeats=3, columns=["Religion", "Gender"], n_fits=2, size=300, n_juries=40, min_ratings=5
    )
    assert out["repeats"] == 3 and len(out["per_repeat"]) == 3
    for key in ("mae_jury", "mae_naive", "mae_raked_observed", "calibration_slope"):
        assert np.isfinite(out[key])
    assert out["verdict"].startswith("The jury")
    assert out["beats_naive"] == (out["difference_ci_high"] < 0)
    # Here traits decide the ratings, so a jury raked to the held-out annotators' own mix must come far
    # closer to their shares than the collected population's share does (measured: 0.005 against 0.10);
    # a jury that ignored the mix would be about as far off as the naive answer.
    assert out["mae_jury"] < out["mae_naive"] / 2


def test_with_their_own_ratings_a_members_rating_of_a_prompt_is_never_seen_when_it_is_predicted():
    frame = _polarised_frame(n=20, n_prompts=9, seed=8)
    fit = jury_fit(frame, predictor="observed_ramp", ratings=True, n_fits=2, folds=4, prompt_folds=3)
    changed = frame.copy()
    target = (changed["annotator"] == "A0") & (changed["prompt"] == "q0")
    changed.loc[target, "rating"] = 100.0 - changed.loc[target, "rating"]
    refit = jury_fit(changed, predictor="observed_ramp", ratings=True, n_fits=2, folds=4, prompt_folds=3)
    a, p = fit.annotators.index("A0"), fit.prompts.index("q0")
    np.testing.assert_allclose(refit.predictions[:, a, p], fit.predictions[:, a, p])
    assert not np.allclose(refit.predictions, fit.predictions)  # the rating is used for everything else
    # the members' own ratings separate the two halves without any trait
    religious = [fit.annotators.index(a) for a in fit.annotators if int(a[1:]) % 2 == 0]
    others = [i for i in range(len(fit.annotators)) if i not in religious]
    assert fit.predictions[:, religious].mean() > 0.7 > 0.3 > fit.predictions[:, others].mean()


def test_ratings_mode_needs_a_warm_predictor():
    with pytest.raises(ValueError, match="own ratings"):
        jury_fit(_polarised_frame(), predictor="traits_ramp", ratings=True)


def test_through_the_protocol_the_group_whose_ratings_a_predictor_cannot_follow_is_found():
    """End to end: annotators of group "B" rate at random around the prompt mean; prompt_mean in the
    new_annotator condition serves them worse, and the gap on that column is found, not on a column of
    random labels."""
    from benchmark.science.protocol import run_benchmark

    rng = np.random.default_rng(4)
    n, n_prompts = 40, 30
    group = np.array(["A", "B"] * (n // 2))
    prompt_level = rng.uniform(10, 90, size=n_prompts)
    noise = np.where(group == "B", 30.0, 5.0)[:, None] * rng.normal(size=(n, n_prompts))
    ratings = np.clip(prompt_level[None, :] + noise, 0, 100).round()
    frame = long_frame(ratings.tolist(), group=list(group), label=list(rng.choice(["x", "y"], size=n)))
    result = run_benchmark(frame, ["prompt_mean"], conditions=["new_annotator"], n_splits=5, n_boot=0)
    entries = {e["column"]: e for e in error_by_group(result.per_annotator, people_table(frame), n_perm=999)}
    assert entries["group"]["worst"] == "B" and entries["group"]["p_value"] < 0.01
    assert entries["label"]["p_value"] > 0.01
