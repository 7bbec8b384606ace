"""The PluriHarms release format's names: its two files, their columns, and the annotator ids.

`prompts.csv`: `Question_Index`, `Question_Content`, `Harm_Level`, then the prompt features
(`action_*`, `effect_*`, `value_topic_*`).  `annotations.csv`: one row per participant:
`Participant_ID`, the ten demographic columns, `Rating_N` and `Trial_N` for every prompt N, and
`Factor_1..3`.  Every reader and writer of the format (the science code, the importer, the exporter,
the benchmarks) takes the names from here.
"""

from __future__ import annotations

import re

import pandas as pd

PROMPTS_FILE = "prompts.csv"
ANNOTATIONS_FILE = "annotations.csv"

PROMPT_ID = "Question_Index"
PROMPT_TEXT = "Question_Content"
HARM_LEVEL = "Harm_Level"
FEATURE_PREFIXES = ("action_", "effect_", "value_topic_")

PARTICIPANT_ID = "Participant_ID"
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

RATING_RE = re.compile(r"^Rating_(\d+)$")
TRIAL_RE = re.compile(r"^Trial_(\d+)$")

# Released participant ids are pseudonymous: a whole number (PluriHarms: 0..99) or our own P0001.
PSEUDONYMOUS_ID = re.compile(r"^(\d{1,9}|P\d{1,9})$")


def rating_column(prompt: str) -> str:
    return f"Rating_{prompt}"


def trial_column(prompt: str) -> str:
    return f"Trial_{prompt}"


def is_feature_column(name: str) -> bool:
    return str(name).startswith(FEATURE_PREFIXES)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The prompt feature columns of a frame (`action_*`, `effect_*`, `value_topic_*`), in frame order."""
    return [c for c in frame.columns if is_feature_column(c)]


def annotator_id(row: int) -> str:
    """The id of the participant in row `row` (0-based) of `annotations.csv`: "P0001", "P0002", ….

    The long frame uses it, and the importer gives it to the annotator as the pseudonym, so a frame
    read from the files and one read from the imported study name everyone alike.
    """
    return f"P{row + 1:04d}"
