import logging
import logging.config
import os
import time

from celery import Celery
from celery.signals import beat_init, setup_logging, task_postrun, task_prerun, worker_init, worker_ready
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from config.checks import keys_required
from config.logging import job_id_var

logger = logging.getLogger(__name__)

# The time (epoch seconds) of the last worker heartbeat, in the cache every process shares; /healthz reads
# it (config/health.py).
WORKER_HEARTBEAT_KEY = "worker-heartbeat"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pluriharms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _refuse_without_keys(**kwargs) -> None:
    """A worker or beat without the site's own keys would write hashes nobody can match later. Celery logs
    and swallows a receiver's exceptions, so the refusal is a SystemExit, which it lets through."""
    try:
        keys_required()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"refusing to start: {exc}") from exc


@app.task(name="config.clear_sessions", ignore_result=True)
def clear_sessions() -> None:
    """Periodic (beat): delete expired database sessions, as Django asks of every site that keeps them."""

    call_command("clearsessions")


@setup_logging.connect
def _logging_from_settings(**kwargs) -> None:
    """Worker and beat log through settings.LOGGING (ids, LOG_FORMAT, redaction) instead of Celery's own
    set-up; their level is LOG_LEVEL, not --loglevel."""
    from django.conf import settings  # noqa: PLC0415  (settings are read when Celery asks, not on import)

    logging.config.dictConfig(settings.LOGGING)


@task_prerun.connect
def _bind_job_id(task=None, args=None, kwargs=None, **extra) -> None:
    """Records logged while `jobs.run_job` runs carry its job id (its first argument)."""
    job_id = None
    if task is not None and task.name == "jobs.run_job":
        job_id = args[0] if args else (kwargs or {}).get("job_id")
    job_id_var.set(None if job_id is None else str(job_id))


@task_postrun.connect
def _unbind_job_id(**extra) -> None:
    job_id_var.set(None)


def worker_heartbeat_write() -> None:
    cache.set(WORKER_HEARTBEAT_KEY, time.time(), timeout=None)


def worker_heartbeat_read() -> float | None:
    """Epoch seconds of the last heartbeat, None before the first one."""
    return cache.get(WORKER_HEARTBEAT_KEY)


@worker_ready.connect
def _heartbeat_at_start(**kwargs) -> None:
    try:
        worker_heartbeat_write()
    except Exception:  # a cache outage must not stop the worker; /healthz will say the heartbeat is old
        logger.warning("could not write the worker heartbeat", exc_info=True)


@app.task(name="config.worker_heartbeat", ignore_result=True)
def worker_heartbeat() -> None:
    """Periodic (beat, every 30 s): a worker took a task off the broker just now."""
    worker_heartbeat_write()
