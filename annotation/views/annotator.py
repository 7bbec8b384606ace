"""The annotator's pages: link → consent → surveys → instructions → rating loop → completion code.

Every page first asks the flow where the annotator belongs and redirects there, so refreshes, the
back button and bookmarks always land on the right step.
"""

import functools
import uuid

from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.errors import ApplicationError

from .. import surveys
from ..consent import duration_minutes
from ..models import Annotator, Study
from ..selectors import annotator_in_study
from ..services import recruitment
from ..services.assignment import assignment_current, assignment_progress
from ..services.rating import UNKNOWN, rating_submit, rating_value_parse
from ..services.revision import rating_revise

STEP_URLS = {
    "consent": "take:consent",
    "survey": "take:survey",
    "instructions": "take:instructions",
    "rate": "take:rate",
    "done": "take:done",
    "declined": "take:stopped",
    "excluded": "take:stopped",
    "returned": "take:stopped",
}


def _session_key(slug: str) -> str:
    return f"annotator:{slug}"


# Refusals after which the participant can only go back to the platform (and return the submission there).
RETURN_REASONS = ("full", "empty", "paused", "closed", "draft")


def _refused(request, study, message: str, reason: str, status: int):
    return_url = recruitment.platform_return_url(study=study) if reason in RETURN_REASONS else ""
    context = {"study": study, "message": message, "reason": reason, "return_url": return_url}
    return render(request, "annotation/take/refused.html", context, status=status)


def _refusal_page(request, study, refusal: recruitment.EntryRefused):
    response = _refused(request, study, refusal.message, refusal.reason, refusal.status_code)
    if refusal.retry_after is not None:
        response["Retry-After"] = str(refusal.retry_after)
    return response


def _client_address(request) -> str:
    """The requester's address. X-Forwarded-For is anyone's to write, so it is read only behind our own
    proxy, and then only its last entry: the address that proxy saw and appended."""
    if settings.BEHIND_PROXY:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if forwarded and forwarded[-1]:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR", "")


def _study_and_annotator(request, slug: str) -> tuple[Study, Annotator | None]:
    """The study (404 if none) and this browser's annotator in it, in one query on the usual path."""
    annotator_id = request.session.get(_session_key(slug))
    if annotator_id is not None:
        annotator = annotator_in_study(annotator_id=annotator_id, slug=slug)
        if annotator is not None:
            return annotator.study, annotator
    return get_object_or_404(Study, slug=slug), None


def _no_session(request, study):
    return _refused(
        request,
        study,
        "Your session has ended or this browser has not joined the study. "
        "Please open the study again from the link on the recruitment platform.",
        "no-session",
        403,
    )


def _step_url(study: Study, annotator: Annotator) -> str:
    step, key = recruitment.annotator_next_step(annotator=annotator)
    args = [study.slug, key] if step == "survey" else [study.slug]
    return reverse(STEP_URLS[step], args=args)


def _redirect(request, url: str):
    if request.htmx:  # let htmx do a full navigation instead of swapping a page into a fragment
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def _at_step(request, study, annotator, step: str, key: str | None = None):
    """None if the annotator belongs on this step; otherwise the redirect to where they belong."""
    actual, actual_key = recruitment.annotator_next_step(annotator=annotator)
    if actual == step and (key is None or key == actual_key):
        return None
    return _redirect(request, _step_url(study, annotator))


def annotator_page(step: str | None = None):
    """Load the study and this browser's annotator (403 page without one), then, when `step` is given,
    redirect an annotator who belongs elsewhere. The view receives (request, study, annotator, …)."""

    def decorate(view):
        @functools.wraps(view)
        def inner(request, slug: str, **kwargs):
            study, annotator = _study_and_annotator(request, slug)
            if annotator is None:
                return _no_session(request, study)
            if step is not None and (elsewhere := _at_step(request, study, annotator, step)) is not None:
                return elsewhere
            return view(request, study, annotator, **kwargs)

        return inner

    return decorate


@require_GET
def enter(request, slug: str):
    study, annotator = _study_and_annotator(request, slug)
    has_params = any(name in request.GET for name in recruitment.RECRUITMENT_PARAMS)
    if not has_params:
        if annotator is not None:
            return redirect(_step_url(study, annotator))
        return _refused(
            request,
            study,
            "This page needs the link from the recruitment platform (with PROLIFIC_PID, STUDY_ID and SESSION_ID).",
            "bad-link",
            400,
        )
    try:
        params = recruitment.recruitment_params_parse(request.GET)
        annotator, _ = recruitment.annotator_enter(study=study, params=params, client=_client_address(request))
    except recruitment.EntryRefused as refusal:
        return _refusal_page(request, study, refusal)
    request.session.cycle_key()
    request.session[_session_key(study.slug)] = annotator.pk
    return redirect(_step_url(study, annotator))


@require_http_methods(["GET", "POST"])
@annotator_page("consent")
def consent(request, study: Study, annotator: Annotator):
    def page(status=200, **extra):  # the duration is estimated only for a page shown, not for a redirect
        context = {"study": study, "duration_minutes": duration_minutes(study), **extra}
        return render(request, "annotation/take/consent.html", context, status=status)

    if request.method == "POST":
        choice = request.POST.get("consent")
        if choice == "ask-decline":  # "I do not agree" asks once more before it ends the session
            return page(confirm_decline=True)
        if choice not in ("agree", "decline"):
            return page(status=400, error="Please choose whether you agree to take part.")
        try:
            annotator = recruitment.annotator_consent(annotator=annotator, agree=choice == "agree")
        except recruitment.EntryRefused as refusal:
            return _refusal_page(request, study, refusal)
        return redirect(_step_url(study, annotator))
    return page()


def _survey_context(study, annotator, instrument, values=None, errors=None):
    """The questionnaire page's items. Consecutive scale items on the same scale form a battery: the first
    of them carries the battery's column heads (`matrix_head`), shown as a matrix on wide screens."""
    definition = instrument.definition
    values = values or {}
    items = []
    section = None
    battery = None  # the scale options of the battery the previous item belongs to
    for item in definition["items"]:
        entry = dict(item)
        entry["section_heading"] = item.get("section") if item.get("section") != section else None
        section = item.get("section", section)
        entry["chosen"] = values.get(item["id"], [])
        entry["error"] = (errors or {}).get(item["id"])
        if item.get("type") == "scale":
            scale = item.get("scale") or definition.get("scale", {})
            labels = {str(k): v for k, v in (scale.get("labels") or {}).items()}
            entry["options"] = [
                # The short label (before a parenthesised gloss) heads a matrix column; the full one stays
                # the option's accessible name.
                {"value": str(v), "label": labels.get(str(v), ""), "short": labels.get(str(v), "").split(" (")[0]}
                for v in range(int(scale["min"]), int(scale["max"]) + 1)
            ]
            options = [(o["value"], o["label"]) for o in entry["options"]]
            if options != battery or entry["section_heading"]:
                entry["matrix_head"] = entry["options"]
            battery = options
        else:
            battery = None
            entry["options"] = [o if isinstance(o, dict) else {"value": o, "label": o} for o in item.get("options", [])]
            if item.get("type") == "multi" and "all that apply" not in item["text"].lower():
                entry["hint"] = "(choose all that apply)"
            if item.get("other"):
                entry["other_text"] = (values.get(item["id"] + surveys.OTHER_SUFFIX) or [""])[0]
        items.append(entry)
    keys = list(study.instruments)
    return {
        "study": study,
        "instrument": instrument,
        "definition": definition,
        "items": items,
        "errors": errors or {},
        "page_number": keys.index(instrument.key) + 1,
        "page_count": len(keys),
    }


@require_http_methods(["GET", "POST"])
@annotator_page()
def survey(request, study: Study, annotator: Annotator, key: str):
    if key not in study.instruments:
        raise Http404("No such questionnaire")
    if (elsewhere := _at_step(request, study, annotator, "survey", key)) is not None:
        return elsewhere
    instrument = recruitment.instrument_get(key)
    if request.method == "POST":
        errors = recruitment.survey_submit(annotator=annotator, key=key, data=request.POST)
        if errors:
            values = {k: request.POST.getlist(k) for k in request.POST}
            context = _survey_context(study, annotator, instrument, values, errors)
            return render(request, "annotation/take/survey.html", context, status=400)
        return redirect(_step_url(study, annotator))
    return render(request, "annotation/take/survey.html", _survey_context(study, annotator, instrument))


@require_http_methods(["GET", "POST"])
@annotator_page("instructions")
def instructions(request, study: Study, annotator: Annotator):
    if request.method == "POST":
        try:
            annotator = recruitment.instructions_complete(annotator=annotator)
        except recruitment.EntryRefused as refusal:
            return _refusal_page(request, study, refusal)
        return redirect(_step_url(study, annotator))
    return render(request, "annotation/take/instructions.html", {"study": study, **_practice(study, request.GET)})


def _practice(study, query) -> dict:
    """What a practice answer would have been stored as (the practice form is a GET that stores nothing;
    take.js shows the same without reloading)."""
    if "practice" not in query and "practice_unsure" not in query:
        return {}
    try:
        value = rating_value_parse(study=study, raw=query.get("practice"), unsure=bool(query.get("practice_unsure")))
    except ApplicationError as exc:
        return {"practice_error": exc.message}
    return {"practice_stored": "Unsure" if value is None else f"{value:g}"}


def _card_context(
    study,
    annotator,
    *,
    error=None,
    notice=None,
    warning=None,
    check_warning=None,
    progress=None,
    upcoming=UNKNOWN,
    previous=None,
):
    """The rating card's context; `upcoming` is the next trial when the submission already found it, and
    `previous` the rating it just stored (the card offers to change it once: no query needed to know it)."""
    assignment = assignment_current(annotator=annotator) if upcoming is UNKNOWN else upcoming
    done, total = progress or assignment_progress(annotator=annotator)
    return {
        "study": study,
        "assignment": assignment,
        "done": done,
        "total": total,
        "percent": round(100 * done / total) if total else 100,
        "error": error,
        "notice": notice,
        "warning": warning,
        "check_warning": check_warning,
        "previous": previous if previous is not None and previous.prompt_id is not None else None,
        "idempotency_key": uuid.uuid4().hex,
    }


@require_GET
@annotator_page("rate")
def rate(request, study: Study, annotator: Annotator):
    template = "annotation/take/_rating_card.html" if request.htmx else "annotation/take/rate.html"
    return render(request, template, _card_context(study, annotator))


@require_POST
@annotator_page()
def rate_submit(request, study: Study, annotator: Annotator, assignment_id: int):
    template = "annotation/take/_rating_card.html" if request.htmx else "annotation/take/rate.html"
    try:
        outcome = rating_submit(
            annotator=annotator,
            assignment_id=assignment_id,
            raw_value=request.POST.get("rating"),
            unsure=bool(request.POST.get("unsure")),
            rt_ms=request.POST.get("rt_ms"),
            idempotency_key=request.POST.get("idempotency_key"),
        )
    except ApplicationError as exc:
        if exc.status_code == 404:
            raise Http404(exc.message) from exc
        annotator.refresh_from_db()
        if annotator.status != Annotator.Status.RATING:
            return _redirect(request, _step_url(study, annotator))
        context = _card_context(study, annotator, error=exc.message)
        response = render(request, template, context, status=exc.status_code)
        if "retry_after" in exc.extra:  # over the rating rate limit
            response["Retry-After"] = str(exc.extra["retry_after"])
        return response
    if outcome.completed or outcome.excluded:
        annotator.refresh_from_db()
        return _redirect(request, _step_url(study, annotator))
    notice = None if outcome.created else "That trial was already rated; your first answer was kept."
    warning = (
        f"Your answer was saved, but it came very quickly. Please take at least "
        f"{study.min_seconds_per_rating:g} seconds to read each prompt."
        if outcome.too_fast
        else None
    )
    if not request.htmx:
        return redirect(reverse("take:rate", args=[study.slug]))
    return render(
        request,
        template,
        _card_context(
            study,
            annotator,
            notice=notice,
            warning=warning,
            check_warning=_failed_check_warning(study, outcome),
            progress=outcome.progress,
            upcoming=outcome.next_assignment,
            previous=outcome.rating if outcome.created else None,
        ),
    )


@require_POST
@annotator_page()
def rate_revise(request, study: Study, annotator: Annotator, assignment_id: int):
    """Change the previous answer once, from the next card (annotation/services/revision.py)."""
    try:
        outcome = rating_revise(
            annotator=annotator,
            assignment_id=assignment_id,
            raw_value=request.POST.get("rating"),
            unsure=bool(request.POST.get("unsure")),
        )
    except ApplicationError as exc:
        if exc.status_code == 404:
            raise Http404(exc.message) from exc
        if not request.htmx:
            return _redirect(request, _step_url(study, annotator))
        context = {"study": study, "previous_id": assignment_id, "revise_error": exc.message}
        return render(request, "annotation/take/_previous_answer.html", context, status=exc.status_code)
    if not request.htmx:
        return redirect(_step_url(study, annotator))
    context = {"study": study, "previous": outcome.rating, "revised": outcome.revision}
    return render(request, "annotation/take/_previous_answer.html", context)


def _failed_check_warning(study, outcome) -> str | None:
    """A warning for the card after a failed attention check (which item it was is not said), from what the
    submission itself counted: no query."""
    if not outcome.created or not outcome.check_failed:
        return None
    left = (study.attention_max_failures or 0) - outcome.failed_checks
    ending = (
        " One more will end the study for you."
        if left == 1
        else f" {left} more will end the study for you."
        if left > 1
        else ""
    )
    return (
        "One of the attention checks so far was not answered as its text asked. "
        "Please read every item carefully." + ending
    )


@require_GET
@annotator_page("done")
def done(request, study: Study, annotator: Annotator):
    return render(
        request, "annotation/take/done.html", {"study": study, "annotator": annotator, "code": study.completion_code}
    )


@require_GET
@annotator_page()
def stopped(request, study: Study, annotator: Annotator):
    step, _ = recruitment.annotator_next_step(annotator=annotator)
    if step not in ("declined", "excluded", "returned"):
        return redirect(_step_url(study, annotator))
    failed_checks = step == "excluded" and annotator.exclusion == Annotator.Exclusion.ATTENTION
    code = study.failed_checks_code if failed_checks else ""
    return_url = recruitment.platform_return_url(study=study, code=code)
    return render(
        request, "annotation/take/stopped.html", {"study": study, "step": step, "code": code, "return_url": return_url}
    )
