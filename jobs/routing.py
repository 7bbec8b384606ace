"""Which Celery queue a message goes to (settings.CELERY_TASK_ROUTES names `route_task`).

A job's message is `jobs.run_job(job_id)`: the queue is its kind's (JobKind.queue), read from the job's
row, so that an export goes to the short queue and never waits behind a benchmark on the long one.
Every other task (the periodic ones) goes to the default queue, settings.CELERY_TASK_DEFAULT_QUEUE.
"""

from __future__ import annotations

from .registry import kind_queue


def route_task(name, args, kwargs, options, task=None, **kw):
    if name != "jobs.run_job":
        return None
    job_id = args[0] if args else (kwargs or {}).get("job_id")
    return {"queue": job_queue(job_id=job_id)}


def job_queue(*, job_id) -> str:
    from .models import Job  # noqa: PLC0415  (Celery imports the routes with its configuration, before apps load)

    kind = Job.objects.filter(pk=job_id).values_list("kind", flat=True).first()
    return kind_queue(kind or "")
