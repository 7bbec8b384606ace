"""One step of undo: from the next card, an annotator may change their previous answer, once.

The rating then holds the final answer (what every analysis and export reads); a RatingRevision row
beside it keeps the original, so both are kept and exports flag the rating as revised. Kept apart from
the rating submission (annotation/services/rating.py), whose hot path it does not touch.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from config.errors import ApplicationError

from ..models import Annotator, Rating, RatingRevision
from ..study_cache import study_changed
from .rating import rating_value_parse


@dataclass(frozen=True)
class ReviseOutcome:
    rating: Rating
    revision: RatingRevision
    created: bool


def _same(revision: RatingRevision, value: float | None) -> bool:
    return revision.unsure if value is None else (not revision.unsure and revision.value == value)


@transaction.atomic
def rating_revise(*, annotator: Annotator, assignment_id: int, raw_value: str | None, unsure: bool) -> ReviseOutcome:
    """Change the annotator's previous answer (the trial answered last) to a new value, once.

    Refused (ApplicationError 409) when the annotator is no longer rating, the trial is not the one they
    answered last, it was an attention check, or it was already changed to something else. Sending the
    same change again (a double click, a retried request) returns the stored revision (idempotent).
    The annotator's row is locked, so a revision and the next submission are decided one at a time.
    """
    locked = Annotator.objects.select_for_update(of=("self",)).select_related("study").get(pk=annotator.pk)
    try:
        assignment_id = int(assignment_id)
    except (TypeError, ValueError):
        raise ApplicationError("No such trial.", status_code=404) from None
    rating = (
        Rating.objects.select_for_update(of=("self",))
        .filter(assignment_id=assignment_id, annotator_id=locked.pk)
        .select_related("revision")
        .first()
    )
    if rating is None:
        raise ApplicationError("No such answer.", status_code=404)
    value = rating_value_parse(study=locked.study, raw=raw_value, unsure=unsure)
    existing = getattr(rating, "revision", None)  # the reverse one-to-one raises AttributeError when absent
    if existing is not None:
        if _same(existing, value):
            return ReviseOutcome(rating=rating, revision=existing, created=False)
        raise ApplicationError("You have already changed that answer once.", status_code=409)
    if locked.status != Annotator.Status.RATING:
        raise ApplicationError("Answers can no longer be changed: you are not rating now.", status_code=409)
    if rating.prompt_id is None:
        raise ApplicationError("That answer cannot be changed.", status_code=409)
    last = Rating.objects.filter(annotator_id=locked.pk).order_by("-created_at", "-id").values_list("id", flat=True)
    if last.first() != rating.pk:
        raise ApplicationError("Only your previous answer can be changed, from the next card.", status_code=409)
    revision = RatingRevision.objects.create(
        rating=rating,
        original_value=rating.value,
        original_unsure=rating.unsure,
        original_rt_ms=rating.rt_ms,
        value=value,
        unsure=value is None,
    )
    rating.value = value
    rating.unsure = value is None
    rating.save(update_fields=["value", "unsure"])
    # A step forward like an answer: the annotator's row changes with their ratings (participant_figures).
    Annotator.objects.filter(pk=locked.pk).update(last_seen_at=timezone.now())
    study_changed(locked.study_id, prompt_id=rating.prompt_id)
    return ReviseOutcome(rating=rating, revision=revision, created=True)
