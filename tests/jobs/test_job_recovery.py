"""Jobs whose worker died, jobs over their time limit, and jobs the broker could not take (jobs/services.py).

The pure logic on the test database; tests/integration/test_job_faults.py does the same with a real worker
that is killed, a real time limit and a Redis that is stopped.
"""

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Job, JobArtifact

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.JOB_STALE_SECONDS = 120
    settings.JOB_HEARTBEAT_SECONDS = 30
    settings.JOB_MAX_ATTEMPTS = 3
    settings.CELERY_TASK_TIME_LIMIT = 3600
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 3540


@pytest.fixture
def sent(monkeypatch):
    """The job ids handed to the broker (nothing is published)."""
    ids = []
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: ids.append(job_id))
    return ids


@pytest.fixture
def broker_down(monkeypatch):
    """What kombu raises when Redis refuses or does not answer."""
    calls = []

    def refuse(job_id):
        calls.append(job_id)
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("jobs.tasks.run_job.delay", refuse)
    return calls


@pytest.fixture
def job(small_study):
    return Job.objects.create(kind="export", study=small_study, params={"format": "pluriharms"})


@pytest.fixture
def counted(replace_job_handler):
    """The export handler, counting its runs and writing one file."""
    calls = []

    def handler(job, progress):
        calls.append(job.attempts)
        folder = services.artifact_dir(job)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"run-{job.attempts}.txt"
        path.write_text("done")
        services.artifact_save(job=job, path=path)
        return {"run": job.attempts}

    replace_job_handler("export", handler)
    return calls


def running(job: Job, *, silent_for: float, attempts: int = 1, ran_for: float = 60) -> Job:
    """Make `job` a run that beat last `silent_for` seconds ago after running `ran_for` seconds."""
    now = timezone.now()
    last = now - timedelta(seconds=silent_for)
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING,
        attempts=attempts,
        started_at=last - timedelta(seconds=ran_for),
        heartbeat_at=last,
        progress=0.4,
        message="half way",
    )
    return Job.objects.get(pk=job.pk)


# --- claim, heartbeat, progress --------------------------------------------------------------


def test_claim_starts_the_heartbeat_and_counts_the_run(job):
    before = timezone.now()
    claimed = services.job_claim(job_id=job.pk)
    assert claimed.status == Job.Status.RUNNING and claimed.attempts == 1
    assert claimed.heartbeat_at >= before and claimed.heartbeat_at == claimed.started_at
    assert services.job_claim(job_id=job.pk) is None  # a duplicate message while it runs
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_progress_and_heartbeat_move_the_heartbeat_of_their_own_run_only(job):
    claimed = services.job_claim(job_id=job.pk)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=50))
    services.job_progress(job=claimed, fraction=0.5, message="half")
    row = Job.objects.get(pk=job.pk)
    assert row.progress == 0.5 and row.message == "half"
    assert timezone.now() - row.heartbeat_at < timedelta(seconds=5)
    assert services.job_heartbeat(job=claimed) is True

    Job.objects.filter(pk=job.pk).update(attempts=2)  # another run took the job over
    services.job_progress(job=claimed, fraction=0.9, message="zombie")
    assert Job.objects.get(pk=job.pk).message == "half"
    assert services.job_heartbeat(job=claimed) is False


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_beats_while_the_handler_runs_and_stops_after(small_study):
    job = Job.objects.create(kind="export", study=small_study, params={"format": "pluriharms"})
    claimed = services.job_claim(job_id=job.pk)
    first = claimed.heartbeat_at
    with services.Heartbeat(claimed, interval=0.05) as heartbeat:
        moved = False
        for _ in range(200):  # up to 10 s
            if Job.objects.get(pk=job.pk).heartbeat_at > first:
                moved = True
                break
            heartbeat._stop.wait(0.05)
    assert moved, "the heartbeat thread never wrote"
    assert not heartbeat._thread.is_alive()


# --- what a dead run becomes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "silent_for,attempts,ran_for,outcome",
    [
        (10, 1, 60, None),  # alive
        (119, 2, 60, None),
        (121, 1, 60, services.RERUN),
        (500, 2, 60, services.RERUN),
        (121, 3, 60, services.GIVE_UP),
        (121, 1, 3520, services.TIME_LIMIT),  # last beat within a heartbeat of the soft limit
        (121, 3, 3600, services.TIME_LIMIT),
    ],
)
def test_stale_outcome(job, silent_for, attempts, ran_for, outcome):
    job = running(job, silent_for=silent_for, attempts=attempts, ran_for=ran_for)
    assert services.job_stale_outcome(job=job) == outcome


def test_stale_outcome_of_jobs_that_are_not_running(job):
    assert services.job_stale_outcome(job=job) is None  # queued
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, heartbeat_at=timezone.now() - timedelta(days=1))
    assert services.job_stale_outcome(job=Job.objects.get(pk=job.pk)) is None


def test_reaper_queues_a_dead_run_again_and_sends_it(job, sent):
    running(job, silent_for=300, attempts=1)
    assert services.jobs_reap_stale() == {
        services.RERUN: 1,
        services.TIME_LIMIT: 0,
        services.GIVE_UP: 0,
        services.CANCEL: 0,
    }
    row = Job.objects.get(pk=job.pk)
    assert row.status == Job.Status.QUEUED and row.attempts == 1 and row.progress == 0
    assert "worker stopped during run 1" in row.message
    assert sent == [job.pk] and row.dispatched_at is not None
    assert services.jobs_reap_stale()[services.RERUN] == 0  # nothing left to reap


def test_reaper_leaves_live_runs_alone(job, sent):
    running(job, silent_for=5, attempts=1)
    assert sum(services.jobs_reap_stale().values()) == 0
    assert Job.objects.get(pk=job.pk).status == Job.Status.RUNNING and sent == []


def test_reaper_gives_up_after_max_attempts(job, sent, settings):
    settings.JOB_MAX_ATTEMPTS = 3
    running(job, silent_for=300, attempts=3)
    assert services.jobs_reap_stale()[services.GIVE_UP] == 1
    row = Job.objects.get(pk=job.pk)
    assert row.status == Job.Status.FAILED and row.finished_at is not None
    assert row.error.startswith("The worker stopped 3 times while running this job; giving up")
    assert sent == []


def test_reaper_fails_a_run_killed_at_its_time_limit_without_retrying(job, sent):
    running(job, silent_for=300, attempts=1, ran_for=3590)
    assert services.jobs_reap_stale()[services.TIME_LIMIT] == 1
    row = Job.objects.get(pk=job.pk)
    assert row.status == Job.Status.FAILED and "time limit of 3600 s" in row.error and sent == []


def test_a_job_is_retried_at_most_max_attempts_times(job, sent, counted, replace_job_handler):
    """Each run dies (the reaper finds it silent); the third death ends the job."""
    for run in (1, 2, 3):
        claimed = services.job_claim(job_id=job.pk)
        assert claimed.attempts == run
        running(job, silent_for=300, attempts=run)
        services.jobs_reap_stale()
    row = Job.objects.get(pk=job.pk)
    assert row.status == Job.Status.FAILED and row.attempts == 3 and "3 times" in row.error
    assert sent == [job.pk, job.pk]  # queued again twice, then given up


# --- redelivery, and the race with the reaper -----------------------------------------------


def test_redelivered_message_of_a_dead_run_runs_it_again_from_the_start(job, counted, sent):
    services.job_claim(job_id=job.pk)
    folder = services.artifact_dir(job)
    folder.mkdir(parents=True)
    (folder / "half-written.csv").write_text("a,b\n1,")
    JobArtifact.objects.create(job=job, name="half-written.csv", file=f"jobs/{job.pk}/half-written.csv")
    running(job, silent_for=300, attempts=1)

    finished = services.job_run(job_id=job.pk)  # the message, redelivered after the worker died
    assert finished.status == Job.Status.SUCCEEDED and finished.attempts == 2
    assert counted == [2] and finished.result == {"run": 2}
    assert sorted(p.name for p in folder.iterdir()) == ["run-2.txt"]
    assert list(finished.artifacts.values_list("name", flat=True)) == ["run-2.txt"]
    assert sent == []


def test_redelivered_message_of_a_live_run_is_skipped(job, counted):
    running(job, silent_for=5, attempts=1)
    assert services.job_run(job_id=job.pk) is None
    assert counted == [] and Job.objects.get(pk=job.pk).status == Job.Status.RUNNING


def test_redelivered_message_of_a_run_out_of_attempts_fails_it(job, counted):
    running(job, silent_for=300, attempts=3)
    finished = services.job_run(job_id=job.pk)
    assert finished.status == Job.Status.FAILED and "3 times" in finished.error and counted == []


def test_reaper_after_redelivery_finds_nothing_to_do(job, counted, sent):
    stale = running(job, silent_for=300, attempts=1)  # what the reaper read
    services.job_run(job_id=job.pk)  # the redelivered message won
    assert services.job_reap(job=stale) is None
    row = Job.objects.get(pk=job.pk)
    assert row.status == Job.Status.SUCCEEDED and row.attempts == 2 and counted == [2] and sent == []


def test_redelivery_after_reaper_runs_the_job_once(job, counted, sent):
    stale = running(job, silent_for=300, attempts=1)
    assert services.job_reap(job=stale) == services.RERUN  # queued again and sent
    assert services.job_run(job_id=job.pk).status == Job.Status.SUCCEEDED  # the old message claims it
    assert services.job_run(job_id=job.pk) is None  # the reaper's message finds it done
    assert counted == [2] and Job.objects.get(pk=job.pk).attempts == 2


def test_two_reapers_act_once(job, sent):
    stale = running(job, silent_for=300, attempts=1)
    copy = Job.objects.get(pk=job.pk)
    assert services.job_reap(job=stale) == services.RERUN
    assert services.job_reap(job=copy) is None
    assert sent == [job.pk]


def test_a_run_that_beats_after_the_reaper_read_it_is_left_alone(job, sent):
    stale = running(job, silent_for=300, attempts=1)  # what the reaper read
    alive = Job.objects.get(pk=job.pk)
    assert services.job_heartbeat(job=alive)  # the run was only slow, and beats now
    assert services.job_reap(job=stale) is None
    assert Job.objects.get(pk=job.pk).status == Job.Status.RUNNING and sent == []


def test_a_run_that_was_taken_over_cannot_finish_the_job(job, replace_job_handler):
    def handler(job, progress):
        # While this run is stuck, it is given up for dead and the job is claimed again by another worker.
        Job.objects.filter(pk=job.pk).update(attempts=job.attempts + 1, heartbeat_at=timezone.now())
        return {"from": "the old run"}

    replace_job_handler("export", handler)
    services.job_run(job_id=job.pk)
    row = Job.objects.get(pk=job.pk)
    assert row.status == Job.Status.RUNNING and row.result is None and row.attempts == 2


# --- time limit ----------------------------------------------------------------------------------


def test_soft_time_limit_fails_the_job_with_its_limit(job, replace_job_handler):
    def slow(job, progress):
        progress(0.2, "still going")
        raise SoftTimeLimitExceeded()

    replace_job_handler("export", slow)
    finished = services.job_run(job_id=job.pk)
    assert finished.status == Job.Status.FAILED and finished.message == "failed"
    assert finished.error == services.TIME_LIMIT_ERROR.format(seconds=3600)


def test_soft_limit_leaves_time_to_stop():
    from config import settings as project

    assert 0 < project.CELERY_TASK_SOFT_TIME_LIMIT < project.CELERY_TASK_TIME_LIMIT


# --- broker down -----------------------------------------------------------------------------------


def test_send_with_the_broker_down_leaves_the_job_queued_and_says_why(job, broker_down):
    assert services.job_send(job_id=job.pk) is False
    row = Job.objects.get(pk=job.pk)
    assert row.status == Job.Status.QUEUED and row.dispatched_at is None
    assert row.message == services.WAITING_FOR_QUEUE


def test_send_records_the_dispatch_and_clears_the_waiting_message(job, sent):
    Job.objects.filter(pk=job.pk).update(message=services.WAITING_FOR_QUEUE)
    assert services.job_send(job_id=job.pk) is True
    row = Job.objects.get(pk=job.pk)
    assert sent == [job.pk] and row.dispatched_at is not None and row.message == ""


def test_create_with_the_broker_down_answers(small_study, broker_down, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_create(kind="export", study=small_study, params={"format": "jsonl"})
    assert broker_down == [job.pk]
    assert job.message == services.WAITING_FOR_QUEUE  # the object the view renders says so too
    assert Job.objects.get(pk=job.pk).message == services.WAITING_FOR_QUEUE


def test_dispatch_sends_what_the_broker_never_took(small_study, sent):
    now = timezone.now()
    make = lambda **f: Job.objects.create(kind="export", study=small_study, params={"format": "jsonl"}, **f)  # noqa: E731
    waiting = make(message=services.WAITING_FOR_QUEUE)
    orphan = make()  # its process stopped before sending
    Job.objects.filter(pk=orphan.pk).update(created_at=now - timedelta(seconds=300))
    just_created = make()  # its on_commit send is still to come
    already_sent = make(dispatched_at=now - timedelta(hours=1))
    Job.objects.filter(pk=already_sent.pk).update(created_at=now - timedelta(hours=1))
    done = make(status=Job.Status.SUCCEEDED, message=services.WAITING_FOR_QUEUE)

    assert services.jobs_dispatch_pending() == 2
    assert sorted(sent) == sorted([waiting.pk, orphan.pk])
    assert Job.objects.get(pk=waiting.pk).message == ""
    assert Job.objects.get(pk=just_created.pk).dispatched_at is None and done.pk not in sent
    assert services.jobs_dispatch_pending() == 0  # each sent once


def test_dispatch_while_the_broker_is_still_down_stops_at_the_first_refusal(small_study, broker_down):
    for _ in range(3):
        Job.objects.create(
            kind="export", study=small_study, params={"format": "jsonl"}, message=services.WAITING_FOR_QUEUE
        )
    assert services.jobs_dispatch_pending() == 0
    assert len(broker_down) == 1
    assert Job.objects.filter(message=services.WAITING_FOR_QUEUE, status=Job.Status.QUEUED).count() == 3


@pytest.mark.django_db(transaction=True)
def test_api_answers_201_with_the_waiting_message(researcher, small_release, broker_down):
    from annotation.importers import pluriharms_import

    pluriharms_import(directory=small_release, slug="small", owner=researcher)
    api = APIClient()
    api.force_authenticate(researcher)
    payload = {"kind": "export", "study": "small", "params": {"format": "jsonl"}}
    response = api.post("/api/jobs/", payload, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "queued" and response.json()["message"] == services.WAITING_FOR_QUEUE


@pytest.mark.django_db(transaction=True)
def test_htmx_export_gets_a_card_with_the_waiting_message(client, researcher, small_release, broker_down):
    from annotation.importers import pluriharms_import

    pluriharms_import(directory=small_release, slug="small", owner=researcher)
    client.force_login(researcher)
    response = client.post(
        reverse("annotation:export_start", args=["small"]), {"format": "jsonl"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert services.WAITING_FOR_QUEUE in response.content.decode()
    assert Job.objects.get().status == Job.Status.QUEUED


def test_beat_runs_the_reaper_and_the_dispatcher(settings):
    tasks = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks["jobs.reap_stale"] == 60 and tasks["jobs.dispatch_pending"] == 60


def test_tasks_call_the_services(job, sent):
    from jobs.tasks import dispatch_pending, reap_stale

    running(job, silent_for=300, attempts=1)
    reap_stale.apply()
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED and sent == [job.pk]
    Job.objects.filter(pk=job.pk).update(dispatched_at=None, message=services.WAITING_FOR_QUEUE)
    dispatch_pending.apply()
    assert sent == [job.pk, job.pk]
