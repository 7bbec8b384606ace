"""Faults around jobs with a real worker, PostgreSQL and Redis: a worker killed mid-job, a job over its time
limit, and Redis stopped while researchers start jobs and annotators rate.

The workers here use the prefork pool (the default, as in production: time limits need it) and the
`fault-slow` job kind (tests/integration/fault_kinds.py), which the worker registers through
tests/integration/fault_worker.py. The beat tasks are run in the test process (`.apply()`), with the
same short settings the workers get in their environment.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Prompt, Rating, Study
from config.celery_app import app as celery_app
from jobs import registry
from jobs.models import Job
from jobs.services import TIME_LIMIT_ERROR, WAITING_FOR_QUEUE, job_create
from jobs.tasks import dispatch_pending, reap_stale

from ..annotation.test_take_flow import current, link, start_rating, submit
from .conftest import ROOT, _database_url, require, wait_for
from .fault_kinds import SLOW, run_log

pytestmark = pytest.mark.services

FAST = {"JOB_HEARTBEAT_SECONDS": "0.5", "JOB_STALE_SECONDS": "3"}


@pytest.fixture(autouse=True)
def _fault_kind(monkeypatch, settings):
    monkeypatch.setitem(registry._KINDS, SLOW.name, SLOW)
    settings.JOB_HEARTBEAT_SECONDS = 0.5
    settings.JOB_STALE_SECONDS = 3
    settings.JOB_MAX_ATTEMPTS = 3


@contextmanager
def worker(tmp_path, name: str, broker_url: str, **env):
    """A `celery worker` (prefork, one child) in its own process group, stopped at the end."""
    environment = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": broker_url,
        "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "PLURIHARMS_VAR_DIR": str(tmp_path / f"{name}-var"),
        **env,
    }
    log_path = tmp_path / f"{name}.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.integration.fault_worker",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{name}-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its pool children share its process group, so a test can kill them all
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # children left behind, if any
        except ProcessLookupError:
            pass
        process.wait()
        log.close()
        print(f"--- {name} worker log ---\n" + log_path.read_text()[-3000:])


def slow_job(study, **params) -> Job:
    return job_create(kind=SLOW.name, study=study, params=params)


def fresh(job: Job) -> Job:
    job.refresh_from_db()
    return job


def runs(job: Job) -> list[str]:
    path = run_log(job.pk)
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def study(services, researcher):
    return Study.objects.create(slug="faults", title="Faults", owner=researcher)


# --- a. a worker killed in the middle of a job -----------------------------------------------------


def test_job_of_a_killed_worker_is_run_again_and_succeeds_once(study, tmp_path):
    job = slow_job(study, steps=20, step_seconds=0.25)
    with worker(tmp_path, "killed", django_settings.CELERY_BROKER_URL, **FAST) as first:
        assert wait_for(lambda: fresh(job).progress >= 0.2, timeout=120), f"job never ran: {fresh(job).status}"
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool child, as an OOM kill of the container
        killed_at = time.monotonic()
        first.wait()
    assert fresh(job).status == Job.Status.RUNNING and job.attempts == 1 and runs(job) == ["start 1"]

    with worker(tmp_path, "second", django_settings.CELERY_BROKER_URL, **FAST):

        def run_again():
            reap_stale.apply()  # as beat would, every minute
            return fresh(job).attempts == 2

        assert wait_for(run_again, timeout=120, interval=0.5), f"not run again: {job.status} {job.message}"
        resumed = time.monotonic() - killed_at
        assert wait_for(lambda: fresh(job).is_done, timeout=120)
        finished = time.monotonic() - killed_at
    print(f"killed job run again {resumed:.1f} s after the kill, succeeded {finished:.1f} s after it")

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 2 and job.result == {"steps": 20, "run": 2}
    assert runs(job) == ["start 1", "start 2", "done 2"]  # one complete run, after the one that was killed
    artifact = job.artifacts.get()
    assert artifact.name == "steps.txt" and artifact.file.open("rb").read() == b"20 steps by run 2\n"
    reap_stale.apply()
    assert fresh(job).status == Job.Status.SUCCEEDED and runs(job)[-1] == "done 2"
    api = APIClient()
    api.force_authenticate(study.owner)
    shown = api.get(f"/api/jobs/{job.pk}/").json()
    assert shown["status"] == "succeeded" and shown["attempts"] == 2  # the researcher sees it was run again


# --- b. time limits ----------------------------------------------------------------------------------


def test_jobs_over_their_time_limit_fail_with_it(study, tmp_path, settings):
    settings.CELERY_TASK_TIME_LIMIT = 4
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 3  # as config/settings.py derives it from 4
    soft = slow_job(study, steps=40, step_seconds=0.25)
    hard = slow_job(study, steps=40, step_seconds=0.25, ignore_soft_limit=True)
    message = TIME_LIMIT_ERROR.format(seconds=4)
    with worker(tmp_path, "limited", django_settings.CELERY_BROKER_URL, CELERY_TASK_TIME_LIMIT="4", **FAST):
        assert wait_for(lambda: fresh(soft).is_done, timeout=120)
        assert soft.status == Job.Status.FAILED and soft.error == message and soft.attempts == 1
        assert runs(soft) == ["start 1"]

        def reaped():  # the hard limit killed the pool child: only the reaper can end the job
            reap_stale.apply()
            return fresh(hard).is_done

        assert wait_for(reaped, timeout=120, interval=0.5), f"{hard.status} {hard.message}"
    assert hard.status == Job.Status.FAILED and hard.error == message
    assert hard.attempts == 1  # not run again: it would be killed the same way
    assert runs(hard) == ["start 1", "soft limit ignored"]
    assert "Hard time limit (4" in (tmp_path / "limited.log").read_text()


# --- c. Redis stopped --------------------------------------------------------------------------------


class PrivateRedis:
    """A throwaway redis-server on a free port (no persistence): stopped, paused and started again."""

    def __init__(self, folder):
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        require(os.path.exists(self.binary), "redis-server is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        assert wait_for(lambda: self._ping(client), timeout=30), "redis-server did not start"

    @staticmethod
    def _ping(client) -> bool:
        try:
            return bool(client.ping())
        except Exception:
            return False

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)  # if paused
        self.process.terminate()
        self.process.wait(timeout=20)

    def pause(self) -> None:
        """Accepts connections (the kernel does) but answers nothing: the case where a client hangs."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def _web_broker(url: str) -> None:
    """Point the web side's Celery app at `url`. Its pools are made on first use, from kombu's registry of
    pools by URL (which keeps the other URL's pool, open, for when the test points back at it)."""
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def private_redis(services, tmp_path, settings):
    server = PrivateRedis(tmp_path)
    server.start()
    original = celery_app.conf.broker_url
    settings.CELERY_BROKER_URL = server.url
    settings.CACHES = {"default": {"BACKEND": "config.cache.Cache", "LOCATION": server.url, "KEY_PREFIX": "t"}}
    settings.SESSION_ENGINE = "config.sessions"
    _web_broker(server.url)
    try:
        yield server
    finally:
        _web_broker(original)
        if server.process.poll() is None:
            server.stop()


@pytest.fixture
def rating_study(researcher):
    study = Study.objects.create(
        slug="outage",
        title="Outage study",
        status=Study.Status.RECRUITING,
        owner=researcher,
        completion_code="C0MPLETE",
        completion_url="https://example.org/done?cc=C0MPLETE",
        instruments=[],
    )
    Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=str(i), text=f"Prompt number {i}", order=i) for i in range(1, 6)]
    )
    return study


def _create_through_api(researcher, study) -> tuple[int, dict, float]:
    api = APIClient()
    api.force_authenticate(researcher)
    payload = {"kind": SLOW.name, "study": study.slug, "params": {"steps": 2, "step_seconds": 0.1}}
    started = time.monotonic()
    response = api.post("/api/jobs/", payload, format="json")
    return response.status_code, response.json(), time.monotonic() - started


def test_redis_outage_leaves_jobs_waiting_and_ratings_working(
    private_redis, rating_study, researcher, client, tmp_path
):
    with worker(tmp_path, "outage", private_redis.url, **FAST):
        before = slow_job(rating_study, steps=2, step_seconds=0.1)
        assert wait_for(lambda: fresh(before).is_done, timeout=120) and before.status == Job.Status.SUCCEEDED
        # An annotator who is rating when Redis goes (a new arrival's per-client limit needs the cache).
        annotator = start_rating(client, rating_study, pid="a1b2c3d4e5f6a7b8c9d0e1f2")

        # Redis accepts connections but answers nothing: the request gives up instead of hanging.
        private_redis.pause()
        status, body, paused_seconds = _create_through_api(researcher, rating_study)
        assert status == 201 and body["status"] == "queued" and body["message"] == WAITING_FOR_QUEUE, body
        assert paused_seconds < 60, "the request hung on a silent Redis"
        # A new arrival gets in: the session and the per-client limit give up on the silent cache.
        assert Client().get(link(rating_study, "0a1b2c3d4e5f60718293a4b5")).status_code == 302

        # Redis stopped.
        private_redis.stop()
        for _ in range(3):
            assert submit(client, rating_study, current(annotator)).status_code == 200
        assert Rating.objects.filter(assignment__annotator=annotator).count() == 3
        assert Client().get(link(rating_study, "1a1b2c3d4e5f60718293a4b5")).status_code == 302
        assert rating_study.annotators.count() == 3  # the two who arrived during the outage are in

        status, body, down_seconds = _create_through_api(researcher, rating_study)
        assert status == 201 and body["message"] == WAITING_FOR_QUEUE, body
        client.force_login(researcher)
        card = client.post(
            reverse("annotation:export_start", args=[rating_study.slug]), {"format": "jsonl"}, HTTP_HX_REQUEST="true"
        )
        assert card.status_code == 200 and WAITING_FOR_QUEUE in card.content.decode()
        # The two jobs started while Redis was stopped wait. (The one started while it was paused may have
        # been taken after all: Redis ran the buffered LPUSH when it was let go, before it stopped.)
        waiting = Job.objects.filter(message=WAITING_FOR_QUEUE, status=Job.Status.QUEUED)
        assert waiting.count() >= 2 and waiting.filter(dispatched_at__isnull=False).count() == 0
        assert dispatch_pending.apply().get() == 0  # still down: nothing sent, nothing lost
        assert waiting.count() >= 2

        # Redis back on the same port, empty: the beat task sends what waited, and the worker runs it.
        private_redis.start()
        restarted = time.monotonic()

        def all_sent():
            dispatch_pending.apply()
            return not Job.objects.filter(status=Job.Status.QUEUED, dispatched_at__isnull=True).exists()

        assert wait_for(all_sent, timeout=60, interval=1)
        jobs = list(Job.objects.exclude(pk=before.pk).order_by("pk"))
        assert len(jobs) == 3
        assert wait_for(lambda: all(fresh(j).is_done for j in jobs), timeout=180), [j.status for j in jobs]
        recovered = time.monotonic() - restarted
    print(
        f"job created in {paused_seconds:.2f} s with Redis paused, {down_seconds:.2f} s with it stopped; "
        f"all waiting jobs done {recovered:.1f} s after Redis came back"
    )
    assert [j.status for j in jobs] == [Job.Status.SUCCEEDED] * 3, [(j.kind, j.error) for j in jobs]
    assert all(j.attempts == 1 and j.message == "done" for j in jobs)
    assert dispatch_pending.apply().get() == 0
