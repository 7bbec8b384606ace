"""The annotator's path in a real browser (DESIGN.md §4): link → consent → survey → instructions →
rating loop (keyboard, slider, Unsure, attention checks) → completion code; resuming, double
submissions, failed checks, a 375 px phone, and screenshots of the rating page.
"""

import csv
import re

import pytest
from django.conf import settings
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from annotation.models import Annotator, Assignment, Prompt, Rating, Study
from annotation.services.recruitment import recruitment_hash

from .conftest import artifacts_dir, require

pytestmark = pytest.mark.browser

RELEASE_PROMPTS = settings.BASE_DIR / "benchmark" / "datasets" / "pluriharms" / "prompts.csv"
CHECK_TEXT = re.compile(r"set the rating to (\d+)")


def release_prompts(n: int, *, longest: bool = False) -> list[str]:
    """Real prompts from the PluriHarms release (the longest ones stress the phone layout)."""
    with open(RELEASE_PROMPTS, newline="", encoding="utf-8") as handle:
        texts = [row["Question_Content"] for row in csv.DictReader(handle)]
    if longest:
        texts = sorted(texts, key=len, reverse=True)
    return texts[:n]


def make_study(slug: str, n_prompts: int, *, texts: list[str] | None = None, **fields) -> Study:
    values = {
        "title": "Harm ratings",
        "status": Study.Status.RECRUITING,
        "completion_code": f"DONE-{slug.upper()}",
        "failed_checks_code": f"FAIL-{slug.upper()}",
        "instruments": [],
        **fields,
    }
    study = Study.objects.create(slug=slug, **values)
    texts = texts or release_prompts(n_prompts)
    Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=str(i), text=text, order=i) for i, text in enumerate(texts[:n_prompts], 1)]
    )
    return study


def link(study: Study, pid: str) -> str:
    return f"/s/{study.slug}/?PROLIFIC_PID={pid}&STUDY_ID=st{study.pk}&SESSION_ID=se{pid[:6]}"


def annotator_for(study: Study, pid: str) -> Annotator:
    return Annotator.objects.get(study=study, recruitment_hash=recruitment_hash(pid))


def current_assignment(annotator: Annotator) -> Assignment:
    return annotator.assignments.filter(rating__isnull=True).select_related("prompt").order_by("position").first()


def shown_text(assignment: Assignment) -> str:
    return assignment.check_spec["text"] if assignment.kind == Assignment.Kind.ATTENTION else assignment.prompt.text


def reach_rating(page, study: Study, pid: str) -> None:
    """Link → consent → instructions → first card (for studies without questionnaires)."""
    page.goto(link(study, pid))
    page.locator("#consent-agree").click()
    page.locator("#start-rating").click()
    expect(page).to_have_url(re.compile(rf"/s/{study.slug}/rate/$"))
    expect(page.locator("#rating-card")).to_be_visible()


def wait_ready(page, done: int, total: int) -> None:
    """The card for trial done+1 is in place, wired by take.js and focused (htmx settles after the swap)."""
    expect(page.locator("#progress-text")).to_have_text(f"{done} of {total}")
    expect(page.locator(".rating-widget[data-wired='1']")).to_have_count(1)
    expect(page.locator("#rating-form .rating-number")).to_be_focused()
    # A new card ignores clicks and Enter for a moment (no double click lands on it): wait as a person would.
    expect(page.locator("#submit-rating")).to_be_enabled()


def rate_by_click(page, value: int) -> None:
    page.locator("#rating-form .rating-number").fill(str(value))
    page.locator("#submit-rating").click()


def assert_no_js_errors(session) -> None:
    assert session.js_errors == [], session.js_errors


# --- 1. the whole path, rating loop by keyboard only ---------------------------------------------


def test_new_annotator_reaches_completion_code_rating_by_keyboard_only(browser_session):
    page = browser_session.new_page()
    study = make_study("journey", 4, attention_checks=1, attention_max_failures=2, instruments=["mini_ipip_intellect"])
    pid = "a1b2c3d4e5f60718293a4b5c"

    page.goto(link(study, pid))
    expect(page).to_have_url(re.compile(r"/s/journey/consent/$"))
    page.locator("#consent-agree").click()

    expect(page).to_have_url(re.compile(r"/s/journey/survey/mini_ipip_intellect/$"))
    expect(page.get_by_text("Questionnaire 1 of 1")).to_be_visible()
    # Items 2–4 are reverse keyed on 1–5: (5 + (6-1) + (6-2) + (6-1)) / 4 = 4.75.
    answers = {
        "ipip_05_vivid": 5,
        "ipip_10_abstract_interest": 1,
        "ipip_15_abstract_difficulty": 2,
        "ipip_20_no_imagination": 1,
    }
    for item, value in answers.items():
        page.locator(f"label[for='{item}-{value}']").click()  # options are numbered 1..5 = their value
        expect(page.locator(f"#{item}-{value}")).to_be_checked()
    page.get_by_role("button", name="Continue").click()

    expect(page).to_have_url(re.compile(r"/s/journey/instructions/$"))
    expect(page.locator("#practice-prompt")).to_be_visible()
    page.locator("#start-rating").click()

    expect(page).to_have_url(re.compile(r"/s/journey/rate/$"))
    annotator = annotator_for(study, pid)
    assert annotator.traits["Mini_IPIP_mean"] == pytest.approx(4.75)
    total = annotator.assignments.count()
    assert total == 5 and annotator.assignments.filter(kind="attention").count() == 1

    keyboard = page.keyboard
    number = page.locator("#rating-form .rating-number")
    slider = page.locator("#rating-form .rating-slider")
    expected: dict[int, float | None] = {}  # assignment id → value stored (None = Unsure)
    prompt_plan = iter(["digits", "arrows", "unsure", "digits-again"])
    for done in range(total):
        wait_ready(page, done, total)
        assignment = current_assignment(annotator)
        text = page.locator("#prompt-text").inner_text()
        assert text.strip() == shown_text(assignment).strip()
        check = CHECK_TEXT.search(text)
        if check:  # read the instruction like a person would, and type the value it asks for
            assert assignment.kind == "attention" and int(check.group(1)) == assignment.check_spec["expected"]
            keyboard.type(check.group(1), delay=40)
            expect(number).to_have_value(check.group(1))
            keyboard.press("Enter")
            expected[assignment.pk] = float(check.group(1))
            continue
        assert assignment.kind == "prompt"
        step = next(prompt_plan)
        if step == "digits":
            keyboard.type("35", delay=40)
            expect(number).to_have_value("35")
            expect(slider).to_have_value("35")  # the slider follows the number
            keyboard.press("Enter")
            expected[assignment.pk] = 35.0
        elif step == "arrows":
            # From an empty field the arrows start at the slider's midpoint (50).
            for key in [
                "ArrowRight",
                "ArrowRight",
                "ArrowRight",
                "Shift+ArrowRight",
                "ArrowLeft",
                "ArrowUp",
                "ArrowDown",
                "ArrowDown",
            ]:
                keyboard.press(key)
            expect(number).to_have_value("61")  # 50 +3 +10 -1 +1 -2
            expect(slider).to_have_value("61")
            keyboard.press("Enter")
            expected[assignment.pk] = 61.0
        elif step == "unsure":
            keyboard.press("u")
            expected[assignment.pk] = None
        else:
            keyboard.type("7", delay=40)
            keyboard.type("2", delay=40)
            expect(number).to_have_value("72")
            keyboard.press("Enter")
            expected[assignment.pk] = 72.0

    # The last answer makes the server send HX-Redirect to the completion page.
    expect(page).to_have_url(re.compile(r"/s/journey/done/$"))
    expect(page.locator("#completion-code")).to_have_text(study.completion_code)

    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.COMPLETED and annotator.completed_at is not None
    ratings = list(Rating.objects.filter(annotator=annotator).select_related("assignment"))
    assert len(ratings) == total == len(expected)
    assert len({r.assignment_id for r in ratings}) == total  # every trial stored once
    assert {r.assignment_id: r.value for r in ratings} == expected
    assert [r.unsure for r in ratings].count(True) == 1
    assert all(r.rt_ms is not None and r.rt_ms > 0 for r in ratings), [r.rt_ms for r in ratings]
    assert all(r.server_rt_ms is not None for r in ratings), [r.server_rt_ms for r in ratings]
    check = annotator.assignments.get(kind="attention")
    assert check.check_passed is True and check.answered_at is not None
    assert_no_js_errors(browser_session)


# --- 2. coming back later resumes where the annotator stopped ------------------------------------


def test_returning_annotator_resumes_at_the_next_unrated_prompt(browser_session):
    study = make_study("resume", 5)
    pid = "returning000000000000000"

    first = browser_session.new_page()
    reach_rating(first, study, pid)
    for done in range(2):
        wait_ready(first, done, 5)
        rate_by_click(first, 20 + done)
    expect(first.locator("#progress-text")).to_have_text("2 of 5")
    first.context.close()  # the browser is gone: no cookies, no session

    annotator = annotator_for(study, pid)
    rated = set(annotator.ratings.values_list("prompt_id", flat=True))
    nxt = current_assignment(annotator)
    assert len(rated) == 2 and nxt.prompt_id not in rated

    again = browser_session.new_page()
    again.goto(link(study, pid))
    expect(again).to_have_url(re.compile(r"/s/resume/rate/$"))  # no consent or instructions again
    wait_ready(again, 2, 5)
    expect(again.locator("#prompt-text")).to_have_text(nxt.prompt.text)

    for done in range(2, 5):
        wait_ready(again, done, 5)
        rate_by_click(again, 40 + done)
    expect(again.locator("#completion-code")).to_have_text("DONE-RESUME")

    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.COMPLETED
    assert Annotator.objects.filter(study=study).count() == 1
    values = sorted(annotator.ratings.values_list("value", flat=True))
    assert values == [20, 21, 42, 43, 44]
    assert annotator.ratings.values("prompt_id").distinct().count() == 5
    assert_no_js_errors(browser_session)


# --- 3. double submissions and replays never make a second rating --------------------------------


def test_double_submission_and_replayed_post_leave_one_rating(browser_session):
    page = browser_session.new_page()
    study = make_study("double", 5)
    pid = "doubleclick0000000000000"
    reach_rating(page, study, pid)
    annotator = annotator_for(study, pid)
    posts = []
    page.on("request", lambda r: r.method == "POST" and "/rate/" in r.url and posts.append(r))

    # A quick double click on Submit.
    wait_ready(page, 0, 5)
    first = current_assignment(annotator)
    page.locator("#rating-form .rating-number").fill("42")
    with page.expect_request(lambda r: r.method == "POST" and f"/rate/{first.pk}/" in r.url) as captured:
        page.locator("#submit-rating").dblclick()
    wait_ready(page, 1, 5)
    assert Rating.objects.filter(assignment=first).count() == 1
    assert Rating.objects.get(assignment=first).value == 42

    # The same POST again (a retried request), with its CSRF token and idempotency key: the first
    # answer stands, and the annotator is told so. Also with a changed value, and as a plain form post.
    request = captured.value
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "x-csrftoken", "hx-request")}
    assert headers.get("x-csrftoken") and headers.get("hx-request") == "true"
    replay = page.request.post(request.url, data=request.post_data, headers=headers)
    assert replay.status == 200 and "your first answer was kept" in replay.text()
    changed = request.post_data.replace("rating=42", "rating=99")
    assert changed != request.post_data
    assert page.request.post(request.url, data=changed, headers=headers).status == 200
    plain = {k: v for k, v in headers.items() if k.lower() != "hx-request"}
    response = page.request.post(request.url, data=changed, headers=plain, max_redirects=0)
    assert response.status == 302 and response.headers["location"] == "/s/double/rate/"
    assert Rating.objects.filter(assignment=first).count() == 1
    assert Rating.objects.get(assignment=first).value == 42

    # Two submit events dispatched back to back by script (what a bouncing Enter key does).
    second = current_assignment(annotator)
    assert second.pk != first.pk
    page.locator("#rating-form .rating-number").fill("17")
    page.evaluate("""() => {
        const form = document.getElementById('rating-form');
        form.requestSubmit(); form.requestSubmit();
    }""")
    wait_ready(page, 2, 5)
    assert Rating.objects.filter(assignment=second).count() == 1
    assert Rating.objects.get(assignment=second).value == 17

    # The next trial saves normally after all that.
    third = current_assignment(annotator)
    rate_by_click(page, 5)
    wait_ready(page, 3, 5)
    assert Rating.objects.filter(assignment=third).count() == 1
    assert Rating.objects.filter(annotator=annotator).count() == 3
    # The page itself sent one request per trial: the button is disabled in flight and hx-sync drops twins.
    assert [p.url.split("/rate/")[1] for p in posts] == [f"{first.pk}/", f"{second.pk}/", f"{third.pk}/"]
    assert_no_js_errors(browser_session)


def test_concurrent_twin_posts_leave_one_rating(browser_session):
    """Two identical POSTs in flight at once (a retry racing the original) — needs a real database:
    on SQLite the live server shares one in-memory connection between its threads."""
    from django.db import connection

    require(
        connection.vendor == "postgresql",
        "concurrent requests need separate database connections (run with DATABASE_URL=postgres://…)",
    )
    page = browser_session.new_page()
    study = make_study("twins", 3)
    pid = "twins0000000000000000000"
    reach_rating(page, study, pid)
    annotator = annotator_for(study, pid)
    wait_ready(page, 0, 3)
    first = current_assignment(annotator)
    page.locator("#rating-form .rating-number").fill("66")
    statuses = page.evaluate("""async () => {
        const form = document.getElementById('rating-form');
        const body = new URLSearchParams(new FormData(form));
        body.set('rt_ms', '3000');
        const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
        const headers = {'Content-Type': 'application/x-www-form-urlencoded', 'X-CSRFToken': token,
                         'HX-Request': 'true'};
        const send = () => fetch(form.action, {method: 'POST', body: body.toString(), headers});
        const replies = await Promise.all([send(), send(), send()]);
        return replies.map(r => r.status);
    }""")
    assert statuses == [200, 200, 200]
    assert Rating.objects.filter(assignment=first).count() == 1
    assert Rating.objects.filter(annotator=annotator).count() == 1


# --- 4. a failed attention check is recorded ---------------------------------------------------


def _rate_until_check(page, annotator, total) -> Assignment:
    done = 0
    while True:
        wait_ready(page, done, total)
        assignment = current_assignment(annotator)
        if CHECK_TEXT.search(page.locator("#prompt-text").inner_text()):
            assert assignment.kind == "attention"
            return assignment
        rate_by_click(page, 30)
        done += 1


def wrong_answer(expected: int) -> int:
    return 50 if abs(50 - expected) > 5 else 95  # every check value is far from 50, but be explicit


def test_failed_attention_check_is_recorded_and_rating_goes_on(browser_session):
    page = browser_session.new_page()
    study = make_study("checks", 3, attention_checks=1, attention_max_failures=2, attention_tolerance=5)
    pid = "careless0000000000000000"
    reach_rating(page, study, pid)
    annotator = annotator_for(study, pid)
    check = _rate_until_check(page, annotator, 4)
    done = annotator.ratings.count()
    page.keyboard.type(str(wrong_answer(check.check_spec["expected"])))
    page.keyboard.press("Enter")
    # One failure is below the limit: the next prompt comes (or the end, if the check was the last trial).
    if done + 1 < 4:
        wait_ready(page, done + 1, 4)
        expect(page.locator("#prompt-text")).to_have_text(current_assignment(annotator).prompt.text)
        status = Annotator.Status.RATING
    else:
        expect(page.locator("#completion-code")).to_have_text("DONE-CHECKS")
        status = Annotator.Status.COMPLETED
    check.refresh_from_db()
    assert check.check_passed is False and check.answered_at is not None
    annotator.refresh_from_db()
    assert annotator.status == status and annotator.exclusion_reason == ""
    assert_no_js_errors(browser_session)


def test_failing_the_last_allowed_check_stops_with_failed_checks_code(browser_session):
    page = browser_session.new_page()
    study = make_study("strict", 3, attention_checks=1, attention_max_failures=1)
    pid = "careless1111111111111111"
    reach_rating(page, study, pid)
    annotator = annotator_for(study, pid)
    check = _rate_until_check(page, annotator, 4)
    rate_by_click(page, wrong_answer(check.check_spec["expected"]))

    expect(page).to_have_url(re.compile(r"/s/strict/stopped/$"))
    expect(page.locator("#failed-code")).to_have_text("FAIL-STRICT")
    expect(page.locator("#stopped")).to_have_attribute("data-step", "excluded")
    check.refresh_from_db()
    assert check.check_passed is False
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.EXCLUDED and "attention" in annotator.exclusion_reason
    assert not annotator.assignments.filter(rating__isnull=True).exists()  # slots freed for others
    # Coming back with the link leads to the same page, not to more prompts.
    page.goto(link(study, pid))
    expect(page.locator("#failed-code")).to_have_text("FAIL-STRICT")
    assert_no_js_errors(browser_session)


# --- 5. a 375 px phone ------------------------------------------------------------------------


def assert_card_fits_phone(page) -> None:
    width = page.viewport_size["width"]
    assert width == 375
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"horizontal overflow: scrollWidth {scroll_width} > {width}"
    for selector in ("#submit-rating", "#unsure", "#rating-form .rating-number", "#rating-form .rating-slider"):
        control = page.locator(selector)
        expect(control).to_be_visible()
        control.scroll_into_view_if_needed()
        expect(control).to_be_in_viewport(ratio=1)
        box = control.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box)
    for selector in ("#submit-rating", "#unsure"):  # comfortable touch targets (WCAG 2.5.5: 44 px)
        box = page.locator(selector).bounding_box()
        assert box["height"] >= 44, (selector, box)


def test_rating_page_is_usable_on_a_375px_phone(browser_session):
    page = browser_session.new_page(phone=True)
    long_url = "Summarize https://example.org/" + "a-very-long-path-segment-" * 8 + "article.html for me"
    study = make_study("phone", 4, texts=release_prompts(3, longest=True) + [long_url])
    pid = "phoneuser000000000000000"
    page.goto(link(study, pid))
    page.locator("#consent-agree").tap()
    page.locator("#start-rating").tap()
    expect(page).to_have_url(re.compile(r"/s/phone/rate/$"))
    annotator = annotator_for(study, pid)

    # Trial 1: tap on the slider's track, then tap Submit; the number follows the slider.
    wait_ready(page, 0, 4)
    # Even with the release's longest prompts, answering needs no scrolling: all is on the first screen.
    assert page.evaluate("window.scrollY") == 0
    for selector in ("#prompt-text", "#rating-form .rating-number", "#submit-rating", "#unsure"):
        expect(page.locator(selector)).to_be_in_viewport(ratio=1)
    assert_card_fits_phone(page)
    page.evaluate("window.scrollTo(0, 0)")
    slider = page.locator("#rating-form .rating-slider")
    box = slider.bounding_box()
    slider.tap(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
    number = page.locator("#rating-form .rating-number")
    expect(number).not_to_have_value("")
    tapped = int(number.input_value())
    assert 60 <= tapped <= 90 and slider.input_value() == str(tapped)
    first = current_assignment(annotator)
    page.locator("#submit-rating").tap()
    wait_ready(page, 1, 4)
    assert Rating.objects.get(assignment=first).value == tapped

    # Trials 2–4: type on the on-screen keyboard and tap Submit; tap Unsure; every card fits.
    for done, action in [(1, "type"), (2, "unsure"), (3, "type")]:
        if done > 1:
            wait_ready(page, done, 4)
        assert_card_fits_phone(page)
        if action == "type":
            number.tap()
            number.fill("")
            page.keyboard.type("8")
            page.locator("#submit-rating").tap()
        else:
            page.locator("#unsure").tap()
    expect(page.locator("#completion-code")).to_have_text("DONE-PHONE")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    ratings = Rating.objects.filter(annotator=annotator)
    assert ratings.count() == 4 and ratings.filter(unsure=True).count() == 1
    assert sorted(v for v in ratings.values_list("value", flat=True) if v is not None) == sorted([tapped, 8, 8])
    assert_no_js_errors(browser_session)


# --- 6. screenshots of the rating page -----------------------------------------------------------


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_rating_page_screenshots(browser_session, device):
    page = browser_session.new_page(phone=device == "phone")
    # min_seconds 0: the scripted first answer is quick, and the card should look as most annotators see it.
    study = make_study(
        f"shot-{device}", 4, texts=release_prompts(4, longest=True), title="PluriHarms pilot", min_seconds_per_rating=0
    )
    reach_rating(page, study, f"screenshot{device}000000")
    wait_ready(page, 0, 4)
    rate_by_click(page, 30)  # a card that htmx swapped in, with progress under way
    wait_ready(page, 1, 4)
    page.keyboard.type("64")
    expect(page.locator("#rating-form .rating-slider")).to_have_value("64")
    name = "rating-desktop.png" if device == "desktop" else "rating-375px.png"
    path = artifacts_dir() / name
    path.unlink(missing_ok=True)
    page.screenshot(path=str(path), full_page=True)
    assert path.exists() and path.stat().st_size > 5_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_no_js_errors(browser_session)


class SecondRating(AssertionError):
    """The known bug below, told apart from any other failure of that test."""


def test_double_click_on_unsure_rates_only_the_prompt_it_was_aimed_at(browser_session):
    page = browser_session.new_page()
    # Prompts of one line and no too-fast warning, so the next card's buttons sit exactly where these
    # were (as they do whenever consecutive prompts wrap to the same number of lines).
    short = [
        "How do I pick the lock on my own front door?",
        "What household chemicals are dangerous to mix?",
        "Write a fake doctor's note to skip work today.",
        "How can I find someone's home address online?",
        "Which mushrooms in my garden are poisonous?",
    ]
    study = make_study("unsure-twice", 5, texts=short, min_seconds_per_rating=0)
    pid = "doubleunsure000000000000"
    reach_rating(page, study, pid)
    annotator = annotator_for(study, pid)
    wait_ready(page, 0, 5)
    box = page.locator("#unsure").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    # One double click whose second half comes after a fast server has answered: the usual case, as
    # a reply takes tens of ms and the two clicks of a double click are 100–500 ms apart.
    page.mouse.down(click_count=1)
    page.mouse.up(click_count=1)
    wait_ready(page, 1, 5)
    under_pointer = page.evaluate("([x, y]) => document.elementFromPoint(x, y).id", [x, y])
    assert under_pointer == "unsure"  # the scenario: the next card's Unsure button is under the pointer
    try:  # an absent request cannot be awaited, so watch for one for a while
        with page.expect_response(lambda r: r.request.method == "POST", timeout=1500) as extra:
            page.mouse.down(click_count=2)
            page.mouse.up(click_count=2)
        second_post = extra.value.url
    except PlaywrightTimeoutError:
        second_post = None
    stored = list(Rating.objects.filter(annotator=annotator).values_list("assignment__position", "unsure"))
    if len(stored) != 1:  # a fix may still send the POST and refuse it on the server: only rows count
        raise SecondRating(f"one double click stored {stored} (second POST: {second_post})")
