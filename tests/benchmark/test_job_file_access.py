"""A job never reads a file a client names: uploads are rows of the study, resolved by id, inside their root.

Regression tests for the arbitrary file read through a job parameter (docs/security.md, item 1).
"""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.importers import pluriharms_import
from annotation.models import Upload
from benchmark.uploads import predictions_upload_save
from jobs.models import Job
from jobs.services import job_run

pytestmark = pytest.mark.django_db

CANARY = "canary-7f3a91-do-not-leak"
GOOD_CSV = "prompt,prediction\n" + "".join(f"{p},50\n" for p in ["1", "2", "3", "4", "5"])


@pytest.fixture
def canary(tmp_path) -> Path:
    """A secret file the worker can read, outside the media root."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text(f"SECRET_KEY={CANARY}\n")
    return path


@pytest.fixture
def api(researcher):
    client = APIClient()
    client.force_authenticate(researcher)
    return client


def _job_text(job: Job) -> str:
    job.refresh_from_db()
    return f"{job.error} {job.result} {job.message}"


@pytest.mark.parametrize(
    "params",
    [
        {"predictors": ["uploaded"], "uploaded_path": "CANARY"},
        {"predictors": ["uploaded"], "upload": "CANARY"},
        {"predictors": ["global_mean"], "uploaded_path": "CANARY"},
        {"predictors": ["uploaded"], "upload": 1, "path": "CANARY"},
    ],
)
def test_a_client_cannot_name_a_file_for_a_job(api, small_study, canary, params):
    params = {key: (str(canary) if value == "CANARY" else value) for key, value in params.items()}
    response = api.post("/api/jobs/", {"kind": "benchmark", "study": "small", "params": params}, format="json")
    assert response.status_code == 400, response.content
    assert Job.objects.count() == 0
    assert CANARY not in response.content.decode()


def test_another_studys_upload_cannot_be_used(api, small_study, outsider, small_release):
    theirs = pluriharms_import(directory=small_release, slug="theirs", owner=outsider)
    upload = predictions_upload_save(study=theirs, upload=SimpleUploadedFile("p.csv", GOOD_CSV.encode()), user=outsider)
    response = api.post(
        "/api/jobs/",
        {"kind": "benchmark", "study": "small", "params": {"predictors": ["uploaded"], "upload": upload.pk}},
        format="json",
    )
    assert response.status_code == 400
    assert f"no predictions upload #{upload.pk} in this study" in response.json()["message"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "stored_name", ["CANARY", "../outside/secret.txt", "uploads/../../outside/secret.txt", "/dev/zero"]
)
def test_a_tampered_upload_row_is_not_read_outside_the_uploads_folder(small_study, canary, settings, stored_name):
    # Even if a row's file name were changed in the database, the worker reads nothing outside its root.
    settings.MEDIA_ROOT = canary.parent.parent / "media"
    name = str(canary) if stored_name == "CANARY" else stored_name
    upload = Upload.objects.create(study=small_study, kind="predictions", token="t" * 32, file=name, sha256="0" * 64)
    job = Job.objects.create(
        kind="benchmark",
        study=small_study,
        params={"predictors": ["uploaded"], "conditions": ["individual"], "splits": 1, "seed": 0, "upload": upload.pk},
    )
    finished = job_run(job_id=job.pk)
    assert finished.status == Job.Status.FAILED
    assert CANARY not in _job_text(finished)
    assert "outside the folder" in finished.error or "missing" in finished.error


def test_an_upload_is_scored_through_its_id(
    api, client, researcher, small_study, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    client.force_login(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("benchmark:benchmark_start", args=["small"]),
            {
                "predictors": ["global_mean"],
                "splits": "2",
                "predictions": SimpleUploadedFile("../../etc/passwd", GOOD_CSV.encode(), content_type="text/csv"),
            },
        )
    assert response.status_code == 302
    upload = Upload.objects.get()
    job = Job.objects.get()
    assert job.params["upload"] == upload.pk and "uploaded_path" not in job.params
    # The stored name is ours; the client's name is kept as a label only.
    assert upload.file.name.startswith(f"uploads/study-{small_study.pk}/predictions/") and ".." not in upload.file.name
    assert upload.original_name == "passwd"
    assert job_run(job_id=job.pk).status == Job.Status.SUCCEEDED


@pytest.mark.parametrize(
    "form,upload",
    [
        ({"predictors": ["global_mean"], "splits": "0"}, GOOD_CSV),  # valid file, bad parameters
        ({"predictors": ["global_mean"], "splits": "2"}, "prompt,prediction\n999,1\n"),  # bad file
    ],
)
def test_a_refused_request_leaves_no_file_behind(client, researcher, small_study, settings, form, upload):
    client.force_login(researcher)
    response = client.post(
        reverse("benchmark:benchmark_start", args=["small"]),
        {**form, "predictions": SimpleUploadedFile("p.csv", upload.encode(), content_type="text/csv")},
    )
    assert response.status_code == 400
    assert Upload.objects.count() == 0 and Job.objects.count() == 0
    uploads = Path(settings.MEDIA_ROOT) / "uploads"
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))


def test_a_job_error_carries_no_file_content_or_traceback(small_study, replace_job_handler, canary):
    # A failure whose exception quotes a file (as the CSV parser did) shows the user a short message only.
    def leaky(job, progress):
        raise ValueError(f"could not parse: {canary.read_text()}")

    replace_job_handler("export", leaky)
    job = Job.objects.create(kind="export", study=small_study, params={"format": "pluriharms"})
    finished = job_run(job_id=job.pk)
    assert finished.status == Job.Status.FAILED
    assert CANARY not in _job_text(finished) and "Traceback" not in finished.error


def test_api_clients_upload_predictions_and_name_them_by_id(
    api, small_study, outsider, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    url = "/api/studies/small/uploads/predictions/"
    bad = api.post(url, {"file": SimpleUploadedFile("p.csv", b"prompt,prediction\n1,abc\n")}, format="multipart")
    assert bad.status_code == 400 and "row 2" in bad.json()["message"] and Upload.objects.count() == 0
    created = api.post(url, {"file": SimpleUploadedFile("p.csv", GOOD_CSV.encode())}, format="multipart")
    assert created.status_code == 201, created.content
    upload_id = created.json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        job = api.post(
            "/api/jobs/",
            {
                "kind": "benchmark",
                "study": "small",
                "params": {"predictors": ["uploaded"], "upload": upload_id, "splits": 1},
            },
            format="json",
        )
    assert job.status_code == 201, job.content
    assert job_run(job_id=job.json()["id"]).status == Job.Status.SUCCEEDED
    # Someone without access to the study can neither upload to it nor learn that it exists.
    stranger = APIClient()
    stranger.force_authenticate(outsider)
    refused = stranger.post(url, {"file": SimpleUploadedFile("p.csv", GOOD_CSV.encode())}, format="multipart")
    assert refused.status_code == 404 and Upload.objects.count() == 1


@pytest.mark.parametrize("via", ["page", "api"])
def test_an_oversized_upload_is_refused_before_it_is_read(client, api, researcher, small_study, via):
    from django.conf import settings as live

    client.force_login(researcher)
    body = SimpleUploadedFile("p.csv", GOOD_CSV.encode())
    too_big = str(live.MAX_REQUEST_BYTES + 1)  # the declared length: nothing of the body is read
    if via == "page":
        response = client.post(
            reverse("benchmark:benchmark_start", args=["small"]), {"predictions": body}, CONTENT_LENGTH=too_big
        )
    else:
        response = api.post(
            "/api/studies/small/uploads/predictions/", {"file": body}, format="multipart", CONTENT_LENGTH=too_big
        )
    assert response.status_code == 413 and b"20 MB" in response.content
    assert Upload.objects.count() == 0 and Job.objects.count() == 0


def test_the_upload_service_refuses_a_file_over_its_limit(small_study, researcher):
    from annotation.services.uploads import upload_create

    with pytest.raises(Exception, match="larger than"):
        upload_create(
            study=small_study,
            kind="predictions",
            upload=SimpleUploadedFile("p.csv", b"x" * 2048),
            user=researcher,
            max_bytes=1024,
        )
    assert Upload.objects.count() == 0
