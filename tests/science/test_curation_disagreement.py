"""Disagreement targeting (issue 12): SD from a pilot, the mean-route model, the held-out evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.science.curation import Pool, pool_read, select
from benchmark.science.curation.disagreement import (
    DisagreementModel,
    SDRidge,
    disagreement_evaluate,
    disagreement_holdout,
    harm_heuristic,
    prompt_sd,
    standardized,
)
from benchmark.science.release import RELEASE_DIR, release_read


def test_prompt_sd_by_hand():
    ratings = np.array([[0.0, 10.0, np.nan], [100.0, 10.0, 40.0], [50.0, np.nan, np.nan]])
    sd = prompt_sd(ratings)
    assert sd[0] == pytest.approx(50.0)  # 0, 100, 50 → SD 50 (ddof 1)
    assert sd[1] == pytest.approx(0.0)
    assert np.isnan(sd[2])  # one rating: no SD


def _synthetic(n_prompts=200, n_annotators=60, seed=0):
    """A pool whose harm level says nothing about disagreement: the share of people who find a prompt
    harmful is set by action_A alone; ratings are 0 or 100 (so the SD peaks where that share is ½)."""
    rng = np.random.default_rng(seed)
    share = rng.uniform(0, 1, n_prompts)
    frame = pd.DataFrame(
        {
            "external_id": [str(i) for i in range(n_prompts)],
            "text": [f"p{i}" for i in range(n_prompts)],
            "harm_level": rng.choice(np.round(np.arange(11) / 10, 1), n_prompts),
            "group": [str(i) for i in range(n_prompts)],
            "action_A": share,
            "action_B": 1 - share,
        }
    )
    ratings = 100.0 * (rng.random((n_annotators, n_prompts)) < share)
    return Pool(frame, ["action_A", "action_B"]), ratings, share


def test_mean_route_recovers_disagreement_the_harm_heuristic_cannot_see():
    pool, ratings, share = _synthetic()
    result = disagreement_evaluate(pool, ratings, embeddings=None, pilot_size=10, draws=3, folds=5)
    rho = {name: block["mean"] for name, block in result["spearman"].items()}
    assert abs(rho["harm_heuristic"]) < 0.2
    assert rho["mean_route_features"] > 0.6  # closeness of the predicted mean to 50 is the truth here
    assert rho["mean_route_features"] > rho["harm_heuristic"] + 0.4
    assert set(rho) == {
        "harm_heuristic",
        "sd_ridge_features",
        "mean_route_features",
        "pilot_sd_same_prompt",
    }  # no embeddings given: no embedding model
    assert len(result["spearman"]["harm_heuristic"]["per_draw"]) == 3


def test_models_predict_on_the_sd_scale():
    pool, ratings, share = _synthetic(seed=1)
    features = pool.frame[["harm_level", "action_A", "action_B"]].to_numpy()
    harm = pool.frame["harm_level"].to_numpy()
    pilot = ratings[:10]
    model = DisagreementModel(use_embedding=False).fit(features, np.nanmean(pilot, axis=0), prompt_sd(pilot), harm)
    predicted = model.predict(features, harm)
    assert 20 < predicted.mean() < 60  # SDs of 0/100 ratings
    middle, edge = np.abs(share - 0.5) < 0.1, np.abs(share - 0.5) > 0.4
    assert predicted[middle].mean() > predicted[edge].mean() + 5
    ridge = SDRidge(use_embedding=False).fit(features, None, prompt_sd(pilot), harm)
    assert ridge.predict(features, harm).shape == (len(share),)
    with pytest.raises(ValueError, match="embeddings"):
        DisagreementModel(use_embedding=True).fit(features, np.nanmean(pilot, axis=0), prompt_sd(pilot), harm)


def test_bad_pilot_sizes_are_refused():
    pool, ratings, _ = _synthetic(n_annotators=12)
    with pytest.raises(ValueError, match="the pilot needs 2 to 10 annotators"):
        disagreement_evaluate(pool, ratings, embeddings=None, pilot_size=11, draws=1)


def test_release_evaluation_with_embedding_shape():
    """On the release with a stand-in embedding (MiniLM is exercised by bench curation_disagreement):
    every method reports, the pilot is 10 of 100 annotators, and the heuristic is the paper's."""
    release = release_read(RELEASE_DIR)
    pool = pool_read((RELEASE_DIR / "prompts.csv").read_bytes())
    embeddings = np.random.default_rng(0).normal(size=(150, 8))
    result = disagreement_evaluate(pool, release.ratings, embeddings=embeddings, draws=1, folds=5)
    assert len(result["first_draw"]["pilot"]) == 10
    assert set(result["spearman"]) >= {"harm_heuristic", "mean_route_features_embedding_heuristic"}
    heuristic = harm_heuristic(pool.frame["harm_level"].to_numpy())
    assert result["first_draw"]["harm_heuristic"].tolist() == heuristic.tolist()
    assert 0.15 < result["spearman"]["harm_heuristic"]["mean"] < 0.35  # the release's documented size


def test_selection_leans_toward_predicted_disagreement():
    pool, ratings, share = _synthetic(n_prompts=150, seed=2)
    closeness = standardized(-np.abs(share - 0.5))
    plain = select(pool.problem("paper"), 40, seed=0, kicks=3)
    leaning_problem = pool.problem("paper", score=closeness, score_weight=0.05)
    leaning = select(leaning_problem, 40, seed=0, kicks=3)
    sd = prompt_sd(ratings)
    assert sd[leaning.members].mean() > sd[plain.members].mean() + 3
    assert leaning_problem.report(leaning.members)["harm_level"]["js_distance"] < 0.2


def test_holdout_on_the_pilot_alone_sees_what_the_heuristic_cannot():
    """The job's held-out check: folds over the prompts a 10-person pilot rated, scored against the pilot's
    own SD; on the synthetic pool the features carry the disagreement and the harm level does not."""
    pool, ratings, _ = _synthetic(n_prompts=200, n_annotators=10, seed=3)
    result = disagreement_holdout(pool, ratings, embeddings=None, folds=5, seed=0)
    assert result["prompts"] == 200 and result["folds"] == 5
    assert result["spearman"] > 0.4 and abs(result["harm_heuristic_spearman"]) < 0.2
    again = disagreement_holdout(pool, ratings, embeddings=None, folds=5, seed=0)
    assert again["spearman"] == result["spearman"]  # deterministic per seed
    few = ratings.copy()
    few[:, 8:] = np.nan  # 8 prompts rated: fewer than 2 per fold
    with pytest.raises(ValueError, match="at least 10 rated prompts"):
        disagreement_holdout(pool, few, embeddings=None, folds=5)
