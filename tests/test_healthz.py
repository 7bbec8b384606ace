"""/healthz (database, broker, worker heartbeat) and /healthz/live: answers, failures, and what they never show."""

import os
import socket
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client

from config import health
from config.celery_app import WORKER_HEARTBEAT_KEY, app, worker_heartbeat, worker_heartbeat_write

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def embedded_broker(settings, tmp_path):
    """The embedded broker in a folder of the test's own, whatever the environment says."""
    queue = tmp_path / "queue"
    queue.mkdir()
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        **django_settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "data_folder_in": str(queue),
    }
    return queue


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthy_when_database_broker_and_a_fresh_heartbeat(client, embedded_broker, django_assert_num_queries):
    worker_heartbeat_write()
    with django_assert_num_queries(1):  # SELECT 1; the heartbeat is one cache read
        response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"] == {"ok": True, "kind": "filesystem"}
    assert body["checks"]["worker"]["ok"] is True and body["checks"]["worker"]["age_seconds"] < 5
    assert "no-cache" in response["Cache-Control"]
    assert list(embedded_broker.iterdir()) == []  # the probe file is gone, nothing left for the worker


def test_no_heartbeat_yet_is_reported_as_never(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing" and body["failing"] == ["worker"]
    assert body["checks"]["worker"]["last_heartbeat"] == "never"


@pytest.mark.parametrize("age,healthy", [(30, True), (170, True), (190, False), (3600, False)])
def test_heartbeat_older_than_the_limit_fails(client, settings, age, healthy):
    settings.WORKER_HEARTBEAT_MAX_AGE = 180
    from django.core.cache import cache

    cache.set(WORKER_HEARTBEAT_KEY, time.time() - age, timeout=None)
    response = client.get("/healthz")
    assert response.status_code == (200 if healthy else 503)
    worker = response.json()["checks"]["worker"]
    assert worker["ok"] is healthy and worker["max_age_seconds"] == 180
    assert abs(worker["age_seconds"] - age) < 5


def test_database_down_is_a_503_naming_it(client, monkeypatch):
    worker_heartbeat_write()

    def refuse(self, *args, **kwargs):
        raise OperationalError('connection to server at "db.internal" (10.0.0.5), port 5432 failed')

    monkeypatch.setattr(BaseDatabaseWrapper, "cursor", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["database"] and body["checks"]["database"] == {"ok": False, "error": "unavailable"}
    assert "db.internal" not in response.content.decode() and "10.0.0.5" not in response.content.decode()


def test_redis_broker_down_fails_fast_without_showing_the_url(client, settings):
    worker_heartbeat_write()
    health._redis_client.cache_clear()
    settings.CELERY_BROKER_URL = f"redis://:s3cret-password@127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]
    text = response.content.decode()
    for leak in ("s3cret", "127.0.0.1", "redis://", str(settings.CELERY_BROKER_URL.rsplit(":", 1)[1])):
        assert leak not in text


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (a running Redis)")
def test_redis_broker_up(client, settings):
    worker_heartbeat_write()
    settings.CELERY_BROKER_URL = os.environ["REDIS_URL"]
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == {"ok": True, "kind": "redis"}


def test_embedded_broker_folder_not_writable_fails(client, settings, tmp_path):
    worker_heartbeat_write()
    missing = tmp_path / "gone" / "queue"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "data_folder_in": str(missing),
    }
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["failing"] == ["broker"]
    assert str(tmp_path) not in response.content.decode()


def test_cache_down_fails_the_worker_check(client, monkeypatch):
    def refuse():
        raise ConnectionError("redis at 10.0.0.7:6379 refused")

    monkeypatch.setattr(health, "worker_heartbeat_read", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"] == {"ok": False, "error": "unavailable"}
    assert "10.0.0.7" not in response.content.decode()


def test_open_to_anonymous_safe_methods_only(client):
    worker_heartbeat_write()
    assert client.get("/healthz").status_code == 200  # no login
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405
    assert client.post("/healthz/live").status_code == 405


def test_repeated_probes_are_never_throttled(client):
    worker_heartbeat_write()
    assert {client.get("/healthz").status_code for _ in range(50)} == {200}


def test_liveness_touches_nothing(client, monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(health, "worker_heartbeat_read", lambda: pytest.fail("liveness read the cache"))
    monkeypatch.setattr(health, "_check_broker", lambda: pytest.fail("liveness checked the broker"))
    with django_assert_num_queries(0):
        response = client.get("/healthz/live")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_no_https_redirect_for_the_probes(settings):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    assert client.get("/healthz/live").status_code == 200
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/accounts/login/").status_code == 301  # everything else still goes to HTTPS


# --- the heartbeat ----------------------------------------------------------------------------------


def test_the_beat_task_writes_the_heartbeat(client):
    from django.core.cache import cache

    assert cache.get(WORKER_HEARTBEAT_KEY) is None
    worker_heartbeat.apply()
    assert time.time() - cache.get(WORKER_HEARTBEAT_KEY) < 5
    assert client.get("/healthz").status_code == 200


def test_a_starting_worker_writes_the_heartbeat():
    from celery.signals import worker_ready
    from django.core.cache import cache

    worker_ready.send(sender=None)
    assert time.time() - cache.get(WORKER_HEARTBEAT_KEY) < 5


def test_beat_schedules_the_heartbeat_well_within_the_limit():
    entry = next(e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "config.worker_heartbeat")
    assert entry["schedule"] <= django_settings.WORKER_HEARTBEAT_MAX_AGE / 3
    assert "config.worker_heartbeat" in app.tasks


def test_the_demo_worker_runs_beat():
    makefile = (Path(django_settings.BASE_DIR) / "Makefile").read_text()
    worker = next(line for line in makefile.splitlines() if "celery -A config worker" in line)
    assert "--beat" in worker  # the embedded default gets heartbeats too
