import os

from celery import Celery
from celery.signals import beat_init, worker_init
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from config.checks import keys_required

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pluriharms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _refuse_without_keys(**kwargs) -> None:
    """A worker or beat without the site's own keys would write hashes nobody can match later. Celery logs
    and swallows a receiver's exceptions, so the refusal is a SystemExit, which it lets through."""
    try:
        keys_required()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"refusing to start: {exc}") from exc


@app.task(name="config.clear_sessions", ignore_result=True)
def clear_sessions() -> None:
    """Periodic (beat): delete expired database sessions, as Django asks of every site that keeps them."""

    call_command("clearsessions")
