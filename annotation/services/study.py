"""Creating, changing, opening and closing, and duplicating a study (the study builder and the API).

Collected data is protected: once any rating exists, the scale, the design and the prompt set are
what those ratings were given under, so they cannot change any more (a new study is a duplicate).
"""

from __future__ import annotations

import copy as copy_module
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from config.errors import ApplicationError

from ..models import Prompt, Rating, Study

# Fields anyone with the "edit" role may set, through the builder's forms or the API.
EDITABLE_FIELDS = (
    "title",
    "description",
    "consent_text",
    "payment_text",
    "contact_text",
    "withdrawal_text",
    "instructions_text",
    "anchor_low_text",
    "anchor_high_text",
    "scale_min",
    "scale_max",
    "scale_step",
    "allow_unsure",
    "design",
    "prompts_per_annotator",
    "target_ratings_per_prompt",
    "max_annotators",
    "attention_checks",
    "attention_max_failures",
    "attention_tolerance",
    "instruments",
    "min_seconds_per_rating",
    "reservation_minutes",
    "completion_code",
    "completion_url",
    "failed_checks_code",
    "recruitment_study_id",
)
# What ratings were collected under: fixed once the first rating exists (the prompt set as well, see
# study_prompts_change_check).
PROTECTED_FIELDS = (
    "scale_min",
    "scale_max",
    "scale_step",
    "design",
    "prompts_per_annotator",
    "target_ratings_per_prompt",
)
PROTECTED_REASON = (
    "Ratings have been collected under these settings, so the scale, the design and the prompt set can no "
    "longer change. Duplicate the study to run it with other settings."
)
# Allowed status changes: draft → recruiting ⇄ paused → closed (and recruiting → closed).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    Study.Status.DRAFT: (Study.Status.RECRUITING,),
    Study.Status.RECRUITING: (Study.Status.PAUSED, Study.Status.CLOSED),
    Study.Status.PAUSED: (Study.Status.RECRUITING, Study.Status.CLOSED),
    Study.Status.CLOSED: (),
}
# Paths under research/studies/ that a slug must not take.
RESERVED_SLUGS = frozenset({"new"})
PROMPT_COPY_FIELDS = ("external_id", "text", "harm_level", "features", "harm_benefit_tree", "order")
# Settings a duplicate takes from its original (everything a researcher set, nothing collected).
COPY_FIELDS = EDITABLE_FIELDS + ("meta",)


def study_has_ratings(*, study: Study) -> bool:
    """Whether any rating (collected or imported) belongs to the study: from then on its scale, design
    and prompt set are fixed."""
    return Rating.objects.filter(annotator__study_id=study.pk).exists()


def study_prompts_change_check(*, study: Study) -> None:
    """Refuse (409) a change of the prompt set of a study that has ratings. Every writer of prompts
    (the prompt-bank importer, the API) calls this first, inside its transaction."""
    if study_has_ratings(study=study):
        raise ApplicationError(PROTECTED_REASON, extra={"fields": ["prompts"]}, status_code=409)


def _validation_error(exc: ValidationError) -> ApplicationError:
    fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    text = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
    return ApplicationError(f"Validation error: {text}", extra={"fields": fields})


def _slug_free(slug: str) -> bool:
    return slug not in RESERVED_SLUGS and not Study.objects.filter(slug=slug).exists()


def study_slug_new(*, base: str) -> str:
    """A free slug made from `base` (a title or another slug): `base`, else `base-2`, `base-3`…"""
    stem = slugify(base)[:56].strip("-") or "study"
    if _slug_free(stem):
        return stem
    n = 2
    while not _slug_free(f"{stem}-{n}"):
        n += 1
    return f"{stem}-{n}"


def _apply(study: Study, data: Mapping[str, Any]) -> None:
    unknown = sorted(set(data) - set(EDITABLE_FIELDS))
    if unknown:
        raise ApplicationError(
            f"These fields cannot be set here: {', '.join(unknown)}.",
            extra={"fields": {k: ["Not editable."] for k in unknown}},
        )
    for name, value in data.items():
        setattr(study, name, value)


def _full_clean(study: Study) -> None:
    try:
        study.full_clean(exclude=["owner"])
    except ValidationError as exc:
        raise _validation_error(exc) from None


@transaction.atomic
def study_create(*, user, data: Mapping[str, Any], slug: str | None = None) -> Study:
    """A new draft study owned by `user`, with the given settings (defaults for the rest)."""
    study = Study(owner=user, status=Study.Status.DRAFT)
    _apply(study, data)
    if slug:
        if slug in RESERVED_SLUGS:
            raise ApplicationError(
                f"The slug {slug!r} is reserved; choose another.", extra={"fields": {"slug": ["Reserved."]}}
            )
        study.slug = slug
    else:
        study.slug = study_slug_new(base=study.title or "study")
    _full_clean(study)
    study.save()
    return study


@transaction.atomic
def study_update(*, study: Study, user, data: Mapping[str, Any]) -> Study:
    """Change the study's settings. Protected fields (PROTECTED_FIELDS) may not change once a rating
    exists: 409, naming them. Nothing is saved unless everything validates."""
    locked = Study.objects.select_for_update().get(pk=study.pk)
    changed = [name for name, value in data.items() if name in EDITABLE_FIELDS and getattr(locked, name) != value]
    blocked = [name for name in changed if name in PROTECTED_FIELDS]
    if blocked and study_has_ratings(study=locked):
        raise ApplicationError(PROTECTED_REASON, extra={"fields": blocked}, status_code=409)
    _apply(locked, data)
    _full_clean(locked)
    locked.save()
    return locked


def _ready_to_recruit(study: Study) -> None:
    n_prompts = study.prompts.count()
    if n_prompts == 0:
        raise ApplicationError(
            "Add prompts before opening recruitment.", extra={"status": study.status}, status_code=409
        )
    if study.design == Study.Design.PARTIAL and (study.prompts_per_annotator or 0) > n_prompts:
        raise ApplicationError(
            f"The design asks {study.prompts_per_annotator} prompts per annotator but the study has {n_prompts}.",
            extra={"status": study.status},
            status_code=409,
        )
    _full_clean(study)


@transaction.atomic
def study_status_set(*, study: Study, status: str, user) -> Study:
    """Move the study along draft → recruiting ⇄ paused → closed. Setting the status it already has
    changes nothing; any other move is a 409 naming the allowed ones."""
    if status not in Study.Status.values:
        raise ApplicationError(
            f"Unknown status {status!r}; choose one of {', '.join(Study.Status.values)}.",
            extra={"fields": {"status": ["Unknown status."]}},
        )
    locked = Study.objects.select_for_update().get(pk=study.pk)
    if locked.status == status:
        return locked
    allowed = TRANSITIONS[locked.status]
    if status not in allowed:
        can = ", ".join(allowed) if allowed else "none (a closed study stays closed)"
        raise ApplicationError(
            f"A {locked.status} study cannot become {status}; allowed: {can}.",
            extra={"status": locked.status, "allowed": list(allowed)},
            status_code=409,
        )
    if status == Study.Status.RECRUITING:
        _ready_to_recruit(locked)
    locked.status = status
    locked.save(update_fields=["status", "updated_at"])
    return locked


@transaction.atomic
def study_duplicate(*, study: Study, user) -> Study:
    """A draft copy of the study's settings and prompt bank (text, external id, harm level, features,
    tree, order), owned by `user`, with a new slug; no annotators, ratings, jobs or collaborators."""
    copy = Study(owner=user, status=Study.Status.DRAFT, slug=study_slug_new(base=study.slug))
    for name in COPY_FIELDS:
        setattr(copy, name, copy_module.deepcopy(getattr(study, name)))
    copy.title = f"{study.title} (copy)"[: Study._meta.get_field("title").max_length]
    copy.save()
    Prompt.objects.bulk_create(
        [
            Prompt(study=copy, **{name: getattr(prompt, name) for name in PROMPT_COPY_FIELDS})
            for prompt in study.prompts.order_by("order", "id").iterator(chunk_size=2000)
        ],
        batch_size=1000,
    )
    return copy
