"""Researcher pages: the studies one may see, and one study with its prompts, annotators and exports."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.access import studies_for_user, study_view
from annotation.exports import FORMATS
from annotation.selectors import study_counts
from config.errors import ApplicationError, error_response
from jobs.services import job_create


@require_GET
@login_required
def study_list(request):
    studies = studies_for_user(request.user).annotate(
        n_prompts=Count("prompts", distinct=True), n_annotators=Count("annotators", distinct=True)
    )
    return render(request, "annotation/study_list.html", {"studies": studies})


# No study: any signed-in researcher sees the list of theirs (the permission matrix reads the declaration).
study_list.study_access = None


@require_GET
@study_view("view")
def study_detail(request, study):
    prompts = Paginator(study.prompts.order_by("order", "id"), 25).get_page(request.GET.get("page"))
    context = {
        "study": study,
        "counts": study_counts(study=study),
        "prompts": prompts,
        "formats": FORMATS,
        "jobs": study.jobs.defer("result").prefetch_related("artifacts")[:10],
    }
    if request.htmx and request.htmx.target == "prompt-table":
        return render(request, "annotation/_prompt_table.html", context)
    return render(request, "annotation/study_detail.html", context)


@require_POST
@study_view("view")  # viewers may download the data, exports included
def export_start(request, study):
    """Queue a dataset export; the page (htmx) gets the job's card, which polls until the files are ready."""
    try:
        params = {"format": request.POST.get("format", "")}
        if "license" in request.POST:  # the dataset-hub card's licence (datasets page)
            params["license"] = request.POST["license"]
        job = job_create(kind="export", study=study, params=params, user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "jobs/_job_card.html", {"job": job})
    return redirect("jobs:job_detail", job_id=job.pk)
