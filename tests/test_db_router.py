"""The replica router (config/db_router.py), asked directly: reads inside `reading_from_replica()` go to the
"replica" alias, every write and every other read to the primary. tests/test_db_replica.py runs real jobs
through a real second alias."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from annotation.models import Prompt, Rating, Study
from config import db_router
from config.db_router import REPLICA, ReplicaRouter, reading_from_replica
from jobs.models import Job, JobArtifact

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def replica_configured(monkeypatch):
    monkeypatch.setattr(db_router, "replica_configured", lambda: True)


def test_reads_go_to_the_replica_only_inside_the_context(replica_configured):
    router = ReplicaRouter()
    assert router.db_for_read(Rating) == DEFAULT_DB_ALIAS
    with reading_from_replica():
        assert router.db_for_read(Rating) == REPLICA
        assert router.db_for_read(Study) == REPLICA
        assert router.db_for_read(Prompt, instance=Prompt()) == REPLICA
    assert router.db_for_read(Rating) == DEFAULT_DB_ALIAS  # and after it


def test_writes_go_to_the_primary_inside_the_context_too(replica_configured):
    router = ReplicaRouter()
    for model in (Rating, Study, Job):
        assert router.db_for_write(model) == DEFAULT_DB_ALIAS
        with reading_from_replica():
            assert router.db_for_write(model) == DEFAULT_DB_ALIAS


def test_job_rows_are_read_on_the_primary_inside_the_context(replica_configured):
    """A running job reads its own row (a cancel request) while it writes its progress there."""
    router = ReplicaRouter()
    with reading_from_replica():
        assert router.db_for_read(Job) == DEFAULT_DB_ALIAS
        assert router.db_for_read(JobArtifact) == DEFAULT_DB_ALIAS


@pytest.mark.django_db
def test_reads_inside_a_transaction_on_the_primary_stay_there(replica_configured):
    """The replica cannot see rows the primary's open transaction wrote (pytest-django's tests run in one)."""
    router = ReplicaRouter()
    with transaction.atomic(), reading_from_replica():
        assert router.db_for_read(Rating) == DEFAULT_DB_ALIAS


def test_without_a_replica_every_read_goes_to_the_primary(monkeypatch):
    monkeypatch.delitem(connections.settings, REPLICA, raising=False)  # as without DATABASE_REPLICA_URL
    router = ReplicaRouter()
    with reading_from_replica():
        assert router.db_for_read(Rating) == DEFAULT_DB_ALIAS


def test_migrations_run_on_the_primary_only():
    router = ReplicaRouter()
    assert router.allow_migrate(REPLICA, "annotation") is False
    assert router.allow_migrate(DEFAULT_DB_ALIAS, "annotation") is not False


def test_the_replica_contexts_do_not_leak_between_nested_uses(replica_configured):
    router = ReplicaRouter()
    with reading_from_replica():
        with reading_from_replica():
            pass
        assert router.db_for_read(Rating) == REPLICA
    assert router.db_for_read(Rating) == DEFAULT_DB_ALIAS


def _settings_with(env: dict) -> subprocess.CompletedProcess:
    """The settings module read in a fresh process with these variables (nothing connects)."""
    code = (
        "import json; from config import settings as s; "
        "keys = ('ENGINE', 'HOST', 'NAME', 'TEST'); "
        "print(json.dumps({a: {k: d.get(k) for k in keys} for a, d in s.DATABASES.items()}))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATABASE_REPLICA_URL"}}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True)


def test_the_replica_url_adds_a_replica_alias_that_mirrors_default_in_tests():
    result = _settings_with(
        {"DATABASE_URL": "postgres://u:p@primary:5432/ph", "DATABASE_REPLICA_URL": "postgres://u:p@standby:5432/ph"}
    )
    assert result.returncode == 0, result.stderr
    databases = json.loads(result.stdout)
    assert databases["replica"]["HOST"] == "standby" and databases["default"]["HOST"] == "primary"
    assert databases["replica"]["ENGINE"] == databases["default"]["ENGINE"] == "config.postgresql"
    assert databases["replica"]["TEST"] == {"MIRROR": "default"}


def test_without_the_replica_url_there_is_no_replica_alias():
    result = _settings_with({"DATABASE_URL": "postgres://u:p@primary:5432/ph", "DATABASE_REPLICA_URL": ""})
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)) == ["default"]


def test_a_replica_needs_postgresql():
    result = _settings_with({"DATABASE_REPLICA_URL": "sqlite:///elsewhere.sqlite3"})
    assert result.returncode != 0
    assert "DATABASE_REPLICA_URL needs PostgreSQL URLs in both it and DATABASE_URL" in result.stderr
