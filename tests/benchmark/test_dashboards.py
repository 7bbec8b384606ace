"""Dashboards: success, wrong method, anonymous, wrong role, htmx fragment vs full page, CSV data."""

import csv
import io
import json
from html import unescape

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_researcher(client, researcher):
    client.force_login(researcher)
    return client


def _figures(content: str) -> list[dict]:
    import re

    return [json.loads(unescape(m)) for m in re.findall(r'data-figure="([^"]*)"', content)]


def test_overview_full_page_with_three_plots(as_researcher, small_study):
    response = as_researcher.get(reverse("benchmark:overview", args=["small"]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" in content and "vendor/plotly-basic.min.js" in content and 'hx-trigger="every 10s"' in content
    figures = _figures(content)
    assert len(figures) == 3
    per_prompt = next(f for f in figures if f["layout"]["title"]["text"] == "Ratings per prompt")
    assert sorted(per_prompt["data"][0]["y"]) == [4, 4, 4, 4, 4]
    progress = next(f for f in figures if f["layout"]["title"]["text"] == "Ratings collected")
    assert progress["data"][0]["y"][-1] == 20


def test_overview_htmx_returns_panels_only(as_researcher, small_study):
    response = as_researcher.get(reverse("benchmark:overview", args=["small"]), HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert (
        response.status_code == 200
        and "<html" not in content
        and content.lstrip().startswith('<div id="overview-panels"')
    )


def test_overview_csv(as_researcher, small_study):
    response = as_researcher.get(reverse("benchmark:overview_csv", args=["small", "per_prompt"]))
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["prompt", "ratings"] and len(rows) == 6 and {r[1] for r in rows[1:]} == {"4"}
    assert as_researcher.get(reverse("benchmark:overview_csv", args=["small", "secrets"])).status_code == 404


def test_overview_refusals(client, outsider, small_study):
    url = reverse("benchmark:overview", args=["small"])
    assert client.get(url).status_code == 302  # anonymous → login
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    assert client.get(reverse("benchmark:overview_csv", args=["small", "status"])).status_code == 404


def test_overview_wrong_method(as_researcher, small_study):
    assert as_researcher.post(reverse("benchmark:overview", args=["small"])).status_code == 405
