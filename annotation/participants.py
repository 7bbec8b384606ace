"""Reads for the participants page, its CSV and the annotators API: one row per annotator with the
figures a researcher reviews them by, one annotator's trials, and the recruitment-id lookup.

`participants_table` is the one definition of every column, shared by the table, the CSV download and
the API. The annotators' rows are read every time; their figures come from `participant_figures`, which
reads the whole study once (four queries whatever its size, numpy for the rest) and afterwards only the
annotators whose rows changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from config.errors import ApplicationError

from .latent import latent_by_pseudonym, latent_latest
from .models import Annotator, Assignment, Study
from .participant_figures import study_figures
from .services.recruitment import PLATFORM_ID, recruitment_hash
from .study_cache import study_cached

# The columns of the table, the CSV and the API, in order, with what each one means.
PARTICIPANT_COLUMNS = {
    "pseudonym": "the annotator's pseudonym in this study",
    "status": "new, consented, surveying, rating, completed, declined, returned or excluded",
    "exclusion_reason": "why an excluded annotator was excluded (empty otherwise)",
    "answered": "trials answered (prompts and attention checks)",
    "assigned": "trials assigned (prompts and attention checks)",
    "time_on_task_s": "seconds from consent to completion (to the last step while unfinished)",
    "median_rt_s": "median response time of the prompt ratings, seconds (the browser's active time, "
    "else the server's shown-to-saved time)",
    "checks_passed": "attention checks passed",
    "checks_failed": "attention checks failed",
    "too_fast": "prompt ratings faster than the study's minimum seconds per rating",
    "straight_lining": "share of prompt ratings, in trial order, identical to the one before "
    "(Unsure after Unsure counts as identical)",
    "surveys_done": "questionnaires of the study answered",
    "surveys_required": "questionnaires the study asks for",
    "agreement_r": "Pearson correlation, over the prompts the annotator rated, between their ratings and "
    "the mean of the other non-excluded annotators' ratings of each prompt (leave-one-out consensus); "
    "empty with fewer than 3 such prompts or no variance",
    "expected_disengaged": "expected number of disengaged trials, Σ p(disengaged) over the annotator's prompt "
    "ratings, from the study's latest latent-state job (empty before one has run)",
    "latent_flag": "true when that expected share of disengaged trials reaches the job's threshold: a "
    "suggestion to review, never an exclusion (empty before a latent-state job has run)",
}
NUMERIC_COLUMNS = [
    c for c in PARTICIPANT_COLUMNS if c not in ("pseudonym", "status", "exclusion_reason", "latent_flag")
]


def _seconds(start, end) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


_UNSET = object()


def participants_table(*, study: Study, status: str | None = None, latent_job=_UNSET) -> list[dict]:
    """One dict per annotator of the study (in arrival order), with the keys of PARTICIPANT_COLUMNS.

    Cached per study version (annotation.study_cache): no query but the latent job's while the study has
    not changed. After a change, the annotators are read again, and the ratings, trials and
    questionnaires of those whose rows changed (participant_figures); the latest latent-state job's
    per-annotator summary is read unless the caller passes that job as `latent_job`. `status` keeps one
    status only.
    Figures that cannot be computed (nothing rated, no timings) are None.
    """
    columns = participants_columns(study=study, status=status, latent_job=latent_job)
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def participants_columns(*, study: Study, status: str | None = None, latent_job=_UNSET) -> dict[str, list]:
    """`participants_table` by column ({name: [value per annotator]}): what the cache keeps, since 10,000
    rows as dicts take a tenth of a second to unpickle and a page shows 25 of them."""
    if latent_job is _UNSET:
        latent_job = latent_latest(study=study)
    columns = study_cached(
        study,
        f"participant-columns:{latent_job.pk if latent_job else 0}",
        lambda: _participants_columns(study, latent_job),
    )
    if status:
        keep = [i for i, value in enumerate(columns["status"]) if value == status]
        columns = {name: [values[i] for i in keep] for name, values in columns.items()}
    return columns


def _numbers(values: np.ndarray) -> list:
    """Python floats, None where NaN."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isnan(values), None, values).tolist()


def _whole(values: np.ndarray) -> list[int]:
    return np.asarray(values).astype(np.int64).tolist()


def _participants_columns(study: Study, latent_job) -> dict[str, list]:
    """Every column of PARTICIPANT_COLUMNS for every annotator, built column by column (numpy; no dict per
    annotator)."""
    people = list(
        Annotator.objects.filter(study=study)
        .order_by("id")
        .values_list("id", "pseudonym", "status", "exclusion_reason", "consented_at", "completed_at", "last_seen_at")
    )
    # What a change to an annotator's ratings, trials or questionnaires also changes (participant_figures).
    marks = [(pk, st, last_seen_at, completed_at) for pk, _, st, _, _, completed_at, last_seen_at in people]
    figures, agreement_r = study_figures(study, marks)
    own = figures.columns
    latent = latent_by_pseudonym(latent_job)
    pseudonyms = [row[1] for row in people]
    statuses = [row[2] for row in people]
    states = [latent.get(pseudonym, {}) for pseudonym in pseudonyms]
    columns = {
        "pseudonym": pseudonyms,
        "status": statuses,
        "exclusion_reason": [reason if st == Annotator.Status.EXCLUDED else "" for (_, _, st, reason, *_) in people],
        "answered": _whole(own["n_rated"] + own["checks_answered"]),
        "assigned": _whole(own["assigned"]),
        "time_on_task_s": [_seconds(row[4], row[5] or row[6]) for row in people],
        "median_rt_s": _numbers(own["median_rt_s"]),
        "checks_passed": _whole(own["checks_passed"]),
        "checks_failed": _whole(own["checks_failed"]),
        "too_fast": _whole(own["too_fast"]),
        "straight_lining": _numbers(own["straight_lining"]),
        "surveys_done": _whole(own["surveys_done"]),
        "surveys_required": [len(dict.fromkeys(study.instruments or []))] * len(people),
        "agreement_r": _numbers(agreement_r),
        "expected_disengaged": [state.get("expected_disengaged") for state in states],
        "latent_flag": [state.get("flag_review") for state in states],
    }
    return columns


def participants_frame(*, study: Study, status: str | None = None) -> pd.DataFrame:
    """`participants_table` as a DataFrame with the columns of PARTICIPANT_COLUMNS (the CSV download)."""
    frame = pd.DataFrame(participants_table(study=study, status=status), columns=list(PARTICIPANT_COLUMNS))
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def annotator_trials(*, annotator: Annotator) -> list[Assignment]:
    """The annotator's trials in the order they were shown, each with its prompt and rating (one query);
    `trial.answer` is the rating or None, `trial.rt_s` its response time in seconds (browser, else server)."""
    trials = list(
        Assignment.objects.filter(annotator=annotator).select_related("prompt", "rating").order_by("position")
    )
    for trial in trials:
        try:
            trial.answer = trial.rating
        except Assignment.rating.RelatedObjectDoesNotExist:
            trial.answer = None
        ms = None if trial.answer is None else trial.answer.rt_ms
        if ms is None and trial.answer is not None:
            ms = trial.answer.server_rt_ms
        trial.rt_s = None if ms is None else ms / 1000
    return trials


# ----------------------------------------------------------------------------- recruitment-id lookup

LOOKUP_MAX_IDS = 5000
_SEPARATORS = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class LookupRow:
    recruitment_id: str
    pseudonym: str
    status: str
    verdict: str


VERDICTS = {
    "approve": "completed the study",
    "reject": "excluded for failing attention checks",
    "review": "excluded by a researcher: decide by hand",
    "pending": "still taking part",
    "none": "returned or declined the study: nothing to review",
    "unknown": "no annotator of this study has this id",
}


def _verdict(annotator: Annotator | None) -> str:
    if annotator is None:
        return "unknown"
    S = Annotator.Status
    if annotator.status == S.COMPLETED:
        return "approve"
    if annotator.status == S.EXCLUDED:
        return "reject" if annotator.exclusion == Annotator.Exclusion.ATTENTION else "review"
    if annotator.status in (S.RETURNED, S.DECLINED):
        return "none"
    return "pending"


def recruitment_ids_parse(text: str) -> list[str]:
    """The ids in pasted text (one a line as the platform lists them; commas, semicolons and spaces
    also separate), in order, each once. Refuses, naming the line, what cannot be a recruitment id."""
    text = str(text or "")
    ids: list[str] = []
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        for token in _SEPARATORS.split(line.strip()):
            if not token:
                continue
            if not PLATFORM_ID.match(token):
                problems.append({"line": number, "message": "not a recruitment id (letters, digits, _ and -, ≤ 64)"})
                continue
            ids.append(token)
    if problems:
        shown = "; ".join(f"line {p['line']}: {p['message']}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ApplicationError(f"Some lines are not recruitment ids: {shown}{more}.", extra={"problems": problems})
    unique = list(dict.fromkeys(ids))
    if not unique:
        raise ApplicationError("Paste at least one recruitment id, one a line.", extra={"field": "ids"})
    if len(unique) > LOOKUP_MAX_IDS:
        raise ApplicationError(f"{len(unique)} ids pasted; at most {LOOKUP_MAX_IDS} at a time.", extra={"field": "ids"})
    return unique


def recruitment_lookup(*, study: Study, ids: list[str]) -> list[LookupRow]:
    """Each pasted id with its annotator's pseudonym, status and review verdict, found through the
    keyed hash used at entry (one query). The ids are neither stored nor logged here."""
    hashes = {recruitment_id: recruitment_hash(recruitment_id) for recruitment_id in ids}
    found = {
        a.recruitment_hash: a
        for a in Annotator.objects.filter(study=study, recruitment_hash__in=set(hashes.values())).only(
            "pseudonym", "status", "exclusion", "recruitment_hash"
        )
    }
    rows = []
    for recruitment_id, digest in hashes.items():
        annotator = found.get(digest)
        rows.append(
            LookupRow(
                recruitment_id=recruitment_id,
                pseudonym=annotator.pseudonym if annotator else "",
                status=annotator.status if annotator else "",
                verdict=_verdict(annotator),
            )
        )
    return rows
