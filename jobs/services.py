"""Job lifecycle: create (and queue on commit), claim once, run the kind's handler, save result or error."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.errors import ApplicationError

from .models import Job, JobArtifact
from .params import params_clean
from .registry import kind_get

logger = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".parquet": "application/vnd.apache.parquet",
    ".png": "image/png",
}

# What a user sees when a job fails for a reason that is not theirs to fix: never the exception's text
# (it may quote files, settings or data), which goes to the worker's log with the traceback.
INTERNAL_ERROR = "The job stopped because of an internal error (details are in the worker's log under job #{id})."
ERROR_MAX_CHARS = 1000


def job_params_clean(*, kind: str, params, study=None) -> dict:
    """The kind's parameters, checked against its schema (unknown keys refused)."""
    return params_clean(kind_get(kind).params, params, study=study)


def job_create(*, kind: str, study, params: dict | None = None, user=None) -> Job:
    """Create a job and queue it once the surrounding transaction commits."""
    clean = job_params_clean(kind=kind, params=params, study=study)
    job = Job.objects.create(
        kind=kind, study=study, params=clean, created_by=user if user is not None and user.is_authenticated else None
    )
    job_enqueue(job=job)
    return job


def job_enqueue(*, job: Job) -> None:
    """Send the job to the worker after the current transaction commits (never run it inline)."""
    from .tasks import run_job  # noqa: PLC0415  (tasks imports this module: the import here breaks the cycle)

    job_id = job.pk
    transaction.on_commit(lambda: run_job.delay(job_id))


def job_progress(*, job: Job, fraction: float, message: str = "") -> None:
    """Record progress from inside a running job (its own small write, visible to pollers at once)."""
    fraction = min(1.0, max(0.0, float(fraction)))
    Job.objects.filter(pk=job.pk).update(progress=fraction, message=message[:300])


def artifact_dir(job: Job) -> Path:
    """Where a job writes its files: under the media root, named by the job's id only."""
    return Path(settings.MEDIA_ROOT) / "jobs" / str(job.pk)


def artifact_save(*, job: Job, path: Path) -> JobArtifact:
    """Record a file the job wrote in its artifact folder."""
    artifact, _ = JobArtifact.objects.update_or_create(
        job=job,
        name=path.name,
        defaults={
            "file": str(path.relative_to(settings.MEDIA_ROOT)),
            "content_type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
            "size": path.stat().st_size,
        },
    )
    return artifact


def job_claim(*, job_id: int) -> Job | None:
    """Move a queued job to running exactly once; a redelivered message finds nothing to claim."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, progress=0.0, message="started", attempts=F("attempts") + 1
    )
    return Job.objects.get(pk=job_id) if claimed else None


def job_run(*, job_id: int) -> Job | None:
    """Run a queued job to the end, recording its result or its error. Returns None if not claimable."""
    job = job_claim(job_id=job_id)
    if job is None:
        logger.info("job %s is not queued; skipping (redelivery or duplicate)", job_id)
        return None

    def progress(fraction: float, message: str = "") -> None:
        job_progress(job=job, fraction=fraction, message=message)

    try:
        shutil.rmtree(artifact_dir(job), ignore_errors=True)
        result = kind_get(job.kind).handler(job, progress)
    except Exception as exc:  # the job records any failure; the worker must go on
        logger.exception("job %s failed", job_id)
        if isinstance(exc, ApplicationError):
            message = exc.message[:ERROR_MAX_CHARS]
        else:
            message = INTERNAL_ERROR.format(id=job_id)
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.FAILED, error=message, finished_at=timezone.now(), message="failed"
        )
    else:
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.SUCCEEDED, result=result, progress=1.0, finished_at=timezone.now(), message="done"
        )
    job.refresh_from_db()
    return job
