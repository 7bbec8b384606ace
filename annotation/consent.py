"""What the consent page tells a participant before they agree: the estimated duration, computed from the
study's settings (no measured times are needed, so it is right before the first participant arrives).

Seconds assumed per step (documented for researchers on the consent section of the settings page):
- a questionnaire item on a rating scale: 6 s (short Likert items are answered in about 4–8 s);
- a questionnaire item with listed options (demographics): 10 s;
- a prompt to rate: 15 s (reading one to three sentences and choosing a value), or three times the study's
  minimum time per rating when that is longer;
- an attention check: 10 s;
- consent, instructions and the practice item: 120 s in all.
The total is rounded up to whole minutes.
"""

from __future__ import annotations

import math

from . import surveys
from .models import Study

SECONDS_SCALE_ITEM = 6
SECONDS_CHOICE_ITEM = 10
SECONDS_PER_PROMPT = 15
SECONDS_PER_CHECK = 10
SECONDS_FIXED = 120


def prompts_per_annotator(study: Study) -> int:
    """How many prompts one annotator rates: the design's number, else every prompt (full crossing)."""
    count = study.prompts.count()
    if study.prompts_per_annotator:
        return min(study.prompts_per_annotator, count) if count else study.prompts_per_annotator
    return count


def duration_seconds(study: Study) -> int:
    """The estimated time to take part, in seconds (see the module's docstring for the assumptions)."""
    items = 0
    for key in study.instruments or []:
        try:
            definition = surveys.instrument_load(key)
        except ValueError:  # an instrument file removed since: nothing to answer for it
            continue
        for item in definition["items"]:
            items += SECONDS_SCALE_ITEM if item["type"] == "scale" else SECONDS_CHOICE_ITEM
    per_prompt = max(SECONDS_PER_PROMPT, 3 * (study.min_seconds_per_rating or 0))
    rating = prompts_per_annotator(study) * per_prompt + (study.attention_checks or 0) * SECONDS_PER_CHECK
    return SECONDS_FIXED + items + math.ceil(rating)


def duration_minutes(study: Study) -> int:
    return max(1, math.ceil(duration_seconds(study) / 60))
