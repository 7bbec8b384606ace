"""Job pages: start an export, watch its card (htmx polling), download its files."""
import csv

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.selectors import studies_for_user
from annotation.selectors import study_overview as study_overview_data
from annotation.views.research import get_study_for_user
from config.errors import ApplicationError

from . import figures, services
from .models import Job, JobArtifact


def get_job_for_user(user, job_id: int) -> Job:
    job = Job.objects.filter(pk=job_id, study__in=studies_for_user(user)).select_related("study").first()
    if job is None and user.is_staff:
        job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job")
    return job


@require_POST
@login_required
def export_start(request, slug: str):
    study = get_study_for_user(request.user, slug)
    try:
        job = services.job_create(
            kind=Job.Kind.EXPORT, study=study, params={"format": request.POST.get("format", "")}, user=request.user
        )
    except ApplicationError as exc:
        return HttpResponseBadRequest(exc.message)
    if request.htmx:
        return render(request, "benchmark/_job_card.html", {"job": job})
    return redirect("benchmark:job_detail", job_id=job.pk)


@require_GET
@login_required
def job_detail(request, job_id: int):
    job = get_job_for_user(request.user, job_id)
    template = "benchmark/_job_card.html" if request.htmx else "benchmark/job_detail.html"
    return render(request, template, {"job": job})


@require_GET
@login_required
def artifact_download(request, job_id: int, name: str):
    job = get_job_for_user(request.user, job_id)
    artifact = get_object_or_404(JobArtifact, job=job, name=name)
    return FileResponse(artifact.file.open("rb"), as_attachment=True, filename=artifact.name,
                        content_type=artifact.content_type)


@require_GET
@login_required
def study_overview(request, slug: str):
    """Live collection dashboard; the panels poll themselves through htmx."""
    study = get_study_for_user(request.user, slug)
    overview = study_overview_data(study=study)
    context = {
        "study": study,
        "overview": overview,
        "figures": {
            "progress": figures.to_json(figures.progress_figure(overview["over_time"])),
            "per_prompt": figures.to_json(figures.per_prompt_figure(overview["per_prompt"], study.target_ratings_per_prompt)),
            "status": figures.to_json(figures.status_figure(overview["by_status"])),
        },
    }
    template = "benchmark/_overview_panels.html" if request.htmx else "benchmark/overview.html"
    return render(request, template, context)


OVERVIEW_TABLES = {
    "progress": lambda o: ([("hour", "ratings", "cumulative")], [(r["hour"], r["ratings"], r["cumulative"]) for r in o["over_time"]]),
    "per_prompt": lambda o: ([("prompt", "ratings")], list(o["per_prompt"].items())),
    "status": lambda o: ([("status", "annotators")], list(o["by_status"].items())),
}


@require_GET
@login_required
def study_overview_csv(request, slug: str, name: str):
    study = get_study_for_user(request.user, slug)
    if name not in OVERVIEW_TABLES:
        raise Http404("No such table")
    header, rows = OVERVIEW_TABLES[name](study_overview_data(study=study))
    return csv_response(f"{study.slug}-{name}.csv", header + rows)


def csv_response(filename: str, rows) -> HttpResponse:
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerows(rows)
    return response
