"""Annotator traits as numbers: the ten PluriHarms demographics encoded, and z-scoring.

The encodings follow the release's `data_loader.encode_demographics` where it is sound and depart
from it where the brief asks for more information (race as one indicator per category rather than
"White only", Political "Other" as missing); docs/analysis.md lists every mapping. Answers are matched
after stripping surrounding spaces (the release has " Very important", " Straight (heterosexual)")
and straightening typographic apostrophes ("Bachelor’s degree").
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

AGE = {
    "18-24 years old": 0,
    "25-34 years old": 1,
    "35-44 years old": 2,
    "45-54 years old": 3,
    "55-64 years old": 4,
    "65 years old or above": 5,
    "65+ years old": 5,
}
# Higher = more liberal, as in the release; "Other" is not on the axis and becomes NaN.
POLITICAL = {
    "Very conservative": 0,
    "Somewhat conservative": 1,
    "Moderate": 2,
    "Somewhat liberal": 3,
    "Very liberal": 4,
}
# Matched by the start of the answer so that "(MA, MS, MBA, PhD, …)" and similar tails do not matter.
EDUCATION_PREFIXES = (
    ("high school", 0),
    ("ged", 0),
    ("some college", 1),
    ("associate", 2),
    ("technical", 2),
    ("bachelor", 3),
    ("graduate", 4),
    ("professional", 4),
)
# The release's own scale: the three answers offered map to 0, 2 and 3 (1 and 4 are kept for the
# "Not very" / "Extremely" answers of the fuller instrument), so z-scores match the release code.
RELIGION = {
    "Not at all important": 0,
    "Not very important": 1,
    "Somewhat important": 2,
    "Very important": 3,
    "Extremely important": 4,
}
SOCIAL_MEDIA = {
    "Less than once a week": 0,
    "At least once a week": 1,
    "At least once a day": 2,
    "Over 2 hours per day": 3,
}
TOXICITY = {
    "Not a problem": 0,
    "Rarely a problem": 1,
    "Sometimes a problem": 2,
    "Often a problem": 3,
    "Very often a problem": 4,
}
INCOME = {
    "Less than $20,000": 0,
    "$20,000 to $34,999": 1,
    "$35,000 to $49,999": 2,
    "$50,000 to $74,999": 3,
    "$75,000 to $99,999": 4,
    "Over $100,000": 5,
}
GENDER = {"Man": 1, "Woman": 0}
# Race/ethnicity is multi-select, saved comma-joined; some categories contain commas themselves, so
# the known categories are matched as whole phrases (longest first), never by splitting on commas.
RACE_CATEGORIES = {
    "American Indian, Alaska Native, or other Indigenous culture": "Race_Ethnicity_Indigenous",
    "Black or African American": "Race_Ethnicity_Black",
    "East Asian": "Race_Ethnicity_East_Asian",
    "Latino or Hispanic": "Race_Ethnicity_Latino",
    "Middle Eastern or North African": "Race_Ethnicity_MENA",
    "Native Hawaiian or other Pacific Islander": "Race_Ethnicity_Pacific_Islander",
    "South Asian": "Race_Ethnicity_South_Asian",
    "Southeast Asian": "Race_Ethnicity_Southeast_Asian",
    "White": "Race_Ethnicity_White",
    "Other": "Race_Ethnicity_Other",
}
STRAIGHT = "Straight (heterosexual)"
NO_ANSWER = re.compile(r"^(prefer not|i prefer not|unanswered|unsure|decline)", re.IGNORECASE)


def _clean(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).replace("\u2019", "'").strip()
    return text or None


def _lookup(series: pd.Series, mapping: dict[str, int]) -> pd.Series:
    table = {k.lower(): v for k, v in mapping.items()}
    return series.map(lambda v: float(table.get(v.lower(), np.nan)) if (v := _clean(v)) else np.nan).astype(float)


def _education(value) -> float:
    text = _clean(value)
    if text is None:
        return np.nan
    lower = text.lower()
    for prefix, code in EDUCATION_PREFIXES:
        if lower.startswith(prefix):
            return float(code)
    return np.nan


def race_categories(value) -> set[str] | None:
    """The known categories in one multi-select answer; None when unanswered.

    Text left over after removing the known categories (and separators) counts as "Other".
    """
    text = _clean(value)
    if text is None or NO_ANSWER.match(text):
        return None
    found: set[str] = set()
    rest = text
    for category in sorted(RACE_CATEGORIES, key=len, reverse=True):
        pattern = re.compile(r"(^|,)\s*" + re.escape(category) + r"\s*(?=,|$)", re.IGNORECASE)
        if pattern.search(rest):
            found.add(category)
            rest = pattern.sub(",", rest)
    if re.sub(r"[,\s]+", "", rest):
        found.add("Other")
    return found


def _straight(value) -> float:
    text = _clean(value)
    if text is None or NO_ANSWER.match(text):
        return np.nan
    return 1.0 if STRAIGHT.lower() in text.lower() else 0.0


def encode_demographics(annotators: pd.DataFrame, *, race: str = "indicators") -> pd.DataFrame:
    """Numeric encodings of the PluriHarms demographics, one output row per input row (index kept).

    Reads whichever of the ten release columns are present (strings as released; surrounding spaces
    are ignored). Unanswered, "Prefer not to answer" and unknown answers become NaN. Columns:

    - `Age`: 18-24 → 0, 25-34 → 1, 35-44 → 2, 45-54 → 3, 55-64 → 4, 65 or above → 5.
    - `Political_Affiliation`: Very conservative 0, Somewhat conservative 1, Moderate 2, Somewhat
      liberal 3, Very liberal 4 (higher = more liberal); Other → NaN.
    - `Education`: High school diploma or GED 0, Some college (no degree) 1, Associates or technical
      degree 2, Bachelor's degree 3, Graduate or professional degree 4.
    - `Religion_Importance`: Not at all important 0, (Not very important 1), Somewhat important 2, Very
      important 3, (Extremely important 4) — the release's scale.
    - `Social_Media_Frequency`: Less than once a week 0, At least once a week 1, At least once a day 2,
      Over 2 hours per day 3.
    - `Toxicity_Experience`: Not a problem 0, Rarely 1, Sometimes 2, Often 3, Very often a problem 4.
    - `Income`: Less than $20,000 0, $20,000–34,999 1, $35,000–49,999 2, $50,000–74,999 3,
      $75,000–99,999 4, Over $100,000 5; "I prefer not to answer." → NaN.
    - `Gender_man`: Man 1, Woman 0, any other answer NaN.
    - `Sexual_Orientation_straight`: 1 if "Straight (heterosexual)" is among the selected answers
      (also in "Aromantic or asexual, Straight (heterosexual)"), 0 for any other answer, NaN for
      "Prefer not to answer".
    - race="indicators" (default): `Race_Ethnicity_<Category>` 0/1 for each known category (White,
      Black, Latino, East_Asian, South_Asian, Southeast_Asian, Indigenous, MENA, Pacific_Islander,
      Other); multi-select answers set several; unrecognised text sets Other; unanswered → NaN in all.
      race="white_only": one column `Race_Ethnicity_white_only`, 1 for exactly "White", else 0 (the
      release's encoding).
    """
    out = pd.DataFrame(index=annotators.index)
    if "Race_Ethnicity" in annotators.columns:
        parsed = annotators["Race_Ethnicity"].map(race_categories)
        if race == "indicators":
            for category, name in RACE_CATEGORIES.items():
                out[name] = parsed.map(lambda s, c=category: np.nan if s is None else float(c in s)).astype(float)
        elif race == "white_only":
            out["Race_Ethnicity_white_only"] = parsed.map(
                lambda s: np.nan if s is None else float(s == {"White"})
            ).astype(float)
        else:
            raise ValueError("race must be 'indicators' or 'white_only'")
    if "Gender" in annotators.columns:
        out["Gender_man"] = _lookup(annotators["Gender"], GENDER)
    if "Sexual_Orientation" in annotators.columns:
        out["Sexual_Orientation_straight"] = annotators["Sexual_Orientation"].map(_straight).astype(float)
    for column, mapping in (
        ("Age", AGE),
        ("Political_Affiliation", POLITICAL),
        ("Religion_Importance", RELIGION),
        ("Social_Media_Frequency", SOCIAL_MEDIA),
        ("Toxicity_Experience", TOXICITY),
        ("Income", INCOME),
    ):
        if column in annotators.columns:
            out[column] = _lookup(annotators[column], mapping)
    if "Education" in annotators.columns:
        out["Education"] = annotators["Education"].map(_education).astype(float)
    order = [
        c
        for c in (
            *[n for n in out.columns if n.startswith("Race_Ethnicity")],
            "Gender_man",
            "Sexual_Orientation_straight",
            "Age",
            "Political_Affiliation",
            "Education",
            "Religion_Importance",
            "Social_Media_Frequency",
            "Toxicity_Experience",
            "Income",
        )
        if c in out.columns
    ]
    return out[order]


def zscore(frame: pd.DataFrame) -> pd.DataFrame:
    """Column-wise (x − mean) / SD (ddof=1) over the non-missing values; NaN stays NaN.

    A column with fewer than two values or no variance becomes 0.0 where it has a value (it carries no
    information; the release does the same). Pass one row per unit (annotators, or prompts): z-scoring a
    long frame would weight units by their number of ratings.
    """
    numeric = frame.astype(float)
    mean = numeric.mean()
    sd = numeric.std(ddof=1)
    flat = ~(sd > 0)
    out = (numeric - mean) / sd.where(~flat, 1.0)
    out.loc[:, flat] = numeric.loc[:, flat] * 0.0  # 0 where a value, NaN where none
    return out
