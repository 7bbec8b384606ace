"""The PluriHarms release format: column names shared by the importer and the exporter."""
import re

PROMPTS_FILE = "prompts.csv"
ANNOTATIONS_FILE = "annotations.csv"

PROMPT_ID = "Question_Index"
PROMPT_TEXT = "Question_Content"
HARM_LEVEL = "Harm_Level"
FEATURE_PREFIXES = ("action_", "effect_", "value_topic_")

PARTICIPANT_ID = "Participant_ID"
DEMOGRAPHIC_COLUMNS = [
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
]
FACTOR_COLUMNS = ["Factor_1", "Factor_2", "Factor_3"]

RATING_RE = re.compile(r"^Rating_(\d+)$")
TRIAL_RE = re.compile(r"^Trial_(\d+)$")


def is_feature_column(name: str) -> bool:
    return name.startswith(FEATURE_PREFIXES)
