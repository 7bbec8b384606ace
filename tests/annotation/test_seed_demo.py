import pytest
from django.core.management import CommandError, call_command

from annotation import surveys
from annotation.models import Study

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_a_recruiting_study_over_the_release_prompts(capsys):
    call_command("seed_demo", "--slug", "demo", "--prompts-per-annotator", "20", "--attention-checks", "3")
    out = capsys.readouterr().out
    study = Study.objects.get(slug="demo")
    assert study.status == "recruiting" and study.design == "partial" and study.prompts_per_annotator == 20
    assert study.attention_checks == 3 and study.instruments == surveys.DEFAULT_INSTRUMENTS
    assert study.prompts.count() == 150 and study.prompts.get(external_id="1").harm_level == 0.5
    assert study.completion_code and study.completion_code in study.completion_url
    assert "/s/demo/?PROLIFIC_PID=" in out and "&STUDY_ID=" in out and "&SESSION_ID=" in out
    call_command("seed_demo", "--slug", "demo")  # idempotent: prints a fresh link, changes nothing
    assert "already exists" in capsys.readouterr().out and Study.objects.count() == 1


def test_seed_demo_full_crossing_by_default():
    call_command("seed_demo", "--slug", "full", "--instruments", "")
    study = Study.objects.get(slug="full")
    assert study.design == "full" and study.prompts_per_annotator is None and study.instruments == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["--instruments", "demographics,horoscope"], "unknown instrument(s): horoscope"),
        (["--prompts-per-annotator", "0"], "--prompts-per-annotator must be at least 1"),
    ],
)
def test_seed_demo_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("seed_demo", "--slug", "x", *args)
    assert not Study.objects.filter(slug="x").exists()
