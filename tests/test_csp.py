"""Content-Security-Policy (ASVS 14.4.3): every page is sent with a policy that runs scripts from this
site only (no inline script, no eval), and no template needs more than that."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from annotation.models import Prompt, Study

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"
PID = "5f3c2a9e8b7d6c5b4a392817"


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_strict_scripts(response) -> None:
    directives = policy(response)
    assert directives["script-src"] == ["'self'"], directives
    # Nothing that would loosen script-src for elements or attributes, and a default that is not wider.
    assert "script-src-elem" not in directives and "script-src-attr" not in directives
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"] and directives["base-uri"] == ["'self'"]
    for values in directives.values():
        assert "'unsafe-eval'" not in values
    assert "'unsafe-inline'" not in directives["script-src"]


@pytest.fixture
def take_study(researcher):
    study = Study.objects.create(
        slug="harm",
        title="Harm study",
        status=Study.Status.RECRUITING,
        owner=researcher,
        completion_code="C0MPLETE",
        instruments=[],
        min_seconds_per_rating=0,
    )
    Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=str(i), text=f"Prompt {i}", order=i) for i in range(1, 4)]
    )
    return study


def test_researcher_pages_are_served_with_a_strict_script_policy(client, researcher, small_study):
    client.force_login(researcher)
    prompt = small_study.prompts.order_by("order").first()
    urls = [
        reverse("annotation:study_list"),
        reverse("annotation:study_detail", args=["small"]),
        reverse("benchmark:overview", args=["small"]),
        reverse("benchmark:agreement", args=["small"]),
        reverse("benchmark:prompt_detail", args=["small", prompt.external_id]),
        reverse("benchmark:leaderboard", args=["small"]),
        reverse("benchmark:steering", args=["small"]),
        reverse("api-docs"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_strict_scripts(response)
    # Error answers too (the page an injected payload would land on).
    error = client.get(reverse("benchmark:prompt_detail", args=["small", prompt.external_id]), {"group": "<b>"})
    assert error.status_code == 400
    assert_strict_scripts(error)


def test_annotator_pages_are_served_with_a_strict_script_policy(client, take_study):
    refused = client.get(reverse("take:enter", args=["harm"]))  # no recruitment ids: the "bad link" page
    assert refused.status_code == 400
    assert_strict_scripts(refused)
    entered = client.get(f"/s/harm/?PROLIFIC_PID={PID}&STUDY_ID=st1&SESSION_ID=se1")
    assert entered.status_code == 302
    consent = client.get(reverse("take:consent", args=["harm"]))
    assert consent.status_code == 200
    assert_strict_scripts(consent)
    client.post(reverse("take:consent", args=["harm"]), {"consent": "agree"})
    instructions = client.get(reverse("take:instructions", args=["harm"]))
    assert instructions.status_code == 200
    assert_strict_scripts(instructions)
    client.post(reverse("take:instructions", args=["harm"]))
    rate = client.get(reverse("take:rate", args=["harm"]))
    assert rate.status_code == 200 and b'id="rating-form"' in rate.content
    assert_strict_scripts(rate)
    card = client.get(reverse("take:rate", args=["harm"]), HTTP_HX_REQUEST="true")
    assert_strict_scripts(card)


# What a template may not contain under that policy (each would be blocked, or need eval, in the browser).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE | re.DOTALL)
HX_ON = re.compile(r"\shx-on[:\-]", re.IGNORECASE)
JS_VALUES = re.compile(r"\s(hx-vals|hx-vars|hx-headers)\s*=\s*['\"]\s*(js|javascript):", re.IGNORECASE)
JS_URL = re.compile(r"(href|src|action|formaction)\s*=\s*['\"]\s*javascript:", re.IGNORECASE)
TRIGGER_FILTER = re.compile(r"hx-trigger\s*=\s*['\"][^'\"]*\[", re.IGNORECASE)  # hx-trigger="click[cond]" is eval'd


def _templates():
    return sorted(TEMPLATES.rglob("*.html"))


def test_there_are_templates_to_check():
    names = {str(p.relative_to(TEMPLATES)) for p in _templates()}
    assert {"base.html", "benchmark/_steering_panel.html", "annotation/take/_rating_card.html"} <= names


@pytest.mark.parametrize(
    "pattern",
    [INLINE_SCRIPT, EVENT_HANDLER, HX_ON, JS_VALUES, JS_URL, TRIGGER_FILTER],
    ids=["inline-script", "event-handler", "hx-on", "js-values", "javascript-url", "trigger-filter"],
)
def test_no_template_needs_inline_script_or_eval(pattern):
    found = [
        f"{path.relative_to(TEMPLATES)}: {match.group(0)[:80]}"
        for path in _templates()
        for match in pattern.finditer(path.read_text())
    ]
    assert found == []


def test_the_patterns_catch_what_they_are_for():
    assert INLINE_SCRIPT.search("<script>alert(1)</script>") and not INLINE_SCRIPT.search(
        '<script src="/a.js"></script>'
    )
    assert EVENT_HANDLER.search('<input type="range"\n   oninput="x()">') and not EVENT_HANDLER.search(
        '<p class="onion">'
    )
    assert HX_ON.search('<button hx-on:click="x()">') and JS_VALUES.search("<div hx-vals='js:{a: 1}'>")
    assert JS_URL.search('<a href="javascript:history.back()">') and TRIGGER_FILTER.search(
        '<a hx-trigger="click[ctrlKey]">'
    )


def test_htmx_is_configured_not_to_eval_or_insert_inline_styles(client, researcher, take_study):
    client.force_login(researcher)
    for response in (
        client.get(reverse("annotation:study_list")),
        client.get(f"/s/harm/?PROLIFIC_PID={PID}&STUDY_ID=st1&SESSION_ID=se1", follow=True),
    ):
        metas = re.findall(r'<meta name="htmx-config" content=\'([^\']*)\'', response.content.decode())
        assert len(metas) == 1  # htmx reads the first one only
        config = json.loads(metas[0])
        assert config["allowEval"] is False and config["allowScriptTags"] is False
        assert config["includeIndicatorStyles"] is False


def test_the_policy_built_once_is_django_csps_own_and_follows_settings_and_decorators(rf, settings):
    """config.middleware.CSPMiddleware keeps the built header; it must be what django-csp would send."""
    from csp.middleware import CSPMiddleware as Stock
    from django.http import HttpResponse

    from config.middleware import CSPMiddleware

    def header(middleware, **attributes):
        response = HttpResponse("ok")
        for name, value in attributes.items():
            setattr(response, name, value)
        request = rf.get("/s/x/rate/")
        middleware.process_request(request)
        return middleware.process_response(request, response)["Content-Security-Policy"]

    ours, stock = CSPMiddleware(lambda r: None), Stock(lambda r: None)
    assert header(ours) == header(ours) == header(stock)
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'self'"], "img-src": ["'self'", "https:"]}}
    assert header(ours) == header(stock) and "https:" in header(ours)
    update = {"img-src": ["data:"]}
    assert header(ours, _csp_update=update) == header(stock, _csp_update=update) != header(ours)
