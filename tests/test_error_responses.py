"""Reflected XSS: every 4xx answer of the research pages that repeats what the client sent shows it as
text (escaped by a template), never as markup; htmx requests get a partial aimed at the page's error
region so that the message is visible (ASVS 5.3.3)."""

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django_htmx.middleware import HtmxDetails

from config.errors import ERROR_TARGET, error_response

pytestmark = pytest.mark.django_db

PAYLOAD = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def assert_escaped(response, *, status: int = 400, htmx: bool = False) -> str:
    """The answer is an HTML error (full page or htmx partial) with the payload as text only."""
    assert response.status_code == status
    assert response["Content-Type"] == "text/html; charset=utf-8"
    body = response.content.decode()
    assert "<img" not in body.lower(), body
    assert ESCAPED in body, body
    if htmx:
        assert "<html" not in body
        assert response["HX-Retarget"] == ERROR_TARGET and response["HX-Reswap"] == "innerHTML"
    else:
        assert "<html" in body and 'role="alert"' in body
    return body


@pytest.fixture
def as_researcher(client, researcher):
    client.force_login(researcher)
    return client


@pytest.mark.parametrize("htmx", [False, True])
def test_prompt_detail_unknown_group_is_shown_escaped(as_researcher, small_study, htmx):
    prompt = small_study.prompts.order_by("order").first()
    url = reverse("benchmark:prompt_detail", args=["small", prompt.external_id])
    extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = as_researcher.get(url, {"group": PAYLOAD}, **extra)
    body = assert_escaped(response, htmx=htmx)
    assert "unknown group column" in body


@pytest.mark.parametrize("htmx", [False, True])
def test_steering_fit_unknown_group_is_shown_escaped(as_researcher, small_study, htmx):
    extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = as_researcher.post(
        reverse("benchmark:steering_fit", args=["small"]), {"value": f"Gender:{PAYLOAD}"}, **extra
    )
    body = assert_escaped(response, htmx=htmx)
    assert "no annotators with Gender" in body


@pytest.mark.parametrize("htmx", [False, True])
def test_export_unknown_format_is_shown_escaped(as_researcher, small_study, htmx):
    extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = as_researcher.post(reverse("annotation:export_start", args=["small"]), {"format": PAYLOAD}, **extra)
    body = assert_escaped(response, htmx=htmx)
    assert "unknown export format" in body


def test_steering_score_error_is_an_escaped_error_page(as_researcher, small_study):
    # The message names no client input, but the answer must take the same escaped, visible path.
    response = as_researcher.post(
        reverse("benchmark:steering_score", args=["small"]), {"w3": "7"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 400 and response["HX-Retarget"] == ERROR_TARGET
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "weight 4 must be a number from 0 to 1" in response.content.decode()


def test_analysis_start_error_is_an_escaped_error_page(as_researcher, small_study, monkeypatch):
    from config.errors import ApplicationError

    def refuse(**kwargs):
        raise ApplicationError(f"refused {PAYLOAD}")

    monkeypatch.setattr("benchmark.views.dashboards.job_create", refuse)
    assert_escaped(as_researcher.post(reverse("benchmark:analysis_start", args=["small"])))
    assert_escaped(
        as_researcher.post(reverse("benchmark:analysis_start", args=["small"]), HTTP_HX_REQUEST="true"), htmx=True
    )


def _request(*, htmx: bool):
    request = RequestFactory().get("/x/", **({"HTTP_HX_REQUEST": "true"} if htmx else {}))
    request.htmx = HtmxDetails(request)
    return request


def test_error_response_escapes_and_keeps_the_status():
    response = error_response(_request(htmx=False), f"bad {PAYLOAD} & 'quotes'", status=409)
    body = assert_escaped(response, status=409)
    assert "&amp; &#x27;quotes&#x27;" in body


def test_error_response_htmx_partial_is_retargeted_to_the_error_region():
    response = error_response(_request(htmx=True), PAYLOAD)
    body = assert_escaped(response, htmx=True)
    assert 'role="alert"' in body


def test_every_page_has_the_error_region(as_researcher, small_study):
    page = as_researcher.get(reverse("annotation:study_detail", args=["small"])).content.decode()
    assert f'id="{ERROR_TARGET.lstrip("#")}"' in page


def test_benchmark_start_errors_are_shown_escaped(client, researcher, small_study):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(researcher)
    url = reverse("benchmark:benchmark_start", args=["small"])
    payload = "<img src=x onerror=alert(1)>"
    unknown = client.post(url, {"predictors": [payload], "splits": "2"})
    bad_file = client.post(
        url,
        {
            "splits": "2",
            "predictions": SimpleUploadedFile(
                "p.csv", f"prompt,prediction\n{payload},1\n".encode(), content_type="text/csv"
            ),
        },
    )
    for response in (unknown, bad_file):
        assert response.status_code == 400
        assert payload.encode() not in response.content and b"&lt;img src=x" in response.content
