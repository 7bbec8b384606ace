"""The jobs pages (one study's, all the user's studies') and the cancel button: who sees what, queue
positions, durations, files, and cancel answers for htmx and plain posts."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from annotation.importers import pluriharms_import
from jobs.models import Job
from jobs.services import artifact_dir, artifact_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_study(small_study, small_release, researcher):
    """Another of the researcher's studies (small, like small_study)."""
    return pluriharms_import(directory=small_release, slug="second", owner=researcher)


@pytest.fixture
def cast(small_study, second_study, researcher, outsider):
    """small_study with a viewer and an editor; jobs of both of the researcher's studies."""
    User = get_user_model()
    viewer = User.objects.create_user("viewer", password="pw-viewer-1")
    editor = User.objects.create_user("editor", password="pw-editor-1")
    small_study.collaborators.add(viewer, through_defaults={"role": "viewer"})
    small_study.collaborators.add(editor, through_defaults={"role": "editor"})
    now = timezone.now()
    done = Job.objects.create(
        kind="export",
        study=small_study,
        params={"format": "long-csv"},
        status=Job.Status.SUCCEEDED,
        started_at=now - timezone.timedelta(seconds=12.5),
        finished_at=now,
        progress=1.0,
    )
    folder = artifact_dir(done)
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_text("a\n1\n")
    artifact_save(job=done, path=folder / "ratings.csv")
    running = Job.objects.create(
        kind="benchmark", study=small_study, status=Job.Status.RUNNING, progress=0.42, started_at=now, attempts=1
    )
    queued_export = Job.objects.create(kind="export", study=small_study, params={"format": "pluriharms"})
    queued_benchmark = Job.objects.create(kind="benchmark", study=small_study)
    other = Job.objects.create(kind="analysis", study=second_study)
    return {
        "viewer": viewer,
        "editor": editor,
        "done": done,
        "running": running,
        "queued_export": queued_export,
        "queued_benchmark": queued_benchmark,
        "other": other,
    }


def test_the_study_jobs_page_shows_status_queue_position_progress_duration_and_files(client, researcher, cast):
    client.force_login(researcher)
    page = client.get(reverse("jobs:study_jobs", args=["small"]))
    assert page.status_code == 200
    html = page.content.decode()
    assert f'id="job-row-{cast["done"].pk}"' in html and "12.5 s" in html and "ratings.csv" in html
    assert "42%" in html  # the running benchmark's progress
    assert "position 1 in the short queue" in html  # the queued export: first on the short queue
    assert "position 1 in the long queue" in html  # the queued benchmark (the running one is not queued)
    assert f'id="job-row-{cast["other"].pk}"' not in html  # another study's job
    # Cancel offered for queued and running jobs only.
    for name in ("running", "queued_export", "queued_benchmark"):
        assert f'id="cancel-{cast[name].pk}"' in html, name
    assert f'id="cancel-{cast["done"].pk}"' not in html
    assert 'hx-trigger="every 2s"' in html  # polls while jobs are active
    assert 'aria-current="page">Jobs</a>' in html  # the study's Jobs tab
    assert f'<a href="{reverse("jobs:jobs_list")}">Jobs</a>' in html  # every page's menu: all the jobs


def test_the_all_jobs_page_lists_every_study_the_user_may_see(client, researcher, cast):
    client.force_login(researcher)
    html = client.get(reverse("jobs:jobs_list")).content.decode()
    assert f'id="job-row-{cast["other"].pk}"' in html and f'id="job-row-{cast["done"].pk}"' in html
    assert "position 1 in the long queue" in html and "position 2 in the long queue" in html
    client.force_login(cast["viewer"])  # a viewer of small only
    html = client.get(reverse("jobs:jobs_list")).content.decode()
    assert f'id="job-row-{cast["done"].pk}"' in html and f'id="job-row-{cast["other"].pk}"' not in html


def test_jobs_pages_refuse_outsiders_anonymous_and_wrong_methods(client, outsider, researcher, cast):
    url = reverse("jobs:study_jobs", args=["small"])
    assert client.get(url).status_code == 302  # to the login page
    assert client.get(reverse("jobs:jobs_list")).status_code == 302
    client.force_login(outsider)
    assert client.get(url).status_code == 404  # the study's existence is not revealed
    assert "job-row" not in client.get(reverse("jobs:jobs_list")).content.decode()
    assert client.post(reverse("jobs:job_cancel", args=[cast["queued_export"].pk])).status_code == 404
    client.force_login(researcher)
    assert client.post(url).status_code == 405
    assert client.get(reverse("jobs:job_cancel", args=[cast["queued_export"].pk])).status_code == 405


def test_the_htmx_table_is_the_partial(client, researcher, cast):
    client.force_login(researcher)
    answer = client.get(reverse("jobs:study_jobs", args=["small"]), headers={"HX-Request": "true"})
    html = answer.content.decode()
    assert answer.status_code == 200 and html.lstrip().startswith('<div id="jobs-table"') and "<html" not in html


def test_cancel_needs_the_role_that_starting_the_kind_needs(client, cast):
    client.force_login(cast["viewer"])
    refused = client.post(reverse("jobs:job_cancel", args=[cast["queued_benchmark"].pk]))
    assert refused.status_code == 403
    assert Job.objects.get(pk=cast["queued_benchmark"].pk).status == Job.Status.QUEUED
    # A viewer may start an export, so may cancel one.
    answer = client.post(reverse("jobs:job_cancel", args=[cast["queued_export"].pk]))
    assert answer.status_code == 302 and answer["Location"] == reverse(
        "jobs:job_detail", args=[cast["queued_export"].pk]
    )
    assert Job.objects.get(pk=cast["queued_export"].pk).status == Job.Status.CANCELLED
    client.force_login(cast["editor"])
    assert client.post(reverse("jobs:job_cancel", args=[cast["queued_benchmark"].pk])).status_code == 302
    assert Job.objects.get(pk=cast["queued_benchmark"].pk).status == Job.Status.CANCELLED


def test_htmx_cancel_answers_the_row_or_the_card(client, researcher, cast):
    client.force_login(researcher)
    running = cast["running"]
    row = client.post(
        reverse("jobs:job_cancel", args=[running.pk]),
        {"show_study": "1"},
        headers={"HX-Request": "true", "HX-Target": f"job-row-{running.pk}"},
    )
    html = row.content.decode()
    assert row.status_code == 200 and html.startswith(f'<tr id="job-row-{running.pk}"')
    assert "stopping at its next progress point" in html and f'id="cancel-{running.pk}"' not in html
    assert html.count("<td") == 7  # with the study column, as on the all-jobs page
    card = client.post(
        reverse("jobs:job_cancel", args=[cast["queued_export"].pk]),
        headers={"HX-Request": "true", "HX-Target": f"job-{cast['queued_export'].pk}"},
    )
    html = card.content.decode()
    assert card.status_code == 200 and html.startswith(
        f'<article class="job-card cancelled" id="job-{cast["queued_export"].pk}"'
    )
    assert "Cancelled: cancelled before it started." in html


def test_cancelling_an_ended_job_answers_a_visible_409_fragment(client, researcher, cast):
    client.force_login(researcher)
    answer = client.post(
        reverse("jobs:job_cancel", args=[cast["done"].pk]),
        headers={"HX-Request": "true", "HX-Target": f"job-row-{cast['done'].pk}"},
    )
    assert answer.status_code == 409
    assert answer["HX-Retarget"] == "#htmx-error"  # static/js/site.js swaps it into the form's error box
    assert "has ended (succeeded); nothing to cancel" in answer.content.decode()
    plain = client.post(reverse("jobs:job_cancel", args=[cast["done"].pk]))
    assert plain.status_code == 409 and "nothing to cancel" in plain.content.decode()


def test_the_job_card_shows_queue_position_and_cancel(client, researcher, cast):
    client.force_login(researcher)
    html = client.get(
        reverse("jobs:job_detail", args=[cast["queued_benchmark"].pk]), headers={"HX-Request": "true"}
    ).content.decode()
    assert "position 1 in the long queue" in html and f'id="cancel-{cast["queued_benchmark"].pk}"' in html
    html = client.get(reverse("jobs:job_detail", args=[cast["running"].pk])).content.decode()
    assert "42%" in html


def test_admin_shows_progress_as_a_percentage(client, staff, cast):
    client.force_login(staff)
    listing = client.get(reverse("admin:jobs_job_changelist")).content.decode()
    assert "42%" in listing and "100%" in listing
    detail = client.get(reverse("admin:jobs_job_change", args=[cast["running"].pk])).content.decode()
    assert "42%" in detail


def test_the_api_cancels_as_the_page_does(cast, researcher, outsider):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(cast["viewer"])
    refused = api.post(f"/api/jobs/{cast['queued_benchmark'].pk}/cancel/")
    assert refused.status_code == 403 and "needs the 'edit' role" in refused.json()["message"]
    done = api.post(f"/api/jobs/{cast['queued_export'].pk}/cancel/")
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
    api.force_authenticate(researcher)
    asked = api.post(f"/api/jobs/{cast['running'].pk}/cancel/")
    assert asked.status_code == 200 and asked.json()["status"] == "running"
    assert asked.json()["cancel_requested_at"] is not None
    ended = api.post(f"/api/jobs/{cast['done'].pk}/cancel/")
    assert ended.status_code == 409 and "nothing to cancel" in ended.json()["message"]
    api.force_authenticate(outsider)
    assert api.post(f"/api/jobs/{cast['queued_benchmark'].pk}/cancel/").status_code == 404
    assert api.get(f"/api/jobs/{cast['queued_benchmark'].pk}/cancel/").status_code in (404, 405)


def test_run_time_so_far_on_the_jobs_table_and_only_once_ended_in_the_api(client, researcher, cast):
    """`Job.seconds` counts a running job's time (the jobs table shows it); the API's `seconds` stays null
    until the job has ended; a queued job has neither."""
    from rest_framework.test import APIClient

    running = cast["running"]
    running.started_at = timezone.now() - timezone.timedelta(seconds=30)
    running.save(update_fields=["started_at"])
    assert 30 <= running.seconds < 300 and cast["done"].seconds == 12.5 and cast["queued_export"].seconds is None
    client.force_login(researcher)
    html = client.get(reverse("jobs:study_jobs", args=["small"])).content.decode()
    row = html.split(f'id="job-row-{running.pk}"')[1].split("</tr>")[0]
    duration = row.split('class="num duration">')[1].split("</td>")[0]
    assert duration.endswith(" s") and 30 <= float(duration.removesuffix(" s")) < 300
    queued = html.split(f'id="job-row-{cast["queued_export"].pk}"')[1].split("</tr>")[0]
    assert 'class="num duration">—</td>' in queued
    api = APIClient()
    api.force_authenticate(researcher)
    seconds = {job["id"]: job["seconds"] for job in api.get("/api/jobs/", {"page_size": 100}).json()["results"]}
    assert (
        seconds[running.pk] is None and seconds[cast["done"].pk] == 12.5 and seconds[cast["queued_export"].pk] is None
    )
    assert api.get(f"/api/jobs/{running.pk}/").json()["seconds"] is None


def test_the_admin_cancels_the_selected_jobs(client, staff, cast):
    client.force_login(staff)
    selected = [cast["queued_export"].pk, cast["running"].pk, cast["done"].pk]
    answer = client.post(
        reverse("admin:jobs_job_changelist"), {"action": "cancel", "_selected_action": selected}, follow=True
    )
    assert answer.status_code == 200
    assert "2 job(s) cancelled or asked to stop" in answer.content.decode()
    assert Job.objects.get(pk=cast["queued_export"].pk).status == Job.Status.CANCELLED
    running = Job.objects.get(pk=cast["running"].pk)
    assert running.status == Job.Status.RUNNING and running.cancel_requested_at is not None
    assert Job.objects.get(pk=cast["done"].pk).status == Job.Status.SUCCEEDED
