"""The one reader of the PluriHarms release format (pure: pandas and numpy, no Django).

    release = release_read(directory)    # validates both files; ReleaseFormatError lists every problem
    frame = release.long()               # the long ratings frame (see long.long_frame)

The importer (`annotation.importers`), the evaluation protocol, the benchmarks in `bench/` and the
analytics read releases through here, and take the format's names from `columns`.  Annotators are
"P0001" … in file row order everywhere: in the long frame and as the imported annotators' pseudonyms.
"""

from __future__ import annotations

from pathlib import Path

from .columns import (
    ANNOTATIONS_FILE,
    DEMOGRAPHIC_COLUMNS,
    FACTOR_COLUMNS,
    FEATURE_PREFIXES,
    HARM_LEVEL,
    PARTICIPANT_ID,
    PROMPT_ID,
    PROMPT_TEXT,
    PROMPTS_FILE,
    PSEUDONYMOUS_ID,
    RATING_RE,
    TRIAL_RE,
    annotator_id,
    feature_columns,
    is_feature_column,
    rating_column,
    trial_column,
)
from .read import Release, ReleaseFormatError, prompts_read, release_read

# The PluriHarms release vendored with the product.
RELEASE_DIR = Path(__file__).resolve().parents[2] / "datasets" / "pluriharms"

__all__ = [
    "ANNOTATIONS_FILE",
    "DEMOGRAPHIC_COLUMNS",
    "FACTOR_COLUMNS",
    "FEATURE_PREFIXES",
    "HARM_LEVEL",
    "PARTICIPANT_ID",
    "PROMPTS_FILE",
    "PROMPT_ID",
    "PROMPT_TEXT",
    "PSEUDONYMOUS_ID",
    "RATING_RE",
    "RELEASE_DIR",
    "TRIAL_RE",
    "Release",
    "ReleaseFormatError",
    "annotator_id",
    "feature_columns",
    "is_feature_column",
    "prompts_read",
    "rating_column",
    "release_read",
    "trial_column",
]
