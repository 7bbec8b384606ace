"""Jobs: start an export, watch its card (htmx polling), download its files."""
import csv

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.exports import spreadsheet_safe
from annotation.views.research import get_study_for_user
from config.errors import ApplicationError, error_response
from annotation.selectors import studies_for_user

from .. import services
from ..models import Job, JobArtifact


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
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "benchmark/_job_card.html", {"job": job})
    return redirect("benchmark:job_detail", job_id=job.pk)


@require_GET
@login_required
def job_detail(request, job_id: int):
    job = get_job_for_user(request.user, job_id)
    template = "benchmark/_job_card.html" if request.htmx else "benchmark/job_detail.html"
    response = render(request, template, {"job": job})
    if request.htmx and job.is_done:
        response["HX-Trigger"] = f"{job.kind}-finished"  # pages listening for it refresh their panels
    return response


@require_GET
@login_required
def artifact_download(request, job_id: int, name: str):
    job = get_job_for_user(request.user, job_id)
    artifact = get_object_or_404(JobArtifact, job=job, name=name)
    return FileResponse(artifact.file.open("rb"), as_attachment=True, filename=artifact.name,
                        content_type=artifact.content_type)


def csv_response(filename: str, rows) -> HttpResponse:
    r"""Rows (the first one the header) as a CSV download for a spreadsheet: text cells that start like
    a formula are neutralised (annotation.exports.spreadsheet_safe); the csv module's `\r\n` line
    ends make it quote any cell holding a line break, bare `\r` included."""
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerows([spreadsheet_safe(cell) for cell in row] for row in rows)
    return response
