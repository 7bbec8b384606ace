"""Keys, sessions and accounts (docs/security.md, item 3): no public fallback key, revocable sessions,
no known demo password."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.serializers import JSONSerializer
from django.core import signing
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from annotation.models import Annotator

ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "insecure-development-key-change-me-" + "x" * 20


def _run(tmp_path, *args, **env_values) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTEST_VERSION", "PLURIHARMS_DEV", "DEBUG", "SECRET_KEY", "RECRUITMENT_HASH_KEY"}
    }
    env.update({"PLURIHARMS_VAR_DIR": str(tmp_path), "DEBUG": "0", **env_values})
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)


# What gunicorn and runserver load, and what starts a Celery worker or beat.
SERVE = ("-c", "import config.wsgi")
WORKER = ("-c", "import django; django.setup(); from celery.signals import worker_init; worker_init.send(sender=None)")
DEPLOY_CHECK = ("manage.py", "check", "--deploy")
BOTH = "SECRET_KEY and RECRUITMENT_HASH_KEY must both be set"


@pytest.mark.parametrize("entry", [SERVE, WORKER, DEPLOY_CHECK], ids=["wsgi", "worker", "check-deploy"])
@pytest.mark.parametrize(
    "env_values,complaint",
    [
        ({}, BOTH),
        ({"SECRET_KEY": "s" * 50}, BOTH),
        ({"RECRUITMENT_HASH_KEY": "r" * 50}, BOTH),
        (
            {"SECRET_KEY": "s" * 50, "RECRUITMENT_HASH_KEY": "s" * 50},
            "RECRUITMENT_HASH_KEY must differ from SECRET_KEY",
        ),
    ],
)
def test_the_site_refuses_to_serve_without_its_own_keys(tmp_path, entry, env_values, complaint):
    result = _run(tmp_path, *entry, DJANGO_SETTINGS_MODULE="config.settings", **env_values)
    assert result.returncode != 0 and complaint in result.stderr


def test_the_site_serves_with_both_keys_or_in_a_local_run(tmp_path):
    keys = {"SECRET_KEY": "s" * 50, "RECRUITMENT_HASH_KEY": "r" * 50}
    for entry in (SERVE, WORKER):
        assert _run(tmp_path, *entry, DJANGO_SETTINGS_MODULE="config.settings", **keys).returncode == 0
        assert _run(tmp_path, *entry, DJANGO_SETTINGS_MODULE="config.settings", PLURIHARMS_DEV="1").returncode == 0


def test_commands_that_serve_nothing_run_without_keys_on_random_ones(tmp_path):
    # e.g. `makemigrations --check` in a checkout without a .env; nothing is signed with a known key.
    assert _run(tmp_path, "manage.py", "makemigrations", "--check", "--dry-run").returncode == 0
    shown = _run(tmp_path, "manage.py", "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")
    again = _run(tmp_path, "manage.py", "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")
    assert shown.returncode == 0 and len(shown.stdout.strip()) >= 50 and shown.stdout != again.stdout
    assert "insecure" not in shown.stdout


@pytest.mark.django_db
def test_a_forged_signed_cookie_session_opens_no_rating_card(client, small_study):
    # With signed-cookie sessions, anyone holding the (public) fallback key could mint a session for any
    # annotator. Sessions are now database rows: a minted cookie names no session.
    annotator = Annotator.objects.create(study=small_study, pseudonym="P0099", status=Annotator.Status.RATING)
    forged = signing.dumps(
        {f"annotator:{small_study.slug}": annotator.pk},
        key=DEV_SECRET,
        salt="django.contrib.sessions.backends.signed_cookies",
        serializer=JSONSerializer,
        compress=True,
    )
    client.cookies[settings.SESSION_COOKIE_NAME] = forged
    response = client.get(reverse("take:rate", args=[small_study.slug]))
    assert response.status_code == 403 and b"session has ended" in response.content


@pytest.mark.django_db
def test_logout_revokes_a_copied_researcher_session(researcher):
    browser = Client()
    browser.force_login(researcher)
    assert browser.get(reverse("annotation:study_list")).status_code == 200
    stolen = browser.cookies[settings.SESSION_COOKIE_NAME].value
    thief = Client()
    thief.cookies[settings.SESSION_COOKIE_NAME] = stolen
    assert thief.get(reverse("annotation:study_list")).status_code == 200  # a copy works while the session lives
    browser.post(reverse("logout"))
    after = thief.get(reverse("annotation:study_list"))
    assert after.status_code == 302 and reverse("login") in after["Location"]


@pytest.mark.django_db
def test_a_password_change_revokes_other_sessions(researcher):
    elsewhere = Client()
    elsewhere.force_login(researcher)
    researcher.set_password("a-new-password-9")
    researcher.save()
    assert elsewhere.get(reverse("annotation:study_list")).status_code == 302


@pytest.mark.django_db
def test_demo_setup_without_a_password_prints_a_generated_one(capsys):
    call_command("demo_setup", "--username", "someone")
    out = capsys.readouterr().out
    password = re.search(r"researcher login: someone / (\S+)", out).group(1)
    user = get_user_model().objects.get(username="someone")
    assert user.check_password(password) and len(password) >= 16
    assert not user.check_password("pluriharms-demo")


@pytest.mark.django_db
def test_recruitment_hashes_use_their_own_key(settings):
    from annotation.services.recruitment import recruitment_hash

    settings.RECRUITMENT_HASH_KEY = "one-key"
    first = recruitment_hash("5f1e3c0a9b8d7e6f5a4b3c2d")
    settings.SECRET_KEY = "another-secret-key-entirely-" + "z" * 30
    assert recruitment_hash("5f1e3c0a9b8d7e6f5a4b3c2d") == first  # SECRET_KEY plays no part
    settings.RECRUITMENT_HASH_KEY = "two-key"
    assert recruitment_hash("5f1e3c0a9b8d7e6f5a4b3c2d") != first
