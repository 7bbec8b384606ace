"""Researcher pages about a study's annotators: the participants table (and its CSV), one annotator,
exclude and reinstate, and the recruitment-id lookup for reviewing submissions on the platform."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_tables2 import RequestConfig

from annotation.access import study_allows, study_view
from annotation.exports import spreadsheet_csv, spreadsheet_safe
from annotation.latent import latent_by_pseudonym, latent_figure, latent_state, latent_trials
from annotation.models import Annotator
from annotation.participants import (
    VERDICTS,
    annotator_trials,
    participants_columns,
    participants_frame,
    participants_table,
    recruitment_ids_parse,
    recruitment_lookup,
)
from annotation.services.review import annotator_exclude, annotator_reinstate
from annotation.tables import PER_PAGE, ParticipantsTable, SortedRows
from config.errors import ApplicationError, error_response

STATUSES = [value for value, _ in Annotator.Status.choices]
PER_PAGE_MAX = 200


def _status_filter(request) -> str:
    status = request.GET.get("status", "")
    if status and status not in STATUSES:
        raise ApplicationError(f"Unknown status {status!r}; choose one of {', '.join(STATUSES)}.")
    return status


def _per_page(request) -> int:
    raw = request.GET.get("per_page")
    if raw is None:
        return PER_PAGE
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= PER_PAGE_MAX:
        raise ApplicationError(f"per_page must be a whole number from 1 to {PER_PAGE_MAX}.")
    return value


@require_GET
@study_view("view")
def participants(request, study):
    """The annotators of a study with their review figures; sorting, pages and the status filter swap
    the table only (htmx), and work as plain links without JavaScript."""
    try:
        status = _status_filter(request)
        per_page = _per_page(request)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    latent_job, latent_running = latent_state(study=study)
    table = ParticipantsTable(
        SortedRows(participants_columns(study=study, status=status or None, latent_job=latent_job)), study=study
    )
    RequestConfig(request, paginate={"per_page": per_page}).configure(table)
    context = {
        "study": study,
        "table": table,
        "statuses": STATUSES,
        "status": status,
        "can_edit": study_allows(request.user, study, "edit"),
        "latent_job": latent_job,
        "latent_running": latent_running,
    }
    # The table's own links and filter aim at it (boosted or not); a request for the whole page gets it.
    if request.htmx and (request.htmx.target == "participant-table" or not request.htmx.boosted):
        return render(request, "annotation/_participants_table.html", context)
    return render(request, "annotation/participants.html", context)


@require_GET
@study_view("view")
def participants_csv(request, study):
    """The participants table as CSV (every annotator, or one status), text cells spreadsheet-safe."""
    try:
        status = _status_filter(request)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    body = spreadsheet_csv(participants_frame(study=study, status=status or None))
    response = HttpResponse(body.encode("utf-8"), content_type="text/csv; charset=utf-8")
    suffix = f"-{status}" if status else ""
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-participants{suffix}.csv"'
    return response


def _annotator(study, pseudonym: str) -> Annotator:
    annotator = Annotator.objects.filter(study=study, pseudonym=pseudonym).first()
    if annotator is None:
        raise ApplicationError(f"No annotator {pseudonym!r} in this study.", status_code=404)
    return annotator


def _review_context(request, study, annotator) -> dict:
    return {
        "study": study,
        "annotator": annotator,
        "history": list(annotator.status_changes.select_related("user").order_by("created_at", "id")),
        "can_edit": study_allows(request.user, study, "edit"),
    }


@require_GET
@study_view("view")
def participant_detail(request, study, pseudonym: str):
    """One annotator: their trials in the order shown, questionnaires, status and review history."""
    try:
        annotator = _annotator(study, pseudonym)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    responses = list(annotator.survey_responses.select_related("instrument").order_by("submitted_at", "id"))
    latent_job, _ = latent_state(study=study)
    row = next(
        (r for r in participants_table(study=study, latent_job=latent_job) if r["pseudonym"] == annotator.pseudonym),
        None,
    )
    latent = latent_by_pseudonym(latent_job).get(annotator.pseudonym)
    states = latent_trials(job=latent_job, pseudonym=annotator.pseudonym) if latent else None
    context = {
        **_review_context(request, study, annotator),
        "trials": annotator_trials(annotator=annotator),
        "responses": responses,
        "required": list(study.instruments or []),
        "row": row,
        "latent_job": latent_job,
        "latent": latent,
        "latent_figure": latent_figure(states, pseudonym=annotator.pseudonym)
        if states is not None and len(states)
        else None,
    }
    return render(request, "annotation/participant_detail.html", context)


def _review(request, study, pseudonym: str, service):
    try:
        annotator = service(
            annotator=_annotator(study, pseudonym), reason=request.POST.get("reason", ""), user=request.user
        )
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "annotation/_participant_review.html", _review_context(request, study, annotator))
    return redirect("annotation:participant_detail", slug=study.slug, pseudonym=annotator.pseudonym)


@require_POST
@study_view("edit")
def participant_exclude(request, study, pseudonym: str):
    return _review(request, study, pseudonym, annotator_exclude)


@require_POST
@study_view("edit")
def participant_reinstate(request, study, pseudonym: str):
    return _review(request, study, pseudonym, annotator_reinstate)


@require_http_methods(["GET", "POST"])
@study_view("edit")
def recruitment_lookup_page(request, study):
    """Paste recruitment ids, see each one's annotator and verdict. The ids travel only in the POST body
    and are hashed with the key used at entry; they are never stored or logged."""
    context = {"study": study, "verdicts": VERDICTS}
    if request.method == "POST":
        try:
            rows = recruitment_lookup(study=study, ids=recruitment_ids_parse(request.POST.get("ids", "")))
        except ApplicationError as exc:
            return error_response(request, exc.message, status=exc.status_code)
        context["rows"] = rows
        context["counts"] = {v: sum(1 for r in rows if r.verdict == v) for v in VERDICTS}
        if request.htmx:
            return render(request, "annotation/_lookup_results.html", context)
    return render(request, "annotation/participants_lookup.html", context)


@require_POST
@study_view("edit")
def recruitment_lookup_csv(request, study):
    """The pasted ids with their verdicts as a CSV (recruitment_id, verdict, pseudonym, status), in the
    order pasted, for bulk approval and rejection on the recruitment platform."""
    try:
        rows = recruitment_lookup(study=study, ids=recruitment_ids_parse(request.POST.get("ids", "")))
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["recruitment_id", "verdict", "pseudonym", "status"])
    for row in rows:
        writer.writerow([spreadsheet_safe(v) for v in (row.recruitment_id, row.verdict, row.pseudonym, row.status)])
    response = HttpResponse(buffer.getvalue().encode("utf-8"), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-verdicts.csv"'
    response["Cache-Control"] = "no-store"  # holds the raw ids: no copy kept on the way
    return response
