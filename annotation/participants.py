"""Reads for the participants page, its CSV and the annotators API: one row per annotator with the
figures a researcher reviews them by, one annotator's trials, and the recruitment-id lookup.

`participants_table` reads the whole study in four queries whatever its size (annotators, their
trials counted in the database, the prompt ratings, the questionnaires done) and computes the rest with
pandas, so the table, the CSV download and the API share one definition of every column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.db.models import Count, Q

from config.errors import ApplicationError

from .latent import latent_by_pseudonym, latent_latest
from .models import Annotator, Assignment, Study, SurveyResponse
from .selectors import rating_rows
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


def _none_if_nan(value):
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def _group_medians(group: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Median of `values` (NaN left out) per group 0..k-1; NaN for a group with none."""
    valid = ~np.isnan(values)
    g, v = group[valid], values[valid]
    order = np.lexsort((v, g))
    g, v = g[order], v[order]
    counts = np.bincount(g, minlength=k)
    starts = np.cumsum(counts) - counts
    lo = np.minimum(starts + (counts - 1) // 2, max(len(v) - 1, 0))
    hi = np.minimum(starts + counts // 2, max(len(v) - 1, 0))
    if not len(v):
        return np.full(k, np.nan)
    return np.where(counts > 0, (v[lo] + v[hi]) / 2.0, np.nan)


def _rating_figures(ratings: pd.DataFrame, excluded_ids: set[int], min_seconds: float) -> dict[int, dict]:
    """Per annotator id, from the rows of `rating_rows`: n_rated (prompt ratings), median_rt_s, too_fast,
    straight_lining and agreement_r (NaN where undefined). Vectorised over the whole study (numpy, no
    Python loop per row or per annotator): the participants page of a 100 × 150 study spends a few ms here."""
    if not len(ratings):
        return {}
    who = ratings["annotator_id"].to_numpy(dtype=np.int64)
    order = np.lexsort((ratings["trial"].to_numpy(dtype=np.int64), who))  # trial order within annotator
    who = who[order]
    prompt = ratings["prompt_id"].to_numpy(dtype=np.int64)[order]
    value = ratings["rating"].to_numpy(dtype=float)[order]
    unsure = ratings["unsure"].to_numpy(dtype=bool)[order]
    rt = ratings["rt_ms"].to_numpy(dtype=float, na_value=np.nan)[order]
    server_rt = ratings["server_rt_ms"].to_numpy(dtype=float, na_value=np.nan)[order]
    ids, group = np.unique(who, return_inverse=True)
    k = len(ids)
    n_rated = np.bincount(group, minlength=k)

    # The browser's active time, else the server's shown-to-saved time; NaN where neither was measured
    # (imported ratings), which neither counts as too fast nor enters the median.
    seconds = np.where(np.isnan(rt), server_rt, rt) / 1000.0
    median_rt = _group_medians(group, seconds, k)
    too_fast = np.bincount(group, weights=seconds < min_seconds, minlength=k)

    # The same answer as the previous trial of the same annotator: equal values, or Unsure twice.
    same_who = np.r_[False, who[1:] == who[:-1]]
    prev_unsure = np.r_[False, unsure[:-1]]
    prev_value = np.r_[np.nan, value[:-1]]
    identical = same_who & ((unsure & prev_unsure) | (~unsure & ~prev_unsure & (value == prev_value)))
    pairs = np.bincount(group, weights=same_who, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        straight = np.where(pairs > 0, np.bincount(group, weights=identical, minlength=k) / pairs, np.nan)

    # Leave-one-out consensus from the annotators not excluded (an excluded one is compared to all of them).
    rated = ~unsure
    included = rated & ~np.isin(who, np.fromiter(excluded_ids, dtype=np.int64, count=len(excluded_ids)))
    _, item = np.unique(prompt, return_inverse=True)
    own = np.where(included, value, 0.0)
    total = np.bincount(item, weights=own)[item]
    n_others = np.bincount(item, weights=included)[item] - included
    with np.errstate(invalid="ignore", divide="ignore"):
        others = np.where(n_others > 0, (total - own) / n_others, np.nan)
    use = rated & ~np.isnan(others)
    g, x, m = group[use], value[use], others[use]
    n = np.bincount(g, minlength=k).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        xd = x - (np.bincount(g, weights=x, minlength=k) / n)[g]
        md = m - (np.bincount(g, weights=m, minlength=k) / n)[g]
        sxy = np.bincount(g, weights=xd * md, minlength=k)
        sxx = np.bincount(g, weights=xd * xd, minlength=k)
        syy = np.bincount(g, weights=md * md, minlength=k)
        # Variance zero up to rounding (every rating the same) leaves r undefined, not ±1 of noise.
        ok = (n >= 3) & (sxx > 1e-9 * n) & (syy > 1e-9 * n)
        agreement = np.where(ok, np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0), np.nan)
    return {
        int(pk): {
            "median_rt_s": median_rt[i],
            "too_fast": too_fast[i],
            "straight_lining": straight[i],
            "agreement_r": agreement[i],
            "n_rated": n_rated[i],
        }
        for i, pk in enumerate(ids)
    }


_UNSET = object()


def participants_table(*, study: Study, status: str | None = None, latent_job=_UNSET) -> list[dict]:
    """One dict per annotator of the study (in arrival order), with the keys of PARTICIPANT_COLUMNS.

    Five queries, whatever the number of annotators and ratings (the fifth reads the latest latent-state
    job's per-annotator summary; a caller that has that job already passes it as `latent_job`), and
    none of the first four while the study has not changed: the rows are cached per study version
    (annotation.study_cache). `status` keeps one status only.
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
        lambda: _by_column(_participants_rows(study, latent_job)),
    )
    if status:
        keep = [i for i, value in enumerate(columns["status"]) if value == status]
        columns = {name: [values[i] for i in keep] for name, values in columns.items()}
    return columns


def _by_column(rows: list[dict]) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name in PARTICIPANT_COLUMNS}


def _participants_rows(study: Study, latent_job) -> list[dict]:
    people = list(
        Annotator.objects.filter(study=study)
        .order_by("id")
        .values_list("id", "pseudonym", "status", "exclusion_reason", "consented_at", "completed_at", "last_seen_at")
    )
    trials = {
        row["annotator_id"]: row
        for row in Assignment.objects.filter(annotator__study=study)
        .values("annotator_id")
        .annotate(
            assigned=Count("id"),
            # Answered checks: an answer decides passed or failed. Answered prompts are counted from the
            # ratings below: counting ratings here would join 1.5 million of them to their trials again.
            checks_answered=Count("id", filter=Q(kind=Assignment.Kind.ATTENTION, check_passed__isnull=False)),
            checks_passed=Count("id", filter=Q(kind=Assignment.Kind.ATTENTION, check_passed=True)),
            checks_failed=Count("id", filter=Q(kind=Assignment.Kind.ATTENTION, check_passed=False)),
        )
        .order_by()
    }
    required = list(dict.fromkeys(study.instruments or []))
    surveys_done: dict[int, int] = {}
    if required:
        surveys_done = dict(
            SurveyResponse.objects.filter(annotator__study=study, instrument__key__in=required)
            .values("annotator_id")
            .annotate(n=Count("instrument__key", distinct=True))
            .order_by()
            .values_list("annotator_id", "n")
        )
    excluded = {pk for pk, _, st, *_ in people if st == Annotator.Status.EXCLUDED}
    figures = _rating_figures(rating_rows(study=study), excluded, study.min_seconds_per_rating)
    latent = latent_by_pseudonym(latent_job)

    rows = []
    for pk, pseudonym, st, reason, consented_at, completed_at, last_seen_at in people:
        counts = trials.get(pk, {})
        mine = figures.get(pk, {})
        states = latent.get(pseudonym, {})
        rows.append(
            {
                "pseudonym": pseudonym,
                "status": st,
                "exclusion_reason": reason if st == Annotator.Status.EXCLUDED else "",
                "answered": int(mine.get("n_rated", 0)) + counts.get("checks_answered", 0),
                "assigned": counts.get("assigned", 0),
                "time_on_task_s": _seconds(consented_at, completed_at or last_seen_at),
                "median_rt_s": _none_if_nan(mine.get("median_rt_s")),
                "checks_passed": counts.get("checks_passed", 0),
                "checks_failed": counts.get("checks_failed", 0),
                "too_fast": int(mine.get("too_fast") or 0),
                "straight_lining": _none_if_nan(mine.get("straight_lining")),
                "surveys_done": surveys_done.get(pk, 0),
                "surveys_required": len(required),
                "agreement_r": _none_if_nan(mine.get("agreement_r")),
                "expected_disengaged": states.get("expected_disengaged"),
                "latent_flag": states.get("flag_review"),
            }
        )
    return rows


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
