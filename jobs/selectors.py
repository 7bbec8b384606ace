"""Which jobs a user may see: those of the studies they may see (staff: every job)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from .models import Job
from .registry import studies_for_user


def jobs_for_user(user) -> QuerySet[Job]:
    if not user.is_authenticated:
        return Job.objects.none()
    if user.is_staff:
        return Job.objects.all()
    return Job.objects.filter(study__in=studies_for_user(user))


def get_job_for_user(user, job_id: int) -> Job:
    """The job if the user may see it; 404 otherwise (other researchers' job ids are not revealed)."""
    job = jobs_for_user(user).select_related("study").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job")
    return job
