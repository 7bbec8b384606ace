"""The prompt-selection page with a finished selection (issue 12; leaning toward a pilot's predicted
disagreement), in Chromium at 1280 and 375 px: the five plots and the pilot model's held-out rho are shown,
the page fits the screen, it has no serious or critical axe-core violation, and "Create a study from this
selection" answers in place."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from annotation.models import Study
from jobs.models import Job
from jobs.services import job_run

from .axe import assert_no_serious_axe_violations
from .test_researcher_pages import OVERFLOW, signed_in_page, wait_for_plots


@pytest.fixture
def finished_selection(release_study):
    job = Job.objects.create(
        kind="selection",
        study=release_study,
        params={
            "k": 50,
            "targets": "paper",
            "max_per_group": 2,
            "optimizer": "ga",
            "seed": 0,
            # the study's own ratings as the pilot (features only: no MiniLM in a page test)
            "pilot": release_study.slug,
            "disagreement_weight": 0.05,
            "embedding": False,
        },
    )
    done = job_run(job_id=job.pk)
    assert done.status == Job.Status.SUCCEEDED, done.error
    return done


@pytest.mark.parametrize("phone", [False, True], ids=["1280", "375"])
def test_selection_page_fits_is_accessible_and_creates_a_study(
    browser_session, researcher, release_study, finished_selection, phone
):
    page = signed_in_page(browser_session, researcher, phone=phone)
    page.goto(reverse("benchmark:selection", args=[release_study.slug]))
    wait_for_plots(page)
    expect(page.locator(".plot.js-plotly-plot")).to_have_count(5)  # objective + four distributions
    expect(page.locator("#selection-distances tbody tr")).to_have_count(4)
    expect(page.locator("#selection-heldout-rho")).to_contain_text("ρ = ")  # the pilot model's held-out check
    expect(page.locator("#pilot")).to_be_visible()
    found = page.evaluate(OVERFLOW, page.viewport_size["width"])
    assert max(found["scroll"], found["inner"]) <= page.viewport_size["width"], found
    assert_no_serious_axe_violations(page, context=f"selection, {'375' if phone else '1280'}")
    page.locator("#create-study").click()
    expect(page.locator("#selection-created-message")).to_contain_text("with 50 prompts")
    assert Study.objects.filter(meta__selected_from__job=finished_selection.pk).count() == 1
