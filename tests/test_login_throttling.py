"""Brute force on the researcher and admin log-in pages (docs/security.md, item 5)."""

import pytest
from django.conf import settings
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "pw-researcher-1"  # the shared cast's researcher (tests/conftest.py)


@pytest.mark.parametrize("url_name", ["login", "admin:login"])
def test_repeated_wrong_passwords_lock_the_account_for_that_address(client, researcher, staff, url_name):
    user = staff if url_name == "admin:login" else researcher
    password = "pw-staff-1" if url_name == "admin:login" else PASSWORD
    url = reverse(url_name)
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        wrong = client.post(url, {"username": user.username, "password": f"guess-{attempt}"})
        if attempt < settings.AXES_FAILURE_LIMIT - 1:
            assert wrong.status_code == 200  # the form again, with its error
    # Now even the right password is refused, with a page that says why and for how long.
    locked = client.post(url, {"username": user.username, "password": password})
    assert locked.status_code == 429
    text = locked.content.decode()
    assert "failed attempts" in text and str(settings.AXES_FAILURE_LIMIT) in text and "0:15:00" in text
    assert "_auth_user_id" not in client.session


def test_sixty_wrong_guesses_then_the_right_one_does_not_get_in(client, researcher):
    url = reverse("login")
    for attempt in range(60):
        client.post(url, {"username": researcher.username, "password": f"guess-{attempt}"})
    assert client.post(url, {"username": researcher.username, "password": PASSWORD}).status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_lockout_is_per_address_and_a_success_resets_the_count(client, researcher):
    url = reverse("login")
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(url, {"username": researcher.username, "password": f"guess-{attempt}"})
    ok = client.post(url, {"username": researcher.username, "password": PASSWORD})
    assert ok.status_code == 302  # under the limit: the right password works, and resets the count
    client.post(reverse("logout"))
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(url, {"username": researcher.username, "password": f"again-{attempt}"})
    assert client.post(url, {"username": researcher.username, "password": PASSWORD}).status_code == 302
    # Someone else's failures from another address do not lock this user out.
    client.post(reverse("logout"))
    for attempt in range(settings.AXES_FAILURE_LIMIT + 1):
        client.post(url, {"username": researcher.username, "password": f"x-{attempt}"}, REMOTE_ADDR="203.0.113.9")
    assert client.post(url, {"username": researcher.username, "password": PASSWORD}).status_code == 302
