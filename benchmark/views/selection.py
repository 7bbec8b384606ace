"""Prompt selection: choose K of the study's prompts to match target distributions; see the run's objective
over iterations and the chosen distributions against the targets; create a study from the choice."""

from __future__ import annotations

import math

from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.access import study_view
from config.errors import ApplicationError, error_response
from jobs.models import Job
from jobs.services import job_create

from .. import figures
from ..curation import study_from_selection
from ..selectors import job_in_progress, job_latest_succeeded

DIMENSION_TITLES = {
    "harm_level": "Harm level",
    "actions": "Harm actions",
    "effects": "Harm effects",
    "values": "Value topics",
}


def _objective_figure(history: list[float], optimizer: str) -> dict:
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "objective",
                "x": list(range(len(history))),
                "y": history,
            }
        ],
        "layout": {
            **figures.LAYOUT,
            "title": {
                "text": "Objective over iterations ("
                + ("generations" if optimizer == "ga" else "accepted swaps and kicks")
                + ")"
            },
            "xaxis": {"title": {"text": "iteration"}},
            "yaxis": {"title": {"text": "objective (mean JS distance)"}},
        },
    }


def _distribution_figure(name: str, block: dict) -> dict:
    title = f"{DIMENSION_TITLES.get(name, name)}: chosen vs target (JS distance {block['js_distance']:.3f})"
    return figures.grouped_bar_figure(
        [label.replace("_", " ") for label in block["labels"]],
        {"chosen": block["selected"], "target": block["target"]},
        title,
        axis="share",
    )


def _context(study, job: Job | None) -> dict:
    result = (job.result or {}) if job else {}
    plots = []
    if result:
        plots.append(
            {
                "id": "selection-objective",
                "figure": figures.to_json(_objective_figure(result["objective_per_iteration"], result["optimizer"])),
            }
        )
        for name, block in result["distributions"].items():
            plots.append({"id": f"selection-{name}", "figure": figures.to_json(_distribution_figure(name, block))})
    return {
        "study": study,
        "job": job,
        "result": result,
        "plots": plots,
        "running": job_in_progress(study=study, kind="selection"),
        "n_prompts": study.prompts.count(),
    }


def _job_or_latest(request, study) -> Job | None:
    raw = request.GET.get("job", "").strip()
    if not raw:
        return job_latest_succeeded(study=study, kind="selection")
    if not raw.isdigit():
        raise ApplicationError(f"job must be a job number (got {raw[:20]!r})")
    job = Job.objects.filter(pk=int(raw), study=study, kind="selection", status=Job.Status.SUCCEEDED).first()
    if job is None:
        raise ApplicationError(f"no finished prompt selection #{raw} in this study", status_code=404)
    return job


@require_GET
@study_view("view")
def selection(request, study):
    """The latest (or `?job=N`) selection of the study, and the form to run one."""
    try:
        job = _job_or_latest(request, study)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    context = _context(study, job)
    if request.htmx:
        return render(request, "benchmark/_selection_panels.html", context)
    return render(request, "benchmark/selection.html", context)


def _integer(request, name: str, default: str) -> int:
    raw = request.POST.get(name, "").strip() or default
    try:
        return int(raw)
    except ValueError:
        raise ApplicationError(f"{name} must be a whole number (got {raw[:20]!r})") from None


def _number(request, name: str, default: str) -> float:
    raw = request.POST.get(name, "").strip() or default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise ApplicationError(f"{name.replace('_', ' ')} must be a number (got {raw[:20]!r})")
    return value


def selection_pilot_params(request) -> dict:
    """The pilot fields of a selection form (`benchmark/_selection_pilot_fields.html`) as job parameters;
    none when no pilot is chosen."""
    pilot = request.POST.get("pilot", "").strip()
    if not pilot:
        return {}
    return {
        "pilot": pilot,
        "disagreement_weight": _number(request, "disagreement_weight", "0.05"),
        "embedding": request.POST.get("embedding") == "on",
    }


@require_POST
@study_view("edit")
def selection_start(request, study):
    """Start a prompt-selection job with the form's K, targets, group limit, optimizer and seed."""
    try:
        params = {
            "k": _integer(request, "k", "0"),
            "targets": request.POST.get("targets", "paper"),
            "max_per_group": _integer(request, "max_per_group", "2"),
            "optimizer": request.POST.get("optimizer", "best"),
            "seed": _integer(request, "seed", "0"),
        }
        params.update(selection_pilot_params(request))
        job = job_create(kind="selection", study=study, params=params, user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "jobs/_job_card.html", {"job": job})
    return redirect("benchmark:selection", slug=study.slug)


@require_POST
@study_view("edit")
def selection_study(request, study):
    """Create a new draft study (owned by the requester) holding the prompts a finished selection chose."""
    raw = request.POST.get("job", "").strip()
    job = Job.objects.filter(pk=int(raw), study=study, kind="selection").first() if raw.isdigit() else None
    if job is None:
        return error_response(request, "Name a prompt selection of this study (job).", status=400)
    try:
        created = study_from_selection(job=job, user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        response = render(request, "benchmark/_selection_created.html", {"created": created})
        return response
    return redirect("annotation:study_detail", slug=created.slug)
