"""The jury page with a drawn jury (issue 13), in Chromium at 1280 and 375 px: the plot is drawn, the page
fits the screen, and it has no serious or critical axe-core violation."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from jobs.models import Job
from jobs.services import job_run

from .axe import assert_no_serious_axe_violations
from .test_researcher_pages import OVERFLOW, signed_in_page, wait_for_plots


@pytest.fixture
def drawn_jury(release_study):
    params = {"mode": "census", "census": "us_acs_2022_adults", "juries": 40, "fits": 1}
    job = Job.objects.create(
        kind="jury",
        study=release_study,
        params={
            "mix": {},
            "size": 1000,
            "threshold": 50.0,
            "predictor": "",
            "ratings": False,
            "seed": 0,
            "validation": True,
            **params,
        },
    )
    done = job_run(job_id=job.pk)
    assert done.status == Job.Status.SUCCEEDED, done.error
    return done


@pytest.mark.parametrize("phone", [False, True], ids=["1280", "375"])
def test_jury_page_with_a_result_fits_and_is_accessible(browser_session, researcher, release_study, drawn_jury, phone):
    page = signed_in_page(browser_session, researcher, phone=phone)
    page.goto(reverse("benchmark:jury", args=[release_study.slug]))
    wait_for_plots(page)
    expect(page.locator("#jury-prompts tbody tr")).to_have_count(150)
    expect(page.locator("#jury-verdict")).to_contain_text("naive answer")
    found = page.evaluate(OVERFLOW, page.viewport_size["width"])
    assert max(found["scroll"], found["inner"]) <= page.viewport_size["width"], found
    assert_no_serious_axe_violations(page, context=f"jury, {'375' if phone else '1280'}")
