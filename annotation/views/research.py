"""Researcher pages: the studies one may see, and one study with its prompts, annotators and exports."""
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.exports import FORMATS
from annotation.models import Study
from annotation.selectors import studies_for_user, study_counts


def get_study_for_user(user, slug: str) -> Study:
    """The study if the user may see it; 404 otherwise (so ids of others' studies are not revealed)."""
    study = studies_for_user(user).filter(slug=slug).first()
    if study is None:
        raise Http404("No such study")
    return study


@require_GET
@login_required
def study_list(request):
    studies = studies_for_user(request.user).annotate(
        n_prompts=Count("prompts", distinct=True), n_annotators=Count("annotators", distinct=True)
    )
    return render(request, "annotation/study_list.html", {"studies": studies})


@require_GET
@login_required
def study_detail(request, slug: str):
    study = get_study_for_user(request.user, slug)
    prompts = Paginator(study.prompts.order_by("order", "id"), 25).get_page(request.GET.get("page"))
    context = {
        "study": study,
        "counts": study_counts(study=study),
        "prompts": prompts,
        "formats": FORMATS,
        "jobs": study.jobs.all()[:10],
    }
    if request.htmx and request.htmx.target == "prompt-table":
        return render(request, "annotation/_prompt_table.html", context)
    return render(request, "annotation/study_detail.html", context)
