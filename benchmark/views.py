"""Job pages: start an export, watch its card (htmx polling), download its files."""
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.selectors import studies_for_user
from annotation.views.research import get_study_for_user
from config.errors import ApplicationError

from . import services
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
