"""PostgreSQL connections are health-checked only after being idle (config/postgresql/base.py)."""

import psycopg
import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL backend's behaviour"),
]


@pytest.fixture
def checks(monkeypatch):
    """Count the health checks (Django's is_usable: a `SELECT 1` on the connection)."""
    calls = []
    real = connection.is_usable

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(connection, "is_usable", counted)
    connection.ensure_connection()
    return calls


def _request():
    """What a request does to the connection: Django's start-of-request bookkeeping, then a query."""
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def test_a_connection_used_a_moment_ago_is_not_checked_again(checks, settings):
    settings.CONN_HEALTH_CHECK_IDLE = 60.0
    _request()
    _request()
    _request()
    assert len(checks) <= 1  # at most the first request after the fixture's connect


def test_an_idle_connection_is_checked_and_a_dead_one_replaced(checks, settings):
    settings.CONN_HEALTH_CHECK_IDLE = 1.0
    _request()
    before = len(checks)
    dead = connection.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k not in ("context", "cursor_factory")}) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    connection._used_at -= 5  # idle for longer than CONN_HEALTH_CHECK_IDLE
    _request()  # checked, found dead, replaced: the request's query works
    assert len(checks) == before + 1
    assert connection.connection is not dead
