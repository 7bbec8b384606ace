"""The study builder: new study, the edit page (one htmx form per section), status, duplicate, preview."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.errors import ApplicationError, error_response

from ..access import study_view
from ..forms import SECTION_FIELDS, SECTIONS, StudyCreateForm, instrument_titles, section_form_class
from ..models import SurveyInstrument
from ..services.study import (
    PROTECTED_REASON,
    TRANSITIONS,
    study_create,
    study_duplicate,
    study_has_ratings,
    study_status_set,
    study_update,
)
from ..surveys import instrument_load
from .annotator import _survey_context

PREVIEW_CARDS = 3


def _navigate(request, url: str) -> HttpResponse:
    """A full navigation to `url`: htmx is told to go there (HX-Redirect), a plain form is redirected."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


@require_http_methods(["GET", "POST"])
@login_required
def study_new(request):
    """Any signed-in researcher may create a study; they own it."""
    form = StudyCreateForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            data = {"title": form.cleaned_data["title"], "description": form.cleaned_data["description"]}
            try:
                study = study_create(user=request.user, data=data, slug=form.cleaned_data["slug"] or None)
            except ApplicationError as exc:
                return error_response(request, exc.message, status=exc.status_code)
            return _navigate(request, reverse("annotation:study_edit", args=[study.slug]))
        template = "annotation/builder/_new_form.html" if request.htmx else "annotation/builder/new.html"
        response = render(request, template, {"form": form}, status=400)
        if request.htmx:
            response["HX-Retarget"] = "#new-study-form"
            response["HX-Reswap"] = "outerHTML"
        return response
    return render(request, "annotation/builder/new.html", {"form": form})


study_new.study_access = None  # no study yet: any signed-in researcher (the permission matrix reads this)


def _instrument_rows(chosen: list[str]) -> list[dict]:
    titles = instrument_titles()
    order = [key for key in chosen if key in titles] + [key for key in titles if key not in chosen]
    return [
        {"key": key, "title": titles[key], "chosen": key in chosen, "first": i == 0, "last": i == len(order) - 1}
        for i, key in enumerate(order)
    ]


def _section(study, key: str, *, locked: bool, form=None, saved: bool = False) -> dict:
    heading = next(h for k, h, _ in SECTIONS if k == key)
    form = form or section_form_class(key)(instance=study, locked=locked, prefix=key)
    instruments = form["instruments"].value() if "instruments" in form.fields else None
    return {
        "key": key,
        "heading": heading,
        "form": form,
        "saved": saved,
        "instrument_rows": _instrument_rows(list(instruments or [])) if instruments is not None else None,
    }


def _status_context(study) -> dict:
    return {"study": study, "next_statuses": TRANSITIONS[study.status]}


@require_GET
@study_view("edit")
def study_edit(request, study):
    """The builder: every setting of the study in sections, each saved on its own (htmx, no reload)."""
    locked = study_has_ratings(study=study)
    context = {
        "study": study,
        "locked": locked,
        "locked_reason": PROTECTED_REASON,
        "sections": [_section(study, key, locked=locked) for key, _h, _f in SECTIONS],
        **_status_context(study),
    }
    return render(request, "annotation/builder/edit.html", context)


def _reordered(post, key: str):
    """The posted data with the instrument list reordered when an up/down button was pressed."""
    move = post.get(f"{key}-move", "")
    if ":" not in move:
        return post
    direction, name = move.split(":", 1)
    field = f"{key}-instruments"
    chosen = post.getlist(field)
    if name in chosen:
        i = chosen.index(name)
        j = i - 1 if direction == "up" else i + 1
        if 0 <= j < len(chosen):
            chosen[i], chosen[j] = chosen[j], chosen[i]
    data = post.copy()
    data.setlist(field, chosen)
    return data


@require_POST
@study_view("edit")
def study_section_save(request, study, section: str):
    """Save one section. Answers the section's partial (htmx) or goes back to the edit page; a bad
    value comes back in the form, next to its field, with status 400."""
    if section not in SECTION_FIELDS:
        raise Http404("No such section")
    locked = study_has_ratings(study=study)
    form = section_form_class(section)(_reordered(request.POST, section), instance=study, locked=locked, prefix=section)
    status = 200
    saved = False
    if form.is_valid():
        try:
            study = study_update(study=study, user=request.user, data=form.changes())
            saved = True
            form = section_form_class(section)(instance=study, locked=locked, prefix=section)
        except ApplicationError as exc:
            fields = exc.extra.get("fields")
            for name, messages in fields.items() if isinstance(fields, dict) else ():
                form.add_error(name if name in form.fields else None, messages)
            if not isinstance(fields, dict):
                form.add_error(None, exc.message)
            status = exc.status_code
    else:
        status = 400
    if not request.htmx:
        if saved:
            return redirect(reverse("annotation:study_edit", args=[study.slug]) + f"#section-{section}")
        return error_response(request, "; ".join(m for e in form.errors.values() for m in e), status=status)
    context = {"study": study, "section": _section(study, section, locked=locked, form=form, saved=saved)}
    response = render(request, "annotation/builder/_section.html", context, status=status)
    if status >= 400:
        # A 4xx htmx answer is swapped only when the server names its target (static/js/site.js).
        response["HX-Retarget"] = f"#section-{section}"
        response["HX-Reswap"] = "outerHTML"
    return response


@require_POST
@study_view("edit")
def study_status(request, study):
    """Move the study to the posted status (draft → recruiting ⇄ paused → closed)."""
    try:
        study = study_status_set(study=study, status=request.POST.get("status", ""), user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "annotation/builder/_status.html", _status_context(study))
    return redirect("annotation:study_edit", slug=study.slug)


@require_POST
@study_view("edit")
def study_copy(request, study):
    """Duplicate the study (settings and prompts, no data) as a draft the user owns; open its builder."""
    copy = study_duplicate(study=study, user=request.user)
    return _navigate(request, reverse("annotation:study_edit", args=[copy.slug]))


@require_GET
@study_view("view")
def study_preview(request, study):
    """The study as an annotator sees it, on one page: consent, each questionnaire, the instructions and
    a few rating cards from its prompts. Every form is disabled and posts nowhere: nothing is saved, no
    annotator is created."""
    surveys = []
    for key in study.instruments:
        try:
            definition = instrument_load(key)
        except ValueError:  # a broken file is named by the system check; the preview skips it
            continue
        # Unsaved: the preview reads the instrument file and writes no row, not even the instrument's.
        instrument = SurveyInstrument(key=key, title=definition.get("title", key), definition=definition)
        surveys.append(_survey_context(study, None, instrument))
    prompts = list(study.prompts.order_by("order", "id").only("id", "text")[:PREVIEW_CARDS])
    context = {"study": study, "surveys": surveys, "prompts": prompts}
    return render(request, "annotation/builder/preview.html", context)
