"""Periodic housekeeping: expired database sessions are deleted."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

from config.celery_app import clear_sessions


@pytest.mark.django_db
def test_the_periodic_task_deletes_expired_sessions_only():
    now = timezone.now()
    Session.objects.create(session_key="old" + "x" * 29, session_data="e30=", expire_date=now - timedelta(days=1))
    Session.objects.create(session_key="new" + "x" * 29, session_data="e30=", expire_date=now + timedelta(days=1))
    clear_sessions.apply()
    assert list(Session.objects.values_list("session_key", flat=True)) == ["new" + "x" * 29]
    assert settings.CELERY_BEAT_SCHEDULE["clear-sessions"]["task"] == "config.clear_sessions"
