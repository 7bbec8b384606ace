from celery import Task, shared_task

from . import services


class WorkerTimeLimits(Task):
    """Messages carry no time limits, so the worker's own CELERY_TASK_TIME_LIMIT applies. (Celery would
    otherwise put the sending process's limits in the message, e.g. the web server's, and those win.)"""

    def apply_async(self, args=None, kwargs=None, **options):
        options.setdefault("time_limit", None)
        options.setdefault("soft_time_limit", None)
        return super().apply_async(args, kwargs, **options)


@shared_task(name="jobs.run_job", base=WorkerTimeLimits, acks_late=True, ignore_result=True)
def run_job(job_id: int) -> None:
    services.job_run(job_id=job_id)


@shared_task(name="jobs.reap_stale", ignore_result=True)
def reap_stale() -> dict[str, int]:
    """Periodic (beat, every 60 s): runs whose worker died are queued again or failed."""
    return services.jobs_reap_stale()


@shared_task(name="jobs.dispatch_pending", ignore_result=True)
def dispatch_pending() -> int:
    """Periodic (beat, every 60 s): queued jobs the broker never took are sent."""
    return services.jobs_dispatch_pending()
