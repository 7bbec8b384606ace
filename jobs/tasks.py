from celery import shared_task

from . import services


@shared_task(name="jobs.run_job", acks_late=True, ignore_result=True)
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
