"""Reads of the benchmark's pages: a study's latest finished job and its job under way, per kind."""

from __future__ import annotations

from django.db import connection
from django.db.models import JSONField
from django.db.models.expressions import RawSQL

from annotation.models import Study
from jobs.models import Job


def job_latest_succeeded(*, study: Study, kind: str, result: bool = True) -> Job | None:
    """The study's latest succeeded job of this kind; `result=False` leaves its result unread (a report
    of a 10,000-annotator study is megabytes of JSON) until something reads it."""
    jobs = Job.objects.filter(study=study, kind=kind, status=Job.Status.SUCCEEDED)
    if not result:
        jobs = jobs.defer("result")
    return jobs.order_by("-finished_at", "-id").first()


def job_in_progress(*, study: Study, kind: str) -> Job | None:
    return Job.objects.filter(study=study, kind=kind, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).first()


def job_result_without(*, job: Job, keys: tuple[str, ...]) -> dict | None:
    """The job's result less some top-level keys, removed by the database (one query): the report's
    per-annotator table need not be read to draw the agreement dashboard."""
    if connection.vendor == "postgresql":
        expression = "result" + "".join(" - %s::text" for _ in keys)
    else:
        expression = "json_remove(result" + "".join(", %s" for _ in keys) + ")"
        keys = tuple(f"$.{key}" for key in keys)
    return (
        Job.objects.filter(pk=job.pk)
        .annotate(rest=RawSQL(expression, keys, output_field=JSONField()))
        .values_list("rest", flat=True)
        .first()
    )
