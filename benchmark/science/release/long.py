"""A release as the long ratings frame: one row per (annotator, prompt) rating."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .columns import DEMOGRAPHIC_COLUMNS, FACTOR_COLUMNS

if TYPE_CHECKING:
    from .read import Release


def long_frame(release: Release, *, include_text: bool = False) -> pd.DataFrame:
    """The release as one row per (annotator, prompt) rating, in this column order:

    - `annotator`: "P0001" … in the order of the annotation file's rows (`columns.annotator_id`; the
      pseudonyms the importer gives, so this frame and `annotation.selectors.ratings_frame` of the
      imported study name annotators alike); `Participant_ID` itself is not in the frame;
    - `prompt`: `Question_Index` as a string ("1" … "150"); `Rating_N` belongs to prompt N;
    - `rating`: 0–100 float, NaN when the participant chose "Unsure"; `unsure`: bool;
    - `trial`: `Trial_N`, the display position (int64);
    - the ten demographic columns as strings exactly as released (some start with a space; an empty
      cell is missing), then `Factor_1..3` (float);
    - `harm_level` (`Harm_Level`), then the feature columns (`action_*`, `effect_*`, `value_topic_*`;
      62 in PluriHarms) as released (raw, not z-scored);
    - with `include_text=True`, also `text` (`Question_Content`) after `prompt`.

    Rows are ordered by annotator (file row order), then by `Question_Index` (numerically).
    """
    prompts = release.prompts
    order = np.argsort(prompts["external_id"].astype(int).to_numpy(), kind="stable")
    n_annotators, n_prompts = len(release.participants), len(order)
    ratings = release.ratings[:, order]
    trials = release.trials[:, order]

    row_annotator = np.repeat(np.arange(n_annotators), n_prompts)
    row_prompt = np.tile(order, n_annotators)
    flat = ratings.reshape(-1)
    columns: dict[str, object] = {
        "annotator": pd.array(np.array(release.annotators, dtype=object)[row_annotator], dtype="str"),
        "prompt": pd.array(prompts["external_id"].to_numpy(dtype=object)[row_prompt], dtype="str"),
    }
    if include_text:
        columns["text"] = pd.array(prompts["text"].to_numpy(dtype=object)[row_prompt], dtype="str")
    columns.update(
        {
            "rating": flat,
            "unsure": np.isnan(flat),
            "trial": trials.reshape(-1).astype(np.int64),
        }
    )
    for name in DEMOGRAPHIC_COLUMNS:
        answers = release.demographics[name].to_numpy(dtype=object)
        answers = np.where(answers == "", None, answers)  # only an empty cell is missing
        columns[name] = pd.array(answers[row_annotator], dtype="str")
    for j, name in enumerate(FACTOR_COLUMNS):
        columns[name] = release.factors[:, j][row_annotator]
    columns["harm_level"] = prompts["harm_level"].to_numpy(dtype=float)[row_prompt]
    for name in release.feature_columns:
        columns[name] = prompts[name].to_numpy(dtype=float)[row_prompt]
    return pd.DataFrame(columns)
