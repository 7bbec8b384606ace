"""Which jobs a user may see: those of the studies they may see (staff: every job)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from config.errors import ApplicationError

from .models import Job
from .registry import kind_get, kind_queue, studies_for_user


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


def cancel_refusal(user, job: Job) -> str | None:
    """Why `user` may not cancel `job` (None if they may): cancelling needs the level on the job's study
    that starting a job of its kind needs (a viewer may cancel an export, an editor a benchmark); staff
    may cancel any job."""
    if user.is_staff:
        return None
    try:
        need = kind_get(job.kind).need
    except ApplicationError:  # a kind this process does not know: the strictest start level
        need = "edit"
    if studies_for_user(user, need).filter(pk=job.study_id).exists():
        return None
    return f"Cancelling a {job.kind_label.lower()} job needs the {need!r} role on its study; ask its owner."


def queue_positions(jobs) -> dict[int, tuple[str, int]]:
    """For each queued job among `jobs`: (its queue, its place in that queue), 1 = the next to start.

    The place counts every queued job of the same queue created before it, whoever's it is (the workers
    take messages in order): one query over the queued jobs, however many are asked about."""
    wanted = {job.pk for job in jobs if job.status == Job.Status.QUEUED}
    if not wanted:
        return {}
    places: dict[int, tuple[str, int]] = {}
    counts: dict[str, int] = {}
    queued = Job.objects.filter(status=Job.Status.QUEUED).order_by("created_at", "pk").values_list("pk", "kind")
    for pk, kind in queued.iterator():
        queue = kind_queue(kind)
        counts[queue] = counts.get(queue, 0) + 1
        if pk in wanted:
            places[pk] = (queue, counts[queue])
    return places


def running_counts() -> dict[str, int]:
    """How many jobs each queue is running now."""
    counts: dict[str, int] = {}
    for kind in Job.objects.filter(status=Job.Status.RUNNING).values_list("kind", flat=True):
        queue = kind_queue(kind)
        counts[queue] = counts.get(queue, 0) + 1
    return counts
