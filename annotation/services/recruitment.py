"""The annotator's way in: recruitment link, consent, surveys, instructions."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.errors import ApplicationError

from .. import surveys
from ..models import Annotator, Study, SurveyInstrument, SurveyResponse

# Prolific ids are 24 hex characters; other platforms use similar tokens. Anything else is refused
# rather than stored, so that junk or injected text never reaches the database.
PLATFORM_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
RECRUITMENT_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
ACTIVE_STATUSES = (
    Annotator.Status.NEW,
    Annotator.Status.CONSENTED,
    Annotator.Status.SURVEYING,
    Annotator.Status.RATING,
    Annotator.Status.COMPLETED,
)


class EntryRefused(ApplicationError):
    """Why someone cannot (or can no longer) take part; `reason` picks the page they see."""

    def __init__(self, reason: str, message: str, status_code: int = 400):
        super().__init__(message, extra={"reason": reason}, status_code=status_code)
        self.reason = reason


def recruitment_hash(platform_id: str) -> str:
    """Keyed hash of a recruitment id: stable for resuming, useless for re-identification without the key."""
    key = settings.RECRUITMENT_HASH_KEY.encode()
    return hmac.new(key, platform_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class RecruitmentParams:
    participant: str
    study: str
    session: str


def recruitment_params_parse(query) -> RecruitmentParams:
    """Validate the three Prolific parameters; a clear refusal names what is missing or malformed."""
    missing = [name for name in RECRUITMENT_PARAMS if not (query.get(name) or "").strip()]
    if missing:
        raise EntryRefused("bad-link", f"The link is missing {', '.join(missing)}. Please use the link from the study page.")
    values = [query.get(name).strip() for name in RECRUITMENT_PARAMS]
    bad = [name for name, value in zip(RECRUITMENT_PARAMS, values) if not PLATFORM_ID.match(value)]
    if bad:
        raise EntryRefused("bad-link", f"The link's {', '.join(bad)} is not valid. Please use the link from the study page.")
    return RecruitmentParams(*values)


def _admitted_count(study: Study) -> int:
    return study.annotators.filter(status__in=ACTIVE_STATUSES).count()


@transaction.atomic
def annotator_enter(*, study: Study, params: RecruitmentParams) -> tuple[Annotator, bool]:
    """Create the annotator for a recruitment id, or find them again. Returns (annotator, created)."""
    digest = recruitment_hash(params.participant)
    existing = Annotator.objects.filter(study=study, recruitment_hash=digest).first()
    if existing is not None:  # resuming (an excluded annotator is shown why, by the flow)
        Annotator.objects.filter(pk=existing.pk).update(
            last_seen_at=timezone.now(), platform_session_hash=recruitment_hash(params.session)
        )
        existing.refresh_from_db()
        return existing, False
    if study.status != Study.Status.RECRUITING:
        word = {"paused": "paused", "closed": "closed", "draft": "not open yet"}[study.status]
        raise EntryRefused(study.status, f"This study is {word}. Please return it on the recruitment platform.", 403)
    # Serialize arrivals per study: pseudonyms and capacity are decided one at a time.
    Study.objects.select_for_update().filter(pk=study.pk).first()
    if study.max_annotators is not None and _admitted_count(study) >= study.max_annotators:
        raise EntryRefused("full", "This study has all the participants it needs. Thank you for your interest.", 403)
    from .assignment import study_has_capacity

    if not study_has_capacity(study=study):
        raise EntryRefused("full", "This study has all the ratings it needs. Thank you for your interest.", 403)
    number = study.annotators.count() + 1
    try:
        with transaction.atomic():
            annotator = Annotator.objects.create(
                study=study,
                pseudonym=f"P{number:04d}",
                recruitment_hash=digest,
                platform_study_hash=recruitment_hash(params.study),
                platform_session_hash=recruitment_hash(params.session),
                order_seed=secrets.randbits(62),
                last_seen_at=timezone.now(),
            )
    except IntegrityError:  # the same person in two tabs at once: the other request created them
        return Annotator.objects.get(study=study, recruitment_hash=digest), False
    return annotator, True


def annotator_consent(*, annotator: Annotator, agree: bool) -> Annotator:
    if annotator.status != Annotator.Status.NEW:
        return annotator  # a second answer (back button, double click) changes nothing
    now = timezone.now()
    annotator.status = Annotator.Status.CONSENTED if agree else Annotator.Status.DECLINED
    annotator.consented_at = now if agree else None
    annotator.last_seen_at = now
    annotator.save(update_fields=["status", "consented_at", "last_seen_at"])
    return annotator


def instrument_get(key: str) -> SurveyInstrument:
    """The database row of an instrument file (created on first use; the JSON file is the source)."""
    definition = surveys.instrument_load(key)
    instrument, _ = SurveyInstrument.objects.get_or_create(
        key=definition["key"],
        version=str(definition.get("version", "1")),
        defaults={"title": definition.get("title", key), "definition": definition},
    )
    return instrument


def surveys_pending(*, annotator: Annotator) -> list[str]:
    done = set(annotator.survey_responses.values_list("instrument__key", flat=True))
    return [key for key in annotator.study.instruments if key not in done]


@transaction.atomic
def survey_submit(*, annotator: Annotator, key: str, data) -> dict:
    """Validate and store one instrument's answers. Returns {} or the errors by item id."""
    if key not in annotator.study.instruments:
        raise ApplicationError("This questionnaire is not part of the study.", status_code=404)
    instrument = instrument_get(key)
    definition = instrument.definition
    answers, errors = surveys.answers_validate(definition, data)
    if errors:
        return errors
    scores = surveys.instrument_score(definition, answers) if definition.get("subscales") else {}
    response, created = SurveyResponse.objects.get_or_create(
        annotator=annotator, instrument=instrument, defaults={"answers": answers, "scores": scores}
    )
    if not created:
        return {}  # resubmitted page: the first answers stand
    locked = Annotator.objects.select_for_update().get(pk=annotator.pk)
    if key == "demographics":
        locked.demographics = answers
    locked.traits = {**locked.traits, **scores}
    if locked.status == Annotator.Status.CONSENTED:
        locked.status = Annotator.Status.SURVEYING
    locked.last_seen_at = timezone.now()
    locked.save(update_fields=["demographics", "traits", "status", "last_seen_at"])
    if not surveys_pending(annotator=locked):
        from .traits import study_factor_scores_refresh

        study_factor_scores_refresh(study=annotator.study)
    annotator.refresh_from_db()
    return {}


@transaction.atomic
def instructions_complete(*, annotator: Annotator) -> Annotator:
    """Past the instructions and practice: allocate the trials and start rating (once)."""
    from .assignment import assignments_create

    locked = Annotator.objects.select_for_update().get(pk=annotator.pk)
    if locked.status not in (Annotator.Status.CONSENTED, Annotator.Status.SURVEYING) or surveys_pending(annotator=locked):
        return locked
    created = assignments_create(annotator=locked)
    if created == 0 and not locked.assignments.exists():
        raise EntryRefused("full", "This study has all the ratings it needs. Thank you for your interest.", 403)
    locked.status = Annotator.Status.RATING
    locked.last_seen_at = timezone.now()
    locked.save(update_fields=["status", "last_seen_at"])
    return locked


def annotator_next_step(*, annotator: Annotator) -> tuple[str, str | None]:
    """Where this annotator belongs now: (step, survey key or None). Every page redirects here."""
    status = annotator.status
    S = Annotator.Status
    if status == S.NEW:
        return "consent", None
    if status in (S.CONSENTED, S.SURVEYING):
        pending = surveys_pending(annotator=annotator)
        return ("survey", pending[0]) if pending else ("instructions", None)
    if status == S.RATING:
        return "rate", None
    if status == S.COMPLETED:
        return "done", None
    if status == S.DECLINED:
        return "declined", None
    if status == S.EXCLUDED:
        return "excluded", None
    return "returned", None
