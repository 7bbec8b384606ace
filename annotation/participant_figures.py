"""The participants table's figures per annotator, kept up to date by annotator rather than recomputed from
every rating after each write.

After a new rating, the page of a 10,000 × 150 study used to read all 1.5 million ratings and trials
again (about 6 s). Most of its figures are an annotator's own (trials, checks, response times,
straight-lining, questionnaires): a rating changes them for its annotator only. The exception is the
agreement with the leave-one-out consensus, which a rating moves for everyone who rated that prompt;
it is recomputed for the whole study on each refresh, but from a matrix of the ratings kept in the cache
(annotator × prompt, single precision where that holds the values exactly: 6 MB for 10,000 × 150), with
numpy row and column sums, not from the database. A partial design costs the same matrix as a full one
(annotators × prompts cells, rated or not).

`StudyFigures` (that state) lives in the cache under the study, whatever its version. A refresh
compares each annotator's row with the one the state was built from: every write that changes an
annotator's ratings, trials or questionnaires through the product also writes the annotator's row in the
same transaction (`last_seen_at` moves with every answer, revision, questionnaire and start; releasing
and excluding change the status), so an annotator whose row is unchanged has unchanged figures. Only the
changed annotators are read again. Writes that bypass the annotator's row (an import, a restore, a
deletion, the admin editing a rating, a trial saved through the ORM) bump the study's ratings version
(`study_cache.study_changed(..., ratings=True)`), which the state records: a new ratings version, or
new study settings, rebuild it from the whole study.

The annotator's row is read before their ratings, and a rating commits together with its annotator's
row: a refresh may read a rating newer than the row it records, never an older one, and the newer row
makes the next refresh read that annotator again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db.models import Count, Q

from .models import Annotator, Assignment, Study, SurveyResponse
from .selectors import rating_rows
from .study_cache import ratings_version, settings_stamp

logger = logging.getLogger(__name__)

# The state is checked against the database on every use; what that check cannot see is a write that
# bypassed the annotator's row while the cache was unreachable (its ratings-version bump lost), so a state
# is rebuilt from the whole study once it is this old, however often it was refreshed meanwhile (as cached
# pages expire after study_cache.ENTRY_SECONDS, only later: a busy study pays a rebuild an hour).
STATE_SECONDS = 60 * 60
# The layout of StudyFigures: a state kept by code with another layout is never read.
STATE_FORMAT = 2
# Re-reading more annotators than this share of the study one by one costs more than reading it whole.
REREAD_SHARE = 0.25
TRIAL_COLUMNS = ("assigned", "checks_answered", "checks_passed", "checks_failed")
OWN_COLUMNS = ("n_rated", "median_rt_s", "too_fast", "straight_lining")
COLUMNS = (*TRIAL_COLUMNS, "surveys_done", *OWN_COLUMNS)


def _state_key(study_id: int) -> str:
    return f"participant-figures:v{STATE_FORMAT}:{int(study_id)}"


@dataclass
class StudyFigures:
    """The per-annotator figures of one study and what they were computed from.

    `ids` are the annotators' ids in ascending order; `marks` each one's row (status, last answer,
    completion) when their figures were read; `columns` the COLUMNS, one value per annotator.
    `values`: the ratings, one row per annotator (as `ids`) and one column per prompt (as `prompts`,
    ascending ids); NaN for Unsure and for a prompt not rated; float32 when that holds them exactly.
    """

    basis: tuple
    built_at: float  # time.time() of the last build from the whole study
    ids: np.ndarray
    marks: list
    columns: dict[str, np.ndarray]
    prompts: np.ndarray
    values: np.ndarray
    reread: int = field(default=0, compare=False)  # annotators read again by the last refresh (for tests)
    layout: int = STATE_FORMAT  # a state unpickled from another layout has another value, or none


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


def own_figures(ratings: pd.DataFrame, ids: np.ndarray, min_seconds: float) -> dict[str, np.ndarray]:
    """OWN_COLUMNS for the annotators `ids` (ascending), from their rows of `rating_rows`: n_rated (prompt
    ratings), median_rt_s, too_fast, straight_lining (NaN where undefined). Vectorised over all of them."""
    k = len(ids)
    who = np.searchsorted(ids, ratings["annotator_id"].to_numpy(dtype=np.int64))
    order = np.lexsort((ratings["trial"].to_numpy(dtype=np.int64), who))  # trial order within annotator
    group = who[order]
    value = ratings["rating"].to_numpy(dtype=float)[order]
    unsure = ratings["unsure"].to_numpy(dtype=bool)[order]
    rt = ratings["rt_ms"].to_numpy(dtype=float, na_value=np.nan)[order]
    server_rt = ratings["server_rt_ms"].to_numpy(dtype=float, na_value=np.nan)[order]
    n_rated = np.bincount(group, minlength=k).astype(float)

    # The browser's active time, else the server's shown-to-saved time; NaN where neither was measured
    # (imported ratings), which neither counts as too fast nor enters the median.
    seconds = np.where(np.isnan(rt), server_rt, rt) / 1000.0
    median_rt = _group_medians(group, seconds, k)
    too_fast = np.bincount(group, weights=seconds < min_seconds, minlength=k)

    # The same answer as the previous trial of the same annotator: equal values, or Unsure twice.
    same_who = np.r_[False, group[1:] == group[:-1]]
    prev_unsure = np.r_[False, unsure[:-1]]
    prev_value = np.r_[np.nan, value[:-1]]
    identical = same_who & ((unsure & prev_unsure) | (~unsure & ~prev_unsure & (value == prev_value)))
    pairs = np.bincount(group, weights=same_who, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        straight = np.where(pairs > 0, np.bincount(group, weights=identical, minlength=k) / pairs, np.nan)
    return {"n_rated": n_rated, "median_rt_s": median_rt, "too_fast": too_fast, "straight_lining": straight}


def agreement(values: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Per annotator (row of `values`, annotators × prompts, NaN where not rated or Unsure), the Pearson
    correlation over the prompts they rated between their ratings and the mean of the other non-excluded
    annotators' ratings of each prompt (an excluded annotator is compared with all of them). NaN with fewer
    than 3 such prompts or no variance. Row and column sums: no sort, no loop."""
    k = len(excluded)
    if not values.size:
        return np.full(k, np.nan)
    x = values.astype(float)
    rated = ~np.isnan(x)
    included = rated & ~excluded[:, None]
    own = np.where(included, x, 0.0)
    n_others = included.sum(axis=0)[None, :] - included
    use = rated & (n_others > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        others = np.where(use, (own.sum(axis=0)[None, :] - own) / n_others, 0.0)
        x = np.where(use, x, 0.0)
        n = use.sum(axis=1).astype(float)
        xd = np.where(use, x - (x.sum(axis=1) / n)[:, None], 0.0)
        md = np.where(use, others - (others.sum(axis=1) / n)[:, None], 0.0)
        sxy = np.einsum("ij,ij->i", xd, md)
        sxx = np.einsum("ij,ij->i", xd, xd)
        syy = np.einsum("ij,ij->i", md, md)
        # Variance zero up to rounding (every rating the same) leaves r undefined, not ±1 of noise.
        ok = (n >= 3) & (sxx > 1e-9 * n) & (syy > 1e-9 * n)
        return np.where(ok, np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0), np.nan)


def positions_in(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each of `wanted` in the ascending `ids`, whether it is there at all): where it is not,
    its position is meaningless."""
    if not len(ids):
        return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
    at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return at, ids[at] == wanted


def _trial_counts(study: Study, ids: list[int] | None) -> dict[int, dict]:
    trials = Assignment.objects.filter(annotator__study=study)
    if ids is not None:
        trials = trials.filter(annotator_id__in=ids)
    return {
        row["annotator_id"]: row
        for row in trials.values("annotator_id")
        .annotate(
            assigned=Count("id"),
            # Answered checks: an answer decides passed or failed. Answered prompts are counted from the
            # ratings: counting ratings here would join 1.5 million of them to their trials again.
            checks_answered=Count("id", filter=Q(kind=Assignment.Kind.ATTENTION, check_passed__isnull=False)),
            checks_passed=Count("id", filter=Q(kind=Assignment.Kind.ATTENTION, check_passed=True)),
            checks_failed=Count("id", filter=Q(kind=Assignment.Kind.ATTENTION, check_passed=False)),
        )
        .order_by()
    }


def _surveys_done(study: Study, required: list[str], ids: list[int] | None) -> dict[int, int]:
    if not required:
        return {}
    responses = SurveyResponse.objects.filter(annotator__study=study, instrument__key__in=required)
    if ids is not None:
        responses = responses.filter(annotator_id__in=ids)
    return dict(
        responses.values("annotator_id")
        .annotate(n=Count("instrument__key", distinct=True))
        .order_by()
        .values_list("annotator_id", "n")
    )


def _read(study: Study, ids: np.ndarray, only: list[int] | None) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The COLUMNS of the annotators `ids` (all of them, or the positions of `only`'s ids) read from the
    database, and their prompt ratings; `only=None` reads the whole study in three queries."""
    target = ids if only is None else np.asarray(only, dtype=np.int64)
    ratings = rating_rows(study=study, annotator_ids=only)
    if only is None:  # leave out annotators who arrived after `ids` was read
        _, known = positions_in(target, ratings["annotator_id"].to_numpy(dtype=np.int64))
        if not known.all():
            ratings = ratings[known].reset_index(drop=True)
    columns = own_figures(ratings, target, study.min_seconds_per_rating)
    trials = _trial_counts(study, only)
    for name in TRIAL_COLUMNS:
        columns[name] = np.array([trials.get(int(pk), {}).get(name, 0) for pk in target], dtype=np.int64)
    done = _surveys_done(study, list(dict.fromkeys(study.instruments or [])), only)
    columns["surveys_done"] = np.array([done.get(int(pk), 0) for pk in target], dtype=np.int64)
    return columns, ratings


def _basis(study: Study) -> tuple:
    return (ratings_version(study.pk), settings_stamp(study))


def _matrix(ratings: pd.DataFrame, ids: np.ndarray, prompts: np.ndarray, into=None) -> np.ndarray:
    """`ratings` (of annotators in `ids`, prompts in `prompts`) written into an annotators × prompts matrix
    (a new one full of NaN, or `into`)."""
    if into is None:
        into = np.full((len(ids), len(prompts)), np.nan)
    rows = np.searchsorted(ids, ratings["annotator_id"].to_numpy(dtype=np.int64))
    cols = np.searchsorted(prompts, ratings["prompt_id"].to_numpy(dtype=np.int64))
    value = np.where(ratings["unsure"].to_numpy(dtype=bool), np.nan, ratings["rating"].to_numpy(dtype=float))
    into[rows, cols] = value
    return into


def _compact(values: np.ndarray) -> np.ndarray:
    """`values` in single precision when that holds every one of them exactly (ratings on a 0–100 scale do)."""
    small = values.astype(np.float32)
    return small if np.array_equal(small, values, equal_nan=True) else values


def _build(study: Study, basis: tuple, ids: np.ndarray, marks: list) -> StudyFigures:
    columns, ratings = _read(study, ids, None)
    prompts = np.unique(ratings["prompt_id"].to_numpy(dtype=np.int64))
    return StudyFigures(
        basis=basis,
        built_at=time.time(),
        ids=ids,
        marks=marks,
        columns=columns,
        prompts=prompts,
        values=_compact(_matrix(ratings, ids, prompts)),
        reread=len(ids),
    )


def _refresh(study: Study, state: StudyFigures, ids: np.ndarray, marks: list) -> StudyFigures:
    """`state` brought up to `ids` and `marks`: the annotators who are new or whose row changed read again,
    those gone dropped, everyone else's figures and ratings kept."""
    old = {int(pk): mark for pk, mark in zip(state.ids, state.marks)}
    changed = [int(pk) for pk, mark in zip(ids, marks) if old.get(int(pk)) != mark]
    if len(changed) > REREAD_SHARE * len(ids):
        return _build(study, state.basis, ids, marks)
    fresh, ratings = _read(study, ids, changed)
    at = np.searchsorted(ids, np.asarray(changed, dtype=np.int64))
    prompts = np.union1d(state.prompts, ratings["prompt_id"].to_numpy(dtype=np.int64))

    # The rows kept as they were: every row but the changed ones, where the annotators are the same (a
    # rating, a revision); else the rows of the annotators still here, moved to their new positions.
    same_people = np.array_equal(ids, state.ids)
    same_prompts = len(prompts) == len(state.prompts)
    if same_people and same_prompts:
        values = state.values if state.values.dtype == np.float64 else state.values.astype(np.float64)
        values[at] = np.nan
        columns = {name: state.columns[name].astype(fresh[name].dtype, copy=True) for name in COLUMNS}
    else:
        where, kept = positions_in(ids, state.ids)
        values = np.full((len(ids), len(prompts)), np.nan)
        values[np.ix_(where[kept], np.searchsorted(prompts, state.prompts))] = state.values[kept]
        values[at] = np.nan
        columns = {}
        for name in COLUMNS:
            columns[name] = np.zeros(len(ids), dtype=fresh[name].dtype)
            columns[name][where[kept]] = state.columns[name][kept]
    for name in COLUMNS:
        columns[name][at] = fresh[name]
    return StudyFigures(
        basis=state.basis,
        built_at=state.built_at,
        ids=ids,
        marks=marks,
        columns=columns,
        prompts=prompts,
        values=_compact(_matrix(ratings, ids, prompts, into=values)),
        reread=len(changed),
    )


def study_figures(study: Study, people: list[tuple]) -> tuple[StudyFigures, np.ndarray]:
    """The figures of every annotator in `people` ((id, status, last_seen_at, completed_at) rows in
    ascending id order, read just now), and their agreement_r: refreshed from the cached state where it is
    still valid, built from the whole study where not. Never stale: see the module's docstring."""
    ids = np.fromiter((p[0] for p in people), dtype=np.int64, count=len(people))
    marks = [tuple(p[1:]) for p in people]
    try:
        basis = _basis(study)
        state = cache.get(_state_key(study.pk))
    except Exception:
        logger.warning("cache unavailable: participants of study %s read whole", study.pk, exc_info=True)
        basis = state = None
    usable = (
        isinstance(state, StudyFigures)
        and vars(state).get("layout") == STATE_FORMAT  # the instance's own (a class default would pass)
        and state.basis == basis
        and time.time() - state.built_at < STATE_SECONDS
    )
    if usable:
        state = _refresh(study, state, ids, marks)
    else:
        state = _build(study, basis, ids, marks)
    if basis is not None:
        try:
            cache.set(_state_key(study.pk), state, max(1, int(state.built_at + STATE_SECONDS - time.time())))
        except Exception:
            logger.warning("cache unavailable: participants of study %s not kept", study.pk, exc_info=True)
    excluded = np.array([p[1] == Annotator.Status.EXCLUDED for p in people], dtype=bool)
    return state, agreement(state.values, excluded)
