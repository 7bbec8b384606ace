"""The job pattern: created rows are queued after commit, claimed once, and record results or errors."""

import pandas as pd
import pytest

from config.errors import ApplicationError
from jobs import registry, services
from jobs.models import Job

pytestmark = pytest.mark.django_db


def test_job_is_queued_only_after_commit(small_study, researcher, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: sent.append(job_id))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = services.job_create(kind="export", study=small_study, params={"format": "long-csv"}, user=researcher)
    assert sent == [] and len(callbacks) == 1  # nothing leaves before the commit
    callbacks[0]()
    assert sent == [job.pk]
    assert job.status == Job.Status.QUEUED and job.created_by == researcher


def test_export_job_writes_artifacts_and_result(small_study):
    job = Job.objects.create(kind="export", study=small_study, params={"format": "long-csv"})
    finished = services.job_run(job_id=job.pk)
    assert finished.status == Job.Status.SUCCEEDED
    assert finished.progress == 1.0 and finished.started_at <= finished.finished_at
    assert finished.result == {"format": "long-csv", "files": ["ratings.csv", "manifest.json"]}
    artifact = finished.artifacts.get(name="ratings.csv")
    with artifact.file.open("rb") as handle:
        frame = pd.read_csv(handle)
    assert len(frame) == 20 and artifact.size > 0 and artifact.content_type == "text/csv"


def test_redelivered_task_does_not_run_twice(small_study, replace_job_handler):
    job = Job.objects.create(kind="export", study=small_study, params={"format": "pluriharms"})
    calls = []
    original = registry.kind_get("export").handler
    replace_job_handler("export", lambda j, p: calls.append(j.pk) or original(j, p))
    assert services.job_run(job_id=job.pk).status == Job.Status.SUCCEEDED
    assert services.job_run(job_id=job.pk) is None
    assert calls == [job.pk]
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_failing_job_records_a_short_error_without_internals(small_study, replace_job_handler, caplog):
    job = Job.objects.create(kind="export", study=small_study, params={"format": "pluriharms"})

    def broken(job, progress):
        progress(0.3, "half way")
        raise ValueError("the disk is on fire")

    replace_job_handler("export", broken)
    finished = services.job_run(job_id=job.pk)
    assert finished.status == Job.Status.FAILED
    # The user sees a short message; the exception's text and traceback go to the log only.
    assert finished.error == services.INTERNAL_ERROR.format(id=job.pk)
    assert "disk is on fire" not in finished.error and "Traceback" not in finished.error
    assert "the disk is on fire" in caplog.text
    assert finished.progress == pytest.approx(0.3) and finished.finished_at is not None


def test_a_users_mistake_is_shown_as_its_message(small_study, replace_job_handler):
    job = Job.objects.create(kind="export", study=small_study, params={"format": "pluriharms"})

    def refuses(job, progress):
        raise ApplicationError("the study has no ratings yet")

    replace_job_handler("export", refuses)
    assert services.job_run(job_id=job.pk).error == "the study has no ratings yet"


@pytest.mark.parametrize(
    "kind,params,message",
    [
        ("export", {"format": "xlsx"}, "unknown export format 'xlsx'"),
        ("teleport", {}, "unknown job kind 'teleport'"),
        ("export", {"format": "long-csv", "out_dir": "/tmp"}, "out_dir: unknown parameter"),
        ("export", ["pluriharms"], "params must be an object"),
        ("analysis", {"mixed_effects": "yes"}, "mixed_effects: must be true or false"),
        ("analysis", {"n_boot": 10**9}, "n_boot"),
        ("benchmark", {"predictors": ["uploaded"]}, "needs an uploaded predictions file"),
        (
            "benchmark",
            {"predictors": ["uploaded"], "uploaded_path": "/etc/hostname"},
            "uploaded_path: unknown parameter",
        ),
        ("benchmark", {"predictors": ["uploaded"], "upload": "/etc/hostname"}, "upload:"),
        ("benchmark", {"predictors": ["uploaded"], "upload": 424242}, "no predictions upload #424242 in this study"),
    ],
)
def test_bad_job_requests_are_refused(small_study, kind, params, message):
    with pytest.raises(ApplicationError, match=message):
        services.job_create(kind=kind, study=small_study, params=params)
    assert Job.objects.count() == 0


def test_celery_task_runs_the_service(small_study):
    from jobs.tasks import run_job

    job = Job.objects.create(kind="export", study=small_study, params={"format": "jsonl"})
    run_job.apply(args=[job.pk])  # in-process, as a worker would call it
    assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED
