"""The researcher's jobs and forms in Chromium at 1280 and 375 px (issue 10): errors of htmx forms appear
next to the form; the jobs pages show queue positions and progress and cancel queued and running jobs
(pass axe); the benchmark form groups predictors by family with estimates and a fast default set, and its
results table sorts by any column from the keyboard; a predictions upload says which scale it assumed;
the admin shows job progress as a percentage. No page is wider than the screen."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from annotation.models import Collaborator
from jobs import services
from jobs.models import Job

from .axe import assert_no_serious_axe_violations
from .test_csp import Watch, logged_in_page

pytestmark = pytest.mark.browser
WIDTHS = pytest.mark.parametrize("phone", [False, True], ids=["1280px", "375px"])


@pytest.fixture
def no_worker(monkeypatch):
    """No Celery worker runs during the browser tests: jobs stay queued until the test runs them."""
    queued: list[int] = []
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: queued.append(job_id))
    return queued


def _open(browser_session, user, path: str, phone: bool):
    page = logged_in_page(browser_session, user) if not phone else _phone_page(browser_session, user)
    watch = Watch(page)
    page.goto(path)
    return page, watch


def _phone_page(browser_session, user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    page = browser_session.new_page(phone=True)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": browser_session.base_url}]
    )
    return page


def _fits_the_screen(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"


# ---- errors on htmx forms -------------------------------------------------------------------------------


@WIDTHS
def test_benchmark_form_errors_appear_next_to_the_form(
    browser_session, researcher, small_study, no_worker, tmp_path, phone
):
    page, watch = _open(browser_session, researcher, f"/research/studies/{small_study.slug}/benchmark/", phone)
    box = page.locator("#benchmark-error")
    expect(box).to_be_hidden()
    # No predictor chosen.
    for name in page.locator("input[name=predictors]:checked").evaluate_all("boxes => boxes.map(b => b.id)"):
        page.locator(f"#{name}").uncheck()
    with page.expect_response(re.compile(r"/benchmark/start/$")) as answer:
        page.locator("#start-benchmark").click()
    assert answer.value.status == 400
    expect(box).to_be_visible()
    expect(box).to_contain_text("choose at least one predictor")
    expect(box.locator("[role=alert]")).to_have_count(1)
    box.scroll_into_view_if_needed()
    _fits_the_screen(page)
    # A bad predictions CSV: its row-level message replaces the previous one.
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,prediction\n1,50\n999,20\n")
    page.locator("#predictions").set_input_files(str(bad))
    with page.expect_response(re.compile(r"/benchmark/start/$")) as answer:
        page.locator("#start-benchmark").click()
    assert answer.value.status == 400
    expect(box).to_contain_text("999")
    expect(box).not_to_contain_text("choose at least one predictor")
    # Bad job parameters (the browser's own min= check removed, as a script or an old page would send it).
    page.locator("#predictions").set_input_files([])
    page.locator("#p-global_mean").check()
    page.locator("#splits").evaluate("input => { input.removeAttribute('min'); input.value = '0'; }")
    with page.expect_response(re.compile(r"/benchmark/start/$")) as answer:
        page.locator("#start-benchmark").click()
    assert answer.value.status == 400
    expect(box).to_contain_text("splits")
    assert Job.objects.count() == 0 and no_worker == []
    page.locator("#benchmark-error [data-dismiss-error]").click()
    expect(box).to_be_hidden()
    watch.assert_clean(allow_console=("status of 400",))


@WIDTHS
def test_a_form_without_its_own_error_box_shows_the_error_next_to_itself(
    browser_session, researcher, small_study, no_worker, phone
):
    """The latent-state form names no error box: site.js makes one right after the form."""
    page, watch = _open(browser_session, researcher, f"/research/studies/{small_study.slug}/participants/", phone)
    form = page.locator("form[hx-post$='/latent/start/']")
    form.locator("#latent-model").evaluate("select => { select.options[0].value = 'bogus'; }")
    with page.expect_response(re.compile(r"/latent/start/$")) as answer:
        form.get_by_role("button", name="Estimate latent states").click()
    assert answer.value.status == 400
    box = page.locator("form[hx-post$='/latent/start/'] + [data-auto-error]")
    expect(box).to_be_visible()
    expect(box).to_contain_text("unknown model")
    expect(page.locator("#htmx-error")).to_be_hidden()
    _fits_the_screen(page)
    watch.assert_clean(allow_console=("status of 400",))


@WIDTHS
def test_a_refused_request_says_why_next_to_the_form(browser_session, small_study, no_worker, phone):
    """An editor who lost the role while the page was open: the 403 is reported beside the form."""
    editor = get_user_model().objects.create_user("editor", password="pw-editor-1")
    small_study.collaborators.add(editor, through_defaults={"role": "editor"})
    page, watch = _open(browser_session, editor, f"/research/studies/{small_study.slug}/benchmark/", phone)
    Collaborator.objects.filter(study=small_study, user=editor).update(role="viewer")
    with page.expect_response(re.compile(r"/benchmark/start/$")) as answer:
        page.locator("#start-benchmark").click()
    assert answer.value.status == 403
    box = page.locator("#benchmark-error")
    expect(box).to_contain_text("HTTP 403")
    assert Job.objects.count() == 0
    watch.assert_clean(allow_console=("status of 403", "Error Code 403"))


# ---- jobs pages and cancel ------------------------------------------------------------------------------


@WIDTHS
def test_jobs_pages_show_queue_and_progress_and_cancel_queued_and_running_jobs(
    browser_session, researcher, small_study, no_worker, phone
):
    now = timezone.now()
    running = Job.objects.create(kind="export", study=small_study, params={"format": "long-csv"})
    queued = Job.objects.create(kind="benchmark", study=small_study)
    later = Job.objects.create(kind="benchmark", study=small_study)
    done = Job.objects.create(
        kind="analysis", study=small_study, status=Job.Status.SUCCEEDED, started_at=now, finished_at=now
    )
    # The running export, claimed as a worker would, stopped at a progress point of 42%.
    claimed = services.job_claim(job_id=running.pk)
    services.job_progress(job=claimed, fraction=0.42, message="writing files")

    page, watch = _open(browser_session, researcher, f"/research/jobs/studies/{small_study.slug}/", phone)
    expect(page.locator("nav.tabs [aria-current=page]")).to_have_text("Jobs")
    expect(page.locator(f"#job-row-{queued.pk}")).to_contain_text("position 1 in the long queue")
    expect(page.locator(f"#job-row-{later.pk}")).to_contain_text("position 2 in the long queue")
    expect(page.locator(f"#job-row-{running.pk} .percent")).to_have_text("42%")
    expect(page.locator(f"#cancel-{done.pk}")).to_have_count(0)
    assert_no_serious_axe_violations(page, context=f"study jobs page, {'375' if phone else '1280'} px")
    _fits_the_screen(page)

    # Cancel the queued benchmark: it ends at once and the next one moves up.
    with page.expect_response(re.compile(r"/cancel/$")) as answer:
        page.locator(f"#cancel-{queued.pk}").click()
    assert answer.value.status == 200
    expect(page.locator(f"#job-row-{queued.pk} .badge")).to_have_text("cancelled")
    expect(page.locator(f"#job-row-{later.pk}")).to_contain_text("position 1 in the long queue")  # polled
    assert Job.objects.get(pk=queued.pk).status == Job.Status.CANCELLED
    # Cancel the running export: it says it will stop, then the worker reaches its next progress point.
    page.locator(f"#cancel-{running.pk}").click()
    expect(page.locator(f"#job-row-{running.pk}")).to_contain_text("stopping at its next progress point")
    expect(page.locator(f"#cancel-{running.pk}")).to_have_count(0)  # asked once; nothing more to press
    # The run's next progress call stops it (job_run records it as cancelled: the card test runs that).
    with pytest.raises(services.JobCancelled):
        services.job_progress(job=claimed, fraction=0.6, message="more")
    assert Job.objects.get(pk=running.pk).progress == pytest.approx(0.42)
    # The all-jobs page lists the same jobs with their study.
    page.goto("/research/jobs/")
    expect(page.locator(f"#job-row-{done.pk}")).to_contain_text(small_study.title)
    expect(page.locator(f"#job-row-{later.pk}")).to_contain_text("position 1 in the long queue")
    assert_no_serious_axe_violations(page, context=f"all jobs page, {'375' if phone else '1280'} px")
    _fits_the_screen(page)
    watch.assert_clean()


@WIDTHS
def test_a_running_job_cancelled_from_its_card_ends_cancelled_at_its_next_progress_point(
    browser_session, researcher, small_study, no_worker, replace_job_handler, phone
):
    job = Job.objects.create(kind="export", study=small_study, params={"format": "long-csv"})
    page, watch = _open(browser_session, researcher, f"/research/jobs/{job.pk}/", phone)
    card = page.locator(f"#job-{job.pk}")
    expect(card).to_contain_text("position 1 in the short queue")
    steps = []

    def handler(running, progress):
        progress(0.3, "first step")
        # The researcher presses Cancel on the card while the job runs.
        page.locator(f"#cancel-{running.pk}").click()
        expect(card).to_contain_text("stopping at its next progress point")
        steps.append("first")
        progress(0.6, "second step")  # raises JobCancelled
        steps.append("second")
        return {}

    replace_job_handler("export", handler)
    finished = services.job_run(job_id=job.pk)  # what the worker does with the job's message
    assert steps == ["first"] and finished.status == Job.Status.CANCELLED
    expect(card.locator(".badge")).to_have_text("cancelled")
    expect(card).to_contain_text("Cancelled: cancelled while running.")
    _fits_the_screen(page)
    watch.assert_clean()


# ---- the benchmark form and its results table -----------------------------------------------------------


def _benchmark_with_results(study) -> Job:
    rows = [
        ("global_mean", "individual", 0.342, 0.327, 0.358, None, 34.2, 0.8),
        ("feature_ramp", "individual", 0.222, 0.209, 0.238, 0.746, 14.8, 56.9),
        ("annotator_mean", "individual", 0.307, 0.291, 0.324, 0.145, 26.7, 1.9),
        ("uniform_random", "aggregated", 0.390, 0.379, 0.400, 0.013, 21.5, 4.0),
    ]
    now = timezone.now()
    return Job.objects.create(
        kind="benchmark",
        study=study,
        status=Job.Status.SUCCEEDED,
        started_at=now,
        finished_at=now,
        result={
            "splits": 2,
            "seed": 0,
            "seeds": [0],
            "results": [
                {
                    "predictor": p,
                    "condition": c,
                    "mae": mae,
                    "sd_seeds": 0.001,
                    "ci_low": lo,
                    "ci_high": hi,
                    "spearman": rho,
                    "wasserstein": w,
                    "seconds": s,
                }
                for p, c, mae, lo, hi, rho, w, s in rows
            ],
        },
    )


def _column(page, index: int) -> list[str]:
    return page.locator(f"#leaderboard-table tbody tr td:nth-child({index})").all_inner_texts()


@WIDTHS
def test_benchmark_form_families_defaults_estimate_and_a_keyboard_sortable_table(
    browser_session, researcher, small_study, no_worker, phone
):
    _benchmark_with_results(small_study)
    page, watch = _open(browser_session, researcher, f"/research/studies/{small_study.slug}/benchmark/", phone)
    families = page.locator("fieldset.predictor-family")
    assert families.count() >= 6
    expect(page.locator("#family-baselines legend")).to_have_text("Baselines")
    expect(page.locator("#family-baselines .family-blurb")).to_be_visible()
    expect(page.locator("label[for=p-feature_ramp]")).to_contain_text("≈ 0.99 s per split × seed")
    checked = page.locator("input[name=predictors]:checked").count()
    total = page.locator("input[name=predictors]").count()
    assert 5 <= checked < total
    expect(page.locator("#p-ensemble_ramp")).not_to_be_checked()
    expect(page.locator("#p-feature_ramp")).to_be_checked()
    # The estimate follows what is ticked and the splits and seeds.
    estimate = page.locator("#benchmark-estimate")
    before = estimate.inner_text()
    assert before.startswith("about ")
    page.locator("#p-ensemble_ramp").check()  # 5.31 s per split × seed: + 531 s at 10 × 10
    after = estimate.inner_text()
    assert after != before and after.endswith("min")
    page.locator("#seeds").fill("1")
    expect(estimate).not_to_have_text(after)
    page.locator("#p-safetyanalyst_fit").check()
    expect(estimate).to_contain_text("plus 1 predictor(s) not measured")

    # Sort by MAE with the keyboard: Tab to its heading button, Enter, then Space to reverse.
    assert _column(page, 1) == ["global_mean", "feature_ramp", "annotator_mean", "uniform_random"]
    mae = page.locator("#leaderboard-table th", has_text="MAE").first
    mae.locator("button").focus()
    page.keyboard.press("Enter")
    expect(mae).to_have_attribute("aria-sort", "ascending")
    assert _column(page, 1) == ["feature_ramp", "annotator_mean", "global_mean", "uniform_random"]
    page.keyboard.press("Space")
    expect(mae).to_have_attribute("aria-sort", "descending")
    assert _column(page, 1) == ["uniform_random", "global_mean", "annotator_mean", "feature_ramp"]
    # Text columns sort too; an empty Spearman ("—") stays last either way.
    page.locator("#leaderboard-table th", has_text="Predictor").locator("button").click()
    assert _column(page, 1) == ["annotator_mean", "feature_ramp", "global_mean", "uniform_random"]
    expect(mae).to_have_attribute("aria-sort", "none")
    spearman = page.locator("#leaderboard-table th", has_text="Spearman").locator("button")
    spearman.click()
    assert _column(page, 1)[-1] == "global_mean"
    spearman.click()
    assert _column(page, 1)[-1] == "global_mean"
    _fits_the_screen(page)
    watch.assert_clean()


@WIDTHS
def test_a_predictions_upload_says_which_scale_it_assumed(
    browser_session, researcher, small_study, no_worker, tmp_path, phone
):
    page, watch = _open(browser_session, researcher, f"/research/studies/{small_study.slug}/benchmark/", phone)
    percent = tmp_path / "percent.csv"
    percent.write_text("prompt,prediction\n" + "".join(f"{p},{v}\n" for p, v in zip("12345", (50, 12.5, 80, 0, 100))))
    page.locator("#predictions").set_input_files(str(percent))
    page.locator("#splits").fill("2")
    with page.expect_response(re.compile(r"/benchmark/start/$")) as answer:
        page.locator("#start-benchmark").click()
    assert answer.value.status == 200
    note = page.locator("#predictions-scale")
    expect(note).to_contain_text("read on the 0–100 scale (a value above 1 was found)")
    job = Job.objects.get(pk=no_worker[-1])
    expect(page.locator(f"#job-{job.pk}")).to_be_visible()
    unit = tmp_path / "unit.csv"
    unit.write_text("prompt,prediction\n" + "".join(f"{p},{v}\n" for p, v in zip("12345", (0.5, 0.1, 0.8, 0, 1))))
    page.locator("#predictions").set_input_files(str(unit))
    with page.expect_response(re.compile(r"/benchmark/start/$")):
        page.locator("#start-benchmark").click()
    expect(note).to_contain_text("read on the 0–1 scale (no value above 1)")
    _fits_the_screen(page)
    watch.assert_clean()


# ---- admin ----------------------------------------------------------------------------------------------


@WIDTHS
def test_admin_shows_job_progress_as_a_percentage(browser_session, staff, small_study, phone):
    job = Job.objects.create(kind="export", study=small_study, params={"format": "long-csv"})
    claimed = services.job_claim(job_id=job.pk)
    services.job_progress(job=claimed, fraction=0.375, message="half way")
    page, _watch = _open(browser_session, staff, "/admin/jobs/job/", phone)
    expect(page.locator(f"#result_list tr:has(a[href$='/{job.pk}/change/']) td.field-percent")).to_have_text("38%")
    page.goto(f"/admin/jobs/job/{job.pk}/change/")
    expect(page.locator(".field-percent .readonly")).to_have_text("38%")


def _fresh_study(owner):
    from annotation.models import Study

    return Study.objects.create(slug="fresh", title="Fresh study", owner=owner)


# Other htmx forms: (page, how to send a bad request, where the message appears, what it says).
OTHER_FORMS = {
    "collaborators": (
        "/research/studies/{slug}/collaborators/",
        lambda page: (
            page.locator("#collaborator-username").fill("nobody-here"),
            page.locator("#collaborators form").first.get_by_role("button").click(),
        ),
        "#collaborators form + [data-auto-error]",
        "nobody-here",
    ),
    "export": (
        "/research/studies/{slug}/datasets/",
        lambda page: (
            page.locator(".export-formats form input[name=format]").first.evaluate("input => input.value = 'bogus'"),
            page.locator(".export-formats form").first.locator("button[type=submit]").click(),
        ),
        ".export-formats form + [data-auto-error]",
        "format",
    ),
    "prompt bank": (
        "/research/studies/{fresh}/prompts/upload/",
        lambda page: (
            page.locator("#bank-file").evaluate("input => input.removeAttribute('required')"),
            page.locator("#bank-upload-form button[type=submit]").click(),
        ),
        "#bank-error",
        "Choose a file",
    ),
    "recruitment lookup": (
        "/research/studies/{slug}/participants/lookup/",
        lambda page: (
            page.locator("#lookup-ids").evaluate("area => { area.removeAttribute('required'); area.value = ' '; }"),
            page.get_by_role("button", name="Look up").click(),
        ),
        "form:has(#lookup-ids) + [data-auto-error]",
        "",
    ),
}


@WIDTHS
@pytest.mark.parametrize("form", list(OTHER_FORMS))
def test_other_htmx_forms_show_their_errors_next_to_the_form(
    browser_session, researcher, small_study, no_worker, form, phone
):
    path, act, where, says = OTHER_FORMS[form]
    fresh = _fresh_study(researcher)
    page, watch = _open(browser_session, researcher, path.format(slug=small_study.slug, fresh=fresh.slug), phone)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        act(page)
    assert 400 <= answer.value.status < 500, answer.value.status
    box = page.locator(where)
    expect(box).to_be_visible()
    expect(box.locator("[role=alert]")).to_have_count(1)
    expect(box).to_contain_text(says)
    expect(page.locator("#htmx-error")).to_be_hidden()
    _fits_the_screen(page)
    assert Job.objects.count() == 0
    watch.assert_clean(allow_console=(f"status of {answer.value.status}",))
