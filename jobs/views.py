"""A job's card (htmx polls it until the job is done) and its files."""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from .models import JobArtifact
from .selectors import get_job_for_user


@require_GET
@login_required
def job_detail(request, job_id: int):
    job = get_job_for_user(request.user, job_id)
    template = "jobs/_job_card.html" if request.htmx else "jobs/job_detail.html"
    response = render(request, template, {"job": job})
    if request.htmx and job.is_done:
        response["HX-Trigger"] = f"{job.kind}-finished"  # pages listening for it refresh their panels
    return response


@require_GET
@login_required
def artifact_download(request, job_id: int, name: str):
    job = get_job_for_user(request.user, job_id)
    artifact = get_object_or_404(JobArtifact, job=job, name=name)
    return FileResponse(
        artifact.file.open("rb"), as_attachment=True, filename=artifact.name, content_type=artifact.content_type
    )


# The access level on the job's study each view needs ("view": the study's jobs are readable by all who
# may see it), recorded as annotation.access.study_view does (this app does not import annotation); the
# permission-matrix test reads it from the URL resolver.
job_detail.study_access = artifact_download.study_access = "view"
