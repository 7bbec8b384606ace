"""Steering the SafetyAnalyst model: the study's own fit, hand-set weights, and a group's refit.

The study's prompts carry SafetyAnalyst action-category distributions (the feature-level model of
benchmark/science/harm_benefit). Everything a steering page needs is reduced, once per study version,
to a `SteeringModel`: per prompt its 16 action features and its mean rating and count, overall and
within every demographic group, and the weights fitted to everyone. It is kept in the cache backend
under the study's version, so a slider move is one product of a 150 × 16 matrix with the weights, and a
group fit works on 150 means instead of every rating (for a squared loss, prompt means weighted by
their counts give the same fit as one row per rating).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db.models import Count, Max, Q

from annotation.models import Annotator, Study
from annotation.selectors import prompts_frame
from config.errors import ApplicationError

from .analysis import study_frame
from .science import harm_benefit as hb
from .science.release import DEMOGRAPHIC_COLUMNS

logger = logging.getLogger(__name__)

ACTION_COLUMNS = list(hb.ACTION_FEATURE_COLUMNS)
CACHE_SECONDS = 24 * 3600
MIN_GROUP_PROMPTS = 5


@dataclass
class GroupMeans:
    means: np.ndarray  # per prompt (the model's order); NaN where the group rated it never
    counts: np.ndarray


@dataclass
class SteeringModel:
    prompt_ids: list[str]
    texts: list[str]
    X: np.ndarray  # n_prompts x 16 action features
    overall: GroupMeans
    groups: dict[str, dict[str, GroupMeans]]  # column -> value (stripped) -> means
    baseline: hb.FeatureWeights  # fitted to everyone's ratings

    def group_values(self) -> dict[str, list[str]]:
        """Demographic columns and their values, for the "fit to this group" menu."""
        return {column: sorted(values) for column, values in self.groups.items()}


def study_version(*, study: Study) -> str:
    """Changes whenever the study's prompts, annotators or ratings change; cheap (no scan of ratings).

    Every answer moves its annotator's `last_seen_at`; imports change the counts; an exclusion (or a
    return) changes the count of annotators in that status. Prompts are counted and their highest id
    taken; an edit of a prompt's features in the admin is not seen until the cache entry expires
    (CACHE_SECONDS), a limit the steering page states.
    """
    annotators = study.annotators.aggregate(
        n=Count("id"),
        seen=Max("last_seen_at"),
        done=Max("completed_at"),
        **{status: Count("id", filter=Q(status=status)) for status in Annotator.Status.values},
    )
    prompts = study.prompts.aggregate(n=Count("id"), last=Max("id"))
    return "|".join(str(v) for v in (study.updated_at.isoformat(), *prompts.values(), *annotators.values()))


def _prompt_means(ratings: pd.DataFrame, order: pd.Index) -> GroupMeans:
    grouped = ratings.groupby("prompt", sort=False)["rating"].agg(["mean", "size"]).reindex(order)
    return GroupMeans(grouped["mean"].to_numpy(dtype=float), grouped["size"].fillna(0).to_numpy(dtype=float))


def _fit(model_X: np.ndarray, means: GroupMeans, start: hb.FeatureWeights | None) -> hb.SteeringResult:
    rated = means.counts > 0
    return hb.steer(
        start, trees_or_features=model_X[rated], ratings=means.means[rated], sample_weight=means.counts[rated]
    )


def steering_model_build(*, study: Study) -> SteeringModel:
    """Read the study's prompts and ratings and reduce them (the slow part: it reads every rating)."""
    prompts = prompts_frame(study=study).set_index("external_id")
    missing = [c for c in ACTION_COLUMNS if c not in prompts.columns]
    if missing or prompts[ACTION_COLUMNS].isna().any().any():
        raise ApplicationError(
            "This study's prompts carry no SafetyAnalyst action-category features (action_* columns), "
            "so the model cannot score them.",
            status_code=409,
        )
    frame = study_frame(study=study)
    ratings = frame[frame["rating"].notna()]
    order = prompts.index
    X = prompts[ACTION_COLUMNS].to_numpy(dtype=float)
    overall = _prompt_means(ratings, order)
    if (overall.counts > 0).sum() < MIN_GROUP_PROMPTS:
        raise ApplicationError(f"Steering needs ratings of at least {MIN_GROUP_PROMPTS} prompts.", status_code=409)
    groups: dict[str, dict[str, GroupMeans]] = {}
    for column in DEMOGRAPHIC_COLUMNS:
        if column not in ratings:
            continue
        values = ratings[column].astype("string").str.strip()
        groups[column] = {
            str(value): _prompt_means(ratings[values == value], order) for value in values.dropna().unique()
        }
    baseline = _fit(X, overall, None).weights
    return SteeringModel([str(p) for p in order], prompts["text"].astype(str).tolist(), X, overall, groups, baseline)


def _cache_key(study: Study, version: str) -> str:
    return f"steering:v1:{study.pk}:{version}"


def steering_model(*, study: Study) -> tuple[str, SteeringModel]:
    """(version, model): the study's steering model, built only when the study changed since the last
    build. Pages that open steering call this; slider moves ask for the version their page was built
    from (`steering_model_at`), so a study that is collecting never makes a slider move rebuild."""
    version = hashlib.sha256(study_version(study=study).encode()).hexdigest()[:32]
    model = cache.get(_cache_key(study, version))
    if model is None:
        model = steering_model_build(study=study)
        cache.set(_cache_key(study, version), model, CACHE_SECONDS)
    return version, model


def steering_model_at(*, study: Study, version: str) -> tuple[str, SteeringModel]:
    """The model a page was built from (its baseline is what the page's sliders started at); the current
    one if that version is unknown or has left the cache."""
    if version and len(version) == 32 and all(c in "0123456789abcdef" for c in version):
        model = cache.get(_cache_key(study, version))
        if model is not None:
            return version, model
    return steering_model(study=study)


def group_fit(model: SteeringModel, *, column: str, value: str) -> hb.SteeringResult:
    """Refit the weights, from the study-wide fit, to one demographic group's ratings."""
    means = model.groups.get(column, {}).get(value)
    if means is None:
        raise ApplicationError(f"no annotators with {column} = {value!r} in this study", status_code=400)
    if (means.counts > 0).sum() < MIN_GROUP_PROMPTS:
        raise ApplicationError(
            f"this group has rated too few prompts to fit (at least {MIN_GROUP_PROMPTS} needed)", status_code=400
        )
    return _fit(model.X, means, model.baseline)


def score_table(model: SteeringModel, *, weights: hb.FeatureWeights) -> pd.DataFrame:
    """Per prompt: H and P(harmful) under `weights` and the baseline, whether it changed side, mean rating."""
    new = hb.FeatureLevelSafetyAnalyst(weights).decision_function(model.X)
    old = hb.FeatureLevelSafetyAnalyst(model.baseline).decision_function(model.X)
    table = pd.DataFrame(
        {
            "prompt": model.prompt_ids,
            "text": model.texts,
            "H": new,
            "p_harmful": 1 / (1 + np.exp(-new)),
            "baseline_H": old,
            "harmful": new > 0,
            "changed": (new > 0) != (old > 0),
            "mean_rating": model.overall.means,
        }
    )
    return table.sort_values(["changed", "H"], ascending=[False, False]).reset_index(drop=True)


def weights_from_form(data, base: hb.FeatureWeights) -> hb.FeatureWeights:
    """Action weights from slider fields `w0`…`w15` (0–1); effect weights, scale and offset from `base`."""
    action = base.action.copy()
    for i in range(len(action)):
        raw = data.get(f"w{i}")
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ApplicationError(f"weight {i + 1} must be a number from 0 to 1") from None
        if not np.isfinite(value) or not 0 <= value <= 1:
            raise ApplicationError(f"weight {i + 1} must be a number from 0 to 1")
        action[i] = value
    return hb.FeatureWeights(action, base.effect, base.scale, base.offset)
