"""Start a pool's generation jobs from its page: graded variants of its seeds (with the researcher's
instruction template, kept on the pool) and harm-benefit trees of its candidates."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.access import study_view
from config.errors import ApplicationError, error_response
from jobs.services import job_create

from ..pool_curation import pool_for_study
from ..pool_jobs import pool_variants_template_save
from . import pools


def _integer(request, name: str, default: str) -> int:
    raw = request.POST.get(name, "").strip() or default
    try:
        return int(raw)
    except ValueError:
        raise ApplicationError(f"{name} must be a whole number (got {raw[:20]!r})") from None


def _started(request, study, pool, job):
    if request.htmx:
        return render(request, "jobs/_job_card.html", {"job": job})
    return redirect("benchmark:pool_detail", slug=study.slug, pool_id=pool.pk)


@require_GET
@study_view("view")
def pool_generation(request, study, pool_id: int):
    """The pool page's generation panel (`_pool_jobs.html`), which reloads itself when a job of it ends;
    without htmx, the whole pool page."""
    if not request.htmx:
        return pools.pool_detail(request, study.slug, pool_id)
    try:
        pool = pool_for_study(study=study, pool_id=pool_id)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return render(request, "benchmark/_pool_jobs.html", {"study": study, "pool": pool})


@require_POST
@study_view("edit")
def pool_variants_start(request, study, pool_id: int):
    """Start a variants job with the form's template (checked; kept on the pool) and attempts per seed."""
    try:
        pool = pool_for_study(study=study, pool_id=pool_id)
        template = request.POST.get("template", "").replace("\r\n", "\n")
        with transaction.atomic():
            job = job_create(
                kind="variants",
                study=study,
                params={"pool": pool.pk, "template": template, "attempts": _integer(request, "attempts", "3")},
                user=request.user,
            )
            pool_variants_template_save(pool=pool, template=job.params["template"])
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return _started(request, study, pool, job)


@require_POST
@study_view("edit")
def pool_trees_start(request, study, pool_id: int):
    """Start a trees job: candidates without a tree (or all of them), attempts per candidate."""
    try:
        pool = pool_for_study(study=study, pool_id=pool_id)
        job = job_create(
            kind="trees",
            study=study,
            params={
                "pool": pool.pk,
                "which": request.POST.get("which", "missing"),
                "attempts": _integer(request, "attempts", "3"),
            },
            user=request.user,
        )
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return _started(request, study, pool, job)
