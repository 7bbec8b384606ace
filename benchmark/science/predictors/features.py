"""Population prompt models: from a prompt's representation to its mean (or median) rating.

Representations: `features` (the 62 SafetyAnalyst / Kaleido prompt features plus harm level,
standardised) and `embeddings` (offline MiniLM on the prompt text).  Learners: ridge with its penalty
chosen by leave-one-out (RidgeCV's closed form) inside the training prompts, gradient boosting and
extra-trees with fixed, small settings (100 training prompts leave no room to tune them).

`population_oof` and `population_predict` are what the personalized models build on: the average of
several such models, out-of-fold for the training prompts (so that whatever is fitted on top sees
scores as noisy as those of unseen prompts) and full-fit for the prompts to predict.  Both are
memoised on their inputs because the individual and aggregated conditions of a split train on the
same data.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pandas as pd

from benchmark.science.predictors.base import Predictor, register
from benchmark.science.predictors.common import (
    embed_texts,
    frame_key,
    prompt_design,
    prompt_table,
    prompt_targets,
)

POPULATION_MODELS = ("ridge_features", "ridge_embeddings", "boosting", "extra_trees")


def _representation(kind: str, table: pd.DataFrame) -> np.ndarray:
    if kind == "embeddings":
        return embed_texts(table["text"].tolist())
    if kind == "features":
        return prompt_design(table)
    raise ValueError(f"unknown representation {kind!r}")


def _learner(model: str, seed: int):
    # scikit-learn takes a second and ~60 MB to import: only when a model is fitted, not when the URL conf
    # (benchmark.uploads → this package) is loaded.
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor  # noqa: PLC0415
    from sklearn.linear_model import RidgeCV  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    if model == "ridge_features":
        return "features", make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 26)))
    if model == "ridge_embeddings":
        return "embeddings", RidgeCV(alphas=np.logspace(-3, 2, 26))
    if model == "boosting":
        return "features", GradientBoostingRegressor(
            n_estimators=150,
            learning_rate=0.05,
            max_depth=2,
            subsample=0.8,
            random_state=seed,
        )
    if model == "extra_trees":
        return "features", ExtraTreesRegressor(
            n_estimators=150,
            min_samples_leaf=2,
            max_features=0.5,
            random_state=seed,
            n_jobs=1,
        )
    raise ValueError(f"unknown population model {model!r}; known: {', '.join(POPULATION_MODELS)}")


def _fit_predict(model: str, seed: int, X_train: np.ndarray, y: np.ndarray, X_pred: np.ndarray) -> np.ndarray:
    _, learner = _learner(model, seed)
    learner.fit(X_train, y)
    return learner.predict(X_pred)


_MEMO: OrderedDict[str, np.ndarray] = OrderedDict()
_MEMO_SIZE = 64


def _memoised(key: str, compute) -> np.ndarray:
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key].copy()
    value = compute()
    _MEMO[key] = value.copy()
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return value


def _table_key(table: pd.DataFrame) -> list:
    texts = np.asarray(table["text"].astype(str)) if "text" in table else np.asarray([])
    return [np.asarray(table.index.astype(str)), texts, prompt_design(table)]


def population_predict(
    train_table: pd.DataFrame,
    y: np.ndarray,
    predict_table: pd.DataFrame,
    *,
    models=POPULATION_MODELS,
    seed: int = 0,
) -> np.ndarray:
    """The average of the listed models, fitted on (train_table, y), at the prompts of predict_table."""
    models = tuple(models)
    y = np.asarray(y, dtype=float)
    if len(predict_table) == 0:
        return np.zeros(0)

    def compute() -> np.ndarray:
        reps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        pred = np.zeros(len(predict_table))
        for model in models:
            kind, _ = _learner(model, seed)
            if kind not in reps:
                reps[kind] = (_representation(kind, train_table), _representation(kind, predict_table))
            pred += _fit_predict(model, seed, reps[kind][0], y, reps[kind][1])
        return pred / len(models)

    key = frame_key(*_table_key(train_table), y, *_table_key(predict_table), np.asarray(models), np.asarray([seed]))
    return _memoised("p" + key, compute)


def population_oof(
    train_table: pd.DataFrame,
    y: np.ndarray,
    *,
    models=POPULATION_MODELS,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold scores for the training prompts (`folds`-fold cross-fitting, seeded)."""
    models = tuple(models)
    y = np.asarray(y, dtype=float)
    n = len(y)

    def compute() -> np.ndarray:
        if n < max(2, folds):
            return population_predict(train_table, y, train_table, models=models, seed=seed)
        fold_of = np.random.default_rng(seed).permutation(np.arange(n) % folds)
        oof = np.zeros(n)
        for k in range(folds):
            inside = fold_of != k
            oof[~inside] = population_predict(
                train_table[inside],
                y[inside],
                train_table[~inside],
                models=models,
                seed=seed,
            )
        return oof

    key = frame_key(*_table_key(train_table), y, np.asarray(models), np.asarray([folds, seed]))
    return _memoised("o" + key, compute)


class _PromptModel(Predictor):
    """A population model of one prompt-level target, broadcast to every row of a prompt."""

    models: tuple[str, ...] = ("ridge_features",)
    target = "mean"

    def fit(self, train: pd.DataFrame):
        targets = prompt_targets(train, self.target)
        self.train_table_ = prompt_table(train).loc[targets.index]
        self.y_ = targets.to_numpy(dtype=float)
        return self

    def predict(self, test: pd.DataFrame) -> pd.Series:
        table = prompt_table(test)
        scores = population_predict(self.train_table_, self.y_, table, models=self.models)
        per_prompt = pd.Series(np.clip(scores, 0.0, 1.0), index=table.index)
        return pd.Series(test["prompt"].map(per_prompt).to_numpy(dtype=float), index=test.index)


@register
class FeatureRidge(_PromptModel):
    name = "feature_ridge"
    description = "Ridge on the 62 prompt features + harm level → prompt mean rating (same for everyone)."
    models = ("ridge_features",)
    target = "mean"


@register
class FeatureRidgeMedian(_PromptModel):
    name = "feature_ridge_median"
    description = "Ridge on the 62 prompt features + harm level → prompt median rating (MAE's target)."
    models = ("ridge_features",)
    target = "median"


@register
class FeatureBoosting(_PromptModel):
    name = "feature_boosting"
    description = "Gradient boosting on the prompt features + harm level → prompt mean rating."
    models = ("boosting",)
    target = "mean"
