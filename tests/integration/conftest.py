"""Service-backed tests: real PostgreSQL, Redis and a Celery worker process.

Without the services they skip, unless PLURIHARMS_REQUIRE_SERVICES is set (as .ci/run does),
in which case they fail: CI must never pass by skipping them.
"""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("PLURIHARMS_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing: {why}")
    pytest.skip(why)


def _redis_ok(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except Exception:
        return False


@pytest.fixture
def postgres(transactional_db):
    require(connection.vendor == "postgresql", "DATABASE_URL does not point at PostgreSQL")


@pytest.fixture
def services(transactional_db):
    require(connection.vendor == "postgresql", "DATABASE_URL does not point at PostgreSQL")
    require(settings.CELERY_BROKER_URL.startswith("redis"), "REDIS_URL is not set")
    require(_redis_ok(settings.CELERY_BROKER_URL), f"Redis at {settings.CELERY_BROKER_URL} does not answer")


def _database_url() -> str:
    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


@contextmanager
def worker_process(settings, tmp_path, *, queues: str = "short,long", name: str = "worker"):
    """A real `celery worker` on the test database and Redis consuming `queues`, stopped at the end."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PLURIHARMS_VAR_DIR": str(tmp_path / f"{name}-var"),
    }
    log = open(tmp_path / f"{name}.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"test-{name}-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        print((tmp_path / f"{name}.log").read_text()[-3000:])


@pytest.fixture
def celery_worker_process(services, settings, tmp_path):
    """A real `celery worker` consuming both queues (short and long), as `make demo`'s does."""
    with worker_process(settings, tmp_path) as process:
        yield process


def wait_for(predicate, timeout: float = 90.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
