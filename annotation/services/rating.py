"""Saving a rating: validated, idempotent, and moving the annotator on (or out)."""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from config.errors import ApplicationError

from ..models import Annotator, Assignment, Prompt, Rating, Study
from ..rows import columns_sql, convert, fetchone, instance
from ..study_cache import study_changed
from .assignment import assignment_from_row
from .recruitment import rate_parse

logger = logging.getLogger(__name__)

MAX_RT_MS = 24 * 3600 * 1000
DECIMAL = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?$")
# The largest primary key a database column holds: a larger trial id in the URL is no trial of anyone's
# (SQLite cannot even be asked about it).
MAX_ID = 2**63 - 1


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class SubmitOutcome:
    rating: Rating
    created: bool
    too_fast: bool = False
    completed: bool = False
    excluded: bool = False
    progress: tuple[int, int] | None = None  # (answered, total) after this submission, when known
    # The annotator's next trial (already marked shown), None when there is none, UNKNOWN when not looked up.
    next_assignment: object = UNKNOWN
    check_failed: bool = False  # this new answer failed an attention check
    failed_checks: int | None = None  # the annotator's failed checks after it, when known


def rating_rate_limit() -> tuple[int, int]:
    """settings.RATING_RATE_LIMIT as (answers, seconds)."""
    return _rate_limit(settings.RATING_RATE_LIMIT)


@functools.lru_cache(maxsize=8)
def _rate_limit(text: str) -> tuple[int, int]:
    return rate_parse(text, "RATING_RATE_LIMIT")


def _rate_refusal(retry_after: float) -> ApplicationError:
    seconds = max(1, math.ceil(retry_after))
    error = ApplicationError(
        f"You are submitting faster than anyone can read. Please wait {seconds} seconds and submit again.",
        extra={"retry_after": seconds},
        status_code=429,
    )
    return error


def _rate_check(annotator_id: int, now) -> None:
    """Refuse (429) an answer beyond settings.RATING_RATE_LIMIT: at most that many answers stored in the
    trailing period. Counted from the annotator's own trials (a trial is answered when its rating is
    stored), so the limit needs no cache and holds across every web process."""
    limit, period = rating_rate_limit()
    since = now - timedelta(seconds=period)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT answered_at FROM {_table(Assignment)} WHERE annotator_id = %s AND answered_at > %s "
            "ORDER BY answered_at DESC LIMIT 1 OFFSET %s",
            [annotator_id, _dt(since), limit - 1],
        )
        row = cursor.fetchone()
    if row is not None:  # `limit` answers in the period already: wait until the oldest of them leaves it
        oldest_counted = convert(Assignment, "answered_at", row[0])
        raise _rate_refusal((oldest_counted - since).total_seconds())


def rating_value_parse(*, study: Study, raw: str | None, unsure: bool) -> float | None:
    """The rating as a number on the study's scale, or None for Unsure; ApplicationError otherwise."""
    low, high = study.scale_min, study.scale_max
    if unsure:
        if not study.allow_unsure:
            raise ApplicationError("This study does not allow Unsure.", extra={"field": "unsure"})
        return None
    text = (raw or "").strip()
    if not text:
        raise ApplicationError(f"Choose a rating from {low} to {high}, or mark Unsure.", extra={"field": "rating"})
    value = _number(text)
    if value is None:
        raise ApplicationError(f"The rating must be a number from {low} to {high}.", extra={"field": "rating"})
    if value < low or value > high:
        raise ApplicationError(f"The rating must be between {low} and {high}.", extra={"field": "rating"})
    step = study.scale_step or 1
    if value != int(value) or (int(value) - low) % step:
        message = (
            "The rating must be a whole number."
            if step == 1
            else f"The rating must be {low} to {high} in steps of {step}."
        )
        raise ApplicationError(message, extra={"field": "rating"})
    return value


def _number(text) -> float | None:
    """A decimal number as a form sends one ("40", "40.0", "4e1"), else None. Python's float() also
    takes "1_0", "nan", "infinity" and 400-digit numbers (which overflow int())."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not DECIMAL.match(text.strip()):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _rt(raw) -> int | None:
    """The browser's response time in ms; None for anything that is not a time (nothing to refuse a
    rating for: the server's own time is recorded as well)."""
    value = _number(raw)
    return int(value) if value is not None and 0 <= value <= MAX_RT_MS else None


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _dt(value):
    return connection.ops.adapt_datetimefield_value(value)


def _locked_trial(assignment_id: int, annotator_id: int):
    """The trial (locked until the transaction ends on PostgreSQL), its rating if any, and the annotator's
    status; None if the trial is not this annotator's."""
    lock = " FOR UPDATE OF a" if connection.features.has_select_for_update_of else ""
    sql = (
        f"SELECT a.kind, a.prompt_id, a.check_spec, a.shown_at, n.status, {columns_sql(Rating, 'r')} "
        f"FROM {_table(Assignment)} a JOIN {_table(Annotator)} n ON n.id = a.annotator_id "
        f"LEFT JOIN {_table(Rating)} r ON r.assignment_id = a.id WHERE a.id = %s AND a.annotator_id = %s{lock}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [assignment_id, annotator_id])
        return cursor.fetchone()


def _rating_twin(assignment_id: int) -> Rating | None:
    return Rating.objects.filter(assignment_id=assignment_id).first()


def rating_submit(
    *,
    annotator: Annotator,
    assignment_id: int,
    raw_value: str | None,
    unsure: bool,
    rt_ms=None,
    idempotency_key: str | None = None,
) -> SubmitOutcome:
    """Store the rating of one trial exactly once. A repeated submission returns the first rating.

    On PostgreSQL the usual case (a new answer to one's own current trial) is one statement, which is
    atomic on its own (_submit_in_one_statement); anything else, and every submission on SQLite, takes
    the general path: a transaction in which the trial's row is locked, so two submissions of one trial
    are serialised. The database's unique constraints are the last line (a twin that got there first is
    returned instead). Written in SQL (annotation/rows.py says why).
    """
    submission = {
        "annotator": annotator,
        "assignment_id": assignment_id,
        "raw_value": raw_value,
        "unsure": unsure,
        "rt_ms": rt_ms,
        "idempotency_key": idempotency_key,
    }
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        outcome = _submit_in_one_statement(**submission)
        if outcome is not None:
            # Committed: one statement. An annotator excluded by the attention checks changes who the pages count.
            study_changed(annotator.study_id, prompt_id=outcome.rating.prompt_id, people=outcome.excluded)
            return outcome
    try:
        with transaction.atomic():
            outcome = _rating_submit(**submission)
            if outcome.created:
                study_changed(annotator.study_id, prompt_id=outcome.rating.prompt_id, people=outcome.excluded)
            return outcome
    except IntegrityError:  # a concurrent twin got there first, or the key was used for another trial
        twin = _rating_twin(assignment_id)
        if twin is None or twin.annotator_id != annotator.pk:
            raise ApplicationError("This submission was already used for another trial.", status_code=409) from None
        return SubmitOutcome(rating=twin, created=False)


def _rating_submit(*, annotator, assignment_id, raw_value, unsure, rt_ms, idempotency_key) -> SubmitOutcome:
    try:
        assignment_id = int(assignment_id)
    except (TypeError, ValueError):
        raise ApplicationError("No such trial.", status_code=404) from None
    if not 0 < assignment_id <= MAX_ID:
        raise ApplicationError("No such trial.", status_code=404)
    row = _locked_trial(assignment_id, annotator.pk)
    if row is None:  # someone else's trial, or no such trial: the same answer for both
        raise ApplicationError("No such trial.", status_code=404)
    kind, prompt_id, check_spec, shown_at, status, *rating_values = row
    if rating_values[0] is not None:
        return SubmitOutcome(rating=instance(Rating, rating_values), created=False)
    if status != Annotator.Status.RATING:
        raise ApplicationError("Ratings are not being collected from you now.", status_code=409)
    now = timezone.now()
    _rate_check(annotator.pk, now)
    study = annotator.study
    value = rating_value_parse(study=study, raw=raw_value, unsure=unsure)
    shown_at = convert(Assignment, "shown_at", shown_at)

    server_rt = int((now - shown_at).total_seconds() * 1000) if shown_at else None
    server_rt = server_rt if server_rt is not None and 0 <= server_rt <= MAX_RT_MS else None
    client_rt = _rt(rt_ms)
    key = (idempotency_key or "").strip()[:64] or None
    if key is not None and "\x00" in key:  # never from our page; PostgreSQL cannot store it
        raise ApplicationError("This submission is malformed. Please submit your rating again.")
    check_passed = None
    if kind == Assignment.Kind.ATTENTION:
        expected = convert(Assignment, "check_spec", check_spec)["expected"]
        check_passed = value is not None and abs(value - expected) <= study.attention_tolerance

    values = [assignment_id, annotator.pk, prompt_id, value, value is None, client_rt, server_rt, key, _dt(now)]
    rating_id, total, done, failures = _write(values, now, check_passed, assignment_id, annotator.pk)
    excluded = (
        kind == Assignment.Kind.ATTENTION
        and bool(study.attention_max_failures)
        and failures >= study.attention_max_failures
    )
    completed = not excluded and done >= total
    if excluded or completed:
        _annotator_finish(annotator.pk, now, excluded=excluded, failures=failures)

    return _stored(
        study=study,
        stored=(rating_id, assignment_id, annotator.pk, prompt_id, value, client_rt, server_rt, key, now),
        kind=kind,
        completed=completed,
        excluded=excluded,
        progress=(int(done), int(total)),
        check_passed=check_passed,
        failures=failures,
    )


def _stored(
    *, study, stored, kind, completed, excluded, progress, check_passed, failures, upcoming=UNKNOWN
) -> SubmitOutcome:
    """The outcome of a new rating, from what was written: (id, trial, annotator, prompt, value, browser's
    time, server's time, idempotency key, time)."""
    rating_id, assignment_id, annotator_id, prompt_id, value, client_rt, server_rt, key, now = stored
    rating = Rating(
        id=rating_id,
        assignment_id=assignment_id,
        annotator_id=annotator_id,
        prompt_id=prompt_id,
        value=value,
        unsure=value is None,
        rt_ms=client_rt,
        server_rt_ms=server_rt,
        idempotency_key=key,
        created_at=now,
    )
    rating._state.adding = False
    seconds = (client_rt if client_rt is not None else server_rt or 0) / 1000
    return SubmitOutcome(
        rating=rating,
        created=True,
        too_fast=kind == Assignment.Kind.PROMPT and seconds < study.min_seconds_per_rating,
        completed=completed,
        excluded=bool(excluded),
        progress=progress,
        next_assignment=upcoming,
        check_failed=check_passed is False,
        failed_checks=int(failures),
    )


INSERT_COLUMNS = (
    "assignment_id, annotator_id, prompt_id, value, unsure, rt_ms, server_rt_ms, idempotency_key, created_at"
)


def _write(values, now, check_passed, assignment_id, annotator_id) -> tuple[int, int, int, int]:
    """Insert the rating, mark the trial answered, note the annotator's step; (rating id, trials, answered,
    failed checks) after it. A statement each (SQLite)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_table(Rating)} ({INSERT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            values,
        )
        rating_id = cursor.fetchone()[0]
        cursor.execute(
            f"UPDATE {_table(Assignment)} SET answered_at = %s, check_passed = %s WHERE id = %s",
            [_dt(now), check_passed, assignment_id],
        )
        cursor.execute(f"UPDATE {_table(Annotator)} SET last_seen_at = %s WHERE id = %s", [_dt(now), annotator_id])
        # A trial is answered exactly when its rating exists (both are written here, in one transaction),
        # so the annotator's own trials alone give the progress, without a join.
        cursor.execute(
            f"SELECT COUNT(*), COUNT(answered_at), SUM(CASE WHEN check_passed = %s THEN 1 ELSE 0 END) "
            f"FROM {_table(Assignment)} WHERE annotator_id = %s",
            [False, annotator_id],
        )
        total, done, failures = cursor.fetchone()
    return rating_id, int(total), int(done), int(failures or 0)


def _submit_in_one_statement(*, annotator, assignment_id, raw_value, unsure, rt_ms, idempotency_key):
    """PostgreSQL, outside any transaction: store a new answer to the annotator's own trial in one statement,
    or return None for the general path to decide (and explain) everything else: a repeat, someone else's
    trial, an annotator no longer rating or over the rate limit, an invalid value or key.

    The statement checks the trial, the annotator's status and the rate limit (answers stored in the
    trailing period, counted from the annotator's trials, as _rate_check does), inserts the rating
    (ON CONFLICT DO NOTHING: a twin that got there first leaves nothing to do), marks the trial answered,
    counts the annotator's progress and failed checks, completes or excludes the annotator (freeing their
    unrated trials), and finds the next trial and marks it shown, as assignment_current does. Its reads see
    the database as it was when it began, hence the counts plus one here and the next trial being "not this
    one". Round trips per rating: this one, where the general path needs a locked read, a write, BEGIN and
    COMMIT.
    """
    study = annotator.study
    try:
        assignment_id = int(assignment_id)
        value = rating_value_parse(study=study, raw=raw_value, unsure=unsure)
    except (TypeError, ValueError, ApplicationError):
        return None
    key = (idempotency_key or "").strip()[:64] or None
    if not 0 < assignment_id <= MAX_ID or (key is not None and "\x00" in key):
        return None
    now = timezone.now()
    sql = _one_statement_sql(connection.vendor)
    client_rt = _rt(rt_ms)
    limit, period = rating_rate_limit()
    params = {
        "since": now - timedelta(seconds=period),
        "limit": limit,
        "attention": Assignment.Kind.ATTENTION,
        "value": value,
        "unsure": value is None,
        "tolerance": study.attention_tolerance,
        "now": now,
        "trial": assignment_id,
        "annotator": annotator.pk,
        "rating": Annotator.Status.RATING,
        "rt": client_rt,
        "max_rt": MAX_RT_MS,
        "key": key,
        "max_failures": study.attention_max_failures or 0,
        "excluded": Annotator.Status.EXCLUDED,
        "completed": Annotator.Status.COMPLETED,
        "why": Annotator.Exclusion.ATTENTION,
    }
    row = fetchone(sql, params)
    if row is None:
        return None
    rating_id, server_rt, prompt_id, kind, total, done, failures, excluded, check_passed, *rest = row
    completed = not excluded and done >= total
    upcoming = None if rest[0] is None else assignment_from_row(rest[:-1], rest[-1], study_id=annotator.study_id)
    return _stored(
        study=study,
        stored=(rating_id, assignment_id, annotator.pk, prompt_id, value, client_rt, server_rt, key, now),
        kind=kind,
        completed=completed,
        excluded=excluded,
        progress=(int(done), int(total)),
        check_passed=check_passed,
        failures=failures,
        upcoming=None if excluded or completed else upcoming,
    )


@functools.cache
def _one_statement_sql(vendor: str) -> str:
    """The statement of _submit_in_one_statement (built once: the text is the same for every rating)."""
    assignments, ratings, annotators = _table(Assignment), _table(Rating), _table(Annotator)
    unrated = f"NOT EXISTS (SELECT 1 FROM {ratings} r WHERE r.assignment_id = a.id)"
    sql = (
        "WITH counts AS (SELECT COUNT(*) AS total, COUNT(answered_at) AS done, "
        "COUNT(*) FILTER (WHERE check_passed = false) AS failures, "
        f"COUNT(*) FILTER (WHERE answered_at > %(since)s::timestamptz) AS recent FROM {assignments} "
        "WHERE annotator_id = %(annotator)s::bigint), "
        "trial AS ("
        "SELECT a.id, a.kind, a.prompt_id, CASE WHEN a.kind = %(attention)s THEN (%(value)s::float8 IS NOT NULL "
        "AND abs(%(value)s::float8 - (a.check_spec->>'expected')::float8) <= %(tolerance)s) END AS check_passed, "
        "floor(extract(epoch FROM (%(now)s::timestamptz - a.shown_at)) * 1000) AS server_rt "
        f"FROM {assignments} a JOIN {annotators} n ON n.id = a.annotator_id CROSS JOIN counts c "
        "WHERE a.id = %(trial)s::bigint AND a.annotator_id = %(annotator)s::bigint AND n.status = %(rating)s::varchar "
        "AND c.recent < %(limit)s::integer), "
        f"ins AS (INSERT INTO {ratings} ({INSERT_COLUMNS}) SELECT t.id, %(annotator)s::bigint, t.prompt_id, "
        "%(value)s::float8, %(unsure)s::boolean, %(rt)s::integer, "
        "CASE WHEN t.server_rt BETWEEN 0 AND %(max_rt)s::integer THEN t.server_rt::integer END, "
        "%(key)s::varchar, %(now)s::timestamptz FROM trial t "
        "ON CONFLICT DO NOTHING RETURNING id, server_rt_ms, prompt_id), "
        "verdict AS (SELECT t.kind, t.check_passed, c.total, c.done + 1 AS done, "
        "c.failures + (CASE WHEN t.check_passed = false THEN 1 ELSE 0 END) AS failures FROM trial t, counts c "
        "WHERE EXISTS (SELECT 1 FROM ins)), "
        "decision AS (SELECT *, (kind = %(attention)s AND %(max_failures)s > 0 AND failures >= %(max_failures)s) "
        "AS excluded FROM verdict), "
        f"answered AS (UPDATE {assignments} SET answered_at = %(now)s, check_passed = d.check_passed "
        f"FROM decision d WHERE {assignments}.id = %(trial)s RETURNING 1), "
        f"who AS (UPDATE {annotators} SET last_seen_at = %(now)s, "
        "status = CASE WHEN d.excluded THEN %(excluded)s WHEN d.done >= d.total THEN %(completed)s ELSE status END, "
        "exclusion = CASE WHEN d.excluded THEN %(why)s ELSE exclusion END, "
        "exclusion_reason = CASE WHEN d.excluded THEN 'failed ' || d.failures || ' attention check' || "
        "CASE WHEN d.failures = 1 THEN '' ELSE 's' END ELSE exclusion_reason END, "
        "completed_at = CASE WHEN NOT d.excluded AND d.done >= d.total THEN %(now)s ELSE completed_at END "
        f"FROM decision d WHERE {annotators}.id = %(annotator)s RETURNING 1), "
        f"freed AS (DELETE FROM {assignments} a WHERE a.annotator_id = %(annotator)s AND a.id <> %(trial)s "
        f"AND {unrated} AND EXISTS (SELECT 1 FROM decision WHERE excluded) RETURNING 1), "
        f"upcoming AS (UPDATE {assignments} SET shown_at = COALESCE(shown_at, %(now)s) WHERE id = ("
        f"SELECT a.id FROM {assignments} a WHERE a.annotator_id = %(annotator)s AND a.id <> %(trial)s AND {unrated} "
        "ORDER BY a.position LIMIT 1) AND EXISTS (SELECT 1 FROM decision WHERE NOT excluded) RETURNING *) "
        "SELECT ins.id, ins.server_rt_ms, ins.prompt_id, d.kind, d.total, d.done, d.failures, d.excluded, "
        "d.check_passed, "
        f"{columns_sql(Assignment, 'upcoming')}, p.text FROM ins CROSS JOIN decision d "
        f"LEFT JOIN upcoming ON true LEFT JOIN {_table(Prompt)} p ON p.id = upcoming.prompt_id"
    )
    return sql


def _annotator_finish(annotator_id: int, now, *, excluded: bool, failures: int) -> None:
    """The annotator is done: excluded by the attention-check policy (their unrated slots freed for
    others), or completed."""
    with connection.cursor() as cursor:
        if excluded:
            reason = f"failed {failures} attention check{'s' if failures != 1 else ''}"
            cursor.execute(
                f"UPDATE {_table(Annotator)} SET status = %s, exclusion = %s, exclusion_reason = %s, "
                "last_seen_at = %s WHERE id = %s",
                [Annotator.Status.EXCLUDED, Annotator.Exclusion.ATTENTION, reason, _dt(now), annotator_id],
            )
            cursor.execute(
                f"DELETE FROM {_table(Assignment)} WHERE annotator_id = %s AND NOT EXISTS "
                f"(SELECT 1 FROM {_table(Rating)} r WHERE r.assignment_id = {_table(Assignment)}.id)",
                [annotator_id],
            )
        else:
            cursor.execute(
                f"UPDATE {_table(Annotator)} SET status = %s, completed_at = %s, last_seen_at = %s WHERE id = %s",
                [Annotator.Status.COMPLETED, _dt(now), _dt(now), annotator_id],
            )
