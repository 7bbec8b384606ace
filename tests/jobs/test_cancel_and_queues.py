"""Cancelling jobs (queued: at once; running: at its next progress point, ending `cancelled`, not
`failed`), queue positions, and the two Celery queues (exports on the short one, benchmarks on the long)."""

import contextlib
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from annotation.importers import pluriharms_import
from config.celery_app import app
from config.errors import ApplicationError
from jobs import registry, services
from jobs.models import Job
from jobs.routing import route_task
from jobs.selectors import queue_positions, running_counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_study(small_study, small_release, researcher):
    """Another of the researcher's studies (small, like small_study)."""
    return pluriharms_import(directory=small_release, slug="second", owner=researcher)


def _job(study, kind="export", **fields) -> Job:
    params = {"format": "long-csv"} if kind == "export" else {}
    return Job.objects.create(kind=kind, study=study, params=params, **fields)


# ---- cancelling ---------------------------------------------------------------------------------------


def test_a_queued_job_is_cancelled_at_once_and_its_message_then_runs_nothing(small_study, replace_job_handler):
    job = _job(small_study)
    calls = []
    replace_job_handler("export", lambda j, p: calls.append(j.pk) or {})
    cancelled = services.job_cancel(job=job)
    assert cancelled.status == Job.Status.CANCELLED and cancelled.is_done and not cancelled.can_cancel
    assert cancelled.finished_at is not None and cancelled.message == services.CANCELLED_BEFORE_START
    assert services.job_run(job_id=job.pk) is None  # the worker takes the message later: nothing to claim
    assert calls == []
    assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED


def test_a_running_job_stops_at_its_next_progress_point_as_cancelled_not_failed(small_study, replace_job_handler):
    job = _job(small_study)
    steps = []

    def handler(j, progress):
        progress(0.2, "first step")
        (services.artifact_dir(j)).mkdir(parents=True, exist_ok=True)
        half = services.artifact_dir(j) / "half.csv"
        half.write_text("a\n1\n")
        services.artifact_save(job=j, path=half)
        steps.append("first")
        # Someone presses Cancel while the job runs (another process: a fresh read of the row).
        services.job_cancel(job=Job.objects.get(pk=j.pk))
        assert Job.objects.get(pk=j.pk).status == Job.Status.RUNNING  # still running until its next progress
        progress(0.5, "second step")
        steps.append("second")  # never reached
        return {}

    replace_job_handler("export", handler)
    finished = services.job_run(job_id=job.pk)
    assert steps == ["first"]
    assert finished.status == Job.Status.CANCELLED, finished.error
    assert finished.error == "" and finished.message == services.CANCELLED_RUNNING
    assert finished.progress == pytest.approx(0.2) and finished.finished_at is not None
    assert not finished.artifacts.exists()  # a run stopped half-way leaves no half-written files
    assert not Path(services.artifact_dir(finished)).exists()


def test_cancelling_a_finished_or_stopping_job_is_refused(small_study):
    done = _job(small_study, status=Job.Status.SUCCEEDED)
    with pytest.raises(ApplicationError) as error:
        services.job_cancel(job=done)
    assert error.value.status_code == 409 and "has ended (succeeded)" in error.value.message
    running = _job(small_study, status=Job.Status.RUNNING, attempts=1, started_at=timezone.now())
    services.job_cancel(job=running)
    running.refresh_from_db()
    assert running.status == Job.Status.RUNNING and running.cancel_requested_at is not None
    assert running.message == services.CANCELLING and not running.can_cancel
    with pytest.raises(ApplicationError) as again:
        services.job_cancel(job=running)
    assert again.value.status_code == 409 and "already stopping" in again.value.message


def test_a_stopping_job_whose_worker_died_is_cancelled_by_the_reaper_not_run_again(small_study, monkeypatch):
    sent = []
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: sent.append(job_id))
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 60)
    job = _job(
        small_study,
        status=Job.Status.RUNNING,
        attempts=1,
        started_at=long_ago,
        heartbeat_at=long_ago,
        cancel_requested_at=long_ago,
    )
    assert services.jobs_reap_stale()[services.CANCEL] == 1
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED and job.message == services.CANCELLED_RUNNING
    assert sent == []  # not queued again
    # A redelivered message of that run finds nothing to run either.
    assert services.job_run(job_id=job.pk) is None


# ---- queue positions ----------------------------------------------------------------------------------


def test_queue_position_counts_the_queued_jobs_ahead_on_the_same_queue(small_study, second_study):
    running = _job(small_study, kind="benchmark", status=Job.Status.RUNNING, started_at=timezone.now())
    b1 = _job(second_study, kind="benchmark")  # another study's: the queue is shared
    e1 = _job(small_study)
    b2 = _job(small_study, kind="analysis")
    e2 = _job(small_study)
    done = _job(small_study, status=Job.Status.SUCCEEDED)
    places = queue_positions([b1, e1, b2, e2, done, running])
    assert places == {b1.pk: ("long", 1), e1.pk: ("short", 1), b2.pk: ("long", 2), e2.pk: ("short", 2)}
    assert running_counts() == {"long": 1}
    services.job_cancel(job=e1)
    assert queue_positions([e2]) == {e2.pk: ("short", 1)}  # a cancelled job leaves the line


# ---- queues -------------------------------------------------------------------------------------------


def test_each_kind_says_its_queue_exports_short_and_computations_long():
    assert registry.kind_get("export").queue == registry.SHORT_QUEUE
    for kind in ("benchmark", "analysis", "latent"):
        assert registry.kind_get(kind).queue == registry.LONG_QUEUE, kind
    # The settings name the same two queues, the short one the default (the periodic tasks are short).
    assert [q.name for q in settings.CELERY_TASK_QUEUES] == list(registry.QUEUES)
    assert settings.CELERY_TASK_DEFAULT_QUEUE == registry.SHORT_QUEUE
    with pytest.raises(ValueError, match="unknown queue"):
        registry.JobKind(name="x", label="x", params=None, handler=None, queue="medium")


def test_an_export_is_routed_to_the_short_queue_and_a_benchmark_to_the_long(small_study):
    export, benchmark = _job(small_study), _job(small_study, kind="benchmark")
    assert route_task("jobs.run_job", (export.pk,), {}, {}) == {"queue": "short"}
    assert route_task("jobs.run_job", (benchmark.pk,), {}, {}) == {"queue": "long"}
    assert route_task("config.worker_heartbeat", (), {}, {}) is None  # the default (short) queue
    # What Celery itself decides when the message is sent (the router from the settings).
    router = app.amqp.router
    assert router.route({}, "jobs.run_job", (export.pk,), {})["queue"].name == "short"
    assert router.route({}, "jobs.run_job", (benchmark.pk,), {})["queue"].name == "long"
    assert router.route({}, "jobs.reap_stale", (), {})["queue"].name == "short"


def test_the_published_message_goes_to_its_kinds_queue(small_study, monkeypatch):
    """job_send publishes through Celery's producer: the queue in the published message is the kind's."""
    published = []

    def send_task_message(producer, name, message, **options):
        published.append((name, options.get("routing_key"), options.get("queue")))

    monkeypatch.setattr(app.amqp, "send_task_message", send_task_message)
    monkeypatch.setattr(app, "producer_or_acquire", _FakeProducer)
    export, benchmark = _job(small_study), _job(small_study, kind="benchmark")
    assert services.job_send(job_id=export.pk) and services.job_send(job_id=benchmark.pk)
    # The queue and where the broker delivers the message: its exchange and routing key are the queue's
    # own (with Celery's defaults, every queue would share the default queue's routing key).
    delivered = [(name, queue.name, queue.exchange.name, queue.routing_key) for name, _key, queue in published]
    assert delivered == [("jobs.run_job", "short", "short", "short"), ("jobs.run_job", "long", "long", "long")]


class _FakeConnection:
    def _reraise_as_library_errors(self):
        return contextlib.nullcontext()


class _FakeProducer:
    """Stands for the broker connection: the message is captured by send_task_message, never sent."""

    def __init__(self, producer=None):
        self.connection = _FakeConnection()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_documented_worker_commands_consume_both_queues():
    """make demo's one worker consumes both queues; docker-compose's workers cover both between them."""
    root = Path(__file__).resolve().parents[2]
    makefile = (root / "Makefile").read_text()
    demo = makefile[makefile.index("\ndemo:") :]
    assert re.search(r"celery -A config worker -Q short,long ", demo)
    compose = (root / "docker-compose.yml").read_text()
    consumed = set()
    for queues in re.findall(r"command: celery -A config worker -Q (\S+)", compose):
        consumed |= set(queues.split(","))
    assert consumed == set(registry.QUEUES)
    readme = (root / "README.md").read_text()
    assert "worker -Q long" in readme and "worker -Q short" in readme
