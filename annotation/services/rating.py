"""Saving a rating: validated, idempotent, and moving the annotator on (or out)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from config.errors import ApplicationError

from ..models import Annotator, Assignment, Rating, Study

MAX_RT_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class SubmitOutcome:
    rating: Rating
    created: bool
    too_fast: bool = False
    completed: bool = False
    excluded: bool = False
    progress: tuple[int, int] | None = None  # (answered, total) after this submission, when known


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
    try:
        value = float(text)
    except ValueError:
        raise ApplicationError(
            f"The rating must be a number from {low} to {high}.", extra={"field": "rating"}
        ) from None
    if not math.isfinite(value):
        raise ApplicationError(f"The rating must be a number from {low} to {high}.", extra={"field": "rating"})
    if value < low or value > high:
        raise ApplicationError(f"The rating must be between {low} and {high}.", extra={"field": "rating"})
    if study.scale_step >= 1 and value != int(value):
        raise ApplicationError("The rating must be a whole number.", extra={"field": "rating"})
    return value


def _rt(raw) -> int | None:
    try:
        value = int(float(raw))
    except (TypeError, ValueError):
        return None
    return value if 0 <= value <= MAX_RT_MS else None


@transaction.atomic
def rating_submit(
    *,
    annotator: Annotator,
    assignment_id: int,
    raw_value: str | None,
    unsure: bool,
    rt_ms=None,
    idempotency_key: str | None = None,
) -> SubmitOutcome:
    """Store the rating of one trial exactly once. A repeated submission returns the first rating."""
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("annotator__study", "rating")
        .filter(pk=assignment_id, annotator=annotator)
        .first()
    )
    if assignment is None:  # someone else's trial, or no such trial: the same answer for both
        raise ApplicationError("No such trial.", status_code=404)
    existing = getattr(assignment, "rating", None)
    if existing is not None:
        return SubmitOutcome(rating=existing, created=False)
    annotator = assignment.annotator
    study = annotator.study
    if annotator.status != Annotator.Status.RATING:
        raise ApplicationError("Ratings are not being collected from you now.", status_code=409)
    value = rating_value_parse(study=study, raw=raw_value, unsure=unsure)

    now = timezone.now()
    server_rt = int((now - assignment.shown_at).total_seconds() * 1000) if assignment.shown_at else None
    client_rt = _rt(rt_ms)
    key = (idempotency_key or "").strip()[:64] or None
    try:
        with transaction.atomic():
            rating = Rating.objects.create(
                assignment=assignment,
                annotator=annotator,
                prompt_id=assignment.prompt_id,
                value=value,
                unsure=value is None,
                rt_ms=client_rt,
                server_rt_ms=server_rt if server_rt is not None and server_rt <= MAX_RT_MS else None,
                idempotency_key=key,
            )
    except IntegrityError:  # the database is the last line: a concurrent twin got there first
        twin = Rating.objects.filter(assignment=assignment).first()
        if twin is None:
            raise ApplicationError("This submission was already used for another trial.", status_code=409) from None
        return SubmitOutcome(rating=twin, created=False)

    assignment.answered_at = now
    excluded = completed = False
    if assignment.kind == Assignment.Kind.ATTENTION:
        expected = assignment.check_spec["expected"]
        assignment.check_passed = value is not None and abs(value - expected) <= study.attention_tolerance
        failures = annotator.assignments.filter(check_passed=False).count() + (not assignment.check_passed)
        excluded = bool(study.attention_max_failures) and failures >= study.attention_max_failures
    assignment.save(update_fields=["answered_at", "check_passed"])

    counts = annotator.assignments.aggregate(total=Count("id"), done=Count("rating"))
    if excluded:
        annotator.status = Annotator.Status.EXCLUDED
        annotator.exclusion = Annotator.Exclusion.ATTENTION
        annotator.exclusion_reason = f"failed {failures} attention check{'s' if failures != 1 else ''}"
        annotator.assignments.filter(rating__isnull=True).delete()  # free the slots for others
    elif counts["done"] >= counts["total"]:
        completed = True
        annotator.status = Annotator.Status.COMPLETED
        annotator.completed_at = now
    annotator.last_seen_at = now
    annotator.save(update_fields=["status", "exclusion", "exclusion_reason", "completed_at", "last_seen_at"])

    seconds = (client_rt if client_rt is not None else server_rt or 0) / 1000
    too_fast = assignment.kind == Assignment.Kind.PROMPT and seconds < study.min_seconds_per_rating
    return SubmitOutcome(
        rating=rating,
        created=True,
        too_fast=too_fast,
        completed=completed,
        excluded=excluded,
        progress=(counts["done"], counts["total"]),
    )
