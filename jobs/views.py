"""A job's card (htmx polls it until the job is done) and its files; the jobs pages (one study's, and
every study the user may see) and cancelling a job."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from config.errors import ApplicationError, error_response

from . import registry, services
from .models import Job, JobArtifact
from .selectors import cancel_refusal, get_job_for_user, jobs_for_user, queue_positions, running_counts

# The jobs pages list the latest jobs, this many (the API lists them all, paginated).
JOBS_SHOWN = 100


def _card_context(job: Job) -> dict:
    return {"job": job, "queue_place": queue_positions([job]).get(job.pk)}


@require_GET
@login_required
def job_detail(request, job_id: int):
    job = get_job_for_user(request.user, job_id)
    template = "jobs/_job_card.html" if request.htmx else "jobs/job_detail.html"
    response = render(request, template, _card_context(job))
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


def _jobs_page(request, jobs, *, study=None):
    """The jobs table (status, queue place, progress, duration, files, cancel); the page polls it while a
    job is queued or running."""
    jobs = list(jobs.select_related("study").prefetch_related("artifacts").defer("result")[:JOBS_SHOWN])
    places = queue_positions(jobs)
    for job in jobs:
        job.queue_place = places.get(job.pk)
    context = {
        "jobs": jobs,
        "study": study,
        "active": any(not job.is_done for job in jobs),
        "running": running_counts() if places else {},
        "shown": JOBS_SHOWN,
    }
    template = "jobs/_jobs_table.html" if request.htmx else "jobs/jobs.html"
    return render(request, template, context)


@require_GET
@login_required
def jobs_list(request):
    """Every job of every study the user may see."""
    return _jobs_page(request, jobs_for_user(request.user))


@require_GET
@login_required
def study_jobs(request, slug: str):
    """One study's jobs (404 for a study the user may not see)."""
    study = registry.studies_for_user(request.user, "view").filter(slug=slug).first()
    if study is None:
        raise Http404("No such study")
    return _jobs_page(request, jobs_for_user(request.user).filter(study=study), study=study)


@require_POST
@login_required
def job_cancel(request, job_id: int):
    """Cancel a queued or running job. Who may start a job of its kind on its study may cancel it (a
    viewer an export, an editor a benchmark); staff any."""
    job = get_job_for_user(request.user, job_id)
    refusal = cancel_refusal(request.user, job)
    if refusal:
        raise PermissionDenied(refusal)
    try:
        job = services.job_cancel(job=job)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if not request.htmx:
        return redirect("jobs:job_detail", job_id=job.pk)
    target = request.htmx.target or ""
    if target.startswith("job-row-"):
        job.queue_place = None
        show_study = request.POST.get("show_study") == "1"
        return render(request, "jobs/_job_row.html", {"job": job, "show_study": show_study})
    return render(request, "jobs/_job_card.html", _card_context(job))


# The access level on the job's study each view needs ("view": the study's jobs are readable by all who
# may see it), recorded as annotation.access.study_view does (this app does not import annotation); the
# permission-matrix test reads it from the URL resolver. Cancelling checks the kind's own need as well.
job_detail.study_access = artifact_download.study_access = study_jobs.study_access = "view"
job_cancel.study_access = "view"
jobs_list.study_access = None
