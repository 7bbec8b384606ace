"""The researcher's pages in Chromium at 1280 and 375 px (issue 10).

- Every researcher page fits the screen: no horizontal overflow of the page at either width (wide tables
  scroll inside their card). The pages are enumerated from the URLconf (the annotation, benchmark and jobs
  namespaces, the login page and the API docs), so a new page is checked without being listed here; each
  URL is classified by a GET as the study's owner: an HTML page is visited, a POST-only endpoint (405) or
  a download (not HTML) is skipped and said why. Not researcher pages, so not visited: the Django admin
  (Django's own pages), the JSON API under /api/ (no page; its docs page is visited), and the annotator's
  pages under /s/ (checked by tests/browser/test_annotator_pages.py).
- The main researcher pages have no serious or critical axe-core violation.
- The API docs render with every request to another host blocked.
- Plots: no share / Chart Studio button and no Plotly logo; whole-number counts; the per-prompt bars
  drawn in sorted order; the collection timeline's tick labels never show fractions of a second.
- A study with a handful of ratings: the agreement report's cards say what they need, and "No report
  yet." goes away when the report arrives, without a reload.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from playwright.sync_api import expect

from annotation.importers import pluriharms_import
from annotation.models import Collaborator
from benchmark.latent import checkpoint_names
from benchmark.pools import candidates_add, pool_create
from jobs.models import Job
from jobs.services import job_create, job_run
from tests.conftest import write_small_release

from .axe import assert_no_serious_axe_violations
from .test_csp import Watch

pytestmark = pytest.mark.browser

WIDTHS = {"desktop": False, "phone": True}  # BrowserSession.new_page(phone=…): 1280 × 800 and 375 × 740
RESEARCH_NAMESPACES = ("annotation", "benchmark", "jobs")
OTHER_PAGES = ("login", "api-docs")


@dataclass
class World:
    slug: str
    pseudonym: str
    prompt: str
    job: Job
    artifact: str
    collaborator: str
    checkpoint: str
    pool: int
    candidate: int


@pytest.fixture
def world(small_study, researcher, django_user_model, monkeypatch):
    """The small release (4 annotators × 5 prompts) with a finished agreement report and a finished export."""
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    analysis = job_create(kind="analysis", study=small_study, params={"mixed_effects": False, "n_boot": 50})
    assert job_run(job_id=analysis.pk).status == Job.Status.SUCCEEDED
    export = job_create(kind="export", study=small_study, params={"format": "lewidi"})
    assert job_run(job_id=export.pk).status == Job.Status.SUCCEEDED
    colleague = django_user_model.objects.create_user("colleague", password="pw-colleague-1")
    Collaborator.objects.create(study=small_study, user=colleague)
    pool = pool_create(study=small_study, name="Seeds")
    (candidate,) = candidates_add(
        pool=pool, rows=[{"external_id": "s1", "text": "A seed prompt", "harm_level": 0.5}], source="uploaded"
    )
    return World(
        slug=small_study.slug,
        pseudonym=small_study.annotators.order_by("pseudonym").first().pseudonym,
        prompt=small_study.prompts.order_by("order").first().external_id,
        job=export,
        artifact=export.artifacts.order_by("name").first().name,
        collaborator="colleague",
        checkpoint=checkpoint_names()[0],
        pool=pool.pk,
        candidate=candidate.pk,
    )


def signed_in_page(browser_session, user, *, phone: bool):
    """A new page (1280 px, or a 375 px phone) with the user's session cookie."""
    client = Client()
    client.force_login(user)
    page = browser_session.new_page(phone=phone)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": browser_session.base_url}]
    )
    return page


# --- the URLconf, walked ----------------------------------------------------------------------------


def researcher_routes() -> list[tuple[str, list[str]]]:
    """(URL name, its arguments) of every route of the researcher's namespaces, plus the login and docs."""
    routes = []

    def walk(patterns, namespace):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, entry.namespace or namespace)
            elif isinstance(entry, URLPattern) and entry.name and namespace in RESEARCH_NAMESPACES:
                routes.append((f"{namespace}:{entry.name}", list(entry.pattern.converters)))

    walk(get_resolver().url_patterns, None)
    return routes + [(name, []) for name in OTHER_PAGES]


def arguments(name: str, params: list[str], world: World) -> dict:
    by_param = {
        "slug": world.slug,
        "pseudonym": world.pseudonym,
        "external_id": world.prompt,
        "job_id": world.job.pk,
        "username": world.collaborator,
        "section": "basics",
        "pool_id": world.pool,
        "candidate_id": world.candidate,
        "number": 0,
    }
    by_route = {
        "benchmark:overview_csv": {"name": "progress"},
        "benchmark:agreement_csv": {"name": "prompts"},
        "benchmark:latent_checkpoint": {"name": world.checkpoint},
        "jobs:artifact_download": {"name": world.artifact},
    }
    kwargs = {param: by_param[param] for param in params if param in by_param}
    kwargs.update(by_route.get(name, {}))
    missing = set(params) - set(kwargs)
    assert not missing, f"{name}: no value for {missing}; add one to arguments() in {__name__}"
    return kwargs


def classify(world: World, researcher) -> tuple[dict[str, str], dict[str, str]]:
    """({name: URL} of the pages to visit, {name: why skipped}), by what each URL answers to a GET."""
    client = Client()
    client.force_login(researcher)
    pages, skipped = {}, {}
    for name, params in researcher_routes():
        url = reverse(name, kwargs=arguments(name, params, world))
        response = client.get(url) if name != "login" else Client().get(url)
        kind = response.get("Content-Type", "")
        if response.status_code == 405:
            skipped[name] = "POST only (an action, not a page)"
        elif response.status_code == 200 and "attachment" in response.get("Content-Disposition", ""):
            skipped[name] = "a download"
        elif response.status_code == 200 and kind.startswith("text/html"):
            pages[name] = url
        elif response.status_code == 200:
            skipped[name] = f"not a page ({kind})"
        else:
            raise AssertionError(f"{name} ({url}) answered {response.status_code}: give it arguments in {__name__}")
    return pages, skipped


# --- 4: every researcher page fits a phone and a desktop ------------------------------------------

# The page's width against the window's, and the first few elements of <main> that reach past the window.
OVERFLOW = """(screen) => {
  const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
    + (typeof e.className === "string" && e.className.trim() ? "." + e.className.trim().split(/\\s+/).join(".") : "");
  const wide = Array.from(document.querySelectorAll("main *"))
    .filter((e) => e.getBoundingClientRect().right > screen + 1);
  return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, wide: wide.slice(0, 6).map(name)};
}"""


def wait_for_plots(page) -> None:
    figures = page.locator(".plot[data-figure]")
    if figures.count():
        expect(page.locator(".plot.js-plotly-plot")).to_have_count(figures.count())


def test_every_researcher_page_fits_the_screen_at_375_and_1280(browser_session, researcher, world):
    pages, skipped = classify(world, researcher)
    # The enumeration found the pages this test is about (and did not skip them by mistake).
    for name in ("annotation:study_list", "annotation:study_detail", "benchmark:overview", "benchmark:agreement"):
        assert name in pages, (name, skipped.get(name))
    assert skipped["annotation:export_start"].startswith("POST only")
    assert skipped["benchmark:overview_csv"] == "a download"
    print("visited:", sorted(pages), "\nskipped:", skipped)

    overflowing = []
    for width, phone in WIDTHS.items():
        page = signed_in_page(browser_session, researcher, phone=phone)
        anonymous = browser_session.new_page(phone=phone)
        for name, url in sorted(pages.items()):
            visitor = anonymous if name == "login" else page
            response = visitor.goto(url)
            assert response.status == 200, (name, url, response.status)
            wait_for_plots(visitor)
            # Compared with the screen's width, not only innerWidth: a phone browser zooms out to show a
            # page wider than the screen, and its innerWidth then grows with the page.
            screen = visitor.viewport_size["width"]
            found = visitor.evaluate(OVERFLOW, screen)
            if max(found["scroll"], found["inner"]) > screen:
                overflowing.append(
                    f"{name} at {width}: {found['scroll']} px wide on a {screen} px screen {found['wide']}"
                )
    assert overflowing == [], "\n".join(overflowing)


# --- 5: accessibility of the main researcher pages ------------------------------------------------

MAIN_PAGES = {
    "study list": "annotation:study_list",
    "study detail": "annotation:study_detail",
    "prompt bank": "annotation:prompt_bank_upload",
    "datasets": "annotation:datasets",
    "participants": "annotation:participants",
    "overview": "benchmark:overview",
    "agreement": "benchmark:agreement",
    "leaderboard": "benchmark:leaderboard",
    "prompt detail": "benchmark:prompt_detail",
    "builder": "annotation:study_new",
    "builder (existing study)": "annotation:study_edit",
    "jobs": "jobs:study_jobs",
}


@pytest.mark.parametrize("width", list(WIDTHS))
def test_main_researcher_pages_have_no_serious_accessibility_violation(browser_session, researcher, world, width):
    phone = WIDTHS[width]
    anonymous = browser_session.new_page(phone=phone)
    anonymous.goto(reverse("login"))
    assert_no_serious_axe_violations(anonymous, context=f"login, {width}")

    page = signed_in_page(browser_session, researcher, phone=phone)
    routes = dict(researcher_routes())
    for label, name in MAIN_PAGES.items():
        page.goto(reverse(name, kwargs=arguments(name, routes[name], world)))
        wait_for_plots(page)
        assert_no_serious_axe_violations(page, context=f"{label}, {width}")


# --- 1: the API docs without internet -------------------------------------------------------------


@pytest.mark.parametrize("width", list(WIDTHS))
def test_api_docs_render_with_every_other_host_blocked(browser_session, researcher, width):
    page = signed_in_page(browser_session, researcher, phone=WIDTHS[width])
    blocked = []

    def only_loopback(route):
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith("data:") or host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    page.context.route("**/*", only_loopback)
    page.goto("/api/docs/")
    operations = page.locator(".swagger-ui .opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() >= 10
    expect(page.locator(".swagger-ui")).to_contain_text("/api/studies/")
    page.locator(".swagger-ui .opblock-summary").first.click()  # an operation opens: the UI is live
    expect(page.locator(".swagger-ui .opblock.is-open")).to_have_count(1)
    assert blocked == []


# --- 2: the plots -----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", list(WIDTHS))
def test_plots_have_no_share_button_no_logo_and_readable_axes(browser_session, researcher, world, width):
    page = signed_in_page(browser_session, researcher, phone=WIDTHS[width])
    watch = Watch(page)
    page.goto(reverse("benchmark:overview", args=[world.slug]))
    wait_for_plots(page)
    titles = page.locator(".modebar-btn").evaluate_all("(bs) => bs.map(b => b.getAttribute('data-title') || '')")
    assert any("png" in t.lower() for t in titles) and any("svg" in t.lower() for t in titles), titles
    assert not [t for t in titles if re.search(r"chart studio|cloud|plotly|share", t, re.I)], titles
    assert page.locator(".modebar-btn--logo, a.modebar-btn[href*='plotly']").count() == 0

    status = page.locator(f".plot[data-name='{world.slug}-status']")
    ticks = status.locator(".ytick text").all_text_contents()
    assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks), ticks  # 4 annotators: 0, 1, 2, 3, 4

    per_prompt = page.locator(f".plot[data-name='{world.slug}-per-prompt']")
    heights = per_prompt.evaluate("(el) => el.data[0].y")
    assert heights == sorted(heights)
    order = per_prompt.evaluate("(el) => el._fullLayout.xaxis._categories")
    assert order == per_prompt.evaluate("(el) => el.data[0].x")  # drawn in the sorted order given

    timeline = page.locator(f".plot[data-name='{world.slug}-progress'] .xtick text")
    labels = timeline.all_text_contents()
    assert labels and not [label for label in labels if re.search(r"\d\.\d", label)], labels  # no 06:59:59.9995

    # "Split by": the groups in a stable (alphabetical) order, each with its size.
    page.goto(reverse("benchmark:prompt_detail", args=[world.slug, world.prompt]))
    wait_for_plots(page)
    with page.expect_response(re.compile(r"\?group=Gender")):
        page.locator("#group-select").select_option("Gender")
    histogram = page.locator("#prompt-histogram .plot.js-plotly-plot")
    expect(histogram.locator(".legendtext").first).to_be_visible()
    legend = histogram.locator(".legendtext").all_text_contents()
    names = [re.fullmatch(r"(.+) \(n=(\d+)\)", text) for text in legend]
    assert all(names) and [m.group(1) for m in names] == sorted((m.group(1) for m in names), key=str.casefold), legend
    assert sum(int(m.group(2)) for m in names) == 4  # the small release's 4 annotators, one rating each
    watch.assert_clean()


# --- 3: a study with a handful of ratings ---------------------------------------------------------


@pytest.mark.parametrize("width", list(WIDTHS))
def test_small_study_report_says_what_it_needs_and_replaces_no_report_yet(
    browser_session, researcher, tmp_path, monkeypatch, width
):
    queued: list[int] = []
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: queued.append(job_id))
    study = pluriharms_import(
        directory=write_small_release(tmp_path / "few", n_prompts=3, n_annotators=1), slug="few", owner=researcher
    )
    page = signed_in_page(browser_session, researcher, phone=WIDTHS[width])
    watch = Watch(page)
    page.goto(reverse("benchmark:agreement", args=[study.slug]))
    expect(page.locator("#report-status")).to_have_text("No report yet.")

    page.locator("#recompute").click()
    expect(page.locator("#analysis-job .job-card")).to_be_visible()
    assert len(queued) == 1
    assert job_run(job_id=queued[0]).status == Job.Status.SUCCEEDED  # what the worker would do

    # The job card polls, sees the job finished and tells the panels, which refresh: no reload.
    status = page.locator("#report-status")
    expect(status).to_contain_text("Showing the report of", timeout=15_000)
    expect(page.get_by_text("No report yet.")).to_have_count(0)
    cards = page.locator("#report-cards")
    expect(cards.locator("#card-alpha")).to_contain_text("needs at least 2 annotators per prompt")
    for key in ("split_half", "icc", "pairwise"):
        expect(cards.locator(f"#card-{key}")).to_contain_text("needs at least 2")
    expect(cards.locator("#card-unplaced")).to_contain_text("needs at least 2 ratings of a prompt")
    texts = cards.locator(":scope > div").all_inner_texts()
    assert texts and all(text.split("\n")[0].strip() for text in texts), texts  # no card with an empty value
    assert not [text for text in texts if "None" in text], texts
    expect(page.locator("#plane-needs")).to_be_visible()
    assert page.locator("#agreement-panels .plot").count() == 0  # no empty plot
    found = page.evaluate(OVERFLOW, page.viewport_size["width"])
    assert max(found["scroll"], found["inner"]) <= page.viewport_size["width"], found
    watch.assert_clean()
