"""`/healthz` (database, broker, last worker heartbeat) and `/healthz/live` (the process answers).

A small view rather than django-health-check: its Celery check needs a result backend (this site keeps
none) and sends a task per probe, and the embedded broker and the heartbeat would be custom checks anyway.
Cheap (one SELECT 1, one PING or a file created and removed, one cache read), open to anyone (a load
balancer has no login), and it names checks, never hosts, URLs or error texts: those go to the log.
"""

import logging
import tempfile
import time
from datetime import UTC, datetime
from functools import lru_cache

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from config.celery_app import worker_heartbeat_read

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 1.0


@lru_cache(maxsize=4)
def _redis_client(url: str) -> redis.Redis:
    """One pooled client per URL: a probe reuses its connection instead of opening one."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=BROKER_TIMEOUT_SECONDS, socket_timeout=BROKER_TIMEOUT_SECONDS
    )


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def _check_broker() -> dict:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        _redis_client(url).ping()
        return {"ok": True, "kind": "redis"}
    if url.startswith("filesystem://"):
        # The embedded broker is a folder: a message can be queued if a file can be written there. The
        # suffix is not ".msg", so a worker polling the folder never takes it for a message.
        folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".healthz-", suffix=".probe") as probe:
            probe.write(b"ok")
            probe.flush()
        return {"ok": True, "kind": "filesystem"}
    return {"ok": True, "kind": "other", "checked": False}


def _check_worker() -> dict:
    beat = worker_heartbeat_read()
    max_age = settings.WORKER_HEARTBEAT_MAX_AGE
    if beat is None:
        return {"ok": False, "last_heartbeat": "never", "max_age_seconds": max_age}
    age = max(0.0, time.time() - float(beat))
    return {
        "ok": age <= max_age,
        "last_heartbeat": datetime.fromtimestamp(float(beat), UTC).isoformat(timespec="seconds"),
        "age_seconds": round(age, 1),
        "max_age_seconds": max_age,
    }


CHECKS = {"database": _check_database, "broker": _check_broker, "worker": _check_worker}


@never_cache
@require_safe
def healthz(request):
    """200 when every check passes, 503 naming the ones that failed."""
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception:
            logger.warning("health check %s failed", name, exc_info=True)
            results[name] = {"ok": False, "error": "unavailable"}
    failing = [name for name, result in results.items() if not result["ok"]]
    body = {"status": "failing" if failing else "ok", "failing": failing, "checks": results}
    return JsonResponse(body, status=503 if failing else 200)


@never_cache
@require_safe
def healthz_live(request):
    """Liveness: the process serves requests. Touches no database, broker or cache."""
    return JsonResponse({"status": "ok"})
