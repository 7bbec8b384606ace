"""Exports do not wait behind a benchmark: a worker that consumes only the short queue runs an export
while a benchmark queued before it waits on the long queue (real Redis, PostgreSQL and worker)."""

import pytest

from annotation.importers import pluriharms_import
from jobs.models import Job
from jobs.services import job_create

from .conftest import wait_for, worker_process

pytestmark = pytest.mark.services


def test_an_export_runs_on_the_short_queue_while_a_benchmark_waits_on_the_long(
    services, settings, tmp_path, small_release
):
    study = pluriharms_import(directory=small_release, slug="queues")
    benchmark = job_create(
        kind="benchmark", study=study, params={"predictors": ["global_mean"], "seeds": 1, "splits": 2}
    )
    export = job_create(kind="export", study=study, params={"format": "long-csv"})
    with worker_process(settings, tmp_path, queues="short", name="short-worker"):

        def export_done():
            export.refresh_from_db()
            return export.is_done

        assert wait_for(export_done, timeout=120), f"export still {export.status} ({export.message})"
        assert export.status == Job.Status.SUCCEEDED, export.error
        benchmark.refresh_from_db()
        # Sent to the broker (dispatched) but on the long queue, which this worker does not consume.
        assert benchmark.status == Job.Status.QUEUED and benchmark.dispatched_at is not None
    # A worker on the long queue then takes it.
    with worker_process(settings, tmp_path, queues="long", name="long-worker"):

        def benchmark_done():
            benchmark.refresh_from_db()
            return benchmark.is_done

        assert wait_for(benchmark_done, timeout=240), f"benchmark still {benchmark.status} ({benchmark.message})"
        assert benchmark.status == Job.Status.SUCCEEDED, benchmark.error
