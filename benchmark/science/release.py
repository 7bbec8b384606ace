"""Read the public PluriHarms release straight into the long ratings frame, without a database.

The frame has the same shape as `annotation.selectors.ratings_frame` gives for an imported study, so
the science code, its tests and the benchmarks can run on the release directly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DEMOGRAPHIC_COLUMNS = (
    "Race_Ethnicity",
    "Gender",
    "Sexual_Orientation",
    "Age",
    "Political_Affiliation",
    "Education",
    "Religion_Importance",
    "Social_Media_Frequency",
    "Toxicity_Experience",
    "Income",
)
FACTOR_COLUMNS = ("Factor_1", "Factor_2", "Factor_3")
FEATURE_PREFIXES = ("action_", "effect_", "value_topic_")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The prompt feature columns of a frame (`action_*`, `effect_*`, `value_topic_*`), in frame order."""
    return [c for c in frame.columns if str(c).startswith(FEATURE_PREFIXES)]


def load_release_long(directory: str | Path, *, include_text: bool = False) -> pd.DataFrame:
    """The release as one row per (annotator, prompt) rating.

    Reads `prompts.csv` and `annotations.csv` from `directory` and returns, in this column order:

    - `annotator`: "P0001" … in the order of the annotation file's rows (Participant_ID 0 → P0001);
    - `prompt`: `Question_Index` as a string ("1" … "150"); `Rating_N` belongs to prompt N;
    - `rating`: 0–100 float, NaN when the participant chose "Unsure"; `unsure`: bool;
    - `trial`: `Trial_N`, the display position (int);
    - the ten demographic columns as strings exactly as released (some start with a space), then
      `Factor_1..3`;
    - `harm_level` (`Harm_Level`), then the 62 feature columns (`action_*`, `effect_*`,
      `value_topic_*`) as released (raw, not z-scored);
    - with `include_text=True`, also `text` (`Question_Content`) after `prompt`.

    Rows are ordered by annotator, then by `Question_Index`.
    """
    directory = Path(directory)
    prompts = pd.read_csv(directory / "prompts.csv")
    demographic_dtypes = {c: "str" for c in DEMOGRAPHIC_COLUMNS}
    # Only empty cells are missing: a demographic answer is kept verbatim, leading space included.
    annotations = pd.read_csv(
        directory / "annotations.csv", dtype=demographic_dtypes, keep_default_na=False, na_values=[""]
    )
    prompts = prompts.sort_values("Question_Index", kind="stable").reset_index(drop=True)
    question = prompts["Question_Index"].astype(int).to_numpy()
    n_annotators, n_prompts = len(annotations), len(prompts)

    ratings = annotations[[f"Rating_{q}" for q in question]].to_numpy(dtype=float)
    trials = annotations[[f"Trial_{q}" for q in question]].to_numpy()
    if np.isnan(trials.astype(float)).any():
        raise ValueError("annotations.csv has an empty Trial_N cell")
    annotator_ids = np.array([f"P{i + 1:04d}" for i in range(n_annotators)], dtype=object)

    row_annotator = np.repeat(np.arange(n_annotators), n_prompts)
    row_prompt = np.tile(np.arange(n_prompts), n_annotators)
    flat = ratings.reshape(-1)
    columns: dict[str, object] = {
        "annotator": pd.array(annotator_ids[row_annotator], dtype="str"),
        "prompt": pd.array(question.astype(str)[row_prompt], dtype="str"),
    }
    if include_text:
        columns["text"] = pd.array(prompts["Question_Content"].to_numpy(dtype=object)[row_prompt], dtype="str")
    columns.update(
        {
            "rating": flat,
            "unsure": np.isnan(flat),
            "trial": trials.reshape(-1).astype(np.int64),
        }
    )
    for name in DEMOGRAPHIC_COLUMNS:
        if name in annotations.columns:
            values = annotations[name].astype(object).where(annotations[name].notna(), None).to_numpy()
            columns[name] = pd.array(values[row_annotator], dtype="str")
    for name in FACTOR_COLUMNS:
        if name in annotations.columns:
            columns[name] = annotations[name].to_numpy(dtype=float)[row_annotator]
    columns["harm_level"] = prompts["Harm_Level"].to_numpy(dtype=float)[row_prompt]
    for name in feature_columns(prompts):
        columns[name] = prompts[name].to_numpy(dtype=float)[row_prompt]
    return pd.DataFrame(columns)

