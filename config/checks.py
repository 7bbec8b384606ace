"""The site refuses to serve without its own keys (settings.KEYS_PROBLEM says what is missing).

The WSGI application (what gunicorn and runserver load) and the Celery worker and beat refuse to start;
`manage.py check --deploy` reports it. Commands that serve nothing (makemigrations, collectstatic) run.
"""

from django.conf import settings
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured


def keys_check(app_configs=None, **kwargs) -> list[Error]:
    """Deploy check (`manage.py check --deploy`): the keys are missing or equal."""
    return [Error(settings.KEYS_PROBLEM, id="pluriharms.E001")] if settings.KEYS_PROBLEM else []


def keys_required() -> None:
    """For the entry points that serve without running system checks: WSGI and the Celery worker."""
    if settings.KEYS_PROBLEM:
        raise ImproperlyConfigured(settings.KEYS_PROBLEM)
