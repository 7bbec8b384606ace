"""REST API: studies, prompts and jobs, with one error shape {"message", "extra"}."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.models import Job
from jobs.services import job_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(researcher):
    client = APIClient()
    token = Token.objects.create(user=researcher)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_anonymous_is_refused(small_study):
    response = APIClient().get("/api/studies/")
    assert response.status_code in (401, 403)
    assert set(response.json()) == {"message", "extra"}


def test_lists_own_studies_with_counts(api, small_study):
    data = api.get("/api/studies/").json()
    assert [s["slug"] for s in data["results"]] == ["small"]
    assert data["results"][0]["n_prompts"] == 5 and data["results"][0]["n_annotators"] == 4


def test_prompts_of_a_study(api, small_study):
    data = api.get("/api/studies/small/prompts/").json()
    assert data["count"] == 5 and data["results"][0]["external_id"] == "1"
    assert len(data["results"][0]["features"]) == 62


def test_outsider_sees_nothing(small_study, outsider):
    client = APIClient()
    client.force_authenticate(outsider)
    assert client.get("/api/studies/").json()["results"] == []
    assert client.get("/api/studies/small/").status_code == 404
    assert client.get("/api/studies/small/prompts/").status_code == 404
    response = client.post(
        "/api/jobs/", {"kind": "export", "study": "small", "params": {"format": "jsonl"}}, format="json"
    )
    assert response.status_code == 404 and response.json()["message"] == "no such study"
    assert Job.objects.count() == 0


def test_create_export_job_then_download(api, small_study, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: queued.append(job_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/jobs/", {"kind": "export", "study": "small", "params": {"format": "parquet"}}, format="json"
        )
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    assert response.json()["status"] == "queued" and queued == [job_id]
    job_run(job_id=job_id)  # what the worker would do
    data = api.get(f"/api/jobs/{job_id}/").json()
    assert data["status"] == "succeeded" and data["study"] == "small"
    names = {a["name"] for a in data["artifacts"]}
    assert names == {"ratings.parquet", "manifest.json"}
    download = api.get(f"/api/jobs/{job_id}/files/ratings.parquet/")
    assert download.status_code == 200 and b"".join(download.streaming_content)[:4] == b"PAR1"


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"kind": "export", "study": "small", "params": {"format": "xlsx"}}, "format"),
        ({"kind": "nonsense", "study": "small"}, "kind"),
        ({"study": "small"}, "kind"),
        ({"kind": "export", "study": "small", "params": "format=csv"}, "params"),
    ],
)
def test_bad_payloads_get_400_with_message(api, small_study, payload, field):
    response = api.post("/api/jobs/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"message", "extra"} and field in body["message"] + str(body["extra"])
    assert Job.objects.count() == 0


def test_tampered_job_id_is_404(api, small_study, outsider):
    from annotation.models import Study

    other = Study.objects.create(slug="other", title="Not yours", owner=outsider)
    job = Job.objects.create(kind="export", study=other, params={"format": "jsonl"})
    assert api.get(f"/api/jobs/{job.pk}/").status_code == 404
    assert api.get(f"/api/jobs/{job.pk}/files/ratings.jsonl/").status_code == 404
    assert api.get("/api/jobs/999999/").status_code == 404


def test_openapi_schema_documents_jobs(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/jobs/" in response.json()["paths"]
