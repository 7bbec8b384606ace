"""Browser tests: Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

One Chromium for the whole run of the browser tests, a fresh context (cookies, storage, viewport) per
test. Without /usr/bin/chromium the tests skip, unless PLURIHARMS_REQUIRE_SERVICES is set, in which case
they fail: CI must never pass by skipping them. We never run `playwright install` (DESIGN.md §8).
"""

import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("PLURIHARMS_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing: {why}")
    pytest.skip(why)


def artifacts_dir() -> Path:
    """PLURIHARMS_ARTIFACTS if set, else <repo>/artifacts/ (git-ignored); created on first use."""
    directory = Path(os.environ.get("PLURIHARMS_ARTIFACTS") or ROOT / "artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@contextmanager
def async_unsafe_allowed():
    """Playwright's sync API keeps an asyncio loop running in the test thread for as long as it lives,
    and Django refuses ORM calls (test setup, reading ratings back, flushing the database) from a
    thread with a running loop unless DJANGO_ALLOW_ASYNC_UNSAFE is set. Django reads the variable at
    each call, so it is set before the loop starts and removed when it stops: left set, it leaks into
    the `manage.py check --deploy` subprocess of tests/test_project.py, which then fails on async.E001.
    """
    name = "DJANGO_ALLOW_ASYNC_UNSAFE"
    before = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


# Package scope: one browser for all the tests of tests/browser, closed (and its event loop stopped)
# after the last of them, so that tests running later in the same session are not affected.
@pytest.fixture(scope="package")
def browser():
    require(CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with async_unsafe_allowed(), sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)  # lets the page fixture see whether the test failed
    return report


class BrowserSession:
    """Opens contexts for one test (desktop by default, or a phone) and closes them all at the end."""

    def __init__(self, browser, base_url: str):
        self.browser = browser
        self.base_url = base_url
        self.contexts = []
        self.js_errors: list[str] = []

    def new_page(self, *, phone: bool = False):
        options = {"base_url": self.base_url, "viewport": PHONE if phone else DESKTOP}
        if phone:
            options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
        context = self.browser.new_context(**options)
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.js_errors.append(f"pageerror: {error}"))
        page.on("console", self._console)
        return page

    def _console(self, message) -> None:
        url = (message.location or {}).get("url", "")
        if message.type != "error" or url.endswith("/favicon.ico"):  # the site has no icon; browsers ask anyway
            return
        self.js_errors.append(f"console: {message.text} ({url})")

    def close(self, *, failed_name: str | None = None):
        for index, context in enumerate(self.contexts):
            if failed_name:
                for page in context.pages:
                    try:
                        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"FAILED-{failed_name}-{index}")
                        page.screenshot(path=str(artifacts_dir() / f"{name}.png"), full_page=True)
                    except Exception:  # a screenshot is a courtesy; never hide the real failure
                        pass
            try:
                context.close()
            except Exception:  # already closed by the test (the resume test closes one on purpose)
                pass


@pytest.fixture
def browser_session(browser, live_server, transactional_db, request):
    """Committed data (transactional_db) so that the live server's thread sees what the test creates."""
    session = BrowserSession(browser, live_server.url)
    yield session
    report = getattr(request.node, "report_call", None)
    session.close(failed_name=request.node.name if report is not None and report.failed else None)
