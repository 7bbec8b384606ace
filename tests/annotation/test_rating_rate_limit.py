"""Rating submissions are limited per annotator (RATING_RATE_LIMIT): a flood gets 429 and nothing stored."""

import pytest
from django.urls import reverse

from annotation.models import Prompt, Rating, Study

pytestmark = pytest.mark.django_db


@pytest.fixture
def rating_client(client, researcher, settings):
    settings.RATING_RATE_LIMIT = "3/1m"
    study = Study.objects.create(
        slug="rl", title="Rate", status="recruiting", owner=researcher, instruments=[], min_seconds_per_rating=0
    )
    Prompt.objects.bulk_create([Prompt(study=study, external_id=str(i), text=f"P{i}", order=i) for i in range(6)])
    client.get(f"/s/{study.slug}/?PROLIFIC_PID=ratelimit00000000000000a&STUDY_ID=s&SESSION_ID=t")
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    client.post(reverse("take:instructions", args=[study.slug]))
    return client, study


def test_a_flood_of_submissions_is_refused_with_retry_after(rating_client):
    client, study = rating_client
    annotator = study.annotators.get()
    trials = list(annotator.assignments.order_by("position").values_list("pk", flat=True))
    answers = []
    for pk in trials[:5]:
        answers.append(
            client.post(
                reverse("take:rate_submit", args=[study.slug, pk]),
                {"rating": "40", "idempotency_key": f"k{pk}"},
                HTTP_HX_REQUEST="true",
            )
        )
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert int(answers[3]["Retry-After"]) >= 1
    assert b"faster than anyone can read" in answers[3].content
    assert Rating.objects.filter(annotator=annotator).count() == 3


def test_the_limit_setting_is_checked_at_startup(settings):
    from annotation.services.recruitment import rate_limit_check

    settings.RATING_RATE_LIMIT = "lots"
    assert any("RATING_RATE_LIMIT" in error.msg for error in rate_limit_check())
