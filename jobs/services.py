"""Job lifecycle: create (and queue on commit), claim once, run the kind's handler, save result or error.

A run is identified by (job id, attempts): each claim adds one to `attempts`, and every later write of
that run (heartbeat, progress, result) is a conditional UPDATE on status `running` and that count, so a
run that was given up for dead and taken over can no longer change the job. A job whose worker died
(no heartbeat for JOB_STALE_SECONDS) is run again from the start, by its redelivered message or by the
beat task `jobs.reap_stale`, whichever comes first (both claim with a conditional UPDATE on the heartbeat
they read), up to JOB_MAX_ATTEMPTS runs; a job the broker could not take stays queued and is sent by
`jobs.dispatch_pending`.

Cancelling (job_cancel): a queued job ends `cancelled` at once (its message, when a worker takes it,
finds nothing to claim); a running one is marked, and its next progress call raises JobCancelled, which
job_run records as `cancelled` (never `failed`). A marked run whose worker died is cancelled by the reaper,
not run again.
"""

from __future__ import annotations

import logging
import shutil
import threading
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from config.db_router import reading_from_replica, replica_has, replica_routable
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
    ".md": "text/markdown; charset=utf-8",
    ".zip": "application/zip",
}

# What a user sees when a job fails for a reason that is not theirs to fix: never the exception's text
# (it may quote files, settings or data), which goes to the worker's log with the traceback.
INTERNAL_ERROR = "The job stopped because of an internal error (details are in the worker's log under job #{id})."
ERROR_MAX_CHARS = 1000
TIME_LIMIT_ERROR = (
    "The job stopped after its time limit of {seconds} s (CELERY_TASK_TIME_LIMIT); "
    "a smaller request may fit in it, or the administrator can raise the limit."
)
GIVE_UP_ERROR = "The worker stopped {n} times while running this job; giving up (details are in the worker's log)."
WAITING_FOR_QUEUE = "waiting for the job queue (Redis unreachable); it will start when the queue is back"
# A queued job the broker has not taken is sent again by jobs_dispatch_pending after this long (a job whose
# send failed, shown by WAITING_FOR_QUEUE, at once).
DISPATCH_GRACE_SECONDS = 60

try:  # kombu wraps connection errors when it retries; a last attempt may raise redis-py's own
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover  (redis is in requirements.txt)
    RedisError = BrokerError
BROKER_ERRORS = (BrokerError, RedisError, OSError)


def job_params_clean(*, kind: str, params, study=None, user=None) -> dict:
    """The kind's parameters, checked against its schema (unknown keys refused); `user` is who starts it."""
    return params_clean(kind_get(kind).params, params, study=study, user=user)


def job_create(*, kind: str, study, params: dict | None = None, user=None) -> Job:
    """Create a job and queue it once the surrounding transaction commits."""
    clean = job_params_clean(kind=kind, params=params, study=study, user=user)
    job = Job.objects.create(
        kind=kind, study=study, params=clean, created_by=user if user is not None and user.is_authenticated else None
    )
    job_enqueue(job=job)
    return job


def job_enqueue(*, job: Job) -> None:
    """Send the job to the worker after the current transaction commits (never run it inline).

    If the broker cannot take it, the job stays queued with WAITING_FOR_QUEUE as its message (also set on
    `job`, for the response that created it) and the web request goes on."""
    job_id = job.pk

    def send() -> None:
        if not job_send(job_id=job_id):
            job.message = WAITING_FOR_QUEUE

    transaction.on_commit(send)


def job_send(*, job_id: int) -> bool:
    """Publish the job's message now. False (the job is left queued, saying why) if the broker is down;
    the publish gives up within a few seconds (CELERY_BROKER_TRANSPORT_OPTIONS, CELERY_TASK_PUBLISH_RETRY_POLICY)."""
    from .tasks import run_job  # noqa: PLC0415  (tasks imports this module: the import here breaks the cycle)

    try:
        run_job.delay(job_id)
    except BROKER_ERRORS as exc:  # one line each: an outage would otherwise fill the log with tracebacks
        logger.warning("job %s: the broker did not take its message (%s); it stays queued", job_id, exc)
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED, dispatched_at__isnull=True).update(
            message=WAITING_FOR_QUEUE
        )
        return False
    Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        dispatched_at=timezone.now(),
        message=Case(When(message=WAITING_FOR_QUEUE, then=Value("")), default=F("message")),
    )
    return True


class JobCancelled(Exception):  # noqa: N818  (a request, not an error)
    """Raised by a progress call of a run someone asked to stop; job_run records the job as cancelled."""


CANCELLED_BEFORE_START = "cancelled before it started"
CANCELLING = "stopping at its next progress point (cancel requested)"
CANCELLED_RUNNING = "cancelled while running"


def job_cancel(*, job: Job) -> Job:
    """Stop a job: a queued one ends cancelled now; a running one at its next progress call.

    Each change is a conditional UPDATE on the status read, so a job that starts or ends meanwhile is
    not written over. ApplicationError (409) for a job that has ended or is already stopping."""
    now = timezone.now()
    queued = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, cancel_requested_at=now, finished_at=now, message=CANCELLED_BEFORE_START
    )
    if not queued:
        marked = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, cancel_requested_at__isnull=True).update(
            cancel_requested_at=now, message=CANCELLING
        )
        if not marked:
            job.refresh_from_db()
            why = "is already stopping" if job.status == Job.Status.RUNNING else f"has ended ({job.status})"
            raise ApplicationError(f"job #{job.pk} {why}; nothing to cancel", status_code=409)
    job.refresh_from_db()
    logger.info("job %s: cancel requested (%s)", job.pk, job.status)
    return job


def _this_run(job: Job):
    """The job's row while `job`'s run still owns it (running, and not claimed again since)."""
    return Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, attempts=job.attempts)


def job_progress(*, job: Job, fraction: float, message: str = "") -> None:
    """Record progress from inside a running job (its own small write, visible to pollers at once)."""
    fraction = min(1.0, max(0.0, float(fraction)))
    updated = (
        _this_run(job)
        .filter(cancel_requested_at__isnull=True)
        .update(progress=fraction, message=message[:300], heartbeat_at=timezone.now())
    )
    if not updated and _this_run(job).filter(cancel_requested_at__isnull=False).exists():
        raise JobCancelled(f"job {job.pk}: cancel requested")


def job_heartbeat(*, job: Job) -> bool:
    """Say the run is alive. False if it no longer owns the job (given up for dead and taken over)."""
    return bool(_this_run(job).update(heartbeat_at=timezone.now()))


class Heartbeat:
    """A daemon thread that calls job_heartbeat every JOB_HEARTBEAT_SECONDS while the job's handler runs,
    so that a long step without progress calls is not taken for a dead worker."""

    def __init__(self, job: Job, interval: float | None = None):
        self.job = job
        self.interval = settings.JOB_HEARTBEAT_SECONDS if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"job-{job.pk}-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    if not job_heartbeat(job=self.job):
                        logger.warning("job %s: this run no longer owns the job; heartbeat stopped", self.job.pk)
                        return
                except DatabaseError:  # a database outage: the next beat may get through
                    logger.warning("job %s: could not write the heartbeat", self.job.pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection


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


_CLAIM = {"status": Job.Status.RUNNING, "progress": 0.0, "finished_at": None, "error": "", "result": None}


def job_claim(*, job_id: int) -> Job | None:
    """Move a queued job to running exactly once. A redelivered message finds nothing to claim, unless the
    job's run is dead (stale heartbeat, runs left): then it claims the job again, to run from the start."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        **_CLAIM, started_at=now, heartbeat_at=now, message="started", attempts=F("attempts") + 1
    )
    if not claimed:
        job = Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).first()
        if job is None or job_stale_outcome(job=job, now=now) != RERUN:
            return None
        claimed = _same_heartbeat(job).update(
            **_CLAIM,
            started_at=now,
            heartbeat_at=now,
            message=f"started again: the worker stopped during run {job.attempts}",
            attempts=F("attempts") + 1,
        )
        if not claimed:
            return None
        logger.warning("job %s: its worker stopped during run %s; running it again", job_id, job.attempts)
    return Job.objects.get(pk=job_id)


# What to do with a running job (job_stale_outcome): None while its heartbeat is fresh.
RERUN, TIME_LIMIT, GIVE_UP, CANCEL = "rerun", "time-limit", "give-up", "cancel"


def job_stale_outcome(*, job: Job, now=None) -> str | None:
    """For a running job: None if its run is alive; otherwise CANCEL if someone asked it to stop, RERUN
    while it has runs left, TIME_LIMIT if its last sign of life came at its time limit (the hard limit
    killed it: running it again would end the same way), GIVE_UP after JOB_MAX_ATTEMPTS runs."""
    now = now or timezone.now()
    last = job.heartbeat_at or job.started_at or job.created_at
    if job.status != Job.Status.RUNNING or now - last < timedelta(seconds=settings.JOB_STALE_SECONDS):
        return None
    if job.cancel_requested_at is not None:
        return CANCEL
    # A live run beats every JOB_HEARTBEAT_SECONDS, so one killed at the hard limit beat last after this.
    near_limit = settings.CELERY_TASK_SOFT_TIME_LIMIT - settings.JOB_HEARTBEAT_SECONDS
    if job.started_at is not None and (last - job.started_at).total_seconds() >= near_limit:
        return TIME_LIMIT
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        return GIVE_UP
    return RERUN


def _same_heartbeat(job: Job):
    """The job's row if nothing touched it since `job` was read: a live run's heartbeat, another claim or
    the reaper would each have changed heartbeat_at or attempts. The reaper and a redelivered message both
    act through this, so only one of them ever acts on a dead run."""
    row = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, attempts=job.attempts)
    if job.heartbeat_at is None:
        return row.filter(heartbeat_at__isnull=True)
    return row.filter(heartbeat_at=job.heartbeat_at)


def job_reap(*, job: Job, now=None) -> str | None:
    """Act on a running job whose run is dead: queue it again (and send it) or fail it with a message that
    says why. Returns the outcome, or None if the run is alive or someone else acted first."""
    now = now or timezone.now()
    outcome = job_stale_outcome(job=job, now=now)
    if outcome is None:
        return None
    if outcome == RERUN:
        requeued = _same_heartbeat(job).update(
            status=Job.Status.QUEUED,
            dispatched_at=None,
            progress=0.0,
            message=f"queued again: the worker stopped during run {job.attempts} (at most {settings.JOB_MAX_ATTEMPTS})",
        )
        if not requeued:
            return None
        logger.warning("job %s: its worker stopped during run %s; queued again", job.pk, job.attempts)
        job_send(job_id=job.pk)
        return RERUN
    if outcome == CANCEL:
        if not _same_heartbeat(job).update(status=Job.Status.CANCELLED, message=CANCELLED_RUNNING, finished_at=now):
            return None
        logger.warning("job %s: its worker stopped after a cancel request; cancelled", job.pk)
        return CANCEL
    if outcome == TIME_LIMIT:
        error = TIME_LIMIT_ERROR.format(seconds=settings.CELERY_TASK_TIME_LIMIT)
    else:
        error = GIVE_UP_ERROR.format(n=job.attempts)
    failed = _same_heartbeat(job).update(status=Job.Status.FAILED, error=error, message="failed", finished_at=now)
    if not failed:
        return None
    logger.error("job %s failed after run %s: %s", job.pk, job.attempts, error)
    return outcome


def jobs_reap_stale(*, now=None) -> dict[str, int]:
    """Beat task: every running job silent for JOB_STALE_SECONDS is queued again or failed (job_reap)."""
    now = now or timezone.now()
    before = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    silent = Q(heartbeat_at__lt=before) | Q(heartbeat_at__isnull=True, started_at__lt=before)
    counts = {RERUN: 0, TIME_LIMIT: 0, GIVE_UP: 0, CANCEL: 0}
    for job in Job.objects.filter(silent, status=Job.Status.RUNNING).defer("result", "params").order_by("pk"):
        outcome = job_reap(job=job, now=now)
        if outcome is not None:
            counts[outcome] += 1
    return counts


def jobs_dispatch_pending(*, now=None) -> int:
    """Beat task: send queued jobs the broker never took (their send failed, or the process that created
    them stopped before sending). Returns how many the broker took now."""
    now = now or timezone.now()
    pending = Job.objects.filter(status=Job.Status.QUEUED, dispatched_at__isnull=True).filter(
        Q(message=WAITING_FOR_QUEUE) | Q(created_at__lt=now - timedelta(seconds=DISPATCH_GRACE_SECONDS))
    )
    sent = 0
    for job_id in pending.order_by("pk").values_list("pk", flat=True):
        if not job_send(job_id=job_id):
            break  # the broker is still down: the next beat tries again
        sent += 1
    return sent


def _artifacts_clear(job: Job) -> None:
    """A run starts from nothing: an earlier run's files and their rows go."""
    shutil.rmtree(artifact_dir(job), ignore_errors=True)
    JobArtifact.objects.filter(job=job).delete()


def _handler_reads(job: Job):
    """Where the handler reads the study's rows: from the replica for a kind that asks for it
    (`JobKind.replica_reads`) once the replica has the job's own row, hence everything committed before the
    job was created (its study, ratings, uploads); from the primary otherwise."""
    if not kind_get(job.kind).replica_reads or not replica_routable():
        return nullcontext()
    if replica_has(Job, job.pk, wait=settings.DATABASE_REPLICA_WAIT):
        return reading_from_replica()
    logger.warning(
        "job %s: the replica has not caught up after %s s; reading from the primary",
        job.pk,
        settings.DATABASE_REPLICA_WAIT,
    )
    return nullcontext()


def job_run(*, job_id: int) -> Job | None:
    """Run a queued job (or one whose worker died) to the end, recording its result or its error.
    Returns None if there was nothing to run (a duplicate message, or a job that is done)."""
    job = job_claim(job_id=job_id)
    if job is None:
        current = Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).first()
        if current is not None and job_reap(job=current):  # a dead run out of runs or at its time limit
            return Job.objects.get(pk=job_id)
        logger.info("job %s is not queued; skipping (redelivery or duplicate)", job_id)
        return None

    def progress(fraction: float, message: str = "") -> None:
        job_progress(job=job, fraction=fraction, message=message)

    with Heartbeat(job):
        try:
            _artifacts_clear(job)
            with _handler_reads(job):
                result = kind_get(job.kind).handler(job, progress)
        except JobCancelled:
            logger.info("job %s: cancelled at a progress point", job_id)
            _artifacts_clear(job)  # a run stopped half-way leaves no half-written files
            ended = _this_run(job).update(
                status=Job.Status.CANCELLED, finished_at=timezone.now(), message=CANCELLED_RUNNING
            )
        except SoftTimeLimitExceeded:
            logger.warning("job %s reached its soft time limit", job_id)
            ended = _this_run(job).update(
                status=Job.Status.FAILED,
                error=TIME_LIMIT_ERROR.format(seconds=settings.CELERY_TASK_TIME_LIMIT),
                finished_at=timezone.now(),
                message="failed",
            )
        except Exception as exc:  # the job records any failure; the worker must go on
            logger.exception("job %s failed", job_id)
            if isinstance(exc, ApplicationError):
                message = exc.message[:ERROR_MAX_CHARS]
            else:
                message = INTERNAL_ERROR.format(id=job_id)
            ended = _this_run(job).update(
                status=Job.Status.FAILED, error=message, finished_at=timezone.now(), message="failed"
            )
        else:
            ended = _this_run(job).update(
                status=Job.Status.SUCCEEDED, result=result, progress=1.0, finished_at=timezone.now(), message="done"
            )
    if not ended:
        logger.warning("job %s: run %s ended after the job was taken over; outcome dropped", job_id, job.attempts)
    job.refresh_from_db()
    return job
