"""Latent annotator states: start the study's job, and each shipped checkpoint's validation report."""

from __future__ import annotations

import json
import re

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.access import study_view
from config.errors import ApplicationError, error_response
from jobs.services import job_create

from .. import figures

_NAME = re.compile(r"^[a-z][a-z-]{0,40}$")


@require_POST
@study_view("edit")
def latent_start(request, study):
    """Start a latent-state job for the study (the model and the flag threshold from the form)."""
    params = {"model": request.POST.get("model", "engagement")}
    if request.POST.get("response_times"):
        params["response_times"] = request.POST["response_times"]
    if request.POST.get("flag_share"):
        try:
            params["flag_share"] = float(request.POST["flag_share"])
        except ValueError:
            return error_response(request, "flag_share must be a number from 0.01 to 1.", status=400)
    try:
        job = job_create(kind="latent", study=study, params=params, user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "jobs/_job_card.html", {"job": job})
    return redirect("annotation:participants", slug=study.slug)


def _report_or_404(request, name: str):
    from ..latent import checkpoint_names, checkpoint_report  # noqa: PLC0415  (torch: not at URL-conf time)

    if not _NAME.match(name) or name not in checkpoint_names():
        raise ApplicationError(f"No checkpoint {name!r}; shipped: {', '.join(checkpoint_names())}.", status_code=404)
    return checkpoint_report(name)


def _calibration_figure(report: dict) -> dict:
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "perfect",
            "x": [0, 1],
            "y": [0, 1],
            "line": {"color": "#bbb", "dash": "dot"},
        }
    ]
    for method, metrics in report.get("methods", {}).items():
        table = metrics.get("calibration", [])
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": method.replace("_", " "),
                "x": [row["mean_p"] for row in table],
                "y": [row["observed"] for row in table],
                "text": [f"{row['n']} trials" for row in table],
            }
        )
    layout = {
        **figures.LAYOUT,
        "height": 420,
        "title": {"text": "Calibration of p(disengaged) on held-out simulations"},
        "xaxis": {"title": {"text": "predicted p(disengaged)"}, "range": [0, 1]},
        "yaxis": {"title": {"text": "observed share disengaged"}, "range": [0, 1]},
    }
    return {"data": data, "layout": layout}


@require_GET
@login_required
def latent_checkpoints(request):
    from ..latent import checkpoint_names, checkpoint_report  # noqa: PLC0415  (torch: not at URL-conf time)

    rows = []
    for name in checkpoint_names():
        report = checkpoint_report(name)
        rows.append({"name": name, "report": report})
    return render(request, "benchmark/latent_checkpoints.html", {"rows": rows})


latent_checkpoints.study_access = None  # no study: any signed-in researcher (the permission matrix reads this)


@require_GET
@login_required
def latent_checkpoint(request, name: str):
    """One checkpoint's validation report (log-loss, AUROC, calibration; θ for drift); `?format=json`."""
    try:
        report = _report_or_404(request, name)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.GET.get("format") == "json":
        return JsonResponse(report, json_dumps_params={"indent": 1})
    context = {
        "name": name,
        "report": report,
        "methods": [{"name": key.replace("_", " "), **value} for key, value in report.get("methods", {}).items()],
        "figure": figures.to_json(_calibration_figure(report)),
        "json": json.dumps(report.get("config", {}), indent=1),
    }
    return render(request, "benchmark/latent_checkpoint.html", context)


latent_checkpoint.study_access = None  # the same for every signed-in researcher
