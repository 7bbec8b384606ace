import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from annotation.models import Rating, Study


@pytest.mark.django_db
def test_demo_setup_is_idempotent(capsys):
    call_command("demo_setup", "--username", "demo", "--password", "demo-pass-123")
    assert "researcher login: demo / demo-pass-123" in capsys.readouterr().out
    call_command("demo_setup", "--username", "demo", "--password", "demo-pass-123")
    assert "already present" in capsys.readouterr().out
    study = Study.objects.get(slug="pluriharms")
    assert study.owner.username == "demo" and get_user_model().objects.get(username="demo").check_password(
        "demo-pass-123"
    )
    assert Rating.objects.filter(annotator__study=study).count() == 15000
