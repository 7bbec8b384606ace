"""The study builder in Chromium: a section saves without a reload, a bad value comes back in its form,
and an htmx form's 4xx answer lands in the form's own error box (static/js/site.js)."""

import re

import pytest
from playwright.sync_api import expect

from annotation.models import Study

from .test_csp import Watch, logged_in_page

pytestmark = pytest.mark.browser


def test_export_error_is_shown_next_to_the_form(browser_session, researcher, small_study):
    page = logged_in_page(browser_session, researcher)
    watch = Watch(page)
    page.goto(f"/research/studies/{small_study.slug}/")
    page.locator("#export-format option").first.evaluate("(o) => { o.value = 'bogus<b>'; o.selected = true; }")
    with page.expect_response(re.compile(r"/export/$")) as answer:
        page.get_by_role("button", name="Start export").click()
    assert answer.value.status == 400
    box = page.locator("#export-error")
    expect(box).to_contain_text("unknown export format")
    expect(box).to_contain_text("bogus<b>")  # as text
    assert box.locator("b").count() == 0
    expect(page.locator("#htmx-error")).to_be_empty()
    box.locator("[data-dismiss-error]").click()
    expect(box).to_be_empty()
    watch.assert_clean(allow_console=("status of 400",))


def test_builder_sections_save_in_place_and_show_their_errors(browser_session, researcher, small_study):
    page = logged_in_page(browser_session, researcher)
    watch = Watch(page)
    page.goto(f"/research/studies/{small_study.slug}/edit/")
    page.evaluate("window.__same_page = true")
    section = page.locator("#section-basics")
    section.locator("input[name='basics-title']").fill("Renamed in the browser")
    with page.expect_response(re.compile(r"/edit/basics/$")):
        section.get_by_role("button", name=re.compile("Save")).click()
    expect(page.locator("#section-basics .saved")).to_have_text("Saved.")
    assert page.evaluate("window.__same_page") is True  # no reload
    assert Study.objects.get(pk=small_study.pk).title == "Renamed in the browser"

    attention = page.locator("#section-attention")
    attention.locator("input[name='attention-attention_checks']").fill("-3")
    attention.locator("input[name='attention-attention_checks']").evaluate("(e) => e.removeAttribute('min')")
    with page.expect_response(re.compile(r"/edit/attention/$")) as answer:
        attention.get_by_role("button", name=re.compile("Save")).click()
    assert answer.value.status == 400
    expect(page.locator("#section-attention [role=alert]")).to_contain_text("greater than or equal to 0")
    assert page.evaluate("window.__same_page") is True
    watch.assert_clean(allow_console=("status of 400",))
