"""The PluriHarms release format: column names shared by the importer and the exporter."""
import re

# The column lists live with the Django-free science code, which reads the same format.
from benchmark.science.release import DEMOGRAPHIC_COLUMNS as _DEMOGRAPHICS
from benchmark.science.release import FACTOR_COLUMNS as _FACTORS
from benchmark.science.release import FEATURE_PREFIXES

PROMPTS_FILE = "prompts.csv"
ANNOTATIONS_FILE = "annotations.csv"

PROMPT_ID = "Question_Index"
PROMPT_TEXT = "Question_Content"
HARM_LEVEL = "Harm_Level"

PARTICIPANT_ID = "Participant_ID"
DEMOGRAPHIC_COLUMNS = list(_DEMOGRAPHICS)
FACTOR_COLUMNS = list(_FACTORS)

RATING_RE = re.compile(r"^Rating_(\d+)$")
TRIAL_RE = re.compile(r"^Trial_(\d+)$")


def is_feature_column(name: str) -> bool:
    return name.startswith(FEATURE_PREFIXES)
