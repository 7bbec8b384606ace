"""The shared accessibility helper (tests/browser/axe.py) can fail: it catches a serious violation, names it,
and passes a clean page. axe-core comes from inside the installed package (no network)."""

from pathlib import Path

import axe_playwright_python
import pytest

from .axe import assert_no_serious_axe_violations, serious_axe_violations

pytestmark = pytest.mark.browser

BROKEN = """<!doctype html><html lang="en"><head><title>t</title></head><body><main>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<label>Name <input id="n"></label><input id="unlabelled" type="text">
</main></body></html>"""
CLEAN = """<!doctype html><html lang="en"><head><title>t</title></head><body><main><h1>Hello</h1>
<label for="n">Name</label><input id="n" type="text"></main></body></html>"""


def test_axe_script_is_shipped_inside_the_package():
    script = Path(axe_playwright_python.__file__).parent / "axe.min.js"
    assert script.stat().st_size > 100_000 and script.read_text()[:20].startswith("/*! axe v4")


def test_helper_fails_on_a_serious_violation_and_names_it(browser):
    page = browser.new_page()
    try:
        page.set_content(BROKEN)
        ids = {v["id"] for v in serious_axe_violations(page)}
        assert {"image-alt", "label"} <= ids
        with pytest.raises(AssertionError) as failure:
            assert_no_serious_axe_violations(page, context="broken fixture")
        message = str(failure.value)
        assert "image-alt (critical)" in message and "#unlabelled" in message and "broken fixture" in message
    finally:
        page.close()


def test_helper_passes_a_clean_page(browser):
    page = browser.new_page()
    try:
        page.set_content(CLEAN)
        assert_no_serious_axe_violations(page, context="clean fixture")
    finally:
        page.close()
