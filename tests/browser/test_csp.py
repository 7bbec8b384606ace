"""The pages under the site's Content-Security-Policy in a real browser (ASVS 14.4.3, 5.3.3, 14.2.3):
no policy violation and no console error on the researcher pages (plots drawn by the locally served
Plotly, htmx swaps), the annotator's rating page and the API docs; the reflected-XSS payload of the
prompt page is shown as text; and even if it were echoed as markup, the policy would not let it run.
"""

import re
from html import escape

import pytest
from django.test import Client
from playwright.sync_api import expect

from annotation.models import Prompt, Study
from jobs.services import job_create, job_run

pytestmark = pytest.mark.browser

# Installed before any page script: collects the policy violations the page reports.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push({directive: e.effectiveDirective || e.violatedDirective, blocked: e.blockedURI, sample: e.sample});
}, true);
"""


class Watch:
    """Every console message, dialog and CSP violation of one page."""

    def __init__(self, page):
        self.page = page
        self.console: list[str] = []
        self.dialogs: list[str] = []
        page.add_init_script(WATCH_CSP)
        page.on(
            "console", lambda m: self.console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
        )
        page.on("dialog", self._dialog)

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def violations(self) -> list[dict]:
        return self.page.evaluate("window.__csp || []")

    def assert_clean(self, *, allow_console: tuple[str, ...] = ()):
        console = [m for m in self.console if not any(a in m for a in allow_console)]
        assert self.violations() == [] and console == [] and self.dialogs == [], (
            self.violations(),
            console,
            self.dialogs,
        )


def logged_in_page(browser_session, user):
    client = Client()
    client.force_login(user)
    page = browser_session.new_page()
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": browser_session.base_url}]
    )
    return page


def expect_plots_drawn(page, minimum: int = 1):
    """Every data-figure div was drawn by Plotly (it adds .js-plotly-plot and an SVG)."""
    figures = page.locator(".plot[data-figure]")
    expect(figures.first).to_be_attached()
    count = figures.count()
    assert count >= minimum
    expect(page.locator(".plot.js-plotly-plot")).to_have_count(count)
    expect(page.locator(".plot.js-plotly-plot .main-svg").first).to_be_visible()


@pytest.fixture
def analysed_study(small_study, monkeypatch):
    """The imported small release with a finished agreement report (the job run here, not queued)."""
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    job = job_create(kind="analysis", study=small_study, params={"mixed_effects": False, "n_boot": 50})
    assert job_run(job_id=job.pk).status == "succeeded"
    return small_study


# --- 2 (b): the pages work under the policy --------------------------------------------------------


def test_researcher_pages_run_under_the_policy(browser_session, researcher, analysed_study):
    page = logged_in_page(browser_session, researcher)
    watch = Watch(page)
    slug = analysed_study.slug

    page.goto(f"/research/studies/{slug}/agreement/")
    expect_plots_drawn(page)
    page.goto(f"/research/studies/{slug}/overview/")
    expect_plots_drawn(page, minimum=3)
    page.goto(f"/research/studies/{slug}/benchmark/")
    expect_plots_drawn(page)

    prompt = analysed_study.prompts.order_by("order").first()
    page.goto(f"/research/studies/{slug}/prompts/{prompt.external_id}/")
    expect_plots_drawn(page, minimum=2)
    with page.expect_response(re.compile(r"/prompts/.+\?group=Gender")) as answer:
        page.locator("#group-select").select_option("Gender")  # htmx swaps the histogram in
    assert answer.value.status == 200
    expect(page.locator("#prompt-histogram .plot.js-plotly-plot")).to_have_count(1)

    page.goto(f"/research/studies/{slug}/steering/")
    expect(page.locator("#o0")).to_be_visible()
    with page.expect_response(re.compile(r"/steering/score/$")) as answer:
        page.locator("#w0").fill("0.37")  # the value shown next to the slider comes from site.js
    assert answer.value.status == 200
    expect(page.locator("#o0")).to_have_text("0.37")

    page.goto(f"/research/studies/{slug}/")
    expect(page.locator("#prompt-table")).to_be_visible()
    watch.assert_clean()


def test_annotator_rating_page_runs_under_the_policy(browser_session, researcher):
    study = Study.objects.create(
        slug="csp",
        title="Harm ratings",
        status=Study.Status.RECRUITING,
        owner=researcher,
        completion_code="DONE-CSP",
        instruments=[],
        min_seconds_per_rating=0,
    )
    Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=str(i), text=f"Prompt number {i}", order=i) for i in range(1, 4)]
    )
    page = browser_session.new_page()
    watch = Watch(page)
    page.goto("/s/csp/?PROLIFIC_PID=a1b2c3d4e5f60718293a4b5c&STUDY_ID=st1&SESSION_ID=se1")
    page.locator("#consent-agree").click()
    page.locator("#start-rating").click()
    expect(page.locator("#progress-text")).to_have_text("0 of 3")
    expect(page.locator(".rating-widget[data-wired='1']")).to_have_count(1)  # take.js ran
    page.locator("#rating-form .rating-number").fill("42")
    page.locator("#submit-rating").click()
    expect(page.locator("#progress-text")).to_have_text("1 of 3")  # htmx swapped the next card in
    expect(page.locator(".rating-widget[data-wired='1']")).to_have_count(1)
    watch.assert_clean()
    assert browser_session.js_errors == []


# --- 3: the API docs, served locally, under the policy ---------------------------------------------


def test_api_docs_render_under_the_policy(browser_session, researcher):
    page = logged_in_page(browser_session, researcher)
    watch = Watch(page)
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(browser_session.base_url) else None)
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert page.locator(".swagger-ui .opblock").count() >= 5
    expect(page.locator(".swagger-ui")).to_contain_text("/api/jobs/")
    assert [url for url in outside if not url.startswith("data:")] == []
    watch.assert_clean()


# --- 2 (c) and 1: the reflected payload ------------------------------------------------------------

PAYLOAD = "<img src=x onerror=alert(document.cookie)><img src=y onerror=window.__xss=1><script>window.__xss=2</script>"


def _prompt_url(study, group: str) -> str:
    from urllib.parse import urlencode

    prompt = study.prompts.order_by("order").first()
    return f"/research/studies/{study.slug}/prompts/{prompt.external_id}/?{urlencode({'group': group})}"


def test_reflected_payload_is_shown_as_text_and_never_runs(browser_session, researcher, small_study):
    page = logged_in_page(browser_session, researcher)
    watch = Watch(page)
    response = page.goto(_prompt_url(small_study, PAYLOAD))
    assert response.status == 400
    expect(page.locator("#error-message")).to_contain_text(PAYLOAD)  # the characters, as text
    assert page.locator("main img, main script").count() == 0
    assert page.evaluate("window.__xss") is None and watch.dialogs == []
    # The browser reports the 400 of the page itself; nothing else.
    watch.assert_clean(allow_console=("status of 400",))


def test_the_policy_stops_the_payload_even_if_it_were_echoed(browser_session, researcher, small_study):
    """The real error answer (its headers, hence its CSP) with the body the vulnerable code sent: the
    payload as markup. The markup is in the page, and the policy keeps every script in it from running."""
    page = logged_in_page(browser_session, researcher)
    watch = Watch(page)
    url = _prompt_url(small_study, PAYLOAD)

    def echo_unescaped(route):
        real = route.fetch()
        body = real.text()
        assert escape(PAYLOAD) in body  # the fixed page escapes it; put it back raw
        route.fulfill(response=real, body=body.replace(escape(PAYLOAD), PAYLOAD))

    page.route(re.compile(r"/prompts/.+\?group="), echo_unescaped)
    response = page.goto(url)
    assert response.status == 400 and "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("main img")).to_have_count(2)  # the injected markup is there…
    expect(page.locator("main script")).to_have_count(1)
    # …and each script in it was refused. (Polled from here: Playwright's in-page wait_for_function
    # would itself need eval, which this very policy forbids.)
    for _ in range(50):
        if len(watch.violations()) >= 3:
            break
        page.wait_for_timeout(100)
    assert page.evaluate("window.__xss") is None and watch.dialogs == []
    directives = sorted(v["directive"] for v in watch.violations())
    assert directives == ["script-src-attr", "script-src-attr", "script-src-elem"], watch.violations()


def test_an_htmx_error_is_shown_to_the_user_as_text(browser_session, researcher, small_study):
    """A 4xx answer to an htmx request is shown next to the form that sent it (htmx alone would drop it):
    the form names no error box, so site.js makes one right after it."""
    page = logged_in_page(browser_session, researcher)
    watch = Watch(page)
    page.goto(f"/research/studies/{small_study.slug}/steering/")
    expect(page.locator("#htmx-error")).to_be_hidden()
    # A tampered form: the group the browser sends is not one of the study's.
    page.locator("#group-value option").first.evaluate(
        "(o, v) => { o.value = v; o.selected = true; }", f"Gender:{PAYLOAD}"
    )
    with page.expect_response(re.compile(r"/steering/fit/$")) as answer:
        page.locator("#fit-group").click()
    assert answer.value.status == 400
    error = page.locator("form:has(#fit-group) + [data-auto-error]")
    expect(error).to_be_visible()
    expect(page.locator("#htmx-error")).to_be_hidden()
    expect(error).to_contain_text("no annotators with Gender")
    expect(error).to_contain_text(PAYLOAD)
    assert error.locator("img, script").count() == 0
    expect(page.locator("#steering-panel")).to_be_visible()  # the panel the form aimed at is untouched
    error.locator("[data-dismiss-error]").click()
    expect(error).to_be_hidden()
    assert page.evaluate("window.__xss") is None and watch.dialogs == []
    watch.assert_clean(allow_console=("status of 400",))
