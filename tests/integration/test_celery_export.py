"""End to end: an export job goes through Redis to a real worker process and PostgreSQL."""

import pandas as pd
import pytest

from annotation.importers import pluriharms_import
from jobs.models import Job
from jobs.services import job_create

from .conftest import wait_for

pytestmark = pytest.mark.services


def test_worker_runs_export_job_against_postgres_and_redis(celery_worker_process, small_release, settings):
    study = pluriharms_import(directory=small_release, slug="e2e")
    job = job_create(kind="export", study=study, params={"format": "long-csv"})  # autocommit: queued now

    def finished():
        job.refresh_from_db()
        return job.is_done

    assert wait_for(finished, timeout=120), f"job still {job.status} ({job.message})"
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 1 and job.progress == 1.0
    artifact = job.artifacts.get(name="ratings.csv")
    with artifact.file.open("rb") as handle:
        frame = pd.read_csv(handle)
    assert len(frame) == 20 and set(frame["annotator"]) == {"P0001", "P0002", "P0003", "P0004"}


def test_worker_records_a_failing_job(celery_worker_process):
    from annotation.models import Study

    study = Study.objects.create(slug="empty", title="No data")
    job = job_create(kind="export", study=study, params={"format": "pluriharms"})

    def finished():
        job.refresh_from_db()
        return job.is_done

    assert wait_for(finished, timeout=120)
    # An empty study still exports (headers only), so the job succeeds with an empty table.
    assert job.status == Job.Status.SUCCEEDED, job.error
