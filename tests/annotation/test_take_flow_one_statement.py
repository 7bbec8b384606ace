"""The annotator's rating loop again, outside a test transaction, on PostgreSQL.

There a new answer is stored by one statement (annotation.services.rating._submit_in_one_statement),
which runs only when no transaction is open; the tests of test_take_flow run inside one, so they exercise
the general path. Here every one of them runs again with the one-statement path live, and the two paths
are compared on the same sequence of answers: same ratings, checks, statuses, reasons and next cards.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from annotation.models import Annotator, Assignment, Rating, Study
from annotation.services import rating as rating_service
from tests.annotation.test_annotator_side import (  # noqa: F401  (rerun here, outside a transaction)
    test_failed_check_warning_on_the_next_card_only,
)
from tests.annotation.test_take_flow import *  # noqa: F403  (every test and fixture, rerun below)
from tests.annotation.test_take_flow import current, start_rating, submit
from tests.test_query_budgets import session_read_queries

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement path is PostgreSQL's"),
]


def _walk(client, study, answers):
    """Submit `answers` (rating strings, or None for Unsure) in order; what each submission led to."""
    annotator = start_rating(client, study, pid=f"walk{len(answers):020d}")
    trail = []
    for answer in answers:
        trial = current(annotator)
        if trial is None:
            break
        if trial.kind == Assignment.Kind.ATTENTION:
            data = {"rating": answer if answer is not None else "0"}
        else:
            data = {"unsure": "1"} if answer is None else {"rating": answer}
        response = submit(client, study, trial, **data)
        nxt = current(annotator)
        trail.append((response.status_code, response.get("HX-Redirect"), nxt.position if nxt else None))
    annotator.refresh_from_db()
    ratings = list(
        Rating.objects.filter(annotator=annotator)
        .order_by("assignment__position")
        .values_list("assignment__position", "value", "unsure", "rt_ms")
    )
    checks = list(
        annotator.assignments.order_by("position").values_list("position", "kind", "check_passed", "answered_at")
    )
    checks = [(p, k, c, a is not None) for p, k, c, a in checks]
    state = (annotator.status, annotator.exclusion, annotator.exclusion_reason, annotator.completed_at is not None)
    return trail, ratings, checks, state


@pytest.mark.parametrize("answers", [["40", "60", None, "10", "90", "20", "30"], ["0", "0", "0", "0", "0", "0", "0"]])
def test_both_paths_leave_the_same_trail(client, checked_study, answers, monkeypatch):  # noqa: F405
    # The same order of trials and checks for both walks (it is drawn from the annotator's seed).
    monkeypatch.setattr("annotation.services.recruitment.secrets.randbits", lambda bits: 20251129)
    fast = _walk(client, checked_study, answers)
    Annotator.objects.filter(study=checked_study).delete()
    client.cookies.clear()
    monkeypatch.setattr(rating_service, "_submit_in_one_statement", lambda **kwargs: None)
    general = _walk(client, checked_study, answers)
    assert fast == general
    assert fast[3][0] in (Annotator.Status.COMPLETED, Annotator.Status.EXCLUDED)


def test_a_new_answer_is_one_statement(client, study):  # noqa: F405
    annotator = start_rating(client, study)
    trial = current(annotator)
    with CaptureQueriesContext(connection) as queries:
        response = submit(client, study, trial)
    assert response.status_code == 200
    writes = [q["sql"] for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    assert len(writes) == 1 and writes[0].startswith("WITH counts AS")
    assert not any(q["sql"].startswith(("BEGIN", "COMMIT", "SAVEPOINT")) for q in queries.captured_queries)
    # The annotator's lookup and the statement: the whole answer and the next card in two queries.
    assert len(queries.captured_queries) == 2 + session_read_queries()
    assert Study.objects.get(pk=study.pk).annotators.get().ratings.count() == 1


def test_the_statement_is_prepared_on_the_connection(client, study):  # noqa: F405
    """Parsed and planned once per connection, not once per rating (annotation.rows.fetchone)."""
    annotator = start_rating(client, study)
    for _ in range(2):
        assert submit(client, study, current(annotator)).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any(text.startswith("WITH counts AS") and "INSERT INTO" in text for text in prepared), prepared
    assert any('FROM "annotation_annotator" n JOIN' in text for text in prepared), prepared


@pytest.mark.parametrize("path", ["one statement", "general"])
def test_the_rate_limit_holds_on_both_paths(client, study, settings, monkeypatch, path):  # noqa: F405
    """RATING_RATE_LIMIT counts answers stored in the trailing period, from the annotator's trials."""
    settings.RATING_RATE_LIMIT = "3/1m"
    if path == "general":
        monkeypatch.setattr(rating_service, "_submit_in_one_statement", lambda **kwargs: None)
    annotator = start_rating(client, study)
    answers = [submit(client, study, current(annotator)) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert 1 <= int(answers[3]["Retry-After"]) <= 60
    assert b"faster than anyone can read" in answers[3].content
    assert annotator.ratings.count() == 3
    # Once the oldest counted answer leaves the period, the next is taken again.
    Assignment.objects.filter(annotator=annotator, answered_at__isnull=False).update(
        answered_at=F("answered_at") - timedelta(seconds=61)
    )
    assert submit(client, study, current(annotator)).status_code == 200
    assert annotator.ratings.count() == 4
