"""The evaluation protocol on small hand-made frames: splits, what each condition shows, the scores."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.science.predictors.base import AGGREGATE, Predictor
from benchmark.science.protocol import (
    condition_tasks,
    make_splits,
    rated,
    run_benchmark,
    score_predictions,
)
from benchmark.science.release import DEMOGRAPHIC_COLUMNS, RELEASE_DIR, release_read

SUMMARY_KEYS = {"predictor", "condition", "mae", "ci_low", "ci_high", "spearman", "wasserstein", "seconds"}
AGGREGATED_KEYS = SUMMARY_KEYS | {"crps", "distribution"}  # distributional scores (issue 16)


def hand_frame(n_prompts: int = 6, n_annotators: int = 5, unsure=((0, 0), (3, 4))) -> pd.DataFrame:
    """n_annotators × n_prompts; rating = 10·annotator + 5·prompt (0–100), a few Unsure cells."""
    rows = []
    for a in range(n_annotators):
        for p in range(n_prompts):
            rating = float(min(100, 10 * a + 5 * p))
            rows.append(
                {
                    "annotator": f"a{a}",
                    "prompt": f"p{p}",
                    "rating": np.nan if (a, p) in unsure else rating,
                    "unsure": (a, p) in unsure,
                    "trial": p,
                    "text": f"prompt number {p}",
                    "harm_level": p / 10,
                    "action_x": p / n_prompts,
                    "effect_y": 1 - p / n_prompts,
                    "Gender": "Woman" if a % 2 else "Man",
                    "Factor_1": float(a),
                }
            )
    return pd.DataFrame(rows)


class Spy(Predictor):
    """Records what fit and predict were given (class-level: the protocol fits a fresh clone each time)."""

    name = "spy"
    seen: ClassVar[list] = []

    def fit(self, train):
        Spy.seen.append(("fit", train.copy()))
        self.mean_ = train["score"].mean()
        return self

    def predict(self, test):
        Spy.seen.append(("predict", test.copy()))
        return pd.Series(self.mean_, index=test.index)


@pytest.fixture
def spy():
    Spy.seen = []
    return Spy()


# ---------------------------------------------------------------------------------------------------
# The long frame


def test_the_release_reader_shapes_a_tiny_release(tmp_path):
    pd.DataFrame(
        {
            "Question_Index": [1, 2],
            "Question_Content": ["first", "second"],
            "Harm_Level": [0.2, 0.8],
            "action_A": [0.5, 0.1],
            "effect_B": [0.3, 0.9],
            "value_topic_0": [0.0, 1.0],
        }
    ).to_csv(tmp_path / "prompts.csv", index=False)
    demographics = {c: ["x", "y"] for c in DEMOGRAPHIC_COLUMNS} | {"Gender": ["Man", "Woman"]}
    pd.DataFrame(
        {
            "Participant_ID": [7, 8],
            **demographics,
            "Rating_1": [10, np.nan],
            "Rating_2": [90, 40],
            "Factor_1": [0.5, -0.5],
            "Factor_2": [0.0, 0.0],
            "Factor_3": [0.0, 0.0],
            "Trial_1": [1, 0],
            "Trial_2": [0, 1],
        }
    ).to_csv(tmp_path / "annotations.csv", index=False)
    long = release_read(tmp_path).long(include_text=True)
    assert len(long) == 4
    assert list(long.columns[:6]) == ["annotator", "prompt", "text", "rating", "unsure", "trial"]
    assert {"action_A", "effect_B", "value_topic_0", "Gender", "Age", "Factor_1", "harm_level"} <= set(long.columns)
    # Participants 7 and 8 are the file's first and second rows: P0001 and P0002.
    row = long[(long.annotator == "P0002") & (long.prompt == "1")].iloc[0]
    assert row.unsure and np.isnan(row.rating) and row.trial == 0 and row.text == "first" and row.Gender == "Woman"
    row = long[(long.annotator == "P0001") & (long.prompt == "2")].iloc[0]
    assert row.rating == 90 and not row.unsure and row.harm_level == 0.8 and row.Factor_1 == 0.5


def test_the_bundled_release_as_the_protocol_reads_it():
    long = release_read(RELEASE_DIR).long(include_text=True)
    assert len(long) == 15000 and long.prompt.nunique() == 150 and long.annotator.nunique() == 100
    assert long.annotator.iloc[0] == "P0001" and long.annotator.iloc[-1] == "P0100"
    raw = pd.read_csv(RELEASE_DIR / "annotations.csv")
    assert long.unsure.sum() == raw.filter(like="Rating_").isna().to_numpy().sum()
    assert long.text.notna().all()
    assert len([c for c in long.columns if c.startswith(("action_", "effect_", "value_topic_"))]) == 62


# ---------------------------------------------------------------------------------------------------
# Splits


def test_split_sizes_disjointness_and_seeds():
    prompts = [str(i) for i in range(150)]
    people = [f"a{i}" for i in range(100)]
    splits = make_splits(prompts, people, n_splits=4, seed=3)
    for split in splits:
        assert len(split.test) == 50 and len(split.alignment) == 100
        assert not set(split.test) & set(split.alignment)
        assert set(split.test) | set(split.alignment) == set(prompts)
        assert len(split.held_out) == 20
        assert sorted(a for fold in split.warm_folds for a in fold) == sorted(people)
    assert len({s.test for s in splits}) == 4  # different splits differ
    again = make_splits(prompts, people, n_splits=4, seed=3)
    assert [s.test for s in again] == [s.test for s in splits]
    assert make_splits(prompts, people, n_splits=1, seed=4)[0].test != splits[0].test


@pytest.mark.parametrize("n, n_test", [(6, 2), (9, 3), (10, 3), (3, 1), (2, 1)])
def test_split_is_two_thirds_one_third_for_any_count(n, n_test):
    (split,) = make_splits([f"p{i}" for i in range(n)], ["a", "b"], n_splits=1)
    assert len(split.test) == n_test and len(split.alignment) == n - n_test


def test_test_fraction_is_configurable():
    (split,) = make_splits([f"p{i}" for i in range(10)], ["a"], n_splits=1, test_fraction=0.5)
    assert len(split.test) == 5


# ---------------------------------------------------------------------------------------------------
# What each condition shows: nothing of the test ratings


def _split_of(df, **kw):
    (split,) = make_splits(df.prompt, df.annotator, n_splits=1, seed=kw.pop("seed", 0), **kw)
    return split


def test_individual_trains_on_alignment_only(spy):
    df = hand_frame()
    split = _split_of(df)
    run_benchmark(df, [spy], conditions=["individual"], n_splits=1)
    (_, train), (_, test) = spy.seen
    assert set(train.prompt) == set(split.alignment)
    assert train.rating.notna().all() and not train.unsure.any()  # Unsure left out
    assert np.allclose(train.score, train.rating / 100)
    assert set(test.prompt) == set(split.test) and set(test.annotator) == set(df.annotator)
    assert not {"score", "rating", "unsure"} & set(test.columns)
    assert "Gender" in test.columns and "text" in test.columns


def test_aggregated_predicts_one_row_per_prompt(spy):
    df = hand_frame()
    split = _split_of(df)
    run_benchmark(df, [spy], conditions=["aggregated"], n_splits=1)
    (_, train), (_, test) = spy.seen
    assert set(train.prompt) == set(split.alignment)
    assert sorted(test.prompt) == sorted(split.test) and (test.annotator == AGGREGATE).all()
    assert test.Gender.isna().all() and test.Factor_1.isna().all()  # no one's traits
    assert not {"score", "rating"} & set(test.columns)


def test_a_test_prompt_every_annotator_marked_unsure_is_left_out_of_aggregated(spy):
    # Found by Hypothesis: such a prompt is in the split (splits are over every prompt shown) but has
    # no rating, so it has no row in the prompt table and no truth to score against.
    n_annotators = 5
    split = _split_of(hand_frame())
    lost = split.test[0]
    df = hand_frame(unsure=tuple((a, int(lost[1:])) for a in range(n_annotators)))
    result = run_benchmark(df, [spy], conditions=["aggregated"], n_splits=1)
    (_, _), (_, test) = spy.seen
    assert sorted(test.prompt) == sorted(p for p in split.test if p != lost)
    assert result.per_split.n_prompts.iloc[0] == len(split.test) - 1


def test_new_annotator_hides_every_rating_of_the_held_out(spy):
    df = hand_frame(n_annotators=10)
    split = _split_of(df)
    run_benchmark(df, [spy], conditions=["new_annotator"], n_splits=1)
    (_, train), (_, test) = spy.seen
    assert len(split.held_out) == 2
    assert not set(train.annotator) & set(split.held_out)
    assert set(train.prompt) == set(df.prompt)  # others' ratings of all prompts
    assert set(test.annotator) == set(split.held_out) and set(test.prompt) == set(split.test)
    assert test.Gender.notna().all()  # traits are known


def test_warm_hides_each_annotators_own_test_ratings(spy):
    df = hand_frame(n_annotators=10)
    split = _split_of(df)
    run_benchmark(df, [spy], conditions=["warm"], n_splits=1)
    fits = [f for kind, f in spy.seen if kind == "fit"]
    tests = [t for kind, t in spy.seen if kind == "predict"]
    assert len(fits) == len(tests) == 5
    for train, test in zip(fits, tests):
        people = set(test.annotator)
        hidden = train[train.annotator.isin(people) & train.prompt.isin(split.test)]
        assert hidden.empty
        others = train[~train.annotator.isin(people) & train.prompt.isin(split.test)]
        assert not others.empty  # other people's ratings of the test prompts are there
        assert set(train[train.annotator.isin(people)].prompt) <= set(split.alignment)
        assert set(test.prompt) == set(split.test)
    predicted = pd.concat(tests)
    expected = rated(df)
    expected = expected[expected.prompt.isin(split.test)]
    assert sorted(zip(predicted.annotator, predicted.prompt)) == sorted(zip(expected.annotator, expected.prompt))


def test_condition_tasks_rejects_unknown_condition():
    df = rated(hand_frame())
    with pytest.raises(ValueError, match="unknown condition"):
        condition_tasks(df, _split_of(df), "cold")


# ---------------------------------------------------------------------------------------------------
# Scores by hand


def test_scores_by_hand():
    scored = pd.DataFrame(
        {
            "annotator": ["A", "A", "B", "B"],
            "prompt": ["p1", "p2", "p1", "p2"],
            "score": [0.2, 0.6, 0.4, 1.0],
            "prediction": [0.3, 0.3, 0.2, 0.5],
        }
    )
    overall, per_annotator, per_prompt = score_predictions(scored)
    # A: |0.1|, |0.3| → 0.2;  B: |0.2|, |0.5| → 0.35;  mean over annotators 0.275
    assert per_annotator.set_index("annotator").mae.to_dict() == pytest.approx({"A": 0.2, "B": 0.35})
    assert overall["mae"] == pytest.approx(0.275)
    half = stats.t.ppf(0.975, 1) * np.std([0.2, 0.35], ddof=1) / np.sqrt(2)
    assert (overall["ci_low_annotators"], overall["ci_high_annotators"]) == pytest.approx((0.275 - half, 0.275 + half))
    # prompt means: true p1 0.3, p2 0.8; predicted p1 0.25, p2 0.4 → same order
    assert overall["spearman"] == pytest.approx(1.0)
    # Wasserstein on 0–100: p1 {30, 20} vs {20, 40} → sorted pairs (20,20),(30,40) → 5; p2 {30, 50} vs {60, 100} → 40
    assert per_prompt.set_index("prompt").wasserstein.to_dict() == pytest.approx({"p1": 5.0, "p2": 40.0})
    assert overall["wasserstein"] == pytest.approx(22.5)
    assert overall["coverage"] == 1.0 and overall["n_annotators"] == 2 and overall["n_prompts"] == 2


def test_spearman_by_hand_and_nan_for_constant():
    scored = pd.DataFrame(
        {
            "annotator": ["A"] * 4,
            "prompt": ["p1", "p2", "p3", "p4"],
            "score": [0.1, 0.2, 0.3, 0.4],
            "prediction": [0.2, 0.1, 0.4, 0.3],
        }
    )
    overall, _, _ = score_predictions(scored)
    # ranks (2,1,4,3) vs (1,2,3,4): d² = 1+1+1+1 = 4 → 1 − 6·4/(4·15) = 0.6
    assert overall["spearman"] == pytest.approx(0.6)
    overall, _, _ = score_predictions(scored.assign(prediction=0.3))
    assert np.isnan(overall["spearman"])


def test_missing_predictions_are_left_out_and_counted():
    scored = pd.DataFrame(
        {
            "annotator": ["A", "A", "B"],
            "prompt": ["p1", "p2", "p1"],
            "score": [0.2, 0.6, 0.4],
            "prediction": [0.3, np.nan, 0.4],
        }
    )
    overall, per_annotator, _ = score_predictions(scored)
    assert overall["coverage"] == pytest.approx(2 / 3)
    assert overall["mae"] == pytest.approx((0.1 + 0.0) / 2)


def test_benchmark_scores_match_a_hand_computation(spy):
    df = hand_frame()
    result = run_benchmark(df, ["global_mean"], conditions=["individual", "aggregated"], n_splits=2, seed=5)
    data = rated(df)
    for split in make_splits(df.prompt, df.annotator, n_splits=2, seed=5):
        mean = data[data.prompt.isin(split.alignment)].score.mean()
        test = data[data.prompt.isin(split.test)]
        per_annotator = (test.score - mean).abs().groupby(test.annotator).mean()
        for condition in ("individual", "aggregated"):
            selected = (result.per_split["split"] == split.index) & (result.per_split["condition"] == condition)
            row = result.per_split[selected].iloc[0]
            assert row.mae == pytest.approx(per_annotator.mean())
    summary = {r["condition"]: r for r in result.summary()}
    assert set(summary) == {"individual", "aggregated"}
    for r in result.summary():
        assert set(r) == (AGGREGATED_KEYS if r["condition"] == "aggregated" else SUMMARY_KEYS)
    assert summary["individual"]["mae"] == pytest.approx(result.per_split.query("condition == 'individual'").mae.mean())
    assert summary["individual"]["ci_low"] < summary["individual"]["mae"] < summary["individual"]["ci_high"]
    assert len(result.per_annotator) == 2 * 2 * 5 and len(result.per_prompt) == 2 * 2 * 2


def test_aggregated_prediction_is_broadcast_to_every_annotator():
    class PerPrompt(Predictor):
        name = "per_prompt"
        conditions = ("aggregated",)

        def fit(self, train):
            return self

        def predict(self, test):
            assert (test.annotator == AGGREGATE).all()
            return pd.Series(test.harm_level.to_numpy(), index=test.index)

    df = hand_frame()
    result = run_benchmark(df, [PerPrompt()], conditions=["individual", "aggregated"], n_splits=1)
    assert set(result.per_split.condition) == {"aggregated"}  # run only where it says it can
    (split,) = result.splits
    data = rated(df)
    test = data[data.prompt.isin(split.test)]
    errors = (test.prompt.str[1:].astype(int) / 10 - test.score).abs()
    assert result.per_split.mae.iloc[0] == pytest.approx(errors.groupby(test.annotator).mean().mean())
    assert result.per_annotator.annotator.nunique() == 5


def test_progress_and_bad_predictions():
    df = hand_frame()
    calls = []
    run_benchmark(
        df,
        ["global_mean", "annotator_mean"],
        conditions=["individual"],
        n_splits=3,
        progress=lambda f, m: calls.append((f, m)),
    )
    assert len(calls) == 6 and calls[-1][0] == pytest.approx(1.0)
    assert [f for f, _ in calls] == sorted(f for f, _ in calls)

    class Percent(Predictor):
        name = "percent"

        def fit(self, train):
            return self

        def predict(self, test):
            return pd.Series(50.0, index=test.index)

    with pytest.raises(ValueError, match="outside"):
        run_benchmark(df, [Percent()], conditions=["individual"], n_splits=1)
    with pytest.raises(ValueError, match="unknown condition"):
        run_benchmark(df, ["global_mean"], conditions=["cold"], n_splits=1)
    with pytest.raises(KeyError):
        run_benchmark(df, ["no_such_model"], n_splits=1)
