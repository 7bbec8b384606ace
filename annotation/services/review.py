"""A researcher's review of annotators: exclude one with a reason, or reinstate them.

Nothing is deleted: an excluded annotator keeps every rating and answer, and stays in every export with
`status` and `exclusion_reason` (analyses filter; perspectivist practice keeps the data). Each decision
is an `AnnotatorStatusChange` row (who, when, why, from which status), which the annotator's page shows
and from which a reinstatement restores the earlier status.
"""

from __future__ import annotations

from django.db import transaction

from config.errors import ApplicationError

from ..models import Annotator, AnnotatorStatusChange, Assignment

REASON_MAX = AnnotatorStatusChange._meta.get_field("reason").max_length


def _reason_clean(reason) -> str:
    text = " ".join(str(reason or "").split())  # one line: control characters and runs of spaces go
    if not text:
        raise ApplicationError("Give a reason (it is kept with the decision).", extra={"field": "reason"})
    if len(text) > REASON_MAX:
        raise ApplicationError(
            f"The reason is {len(text)} characters long; at most {REASON_MAX}.", extra={"field": "reason"}
        )
    if "\x00" in text:
        raise ApplicationError("The reason holds a NUL character.", extra={"field": "reason"})
    return text


def _locked(annotator: Annotator) -> Annotator:
    return Annotator.objects.select_for_update().select_related("study").get(pk=annotator.pk)


def _status_after_reinstating(annotator: Annotator) -> str:
    """The status an excluded annotator goes back to: the one recorded when a researcher excluded them;
    without such a record (failed attention checks, an imported exclusion), `completed` if they answered
    as many prompts as the design asks of them, else `returned` (their unanswered trials were released)."""
    last = (
        annotator.status_changes.filter(to_status=Annotator.Status.EXCLUDED)
        .exclude(from_status=Annotator.Status.EXCLUDED)
        .order_by("-created_at", "-id")
        .first()
    )
    if last is not None:
        return last.from_status
    study = annotator.study
    expected = study.prompts.count()
    if study.prompts_per_annotator:
        expected = min(expected, study.prompts_per_annotator)
    answered = Assignment.objects.filter(annotator=annotator, kind=Assignment.Kind.PROMPT, rating__isnull=False).count()
    return Annotator.Status.COMPLETED if expected and answered >= expected else Annotator.Status.RETURNED


@transaction.atomic
def annotator_exclude(*, annotator: Annotator, reason: str, user) -> Annotator:
    """Exclude `annotator` from analyses with a reason; their data stays. 409 if already excluded."""
    text = _reason_clean(reason)
    locked = _locked(annotator)
    if locked.status == Annotator.Status.EXCLUDED:
        raise ApplicationError(f"{locked.pseudonym} is already excluded.", status_code=409)
    AnnotatorStatusChange.objects.create(
        annotator=locked, from_status=locked.status, to_status=Annotator.Status.EXCLUDED, reason=text, user=user
    )
    locked.status = Annotator.Status.EXCLUDED
    locked.exclusion = Annotator.Exclusion.RESEARCHER
    locked.exclusion_reason = text
    locked.save(update_fields=["status", "exclusion", "exclusion_reason"])
    return locked


@transaction.atomic
def annotator_reinstate(*, annotator: Annotator, reason: str, user) -> Annotator:
    """Take an excluded annotator back into analyses, with a reason. 409 if they are not excluded."""
    text = _reason_clean(reason)
    locked = _locked(annotator)
    if locked.status != Annotator.Status.EXCLUDED:
        raise ApplicationError(f"{locked.pseudonym} is not excluded ({locked.status}).", status_code=409)
    status = _status_after_reinstating(locked)
    AnnotatorStatusChange.objects.create(
        annotator=locked,
        from_status=locked.status,
        to_status=status,
        reason=text,
        previous_reason=locked.exclusion_reason,
        user=user,
    )
    locked.status = status
    locked.exclusion = Annotator.Exclusion.NONE
    locked.exclusion_reason = ""
    locked.save(update_fields=["status", "exclusion", "exclusion_reason"])
    return locked
