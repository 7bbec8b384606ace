import os

from celery import Celery
from django.core.management import call_command

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pluriharms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="config.clear_sessions", ignore_result=True)
def clear_sessions() -> None:
    """Periodic (beat): delete expired database sessions, as Django asks of every site that keeps them."""

    call_command("clearsessions")
