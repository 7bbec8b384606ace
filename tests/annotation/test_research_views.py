"""Researcher pages: success, wrong method, anonymous, wrong role, htmx fragment vs full page."""

import pytest
from django.urls import reverse

from jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_researcher(client, researcher):
    client.force_login(researcher)
    return client


def test_study_list_shows_own_studies(as_researcher, small_study):
    response = as_researcher.get(reverse("annotation:study_list"))
    assert response.status_code == 200
    assert b"small" in response.content and b"<html" in response.content


def test_study_list_hides_others_studies(client, outsider, small_study):
    client.force_login(outsider)
    response = client.get(reverse("annotation:study_list"))
    assert response.status_code == 200 and b"/research/studies/small/" not in response.content


def test_study_detail_full_page(as_researcher, small_study):
    response = as_researcher.get(reverse("annotation:study_detail", args=["small"]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" in content and 'id="prompt-table"' in content
    assert "Ignore their skills for now" in content  # prompt 1's text
    assert "20</strong><span>ratings" in content


def test_study_detail_htmx_returns_fragment(as_researcher, small_study):
    response = as_researcher.get(
        reverse("annotation:study_detail", args=["small"]), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="prompt-table"
    )
    assert response.status_code == 200
    assert b"<html" not in response.content and b"<table" in response.content


@pytest.mark.parametrize("name,args", [("annotation:study_list", []), ("annotation:study_detail", ["small"])])
def test_anonymous_is_sent_to_login(client, small_study, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_outsider_gets_404_for_others_study(client, outsider, small_study):
    client.force_login(outsider)
    assert client.get(reverse("annotation:study_detail", args=["small"])).status_code == 404
    assert client.post(reverse("annotation:export_start", args=["small"]), {"format": "jsonl"}).status_code == 404
    assert Job.objects.count() == 0


def test_collaborator_and_staff_see_the_study(client, outsider, staff, small_study):
    small_study.collaborators.add(outsider)
    client.force_login(outsider)
    assert client.get(reverse("annotation:study_detail", args=["small"])).status_code == 200
    client.force_login(staff)
    assert client.get(reverse("annotation:study_detail", args=["small"])).status_code == 200


def test_wrong_methods(as_researcher, small_study):
    assert as_researcher.post(reverse("annotation:study_list")).status_code == 405
    assert as_researcher.post(reverse("annotation:study_detail", args=["small"])).status_code == 405
    assert as_researcher.get(reverse("annotation:export_start", args=["small"])).status_code == 405


def test_export_start_htmx_returns_polling_job_card(as_researcher, small_study, monkeypatch):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    response = as_researcher.post(
        reverse("annotation:export_start", args=["small"]), {"format": "parquet"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    job = Job.objects.get()
    content = response.content.decode()
    assert f'id="job-{job.pk}"' in content and 'hx-trigger="every 1s"' in content and "<html" not in content
    assert job.params == {"format": "parquet"} and job.created_by.username == "researcher"


def test_export_start_without_htmx_redirects_to_job(as_researcher, small_study, monkeypatch):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    response = as_researcher.post(reverse("annotation:export_start", args=["small"]), {"format": "jsonl"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("jobs:job_detail", args=[job.pk])


def test_export_start_bad_format_is_400(as_researcher, small_study):
    response = as_researcher.post(reverse("annotation:export_start", args=["small"]), {"format": "docx"})
    assert response.status_code == 400 and b"unknown export format" in response.content
    assert Job.objects.count() == 0


def test_finished_job_card_links_files_and_download_works(as_researcher, small_study):
    from jobs.services import job_run

    job = Job.objects.create(kind="export", study=small_study, params={"format": "long-csv"})
    job_run(job_id=job.pk)
    page = as_researcher.get(reverse("jobs:job_detail", args=[job.pk]))
    assert page.status_code == 200 and b"<html" in page.content and b"every 1s" not in page.content
    fragment = as_researcher.get(reverse("jobs:job_detail", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert b"<html" not in fragment.content and b"ratings.csv" in fragment.content
    download = as_researcher.get(reverse("jobs:artifact_download", args=[job.pk, "ratings.csv"]))
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    assert body.startswith(b"annotator,prompt,rating,unsure,trial,rt_ms")
    missing = as_researcher.get(reverse("jobs:artifact_download", args=[job.pk, "nope.csv"]))
    assert missing.status_code == 404


def test_outsider_cannot_see_or_download_job(client, outsider, small_study):
    job = Job.objects.create(kind="export", study=small_study, params={"format": "long-csv"})
    client.force_login(outsider)
    assert client.get(reverse("jobs:job_detail", args=[job.pk])).status_code == 404
    assert client.get(reverse("jobs:artifact_download", args=[job.pk, "ratings.csv"])).status_code == 404


def test_login_page_renders_with_labels(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'for="id_username"' in response.content and b'for="id_password"' in response.content
