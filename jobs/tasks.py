from celery import shared_task

from . import services


@shared_task(name="jobs.run_job", acks_late=True, ignore_result=True)
def run_job(job_id: int) -> None:
    services.job_run(job_id=job_id)
