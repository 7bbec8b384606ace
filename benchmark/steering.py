"""Steering the SafetyAnalyst model: the study's own fit, hand-set weights, and a group's refit.

The study's prompts carry SafetyAnalyst action-category distributions (the feature-level model of
benchmark/science/harm_benefit.py). Fits use each prompt's mean rating weighted by its number of
ratings, which for a squared loss is the same fit as one row per rating, at 1/100 of the cost (a fit
takes ~20 ms, so pages do it in the request).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotation.models import Study
from annotation.selectors import prompts_frame
from config.errors import ApplicationError

from .analysis import study_frame
from .science import harm_benefit as hb

ACTION_COLUMNS = list(hb.ACTION_FEATURE_COLUMNS)


@dataclass
class SteeringData:
    prompts: pd.DataFrame  # index external_id: text, action columns
    ratings: pd.DataFrame  # long: prompt, rating, demographics


def steering_data(*, study: Study) -> SteeringData:
    prompts = prompts_frame(study=study).set_index("external_id")
    missing = [c for c in ACTION_COLUMNS if c not in prompts.columns]
    if missing or prompts[ACTION_COLUMNS].isna().any().any():
        raise ApplicationError(
            "This study's prompts carry no SafetyAnalyst action-category features (action_* columns), "
            "so the model cannot score them.", status_code=409,
        )
    ratings = study_frame(study=study)
    return SteeringData(prompts=prompts, ratings=ratings[ratings["rating"].notna()])


def _means(ratings: pd.DataFrame, prompts: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    grouped = ratings.groupby("prompt")["rating"].agg(["mean", "size"])
    grouped = grouped[grouped.index.isin(prompts.index)]
    return prompts.loc[grouped.index, ACTION_COLUMNS], grouped["mean"].to_numpy(), grouped["size"].to_numpy()


def study_fit(data: SteeringData) -> hb.FeatureWeights:
    """The weights fitted to everyone's ratings of the study: the baseline that steering moves from."""
    X, means, counts = _means(data.ratings, data.prompts)
    return hb.steer(None, trees_or_features=X, ratings=means, sample_weight=counts).weights


def group_values(data: SteeringData) -> dict[str, list[str]]:
    """Demographic columns and their values (stripped), for the "fit to this group" menu."""
    out = {}
    for column in ("Race_Ethnicity", "Gender", "Sexual_Orientation", "Age", "Political_Affiliation", "Education",
                   "Religion_Importance", "Social_Media_Frequency", "Toxicity_Experience", "Income"):
        if column in data.ratings:
            out[column] = sorted({str(v).strip() for v in data.ratings[column].dropna().unique()})
    return out


def group_fit(data: SteeringData, *, start: hb.FeatureWeights, column: str, value: str) -> hb.SteeringResult:
    if column not in data.ratings or value not in group_values(data).get(column, []):
        raise ApplicationError(f"no annotators with {column} = {value!r} in this study", status_code=400)
    members = data.ratings[data.ratings[column].astype(str).str.strip() == value]
    X, means, counts = _means(members, data.prompts)
    if len(means) < 5:
        raise ApplicationError("this group has rated too few prompts to fit (at least 5 needed)", status_code=400)
    return hb.steer(start, trees_or_features=X, ratings=means, sample_weight=counts)


def score_table(data: SteeringData, *, weights: hb.FeatureWeights, baseline: hb.FeatureWeights) -> pd.DataFrame:
    """Per prompt: H and P(harmful) under `weights` and `baseline`, whether it changed side, mean rating."""
    X = data.prompts[ACTION_COLUMNS]
    new = hb.FeatureLevelSafetyAnalyst(weights).decision_function(X)
    old = hb.FeatureLevelSafetyAnalyst(baseline).decision_function(X)
    mean_rating = data.ratings.groupby("prompt")["rating"].mean().reindex(data.prompts.index)
    table = pd.DataFrame({
        "prompt": data.prompts.index, "text": data.prompts["text"].to_numpy(),
        "H": new, "p_harmful": 1 / (1 + np.exp(-new)), "baseline_H": old,
        "harmful": new > 0, "changed": (new > 0) != (old > 0), "mean_rating": mean_rating.to_numpy(),
    })
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
        if not 0 <= value <= 1:
            raise ApplicationError(f"weight {i + 1} must be a number from 0 to 1")
        action[i] = value
    return hb.FeatureWeights(action, base.effect, base.scale, base.offset)
