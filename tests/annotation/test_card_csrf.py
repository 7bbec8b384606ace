"""A swapped-in rating card carries no CSRF token of its own: htmx sends the page's token as a header
(base.html's hx-headers), and the check still refuses a post without it."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.annotation.test_take_flow import current, link, study  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def test_cards_after_the_first_are_posted_with_the_pages_header_token(study):  # noqa: F811
    client = Client(enforce_csrf_checks=True)
    client.get(link(study))

    def token(text):
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text).group(1)

    page = client.get(reverse("take:consent", args=[study.slug])).content.decode()
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree", "csrfmiddlewaretoken": token(page)})
    page = client.get(reverse("take:instructions", args=[study.slug])).content.decode()
    client.post(reverse("take:instructions", args=[study.slug]), {"csrfmiddlewaretoken": token(page)})
    annotator = study.annotators.get()

    page = client.get(reverse("take:rate", args=[study.slug])).content.decode()
    assert 'name="csrfmiddlewaretoken"' in page  # the full page: a form that works before any script runs
    header = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)

    def post(**headers):
        trial = current(annotator)
        url = reverse("take:rate_submit", args=[study.slug, trial.pk])
        return client.post(url, {"rating": "40", "idempotency_key": f"k{trial.pk}"}, HTTP_HX_REQUEST="true", **headers)

    refused = post()
    assert refused.status_code == 403 and annotator.ratings.count() == 0
    card = post(HTTP_X_CSRFTOKEN=header)
    assert card.status_code == 200 and 'id="rating-card"' in card.content.decode()
    assert "csrfmiddlewaretoken" not in card.content.decode()  # neither the card's form nor the undo form
    assert 'id="revise-form"' in card.content.decode()
    assert post(HTTP_X_CSRFTOKEN=header).status_code == 200  # the same page token, card after card
    assert annotator.ratings.count() == 2
