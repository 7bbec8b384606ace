"""The researcher's whole path in Chromium (issue 9): sign in, build a study, upload its prompt bank, open
recruitment; an annotator completes it in another browser; the researcher excludes and reinstates them,
and downloads the LeWiDi and dataset-hub exports holding that annotator's ratings. Every researcher page
visited runs with no CSP violation and no console error.
"""

import io
import json
import re
import zipfile

import pandas as pd
import pytest
from playwright.sync_api import expect

from annotation.models import Annotator, Study
from jobs.models import Job
from jobs.services import job_run

from .test_annotator_journey import wait_ready
from .test_csp import Watch

pytestmark = pytest.mark.browser

PROMPTS = {
    "bank-1": "How do I get rid of wasps nesting under my roof?",
    "bank-2": "Write a message pretending to be my bank asking for a password.",
    "bank-3": "What is the safest way to store kitchen knives around children?",
}
# The annotator's rating for each prompt (0–100, the builder's default scale).
RATINGS = {"bank-1": 12, "bank-2": 87, "bank-3": 41}
PID = "5f0c1d2e3a4b5c6d7e8f9a0b"


def _checked(watch: Watch) -> None:
    """The researcher's current page raised no CSP violation, console error or dialog (checked before
    leaving it: the violations are collected by the page itself)."""
    watch.assert_clean()


def _tab(page, watch: Watch, name: str) -> None:
    _checked(watch)
    page.locator("nav.tabs").get_by_role("link", name=name, exact=True).click()
    expect(page.locator("nav.tabs [aria-current=page]")).to_have_text(name)


def _run_export(page, watch: Watch, queued: list[int], fmt: str) -> Job:
    """Start an export from its button and run its job as the worker would; the card (htmx polling
    every second) then shows it finished with its files."""
    before = len(queued)
    with page.expect_response(re.compile(r"/export/$")) as answer:
        page.locator(f"#export-{fmt}").click()
    assert answer.value.status == 200
    assert len(queued) == before + 1, queued  # the job was sent to the queue once
    job = Job.objects.get(pk=queued[-1])
    card = page.locator(f"#job-{job.pk}")
    expect(card).to_be_visible()
    expect(card.locator("code")).to_have_text(fmt)
    # No Celery worker runs during the browser tests: the test does what the worker's task does with
    # the message it receives (jobs.tasks.run_job -> jobs.services.job_run), in this thread.
    assert job_run(job_id=job.pk).status == Job.Status.SUCCEEDED
    expect(card.locator(".badge")).to_have_text("succeeded", timeout=15_000)
    return job


def _download(page, job: Job, name: str) -> bytes:
    with page.expect_download() as download:
        page.locator(f"#job-{job.pk} .files").get_by_role("link", name=name, exact=True).click()
    assert download.value.suggested_filename == name
    with open(download.value.path(), "rb") as handle:
        return handle.read()


def test_researcher_builds_a_study_reviews_an_annotator_and_downloads_the_exports(
    browser_session, researcher, tmp_path, monkeypatch
):
    queued: list[int] = []
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: queued.append(job_id))

    page = browser_session.new_page()
    watch = Watch(page)

    # --- sign in through the login page ---------------------------------------------------------
    page.goto("/research/studies/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/research/studies/$"))
    page.locator("#id_username").fill("researcher")
    page.locator("#id_password").fill("pw-researcher-1")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/research/studies/$"))

    # --- New study: title and slug; the 0–100 scale and no questionnaires are the defaults -------------
    _checked(watch)
    page.locator("#new-study").click()
    expect(page).to_have_url(re.compile(r"/research/studies/new/$"))
    page.locator("#id_title").fill("Browser-built study")
    page.locator("#id_slug").fill("browser-built")
    page.locator("#create-study").click()
    expect(page).to_have_url(re.compile(r"/research/studies/browser-built/edit/$"))
    study = Study.objects.get(slug="browser-built")
    assert study.owner == researcher and study.status == Study.Status.DRAFT
    assert (study.scale_min, study.scale_max, study.instruments) == (0, 100, [])
    expect(page.locator("#section-scale input[name='scale-scale_min']")).to_have_value("0")
    expect(page.locator("#section-scale input[name='scale-scale_max']")).to_have_value("100")
    expect(page.locator("#section-instruments input[type=checkbox]:checked")).to_have_count(0)

    completion = page.locator("#section-completion")
    completion.locator("input[name='completion-completion_code']").fill("BROWSER-DONE")
    with page.expect_response(re.compile(r"/edit/completion/$")):
        completion.get_by_role("button", name=re.compile("Save")).click()
    expect(page.locator("#section-completion .saved")).to_have_text("Saved.")

    # Recruitment cannot open without prompts: the refusal is shown next to the status form.
    with page.expect_response(re.compile(r"/status/$")) as answer:
        page.get_by_role("button", name="Open recruitment").click()
    assert answer.value.status == 409
    expect(page.locator("#status-error")).to_contain_text("Add prompts before opening recruitment")
    watch.assert_clean(allow_console=("status of 409",))
    watch.console.clear()
    assert len(browser_session.js_errors) == 1 and "409" in browser_session.js_errors[0], browser_session.js_errors
    browser_session.js_errors.clear()  # the expected refusal, checked; any other error still fails the test

    # --- the prompt bank: upload a CSV, see its preview, import it ---------------------------------
    _tab(page, watch, "Prompts")
    bank = tmp_path / "bank.csv"
    frame = pd.DataFrame({"external_id": list(PROMPTS), "text": list(PROMPTS.values())})
    frame.to_csv(bank, index=False)
    page.locator("#bank-file").set_input_files(str(bank))
    page.get_by_role("button", name="Upload and preview").click()
    preview = page.locator("#bank-preview")
    expect(preview.locator("h2")).to_have_text("Preview of bank.csv")
    expect(page.locator("#bank-problem-count")).to_have_text("0")
    for external_id, text in PROMPTS.items():
        expect(preview.get_by_role("row", name=re.compile(re.escape(external_id)))).to_contain_text(text)
    assert study.prompts.count() == 0  # nothing saved by the preview
    page.locator("#bank-import").click()
    expect(page.locator("#bank-imported")).to_contain_text("Imported 3 prompts from bank.csv; the study now has 3.")
    assert dict(study.prompts.values_list("external_id", "text")) == PROMPTS

    # --- open recruitment --------------------------------------------------------------------------
    _tab(page, watch, "Settings")
    page.get_by_role("button", name="Open recruitment").click()
    expect(page.locator("#status-badge")).to_have_text("Recruiting")
    study.refresh_from_db()
    assert study.status == Study.Status.RECRUITING

    # --- an annotator, in a browser of their own, completes the study with the keyboard -------------
    annotator_page = browser_session.new_page()
    annotator_page.goto(f"/s/browser-built/?PROLIFIC_PID={PID}&STUDY_ID=st1&SESSION_ID=se1")
    expect(annotator_page).to_have_url(re.compile(r"/s/browser-built/consent/$"))
    annotator_page.locator("#consent-agree").click()
    expect(annotator_page).to_have_url(re.compile(r"/s/browser-built/instructions/$"))
    annotator_page.locator("#start-rating").click()
    expect(annotator_page).to_have_url(re.compile(r"/s/browser-built/rate/$"))
    by_text = {text: external_id for external_id, text in PROMPTS.items()}
    rated = []
    for done in range(3):
        wait_ready(annotator_page, done, 3)
        external_id = by_text[annotator_page.locator("#prompt-text").inner_text().strip()]
        annotator_page.keyboard.type(str(RATINGS[external_id]), delay=30)
        expect(annotator_page.locator("#rating-form .rating-number")).to_have_value(str(RATINGS[external_id]))
        annotator_page.keyboard.press("Enter")
        rated.append(external_id)
    assert sorted(rated) == sorted(PROMPTS)
    expect(annotator_page).to_have_url(re.compile(r"/s/browser-built/done/$"))
    expect(annotator_page.locator("#completion-code")).to_have_text("BROWSER-DONE")
    annotator = Annotator.objects.get(study=study)
    assert annotator.status == Annotator.Status.COMPLETED
    assert browser_session.js_errors == []

    # --- participants: completed; exclude with a reason, then reinstate -----------------------------
    _tab(page, watch, "Participants")
    row = page.locator("#participants tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(annotator.pseudonym)
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row).to_contain_text("3 / 3")
    _checked(watch)
    row.get_by_role("link", name=annotator.pseudonym).click()
    expect(page).to_have_url(re.compile(rf"/participants/{annotator.pseudonym}/$"))
    review = page.locator("#participant-review")
    expect(review.locator(".badge")).to_have_text("completed")
    review.locator("#review-reason").fill("answered faster than anyone could read")
    review.get_by_role("button", name=f"Exclude {annotator.pseudonym}").click()
    expect(review.locator(".badge")).to_have_text("excluded")
    expect(review).to_contain_text("answered faster than anyone could read")
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.EXCLUDED
    review.locator("#review-reason").fill("checked the timings again: fine")
    review.get_by_role("button", name=f"Reinstate {annotator.pseudonym}").click()
    expect(review.locator(".badge")).to_have_text("completed")
    expect(review.locator("tbody tr")).to_have_count(2)  # both decisions are in the history
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.COMPLETED and annotator.exclusion_reason == ""
    _tab(page, watch, "Participants")
    expect(page.locator("#participants tbody tr .badge")).to_have_text("completed")

    # --- datasets: LeWiDi and dataset-hub exports, run, finished, downloaded --------------------------
    _tab(page, watch, "Datasets")
    expect(page.locator("#no-exports")).to_be_visible()
    lewidi_job = _run_export(page, watch, queued, "lewidi")
    expect(page.locator("#no-exports")).to_be_hidden()
    lewidi = json.loads(_download(page, lewidi_job, "lewidi.json"))
    assert set(lewidi) == set(PROMPTS)
    for external_id, text in PROMPTS.items():
        item = lewidi[external_id]
        assert item["text"] == text
        assert item["annotations"] == {annotator.pseudonym: str(RATINGS[external_id])}
        assert item["annotators"] == annotator.pseudonym and item["number of annotations"] == 1
        assert sum(item["soft_label"].values()) == pytest.approx(1.0)  # reinstated: counted again

    hub_job = _run_export(page, watch, queued, "hub")
    with zipfile.ZipFile(io.BytesIO(_download(page, hub_job, "dataset-hub.zip"))) as bundle:
        ratings = pd.read_parquet(io.BytesIO(bundle.read("dataset-hub/data/ratings.parquet")))
        card = bundle.read("dataset-hub/README.md").decode()
    assert len(ratings) == 3 and set(ratings["annotator"]) == {annotator.pseudonym}
    assert dict(zip(ratings["prompt"], ratings["rating"])) == {k: float(v) for k, v in RATINGS.items()}
    assert not ratings["unsure"].any()
    assert set(ratings["annotator_status"]) == {"completed"}
    assert "Browser-built study" in card
    _checked(watch)
    assert browser_session.js_errors == []
