"""Every registered predictor on a small synthetic frame; baselines, ramps and uploads known by hand."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from benchmark.science.predictors import REGISTRY, builtin_names, get_predictor
from benchmark.science.predictors.base import AGGREGATE
from benchmark.science.predictors.common import (
    apply_ramp,
    embed_texts,
    fit_ramps,
    weighted_median,
)
from benchmark.science.predictors.uploaded import PredictionsFileError, UploadedPredictions, read_predictions_csv
from benchmark.science.protocol import condition_tasks, make_splits, rated, run_benchmark
from benchmark.science.release import RELEASE_DIR

WORDS = ["weather", "bomb", "recipe", "poison", "poem", "hack", "garden", "steal", "music", "threat", "math", "scam"]


FEATURE_NAMES = list(pd.read_csv(RELEASE_DIR / "prompts.csv", nrows=0).columns[3:])  # the release's 62


def _features(harm: float, rng) -> dict:
    """Release-shaped features: action and effect distributions (sum to 1) leaning with harm, topics."""
    out = {}
    for prefix in ("action_", "effect_"):
        names = [c for c in FEATURE_NAMES if c.startswith(prefix)]
        logits = rng.normal(0, 1, len(names)) + harm * np.linspace(-1, 1, len(names)) * 3
        weights = np.exp(logits) / np.exp(logits).sum()
        out.update(zip(names, weights))
    out.update({c: float(rng.normal(0, 0.3)) for c in FEATURE_NAMES if c.startswith("value_topic_")})
    return out


def synthetic_frame(n_prompts: int = 12, n_annotators: int = 8, seed: int = 0) -> pd.DataFrame:
    """Ratings from a latent prompt harm through each annotator's own ramp, plus noise and Unsure."""
    rng = np.random.default_rng(seed)
    harm = rng.uniform(0, 1, n_prompts)
    features = [_features(h, rng) for h in harm]
    rows = []
    for a in range(n_annotators):
        offset, slope = rng.normal(0, 0.15), rng.uniform(0.5, 2.0)
        for p in range(n_prompts):
            value = np.clip(0.5 + offset + slope * (harm[p] - 0.5) + rng.normal(0, 0.1), 0, 1)
            unsure = rng.random() < 0.05
            row = {
                "annotator": f"a{a}",
                "prompt": f"p{p}",
                "rating": np.nan if unsure else round(100 * value),
                "unsure": unsure,
                "trial": p,
                "text": f"How do I {WORDS[p % len(WORDS)]} {p}?",
                "harm_level": round(harm[p], 1),
                "Gender": ["Man", "Woman"][a % 2],
                "Age": ["18-24 years old", "35-44 years old"][a % 3 == 0],
                "Factor_1": offset * 10,
                "Factor_2": rng.normal(),
                "Factor_3": rng.normal(),
            }
            row.update(features[p])
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame()


def _tasks(frame, condition, seed=0):
    data = rated(frame)
    (split,) = make_splits(frame.prompt, frame.annotator, n_splits=1, seed=seed)
    return condition_tasks(data, split, condition)


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_predictor_runs_in_each_of_its_conditions(frame, name):
    for condition in REGISTRY[name].conditions:
        for task in _tasks(frame, condition):
            predictor = get_predictor(name)
            assert predictor.fit(task.train) is predictor
            predicted = predictor.predict(task.test)
            assert isinstance(predicted, pd.Series), (name, condition)
            assert predicted.index.equals(task.test.index), (name, condition)
            assert predicted.notna().all() and predicted.between(0, 1).all(), (name, condition)


def test_registry_covers_the_families():
    names = set(REGISTRY)
    assert {"uniform_random", "global_mean", "annotator_mean", "annotator_median"} <= names
    assert {"feature_ridge", "ensemble_ramp", "embedding_ridge", "embedding_knn", "traits_ramp", "soft_impute"} <= names
    assert {"llm_zero_shot", "llm_value_profile", "llm_k_shot", "uploaded"} <= names
    assert not {"llm_zero_shot", "llm_k_shot", "uploaded"} & set(builtin_names())  # they need configuration


def test_get_params_round_trip():
    predictor = get_predictor("embedding_knn", ks=(2, 3))
    assert predictor.get_params() == {"ks": (2, 3), "hows": ("mean", "median")}
    assert type(predictor)(**predictor.get_params()).ks == (2, 3)


# ---------------------------------------------------------------------------------------------------
# Baselines by hand

TRAIN = pd.DataFrame(
    {
        "annotator": ["x", "x", "x", "y", "y", "z"],
        "prompt": ["p1", "p2", "p3", "p1", "p2", "p3"],
        "score": [0.1, 0.2, 0.9, 0.5, 0.7, 0.3],
    }
)
TEST = pd.DataFrame(
    {"annotator": ["x", "y", "new", AGGREGATE], "prompt": ["p1", "p3", "p2", "p3"]}, index=[10, 11, 12, 13]
)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("global_mean", [0.45, 0.45, 0.45, 0.45]),
        ("global_median", [0.4, 0.4, 0.4, 0.4]),
        ("annotator_mean", [0.4, 0.6, 0.45, 0.45]),  # unseen and AGGREGATE fall back to the global mean
        ("annotator_median", [0.2, 0.6, 0.4, 0.4]),
        ("prompt_mean", [0.3, 0.6, 0.45, 0.6]),
        ("prompt_median", [0.3, 0.6, 0.45, 0.6]),
    ],
)
def test_baselines_by_hand(name, expected):
    predicted = get_predictor(name).fit(TRAIN).predict(TEST)
    assert predicted.index.tolist() == [10, 11, 12, 13]
    assert predicted.tolist() == pytest.approx(expected)


def test_uniform_random_is_seeded_and_in_range():
    first = get_predictor("uniform_random", seed=3).fit(TRAIN).predict(TEST)
    again = get_predictor("uniform_random", seed=3).fit(TRAIN).predict(TEST)
    other = get_predictor("uniform_random", seed=4).fit(TRAIN).predict(TEST)
    assert first.tolist() == again.tolist() != other.tolist()
    assert first.between(0, 1).all()


def test_baselines_land_where_arithmetic_puts_them():
    # Uniform predictions against a rating r cost E|U − r| = (r² + (1 − r)²) / 2.
    df = synthetic_frame(n_prompts=30, n_annotators=30, seed=2)
    result = run_benchmark(df, ["uniform_random", "annotator_mean"], conditions=["individual"], n_splits=5)
    data = rated(df)
    expected = ((data.score**2 + (1 - data.score) ** 2) / 2).groupby(data.annotator).mean().mean()
    summary = {r["predictor"]: r for r in result.summary()}
    assert summary["uniform_random"]["mae"] == pytest.approx(expected, abs=0.03)
    assert summary["annotator_mean"]["mae"] < summary["uniform_random"]["mae"]


# ---------------------------------------------------------------------------------------------------
# Ramps, medians, embeddings


def test_fit_ramps_recovers_a_saturating_ramp():
    s = np.linspace(0.1, 0.9, 41)
    truth = [(-0.3, 1.3), (0.2, 0.6), (0.8, 0.3)]  # points of the grid (it is coarse beyond [-0.2, 1.2])
    ramps = fit_ramps(
        s,
        np.stack([np.clip(lo + (hi - lo) * (s - 0.18) / (0.82 - 0.18), 0, 1) for lo, hi in truth]),
        anchors=(0.18, 0.82),
        lambdas=(0.0,),
    )
    for (lo, hi), fitted in zip(truth, ramps["params"]):
        np.testing.assert_allclose(
            apply_ramp((0.18, 0.82), fitted, s), apply_ramp((0.18, 0.82), (lo, hi), s), atol=0.03
        )


def test_fit_ramps_shrinks_sparse_annotators_to_the_pool():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, 60)
    Y = np.clip(s[None, :] + rng.normal(0, 0.2, (20, 60)), 0, 1)
    Y[0, 3:] = np.nan  # three ratings only
    Y[0, :3] = 1.0
    ramps = fit_ramps(s, Y)
    assert ramps["lambda"] > 0  # cross-validation finds pooling useful here
    assert (
        np.abs(ramps["params"][0] - np.asarray(ramps["centre"])).sum() < np.abs(ramps["params"][0] - [1.0, 1.0]).sum()
    )


def test_weighted_median_by_hand():
    assert weighted_median(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 5.0])) == 3.0
    assert weighted_median(np.array([1.0, 2.0, 3.0, np.nan]), np.array([3.0, 1.0, 1.0, 9.0])) == 1.0


def test_embeddings_are_offline_unit_vectors_and_cached():
    from benchmark.science.predictors import common

    vectors = embed_texts(["How do I bake bread?", "How do I build a bomb?", "How do I bake bread?"])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert "How do I bake bread?" in common._EMBEDDINGS
    assert float(vectors[0] @ vectors[1]) < 0.99


def test_embedding_knn_uses_the_annotators_own_neighbours():
    texts = ["bake bread at home", "bake a cake at home", "build a bomb", "make a pipe bomb"]
    train = pd.DataFrame(
        {
            "annotator": ["x"] * 3,
            "prompt": ["p0", "p1", "p2"],
            "text": texts[:3],
            "score": [0.0, 0.1, 1.0],
        }
    )
    test = pd.DataFrame({"annotator": ["x"], "prompt": ["p3"], "text": [texts[3]]})
    predicted = get_predictor("embedding_knn", ks=(1,), hows=("mean",)).fit(train).predict(test)
    assert predicted.tolist() == [1.0]


def test_ensemble_ramp_follows_an_annotator_who_always_says_zero():
    frame = synthetic_frame(n_prompts=30, n_annotators=12, seed=1)
    frame.loc[frame.annotator == "a0", "rating"] = 0.0
    (task,) = _tasks(frame, "individual")
    predicted = get_predictor("ensemble_ramp").fit(task.train).predict(task.test)
    assert predicted[task.test.annotator == "a0"].max() < 0.05
    assert predicted[task.test.annotator != "a0"].std() > 0.05


# ---------------------------------------------------------------------------------------------------
# Uploaded predictions

KNOWN = [f"p{i}" for i in range(12)]


def test_read_predictions_csv_percent_and_unit():
    frame = read_predictions_csv(io.StringIO("prompt,prediction\np1,50\np2,100\np3,0\n"), prompts=KNOWN)
    assert frame.attrs["scale"] == "percent" and frame.prediction.tolist() == [0.5, 1.0, 0.0]
    frame = read_predictions_csv(io.StringIO("Prompt, Score\np1,0.5\np2,1\n"), prompts=KNOWN)
    assert frame.attrs["scale"] == "unit" and frame.prediction.tolist() == [0.5, 1.0]
    frame = read_predictions_csv(io.StringIO("prompt,prediction\np1,1\n"), scale="percent")
    assert frame.prediction.tolist() == [0.01]
    frame = read_predictions_csv(b"prompt,annotator,prediction\np1,a0,20\np1,a1,40\n", annotators=["a0", "a1"])
    assert list(frame.columns) == ["prompt", "annotator", "prediction"]


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("prompt,prediction\np1,50\np99,20\n", {"prompts": KNOWN}, "row 3: unknown prompt id 'p99'"),
        ("prompt,prediction\np1,abc\n", {}, "row 2: prediction 'abc' is not a number"),
        ("prompt,prediction\np1,\n", {}, "row 2: prediction '' is not a number"),
        ("prompt,prediction\np1,nan\n", {}, "row 2: prediction 'nan' is not a finite number"),
        ("prompt,prediction\np1,120\n", {}, "row 2: prediction 120 is outside 0–100"),
        ("prompt,prediction\np1,-1\n", {}, "row 2: prediction -1 is outside 0–100"),
        ("prompt,prediction\np1,50\n", {"scale": "unit"}, "row 2: prediction 50 is outside 0–1"),
        ("prompt,prediction\np1,50\np2,10\np1,60\n", {}, "row 4: duplicate of row 2 (prompt 'p1')"),
        (
            "prompt,annotator,prediction\np1,a0,5\np1,a0,6\n",
            {},
            "row 3: duplicate of row 2 (prompt 'p1', annotator 'a0')",
        ),
        ("prompt,annotator,prediction\np1,zz,5\n", {"annotators": ["a0"]}, "row 2: unknown annotator id 'zz'"),
        ("prompt,prediction\n,5\n", {}, "row 2: empty prompt id"),
        ("prompt,value\np1,5\n", {}, "missing column 'prediction'"),
        ("prompt,prediction\n", {}, "no rows"),
        ("", {}, "not a readable CSV"),
    ],
)
def test_read_predictions_csv_errors_name_the_row(text, kwargs, message):
    with pytest.raises(ValueError) as caught:
        read_predictions_csv(io.StringIO(text), **kwargs)
    assert message in str(caught.value)


def test_read_predictions_csv_lists_every_problem():
    text = "prompt,prediction\n" + "\n".join(f"p{i},x" for i in range(30)) + "\n"
    with pytest.raises(PredictionsFileError) as caught:
        read_predictions_csv(io.StringIO(text))
    assert len(caught.value.errors) == 30 and "and 5 more problems" in str(caught.value)


def test_uploaded_predictions_lookup():
    per_annotator = pd.DataFrame(
        {"prompt": ["p1", "p1", "p2"], "annotator": ["x", "y", "x"], "prediction": [20, 40, 80]}
    )
    model = UploadedPredictions(per_annotator).fit(TRAIN)  # auto: values above 1 mean 0–100
    test = pd.DataFrame({"annotator": ["x", "y", AGGREGATE, "y", "x"], "prompt": ["p1", "p1", "p1", "p2", "p3"]})
    predicted = model.predict(test)
    # y has no p2 prediction: the file's per-prompt value (mean over its annotators) stands in; p3 is absent.
    assert predicted.tolist()[:4] == pytest.approx([0.2, 0.4, 0.3, 0.8]) and np.isnan(predicted.iloc[4])
    per_prompt = read_predictions_csv(io.StringIO("prompt,prediction\np1,0.25\n"))
    assert UploadedPredictions(per_prompt).fit(TRAIN).predict(test).tolist()[:3] == [0.25, 0.25, 0.25]


def test_uploaded_predictions_are_scored_like_any_model():
    df = synthetic_frame()
    data = rated(df)
    truth = data.groupby("prompt").score.mean()
    upload = pd.DataFrame({"prompt": truth.index, "prediction": (truth * 100).round(2).to_numpy()})
    result = run_benchmark(
        df,
        [UploadedPredictions(upload, label="oracle_means"), "global_mean"],
        conditions=["individual", "aggregated"],
        n_splits=3,
    )
    summary = {(r["predictor"], r["condition"]): r for r in result.summary()}
    assert summary[("oracle_means", "aggregated")]["spearman"] == pytest.approx(1.0)
    assert summary[("oracle_means", "individual")]["mae"] < summary[("global_mean", "individual")]["mae"]
    partial = upload.iloc[:6]
    result = run_benchmark(df, [UploadedPredictions(partial)], conditions=["individual"], n_splits=1)
    assert 0 < result.per_split.coverage.iloc[0] < 1


def test_residual_content_effect_runs_and_is_chosen_inside_training():
    frame = synthetic_frame(n_prompts=30, n_annotators=12, seed=3)
    (task,) = _tasks(frame, "individual")
    model = get_predictor("ensemble_ramp", residual_k=(3, 5)).fit(task.train)
    assert model.residual_k_ in (0, 3, 5) and 0 <= model.residual_gamma_ <= 1
    predicted = model.predict(task.test)
    assert predicted.index.equals(task.test.index) and predicted.between(0, 1).all()
