"""simulate_crowd against a live server: every acknowledged rating stored once (the reconciliation),
attention checks failed at a rate exclude annotators, questionnaires answered when asked.

On PostgreSQL only (the `postgres` fixture; CI runs them): the live server's request threads on SQLite's
in-memory test database share one connection, which concurrent annotators deadlock. The timing
targets live in bench/load.py and BENCHMARKS.md, not here."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotation.crowd import Crowd, reconcile
from annotation.models import Annotator, Assignment, Prompt, Rating, Study, SurveyResponse

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _many_arrivals(postgres, settings):
    settings.RECRUITMENT_RATE_LIMIT = "1000/1m"  # every simulated annotator comes from 127.0.0.1
    settings.RATING_RATE_LIMIT = "100000/1m"  # no think time: far faster than a person


def make_study(slug: str, n_prompts: int = 12, **fields) -> Study:
    defaults = dict(
        title="Crowd",
        status=Study.Status.RECRUITING,
        attention_checks=2,
        attention_max_failures=0,
        instruments=[],
        completion_code="CROWD-OK",
        min_seconds_per_rating=0,
    )
    study = Study.objects.create(slug=slug, **(defaults | fields))
    Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=str(i), text=f"Prompt <b>{i}</b>", order=i) for i in range(n_prompts)]
    )
    return study


def run(live_server, study, *extra) -> dict:
    out = StringIO()
    call_command("simulate_crowd", "--url", live_server.url, "--study", study.slug, "--json", *extra, stdout=out)
    return json.loads(out.getvalue())


def test_twenty_annotators_every_acknowledged_rating_stored_once(live_server):
    study = make_study("crowd20")
    report = run(live_server, study, "--annotators", "20", "--concurrency", "10")

    trials = 12 + 2
    assert report["errors"] == 0, report["error_examples"]
    assert report["outcomes"] == {"completed": 20}
    assert report["ratings_acknowledged"] == 20 * trials
    rec = report["reconciliation"]
    assert rec["lost"] == 0 and rec["duplicated"] == 0 and rec["value_mismatch"] == 0
    assert rec["stored"] == rec["acknowledged"] == 20 * trials
    assert rec["stored_unacknowledged"] == 0
    assert rec["completed_in_database"] == 20 and rec["completion_codes_wrong"] == 0
    # The database agrees on its own terms too.
    assert Rating.objects.filter(annotator__study=study).count() == 20 * trials
    assert Annotator.objects.filter(study=study, status=Annotator.Status.COMPLETED).count() == 20
    assert not Assignment.objects.filter(annotator__study=study, answered_at__isnull=True).exists()
    steps = {row["step"] for row in report["steps"]}
    assert {"enter", "consent", "instructions", "rate_page", "rating", "done"} <= steps


def test_failed_attention_checks_exclude_and_nothing_is_lost(live_server):
    study = make_study("crowdfail", attention_checks=3, attention_max_failures=1)
    report = run(live_server, study, "--annotators", "12", "--concurrency", "6", "--fail-checks", "0.5", "--seed", "3")

    outcomes = report["outcomes"]
    assert outcomes.get("excluded", 0) > 0 and outcomes.get("completed", 0) > 0
    assert sum(outcomes.values()) == 12
    rec = report["reconciliation"]
    assert rec["lost"] == 0 and rec["duplicated"] == 0 and rec["value_mismatch"] == 0
    excluded = Annotator.objects.filter(study=study, status=Annotator.Status.EXCLUDED)
    assert excluded.count() == outcomes["excluded"]
    for annotator in excluded:
        assert annotator.assignments.filter(kind="attention", check_passed=False).count() == 1


def test_questionnaires_answered_when_asked(live_server):
    study = make_study("crowdsvy", n_prompts=4, instruments=["demographics", "mini_ipip_intellect"])
    with pytest.raises(CommandError):  # without --surveys the crowd stops at the first questionnaire
        run(live_server, study, "--annotators", "2")
    report = run(live_server, study, "--annotators", "4", "--surveys")
    assert report["outcomes"] == {"completed": 4}, report["error_examples"]
    assert report["reconciliation"]["lost"] == 0
    responses = SurveyResponse.objects.filter(annotator__study=study, annotator__status=Annotator.Status.COMPLETED)
    assert responses.count() == 4 * 2


def test_reconciliation_counts_a_lost_rating(live_server):
    """The check can fail: a rating deleted after it was acknowledged is reported lost."""
    study = make_study("crowdlost", n_prompts=3, attention_checks=0)
    crowd = Crowd(url=live_server.url, study=study.slug, annotators=2, concurrency=2)
    report = crowd.run()
    assert reconcile(study=study, report=report)["lost"] == 0
    Rating.objects.filter(annotator__study=study).order_by("id").first().delete()
    assert reconcile(study=study, report=report)["lost"] == 1


def test_bad_arguments_are_refused(live_server):
    study = make_study("crowdbad", n_prompts=1)
    with pytest.raises(CommandError, match="http://"):
        run(live_server, study, "--url", "ftp://example.org")
    with pytest.raises(CommandError, match="No study"):
        call_command("simulate_crowd", "--url", live_server.url, "--study", "nope")
    study.status = Study.Status.PAUSED
    study.save()
    with pytest.raises(CommandError, match="paused"):
        run(live_server, study)
