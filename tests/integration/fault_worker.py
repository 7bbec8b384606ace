"""`celery -A tests.integration.fault_worker worker`: the project's Celery app with the fault-test job kind
registered (tests/integration/test_job_faults.py starts it; the project never registers that kind)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from config.celery_app import app  # noqa: E402
from jobs.registry import register  # noqa: E402

from .fault_kinds import SLOW  # noqa: E402

register(SLOW)

__all__ = ["app"]
