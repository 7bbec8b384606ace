"""The annotator's way in: recruitment link, consent, surveys, instructions."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.cache import cache
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Length
from django.utils import timezone

from config.errors import ApplicationError

from .. import surveys
from ..models import Annotator, Assignment, Rating, Study, SurveyInstrument, SurveyResponse
from ..study_cache import study_changed
from .assignment import assignments_create, reservations_release, study_has_capacity

logger = logging.getLogger(__name__)

# Prolific ids are 24 hex characters; other platforms use similar tokens. Anything else is refused
# rather than stored, so that junk or injected text never reaches the database.
PLATFORM_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
RECRUITMENT_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
# Who takes a place counted against max_annotators: consent is the act that admits someone. Arriving
# (status new) holds nothing, so made-up ids in the link cannot fill a study.
ADMITTED_STATUSES = (
    Annotator.Status.CONSENTED,
    Annotator.Status.SURVEYING,
    Annotator.Status.RATING,
    Annotator.Status.COMPLETED,
)
FULL_OF_PEOPLE = "This study has all the participants it needs. Thank you for your interest."
FULL_OF_RATINGS = "This study has all the ratings it needs. Thank you for your interest."
NOTHING_TO_RATE = "This study has nothing to rate at the moment. Thank you for your interest."
# The query parameter that carries the completion code in a recruitment platform's return URL (Prolific's
# https://app.prolific.com/submissions/complete?cc=CODE).
CODE_PARAM = "cc"


class EntryRefused(ApplicationError):
    """Why someone cannot (or can no longer) take part; `reason` picks the page they see."""

    def __init__(self, reason: str, message: str, status_code: int = 400, retry_after: int | None = None):
        extra = {"reason": reason} | ({"retry_after": retry_after} if retry_after is not None else {})
        super().__init__(message, extra=extra, status_code=status_code)
        self.reason = reason
        self.retry_after = retry_after


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
        raise EntryRefused(
            "bad-link", f"The link is missing {', '.join(missing)}. Please use the link from the study page."
        )
    values = [query.get(name).strip() for name in RECRUITMENT_PARAMS]
    bad = [name for name, value in zip(RECRUITMENT_PARAMS, values) if not PLATFORM_ID.match(value)]
    if bad:
        raise EntryRefused(
            "bad-link", f"The link's {', '.join(bad)} is not valid. Please use the link from the study page."
        )
    return RecruitmentParams(*values)


def admitted_count(*, study: Study) -> int:
    return study.annotators.filter(status__in=ADMITTED_STATUSES).count()


def _study_open_check(study: Study) -> None:
    if study.status != Study.Status.RECRUITING:
        word = {"paused": "paused", "closed": "closed", "draft": "not open yet"}[study.status]
        raise EntryRefused(study.status, f"This study is {word}. Please return it on the recruitment platform.", 403)


def _platform_study_check(study: Study, params: RecruitmentParams) -> None:
    """A study tied to a platform study accepts only that study's links (a link for another study, or
    an invented one, is refused before anything is looked up or written)."""
    expected = study.recruitment_study_id.strip()
    if expected and params.study != expected:
        raise EntryRefused(
            "wrong-study",
            "This link is not for this study: it names another study on the recruitment platform. "
            "Please open the study from its own page there.",
            403,
        )


def platform_return_url(*, study: Study, code: str = "") -> str:
    """The study's redirect URL back to the recruitment platform, carrying `code` instead of the completion
    code (e.g. the failed-checks code), or no code at all (a full study: the participant returns the
    submission there). "" when the study has none."""
    url = study.completion_url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name == CODE_PARAM for name, _ in query):
        return url
    query = [(name, value) for name, value in query if name != CODE_PARAM] + ([(CODE_PARAM, code)] if code else [])
    return urlunsplit(parts._replace(query=urlencode(query)))


def _admission_check(study: Study) -> None:
    """Refuse when the study has no place left. Read-only; call with the study row locked."""

    if not study.prompts.exists():  # recruiting with no prompts: never let anyone consent to nothing
        raise EntryRefused("empty", NOTHING_TO_RATE, 403)
    if study.max_annotators is not None and admitted_count(study=study) >= study.max_annotators:
        raise EntryRefused("full", FULL_OF_PEOPLE, 403)
    if not study_has_capacity(study=study):
        raise EntryRefused("full", FULL_OF_RATINGS, 403)


def _places_release(study: Study) -> None:
    """Free the places and prompts of idle annotators before deciding on capacity (study row locked)."""

    if study.max_annotators is not None or study.design == Study.Design.PARTIAL:
        reservations_release(study=study)


def _pseudonym_next(study: Study) -> str:
    """One more than the highest P-number ever in use: released arrivals leave gaps, never duplicates."""

    last = (
        study.annotators.filter(pseudonym__regex=r"^P[0-9]+$")
        .order_by(Length("pseudonym").desc(), "-pseudonym")
        .values_list("pseudonym", flat=True)
        .first()
    )
    return f"P{(int(last[1:]) if last else 0) + 1:04d}"


# --- per-client limit on new annotators (anti-automation) -----------------------------------------

RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def rate_parse(text: str, setting: str = "RECRUITMENT_RATE_LIMIT") -> tuple[int, int]:
    """'20/10m' -> (20, 600): at most 20 events per 600 seconds."""
    match = RATE.match(text or "")
    if match is None or int(match[1]) < 1 or (match[2] and int(match[2]) < 1):
        raise ImproperlyConfigured(
            f"{setting} must look like '20/10m' (count/period, period in s, m, h or d), not {text!r}."
        )
    return int(match[1]), int(match[2] or 1) * RATE_UNITS[match[3]]


def rate_limit_check(app_configs=None, **kwargs):
    """System check: a malformed RECRUITMENT_RATE_LIMIT stops `manage.py check` and startup, not a request."""

    errors = []
    for setting in ("RECRUITMENT_RATE_LIMIT", "RATING_RATE_LIMIT"):
        try:
            rate_parse(getattr(settings, setting), setting)
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="annotation.E001"))
    return errors


def client_key(address: str) -> str:
    """The unit a client is counted by: its IPv4 address, or its IPv6 /64 (one subscriber's usual
    allocation, so rotating addresses inside it does not help). Keyed-hashed: no address is stored."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        unit = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
    except ValueError:
        unit = (address or "unknown")[:100]
    return recruitment_hash(f"client:{unit}")[:40]


def _rate_window(client: str) -> tuple[str, int, int]:
    """(cache key of the current fixed window, limit, seconds until the window ends)."""
    limit, period = rate_parse(settings.RECRUITMENT_RATE_LIMIT)
    now = time.time()
    window = int(now // period)
    retry_after = max(1, math.ceil((window + 1) * period - now))
    return f"recruit-rate:{client_key(client)}:{period}:{window}", limit, retry_after


def entry_rate_exceeded(*, client: str) -> int | None:
    """Seconds until this client may create another annotator, or None if it may now. Read-only."""
    key, limit, retry_after = _rate_window(client)
    try:
        count = cache.get(key) or 0
    except Exception:  # noqa: BLE001  (the limit protects the site; a cache outage must not keep people out)
        logger.warning("recruitment rate limit skipped: cache unavailable")
        return None
    return retry_after if count >= limit else None


def entry_rate_record(*, client: str) -> None:
    """Count one new annotator against this client's window."""
    key, _, retry_after = _rate_window(client)
    try:
        if not cache.add(key, 1, timeout=retry_after + 1):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr: this is the first of a new window
                cache.set(key, 1, timeout=retry_after + 1)
    except Exception:  # noqa: BLE001  (a count lost in an outage lets one more in; a 500 keeps everyone out)
        logger.warning("recruitment rate limit not counted: cache unavailable")


def _rate_refusal(retry_after: int) -> EntryRefused:
    wait = f"{retry_after} seconds" if retry_after < 60 else f"{math.ceil(retry_after / 60)} minutes"
    return EntryRefused(
        "rate-limited",
        f"Too many people have joined from your network in a short time. Please try again in {wait}.",
        429,
        retry_after=retry_after,
    )


# --- arriving, resuming, consenting ----------------------------------------------------------------


def annotator_enter(*, study: Study, params: RecruitmentParams, client: str | None = None) -> tuple[Annotator, bool]:
    """Create the annotator for a recruitment id, or find them again. Returns (annotator, created).

    `client` is the requester's address: new annotators per client are rate-limited (resuming never
    is); None (services, commands, tests of the flow) means no limit."""
    _platform_study_check(study, params)
    digest = recruitment_hash(params.participant)
    existing = Annotator.objects.filter(study=study, recruitment_hash=digest).first()
    if existing is not None:  # resuming (an excluded annotator is shown why, by the flow)
        if existing.status == Annotator.Status.NEW:
            # Not yet consented: a study that closed or filled up since says so here, before the consent form.
            with transaction.atomic():
                locked = Study.objects.select_for_update().get(pk=study.pk)
                _study_open_check(locked)
                _places_release(locked)
                _admission_check(locked)
        return annotator_resume(annotator=existing, params=params), False
    _study_open_check(study)
    if client is not None and (retry_after := entry_rate_exceeded(client=client)) is not None:
        raise _rate_refusal(retry_after)
    return _annotator_create(study=study, params=params, digest=digest, client=client)


def annotator_resume(*, annotator: Annotator, params: RecruitmentParams) -> Annotator:
    """Record the platform session of a returning annotator. Reopening the link is not progress: it
    keeps an unconsented arrival from being released, but never extends a held place or prompts
    (otherwise a script could hold them forever by reloading the link)."""
    fields = {"platform_session_hash": recruitment_hash(params.session)}
    if annotator.status == Annotator.Status.NEW:
        fields["last_seen_at"] = timezone.now()
    Annotator.objects.filter(pk=annotator.pk).update(**fields)
    annotator.refresh_from_db()
    return annotator


@transaction.atomic
def _annotator_create(*, study: Study, params: RecruitmentParams, digest: str, client: str | None):
    # Serialize arrivals per study: pseudonyms, capacity and the client's count are decided one at a time.
    study = Study.objects.select_for_update().get(pk=study.pk)
    _places_release(study)
    _admission_check(study)  # full of consented people (or of ratings): say so now, not after consent
    if client is not None:
        entry_rate_record(client=client)
    try:
        with transaction.atomic():
            annotator = Annotator.objects.create(
                study=study,
                pseudonym=_pseudonym_next(study),
                recruitment_hash=digest,
                platform_study_hash=recruitment_hash(params.study),
                platform_session_hash=recruitment_hash(params.session),
                order_seed=secrets.randbits(62),
                last_seen_at=timezone.now(),
            )
    except IntegrityError:  # the same person in two tabs at once: the other request created them
        return Annotator.objects.get(study=study, recruitment_hash=digest), False
    return annotator, True


@transaction.atomic
def annotator_consent(*, annotator: Annotator, agree: bool) -> Annotator:
    """Record the answer to the consent form. Agreeing takes a place: it is refused (EntryRefused
    "full", nothing changed) when the study has none left, decided under the study's row lock so that
    simultaneous consents cannot overfill it. A second answer (back button, double click) changes nothing."""
    if agree:
        study = Study.objects.select_for_update().get(pk=annotator.study_id)
        if Annotator.objects.filter(pk=annotator.pk, status=Annotator.Status.NEW).exists():
            _study_open_check(study)
            _places_release(study)
            _admission_check(study)
    now = timezone.now()
    Annotator.objects.filter(pk=annotator.pk, status=Annotator.Status.NEW).update(
        status=Annotator.Status.CONSENTED if agree else Annotator.Status.DECLINED,
        consented_at=now if agree else None,
        last_seen_at=now,
    )
    study_changed(annotator.study_id)
    try:
        annotator.refresh_from_db()
    except Annotator.DoesNotExist:  # released while the consent page was open
        raise EntryRefused(
            "no-session",
            "You were away too long before answering. Please open the study again from the link "
            "on the recruitment platform.",
            403,
        ) from None
    return annotator


@transaction.atomic
def unconsented_release(*, study: Study, now=None) -> int:
    """Release arrivals who never consented and have been idle past RECRUITMENT_UNCONSENTED_MINUTES.

    They are deleted: they never agreed to take part, so nothing about them (not even the keyed hash
    of their id) should be kept, and a flood of invented ids leaves no rows behind. Should one have
    anything attached (not possible through the flow), it is marked returned instead, keeping that
    data. A deleted person who comes back with the same link simply arrives again."""
    cutoff = (now or timezone.now()) - timedelta(minutes=settings.RECRUITMENT_UNCONSENTED_MINUTES)
    idle = Annotator.objects.filter(study=study, status=Annotator.Status.NEW).filter(
        Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True, created_at__lt=cutoff)
    )
    theirs = (
        Exists(SurveyResponse.objects.filter(annotator=OuterRef("pk")))
        | Exists(Assignment.objects.filter(annotator=OuterRef("pk")))
        | Exists(Rating.objects.filter(annotator=OuterRef("pk")))
    )
    kept = idle.filter(theirs).update(status=Annotator.Status.RETURNED)
    _, deleted = idle.filter(~theirs).delete()
    if kept:  # the deleted ones are signalled one by one
        study_changed(study.pk)
    return kept + deleted.get(Annotator._meta.label, 0)


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
        # The text typed beside "Other" stays in the survey response: the demographics that analyses group
        # by hold the chosen options only.
        locked.demographics = {k: v for k, v in answers.items() if not k.endswith(surveys.OTHER_SUFFIX)}
    locked.traits = {**locked.traits, **scores}
    if locked.status == Annotator.Status.CONSENTED:
        locked.status = Annotator.Status.SURVEYING
    locked.last_seen_at = timezone.now()
    locked.save(update_fields=["demographics", "traits", "status", "last_seen_at"])
    # Only this annotator's rows: factor scores, which depend on everyone's answers, are computed when
    # read (selectors.study_factor_scores), never written for the whole study here.
    annotator.refresh_from_db()
    return {}


@transaction.atomic
def instructions_complete(*, annotator: Annotator) -> Annotator:
    """Past the instructions and practice: allocate the trials and start rating (once)."""

    locked = Annotator.objects.select_for_update().get(pk=annotator.pk)
    if locked.status not in (Annotator.Status.CONSENTED, Annotator.Status.SURVEYING) or surveys_pending(
        annotator=locked
    ):
        return locked
    created = assignments_create(annotator=locked)
    if created == 0 and not locked.assignments.exists():
        raise EntryRefused("full", FULL_OF_RATINGS, 403)
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
