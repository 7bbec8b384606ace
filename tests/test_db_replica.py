"""A real second alias, "replica": the test database again through a connection of its own (what TEST MIRROR
makes of DATABASE_REPLICA_URL in a test run), on SQLite and on PostgreSQL alike. Each test watches which
connection every statement of a real export or analysis job goes through.

transaction=True: a replica sees only committed rows, so the tests' rows are committed (and flushed after).
"""

import copy
import dataclasses
import logging
import re

import pandas as pd
import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from annotation.models import Rating, Study
from config.db_router import REPLICA, reading_from_replica, replica_read_alias
from jobs import registry, services
from jobs.models import Job

WRITES = ("INSERT", "UPDATE", "DELETE")
pytestmark = pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])


@pytest.fixture(scope="module", autouse=True)
def replica_alias(django_db_setup):
    """The alias for this module's tests: set up after the test database (its name is the test database's)
    and before each test's database setup, which checks the aliases a test names."""
    if REPLICA in connections.settings:  # DATABASE_REPLICA_URL is set: its alias already mirrors the test database
        yield
        return
    settings_dict = copy.deepcopy(connections[DEFAULT_DB_ALIAS].settings_dict)
    settings_dict["TEST"] = {**settings_dict.get("TEST", {}), "MIRROR": DEFAULT_DB_ALIAS}
    connections.settings[REPLICA] = settings_dict
    yield
    connections[REPLICA].close()
    del connections[REPLICA]
    del connections.settings[REPLICA]


@pytest.fixture
def replica():
    return connections[REPLICA]


def _tables(queries) -> str:
    return "\n".join(q["sql"] for q in queries)


def _reads_table(queries, table: str) -> bool:
    """Whether a statement names the table (quoted by the ORM, bare in the selectors' own SQL)."""
    return re.search(rf"\b{table}\b(?!_)", _tables(queries)) is not None


def _writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)]


def test_an_export_job_reads_the_ratings_through_the_replica_and_writes_on_the_primary(small_study, replica):
    job = Job.objects.create(kind="export", study=small_study, params={"format": "long-csv"})
    with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary, CaptureQueriesContext(replica) as read:
        finished = services.job_run(job_id=job.pk)

    assert finished.status == Job.Status.SUCCEEDED, finished.error
    with finished.artifacts.get(name="ratings.csv").file.open("rb") as handle:
        assert len(pd.read_csv(handle)) == Rating.objects.filter(assignment__annotator__study=small_study).count() == 20
    # The study's rows came from the replica, none from the primary.
    assert _reads_table(read, "annotation_rating") and _reads_table(read, "annotation_prompt")
    assert "annotation_" not in _tables(primary)
    # The job's own row: checked on the replica once (it has everything committed before the job), then
    # read and written on the primary; the replica wrote nothing.
    assert '"jobs_job"' in _tables(read)
    assert _writes(read) == []
    writes = _writes(primary)
    assert any('"jobs_job"' in sql and sql.startswith("UPDATE") for sql in writes)
    assert any('"jobs_jobartifact"' in sql and sql.startswith("INSERT") for sql in writes)


def test_an_analysis_job_reads_through_the_replica(small_study, replica):
    job = Job.objects.create(
        kind="analysis", study=small_study, params={"mixed_effects": False, "n_boot": 10, "seed": 0}
    )
    with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary, CaptureQueriesContext(replica) as read:
        finished = services.job_run(job_id=job.pk)

    assert finished.status == Job.Status.SUCCEEDED, finished.error
    assert _reads_table(read, "annotation_rating")
    assert "annotation_" not in _tables(primary)
    assert _writes(read) == []


def test_writes_inside_the_context_go_to_the_primary_and_reads_after_it_too(small_study, replica):
    with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary, CaptureQueriesContext(replica) as read:
        with reading_from_replica():
            Study.objects.filter(pk=small_study.pk).update(title="Renamed")
            inside = Study.objects.get(pk=small_study.pk)
        outside = Study.objects.get(pk=small_study.pk)
    assert inside._state.db == REPLICA and inside.title == "Renamed"  # one database: the mirror sees the commit
    assert outside._state.db == DEFAULT_DB_ALIAS
    assert [sql.split()[0] for sql in _writes(primary)] == ["UPDATE"] and _writes(read) == []
    # A related object of a row read on the replica is read on the primary once outside the context.
    with CaptureQueriesContext(replica) as later:
        list(inside.prompts.all())
    assert later.captured_queries == []


def test_a_job_reads_from_the_primary_when_the_replica_does_not_have_it(small_study, replica, tmp_path, caplog):
    """A replica that lags (or cannot be read) does not fail the job: it reads from the primary, and says so."""
    # A connection of its own to another database (SQLite keeps an in-memory database's connection open
    # through close(), so the alias gets a new connection object, and the old one back afterwards).
    settings_dict = replica.settings_dict
    if replica.vendor == "sqlite":
        elsewhere = str(tmp_path / "empty.sqlite3")  # a database without the tables
    else:
        elsewhere = "pluriharms_no_such_replica"  # a database that does not exist
    connections.settings[REPLICA] = {**settings_dict, "NAME": elsewhere}
    del connections[REPLICA]
    job = Job.objects.create(kind="export", study=small_study, params={"format": "long-csv"})
    try:
        with caplog.at_level(logging.WARNING, logger="config.db_router"):
            with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary:
                finished = services.job_run(job_id=job.pk)
    finally:
        connections[REPLICA].close()
        connections.settings[REPLICA] = settings_dict
        connections[REPLICA] = replica
    assert finished.status == Job.Status.SUCCEEDED, finished.error
    assert _reads_table(primary, "annotation_rating")
    assert "the replica could not be read; reading from the primary" in caplog.text


def test_a_kind_that_does_not_ask_reads_from_the_primary(small_study, replica, monkeypatch):
    seen = []

    def handler(job, progress):
        seen.append(Rating.objects.filter(assignment__annotator__study=job.study).count())
        return {}

    kind = dataclasses.replace(registry.kind_get("export"), handler=handler, replica_reads=False)
    monkeypatch.setitem(registry._KINDS, "export", kind)
    job = Job.objects.create(kind="export", study=small_study, params={"format": "long-csv"})
    with CaptureQueriesContext(replica) as read:
        assert services.job_run(job_id=job.pk).status == Job.Status.SUCCEEDED
    assert seen == [20] and read.captured_queries == []


def test_the_ratings_csv_stream_reads_through_the_replica(small_study, replica, researcher, monkeypatch):
    """The API's streamed CSV export (PostgreSQL's COPY) runs on the replica's connection."""
    if replica.vendor != "postgresql":
        pytest.skip("the streamed CSV uses COPY on PostgreSQL only (elsewhere the ORM, from the primary)")
    opened = []
    cursor = replica.cursor
    monkeypatch.setattr(replica, "cursor", lambda: opened.append(REPLICA) or cursor())
    primary = connections[DEFAULT_DB_ALIAS]
    primary_cursor = primary.cursor
    monkeypatch.setattr(primary, "cursor", lambda: opened.append(DEFAULT_DB_ALIAS) or primary_cursor())
    api = APIClient()
    api.force_authenticate(researcher)
    response = api.get(f"/api/studies/{small_study.slug}/ratings.csv")
    assert response.status_code == 200
    opened.clear()  # the view's own reads (the user, the study's access) were on the primary
    body = b"".join(response.streaming_content).decode()
    assert len(body.splitlines()) == 1 + 20
    assert opened and set(opened) == {REPLICA}  # the stream itself, the COPY, only on the replica


def test_the_ratings_csv_stream_reads_from_the_primary_when_the_replica_does_not_answer(
    small_study, replica, researcher, caplog
):
    if replica.vendor != "postgresql":
        pytest.skip("the streamed CSV uses COPY on PostgreSQL only")
    settings_dict = replica.settings_dict
    connections.settings[REPLICA] = {**settings_dict, "NAME": "pluriharms_no_such_replica"}
    del connections[REPLICA]
    api = APIClient()
    api.force_authenticate(researcher)
    try:
        with caplog.at_level(logging.WARNING, logger="config.db_router"):
            response = api.get(f"/api/studies/{small_study.slug}/ratings.csv")
            body = b"".join(response.streaming_content).decode()
    finally:
        connections[REPLICA].close()
        connections.settings[REPLICA] = settings_dict
        connections[REPLICA] = replica
    assert response.status_code == 200 and len(body.splitlines()) == 1 + 20
    assert "the replica could not be reached; reading from the primary" in caplog.text


def test_a_streamed_export_reads_from_the_replica_while_it_answers(replica, tmp_path):
    assert replica_read_alias(Rating) == REPLICA
    settings_dict = replica.settings_dict
    broken = str(tmp_path / "no-such-folder" / "db.sqlite3") if replica.vendor == "sqlite" else "pluriharms_no_such"
    connections.settings[REPLICA] = {**settings_dict, "NAME": broken}
    del connections[REPLICA]
    try:
        assert replica_read_alias(Rating) == DEFAULT_DB_ALIAS
    finally:
        connections[REPLICA].close()
        connections.settings[REPLICA] = settings_dict
        connections[REPLICA] = replica
