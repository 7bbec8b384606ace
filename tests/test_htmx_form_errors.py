"""Every htmx form of the researcher's side answers bad input with a 4xx that names where its message
goes (HX-Retarget): static/js/site.js swaps exactly those answers (htmx drops 4xx answers otherwise,
and the page would do nothing), into the form's own error box. One case per form and kind of mistake;
tests/browser/test_researcher_forms.py shows the messages appearing in Chromium."""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def _csv(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("predictions.csv", text.encode(), content_type="text/csv")


def _finished_job(study) -> Job:
    now = timezone.now()
    return Job.objects.create(kind="export", study=study, status=Job.Status.SUCCEEDED, started_at=now, finished_at=now)


# (name, URL name, URL args after the slug, POST data or a callable of the study, message expected)
CASES = [
    (
        "benchmark: no predictor chosen",
        "benchmark:benchmark_start",
        [],
        {"splits": "2"},
        "choose at least one predictor",
    ),
    (
        "benchmark: bad predictions CSV",
        "benchmark:benchmark_start",
        [],
        lambda study: {"splits": "2", "predictions": _csv("prompt,prediction\n1,50\n999,20\n")},
        "999",
    ),
    (
        "benchmark: predictions not a number",
        "benchmark:benchmark_start",
        [],
        lambda study: {"predictions": _csv("prompt,prediction\n1,abc\n")},
        "row",
    ),
    (
        "benchmark: splits not a number",
        "benchmark:benchmark_start",
        [],
        {"predictors": ["global_mean"], "splits": "ten"},
        "splits",
    ),
    (
        "benchmark: splits out of range",
        "benchmark:benchmark_start",
        [],
        {"predictors": ["global_mean"], "splits": "0"},
        "splits",
    ),
    ("benchmark: unknown predictor", "benchmark:benchmark_start", [], {"predictors": ["oracle"]}, "oracle"),
    (
        "benchmark: seeds out of range",
        "benchmark:benchmark_start",
        [],
        {"predictors": ["global_mean"], "seeds": "99"},
        "seeds",
    ),
    ("export: unknown format", "annotation:export_start", [], {"format": "bogus"}, "format"),
    ("latent: flag share not a number", "benchmark:latent_start", [], {"flag_share": "lots"}, "flag_share"),
    ("latent: unknown model", "benchmark:latent_start", [], {"model": "bogus"}, "unknown model"),
    (
        "collaborators: unknown user",
        "annotation:collaborator_create",
        [],
        {"username": "nobody", "role": "viewer"},
        "nobody",
    ),
    ("prompt bank: no file", "annotation:prompt_bank_upload", [], {}, "Choose a file"),
    ("prompt bank import: no upload named", "annotation:prompt_bank_import", [], {}, "Upload the file again"),
    ("study status: unknown status", "annotation:study_status", [], {"status": "bogus"}, "bogus"),
    ("recruitment lookup: nothing pasted", "annotation:recruitment_lookup", [], {"ids": ""}, ""),
]


@pytest.mark.parametrize("name,url_name,args,data,message", CASES, ids=[c[0] for c in CASES])
def test_htmx_form_errors_are_4xx_answers_aimed_at_a_visible_place(
    client, researcher, small_study, name, url_name, args, data, message
):
    client.force_login(researcher)
    payload = data(small_study) if callable(data) else data
    response = client.post(reverse(url_name, args=[small_study.slug, *args]), payload, headers=HTMX)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response.get("HX-Retarget"), "a 4xx without HX-Retarget is dropped by htmx: the page would do nothing"
    body = response.content.decode()
    assert message in body
    assert "<html" not in body  # a fragment, not a page
    assert not Job.objects.filter(status=Job.Status.QUEUED).exists()  # nothing half-started


def test_a_builder_section_with_bad_values_answers_its_section_with_the_errors(client, researcher, small_study):
    client.force_login(researcher)
    response = client.post(
        reverse("annotation:study_section_save", args=[small_study.slug, "basics"]),
        {"title": "", "description": ""},
        headers=HTMX,
    )
    assert response.status_code == 400 and response["HX-Retarget"] == "#section-basics"
    assert "This field is required" in response.content.decode()


def test_a_new_study_with_a_bad_slug_answers_its_form_with_the_errors(client, researcher):
    client.force_login(researcher)
    response = client.post(reverse("annotation:study_new"), {"title": "", "slug": "Not A Slug!"}, headers=HTMX)
    assert response.status_code == 400 and response["HX-Retarget"] == "#new-study-form"


def test_cancelling_an_ended_job_is_a_409_aimed_at_the_error_region(client, researcher, small_study):
    client.force_login(researcher)
    job = _finished_job(small_study)
    response = client.post(reverse("jobs:job_cancel", args=[job.pk]), headers=HTMX)
    assert response.status_code == 409 and response["HX-Retarget"] == "#htmx-error"
    assert "nothing to cancel" in response.content.decode()


def test_a_form_a_role_may_not_use_answers_403_which_site_js_reports(client, small_study):
    """A viewer posting the benchmark form (e.g. after losing the editor role): 403 with no target;
    site.js's htmx:responseError handler says so next to the form (tests/browser)."""
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-1")
    small_study.collaborators.add(viewer, through_defaults={"role": "viewer"})
    client.force_login(viewer)
    response = client.post(reverse("benchmark:benchmark_start", args=[small_study.slug]), {}, headers=HTMX)
    assert response.status_code == 403
