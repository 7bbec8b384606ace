"""Reads of the benchmark's pages: a study's latest finished job and its job under way, per kind."""

from __future__ import annotations

from annotation.models import Study
from jobs.models import Job


def job_latest_succeeded(*, study: Study, kind: str) -> Job | None:
    return (
        Job.objects.filter(study=study, kind=kind, status=Job.Status.SUCCEEDED).order_by("-finished_at", "-id").first()
    )


def job_in_progress(*, study: Study, kind: str) -> Job | None:
    return Job.objects.filter(study=study, kind=kind, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).first()
