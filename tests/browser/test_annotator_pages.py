"""Issue 10, the annotator's side, in a real browser at 1280 and 375 px: every annotator page passes axe-core
(no serious or critical violation), and each walk-through defect stays fixed."""

import re

import pytest
from playwright.sync_api import expect

from annotation.models import Annotator, Study
from annotation.surveys import DEFAULT_INSTRUMENTS

from .axe import assert_no_serious_axe_violations
from .test_annotator_journey import (
    CHECK_TEXT,
    annotator_for,
    assert_no_js_errors,
    current_assignment,
    link,
    make_study,
    wait_ready,
)

pytestmark = pytest.mark.browser

WIDTHS = [pytest.param(False, id="1280px"), pytest.param(True, id="375px")]
RETURN_URL = "https://app.prolific.com/submissions/complete?cc=DONE-X"


def width_name(page) -> str:
    return f"{page.viewport_size['width']} px"


def answer_survey_page(page) -> None:
    """Answer every question of the questionnaire page shown (the first option of each), then continue."""
    page.evaluate(
        """() => document.querySelectorAll("fieldset.survey-item").forEach(function (item) {
             var choice = item.querySelector("input[type=radio], input[type=checkbox]");
             if (choice) choice.checked = true;
           })"""
    )
    page.get_by_role("button", name="Continue").click()


@pytest.mark.parametrize("phone", WIDTHS)
def test_every_annotator_page_passes_axe(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    study = make_study(
        "axe",
        3,
        attention_checks=1,
        attention_max_failures=1,
        instruments=list(DEFAULT_INSTRUMENTS),
        completion_url=RETURN_URL,
    )
    where = width_name(page)

    page.goto(f"/s/{study.slug}/")  # no recruitment parameters: the refusal page
    expect(page.locator("#refused")).to_be_visible()
    assert_no_serious_axe_violations(page, context=f"link without parameters, {where}")
    browser_session.js_errors.clear()  # the browser logs the refusal's 400, as it should

    pid = "axe0000000000000000000" + ("p" if phone else "d")
    page.goto(link(study, pid))
    expect(page).to_have_url(re.compile(r"/consent/$"))
    assert_no_serious_axe_violations(page, context=f"consent, {where}")
    page.locator("#consent-agree").click()

    for key in DEFAULT_INSTRUMENTS:
        expect(page).to_have_url(re.compile(rf"/survey/{key}/$"))
        assert_no_serious_axe_violations(page, context=f"questionnaire {key}, {where}")
        answer_survey_page(page)

    expect(page).to_have_url(re.compile(r"/instructions/$"))
    assert_no_serious_axe_violations(page, context=f"instructions, {where}")
    page.locator("#start-rating").click()

    expect(page).to_have_url(re.compile(r"/rate/$"))
    annotator = annotator_for(study, pid)
    total = annotator.assignments.count()
    assert_no_serious_axe_violations(page, context=f"rating card (first, full page), {where}")
    done = 0
    while current_assignment(annotator).kind != "attention":
        page.locator("#rating-form .rating-number").fill("30")
        page.locator("#submit-rating").click()
        done += 1
        wait_ready(page, done, total)
        assert_no_serious_axe_violations(page, context=f"rating card (swapped in), {where}")
    expected = int(CHECK_TEXT.search(page.locator("#prompt-text").inner_text()).group(1))
    page.locator("#rating-form .rating-number").fill(str(50 if abs(50 - expected) > 5 else 95))
    page.locator("#submit-rating").click()
    expect(page).to_have_url(re.compile(r"/stopped/$"))
    assert_no_serious_axe_violations(page, context=f"stopped (failed checks), {where}")

    declined = "axe1111111111111111111" + ("p" if phone else "d")
    page.goto(link(study, declined))
    page.locator("#consent-decline").click()
    expect(page.locator("#decline-confirm")).to_be_visible()
    assert_no_serious_axe_violations(page, context=f"consent, asking once more, {where}")
    page.locator("#consent-decline-confirm").click()
    expect(page).to_have_url(re.compile(r"/stopped/$"))
    assert_no_serious_axe_violations(page, context=f"stopped (declined), {where}")

    done_study = make_study("axe-done", 1, completion_url=RETURN_URL)
    finisher = "axe2222222222222222222" + ("p" if phone else "d")
    page.goto(link(done_study, finisher))
    page.locator("#consent-agree").click()
    page.locator("#start-rating").click()
    page.locator("#rating-form .rating-number").fill("10")
    page.locator("#submit-rating").click()
    expect(page.locator("#completion-code")).to_be_visible()
    assert_no_serious_axe_violations(page, context=f"completion, {where}")

    full = make_study("axe-full", 2, max_annotators=0, completion_url=RETURN_URL)
    page.goto(link(full, "axe3333333333333333333"))
    expect(page.locator("#refused")).to_have_attribute("data-reason", "full")
    assert_no_serious_axe_violations(page, context=f"full study, {where}")
    assert [e for e in browser_session.js_errors if "status of 403" not in e] == [], browser_session.js_errors


def fail_check(page) -> None:
    expected = int(CHECK_TEXT.search(page.locator("#prompt-text").inner_text()).group(1))
    page.locator("#rating-form .rating-number").fill(str(50 if abs(50 - expected) > 5 else 95))
    page.locator("#submit-rating").click()


def rate_until_check(page, annotator, done: int, total: int) -> int:
    """Answer prompts (30) until the current trial is an attention check; the number answered so far."""
    while current_assignment(annotator).kind != "attention":
        page.locator("#rating-form .rating-number").fill("30")
        page.locator("#submit-rating").click()
        done += 1
        wait_ready(page, done, total)
    return done


# --- 1. attention checks -------------------------------------------------------------------------


@pytest.mark.parametrize("phone", WIDTHS)
def test_first_failed_check_is_said_on_the_next_card_and_stopped_page_links_back(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    study = make_study(
        "checks2",
        4,
        attention_checks=2,
        attention_max_failures=2,
        min_seconds_per_rating=0,
        completion_url="https://app.prolific.com/submissions/complete?cc=DONE-CHECKS2",
    )
    pid = "checks00000000000000000" + ("p" if phone else "d")
    page.goto(link(study, pid))
    page.locator("#consent-agree").click()
    page.locator("#start-rating").click()
    annotator = annotator_for(study, pid)
    total = annotator.assignments.count()
    wait_ready(page, 0, total)
    expect(page.locator("#check-warning")).to_have_count(0)
    done = rate_until_check(page, annotator, 0, total)
    check_text = page.locator("#prompt-text").inner_text()
    fail_check(page)
    done += 1
    wait_ready(page, done, total)
    warning = page.locator("#check-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("attention checks so far was not answered")
    expect(warning).to_contain_text("One more will end the study")
    assert check_text not in warning.inner_text()  # which item it was is not said
    assert_no_serious_axe_violations(page, context=f"card after a failed check, {width_name(page)}")
    # The warning is for the card right after the failure only.
    if current_assignment(annotator).kind != "attention":
        page.locator("#rating-form .rating-number").fill("30")
        page.locator("#submit-rating").click()
        done += 1
        wait_ready(page, done, total)
        expect(page.locator("#check-warning")).to_have_count(0)
    rate_until_check(page, annotator, done, total)
    fail_check(page)

    expect(page).to_have_url(re.compile(r"/s/checks2/stopped/$"))
    expect(page.locator("#failed-code")).to_have_text("FAIL-CHECKS2")
    back = page.locator("#return-link")
    expect(back).to_be_visible()
    expect(back).to_have_attribute("href", "https://app.prolific.com/submissions/complete?cc=FAIL-CHECKS2")
    assert_no_serious_axe_violations(page, context=f"stopped after failed checks, {width_name(page)}")
    assert_no_js_errors(browser_session)


# --- 5. the site name ----------------------------------------------------------------------------


@pytest.mark.parametrize("phone", WIDTHS)
def test_site_name_on_annotator_pages_is_not_a_link(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    study = make_study("brand", 2)
    page.goto(link(study, "brand000000000000000000" + ("p" if phone else "d")))
    expect(page).to_have_url(re.compile(r"/consent/$"))
    brand = page.locator("header .brand")
    expect(brand).to_have_text("pluriharms")
    assert brand.evaluate("element => element.tagName") == "SPAN"
    expect(page.locator("header a")).to_have_count(0)  # no way from a participant's page to the researcher login
    page.locator("#consent-agree").click()
    expect(page.locator("header a")).to_have_count(0)
    page.locator("#start-rating").click()
    expect(page.locator("#rating-card")).to_be_visible()
    expect(page.locator("header a")).to_have_count(0)


# --- 6. a study that cannot take anyone -----------------------------------------------------------


@pytest.mark.parametrize("phone", WIDTHS)
def test_full_or_empty_study_says_so_at_the_link_with_the_return_link(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    suffix = "p" if phone else "d"
    full = make_study("full", 2, max_annotators=1, completion_url="https://app.prolific.com/submissions/complete?cc=X1")
    # Someone arrives (not yet consented), someone else consents and takes the only place.
    early = "early00000000000000000" + suffix
    page.goto(link(full, early))
    expect(page).to_have_url(re.compile(r"/consent/$"))
    other = browser_session.new_page(phone=phone)
    other.goto(link(full, "taker00000000000000000" + suffix))
    other.locator("#consent-agree").click()
    expect(other).to_have_url(re.compile(r"/instructions/$"))
    # A newcomer, and the early arrival reopening the link, learn it before any consent form.
    for pid in ("late000000000000000000" + suffix, early):
        page.goto(link(full, pid))
        expect(page.locator("#refused")).to_have_attribute("data-reason", "full")
        expect(page.locator("h1")).to_have_text("This study is full")
        expect(page.locator("#return-link")).to_have_attribute("href", "https://app.prolific.com/submissions/complete")
        expect(page.locator("#consent-agree")).to_have_count(0)
    assert_no_serious_axe_violations(page, context=f"full study at the link, {width_name(page)}")

    empty = Study.objects.create(
        slug="empty", title="Nothing yet", status=Study.Status.RECRUITING, completion_url="https://example.org/back"
    )
    page.goto(link(empty, "empty00000000000000000" + suffix))
    expect(page.locator("#refused")).to_have_attribute("data-reason", "empty")
    expect(page.locator("#refused")).to_contain_text("nothing to rate")
    expect(page.locator("#return-link")).to_have_attribute("href", "https://example.org/back")
    assert not Annotator.objects.filter(study=empty).exists()
    assert_no_serious_axe_violations(page, context=f"study without prompts at the link, {width_name(page)}")


# --- 4. the rating card --------------------------------------------------------------------------

THUMB_OPACITY = "el => getComputedStyle(el, '::-webkit-slider-thumb').opacity"


def slider_state(page, prefix: str = "#rating-form ") -> tuple[str, str, str]:
    """(number box, slider value, whether the slider shows a value) of the widget under `prefix`."""
    slider = page.locator(f"{prefix}.rating-slider")
    shown = "shown" if slider.evaluate(THUMB_OPACITY) == "1" else "hidden"
    return page.locator(f"{prefix}.rating-number").input_value(), slider.input_value(), shown


@pytest.mark.parametrize("phone", WIDTHS)
def test_slider_shows_no_value_until_chosen_and_always_agrees_with_the_box(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    study = make_study("slider", 3, min_seconds_per_rating=0)
    page.goto(link(study, "slider0000000000000000" + ("p" if phone else "d")))
    page.locator("#consent-agree").click()
    page.locator("#start-rating").click()
    wait_ready(page, 0, 3)
    number, _, shown = slider_state(page)
    assert (number, shown) == ("", "hidden")  # no thumb at 50 while the box is empty
    page.locator("#rating-form .rating-number").fill("37")
    assert slider_state(page) == ("37", "37", "shown")
    page.locator("#rating-form .rating-number").fill("")
    assert slider_state(page)[::2] == ("", "hidden")
    page.locator("#rating-form .rating-number").fill("150")  # off the scale: the slider shows nothing either
    assert slider_state(page)[::2] == ("150", "hidden")
    page.locator("#rating-form .rating-number").fill("")
    # Choosing on the slider, even exactly where the hidden thumb sits, fills the box with that value.
    slider = page.locator("#rating-form .rating-slider")
    box = slider.bounding_box()
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    if phone:
        page.touchscreen.tap(*middle)
    else:
        page.mouse.click(*middle)
    number, value, shown = slider_state(page)
    assert number == value and shown == "shown" and 45 <= int(number) <= 55
    if phone:
        page.touchscreen.tap(box["x"] + box["width"] * 0.2, middle[1])
    else:
        page.mouse.click(box["x"] + box["width"] * 0.2, middle[1])
    number, value, shown = slider_state(page)
    assert number == value and shown == "shown" and 10 <= int(number) <= 30
    page.locator("#submit-rating").click()
    wait_ready(page, 1, 3)
    assert slider_state(page)[::2] == ("", "hidden")  # the next card starts empty again
    assert_no_js_errors(browser_session)


@pytest.mark.parametrize("phone", WIDTHS)
def test_practice_says_what_would_be_stored_and_enter_does_not_start(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    study = make_study("practice", 2)
    page.goto(link(study, "practice00000000000000" + ("p" if phone else "d")))
    page.locator("#consent-agree").click()
    expect(page).to_have_url(re.compile(r"/instructions/$"))
    practice = page.locator("#practice-rating")
    practice.fill("42")
    expect(page.locator("#practice-result")).to_have_text(
        "Your practice answer would have been stored as 42. It is not saved."
    )
    practice.press("Enter")
    expect(page).to_have_url(re.compile(r"/instructions/#?(practice-result)?$"))  # still reading the instructions
    expect(page.locator("#practice-result")).to_contain_text("stored as 42")
    practice.fill("4.5")
    practice.press("Enter")
    expect(page.locator("#practice-result")).to_have_text("The rating must be a whole number.")
    page.locator("#practice-unsure").click()
    expect(page.locator("#practice-result")).to_contain_text("stored as Unsure")
    assert annotator_for(study, "practice00000000000000" + ("p" if phone else "d")).status == "consented"
    assert_no_serious_axe_violations(page, context=f"instructions after practice, {width_name(page)}")
    page.locator("#start-rating").click()
    expect(page).to_have_url(re.compile(r"/rate/$"))
    assert_no_js_errors(browser_session)


RECORD_ARMING = """() => {
  window.__arming = [];
  document.addEventListener("htmx:afterSettle", function () {
    var b = document.getElementById("submit-rating");
    if (b) window.__arming.push({disabled: b.disabled, text: b.innerText.trim()});
  });
}"""


@pytest.mark.parametrize("phone", WIDTHS)
def test_arming_delay_is_visible_and_too_quick_warning_says_the_answer_was_saved(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    study = make_study("arming", 3, min_seconds_per_rating=60)
    pid = "arming0000000000000000" + ("p" if phone else "d")
    page.goto(link(study, pid))
    page.locator("#consent-agree").click()
    page.locator("#start-rating").click()
    wait_ready(page, 0, 3)
    page.evaluate(RECORD_ARMING)
    page.locator("#rating-form .rating-number").fill("20")
    page.locator("#rating-form .rating-number").press("Enter")
    # Right after the swap the buttons are disabled and say so (recorded as the card settled: no race with
    # the arming timer), then they are armed and say what they do.
    wait_ready(page, 1, 3)
    first = page.evaluate("window.__arming")[0]
    assert first["disabled"] is True and first["text"].startswith("Ready in a moment"), first
    expect(page.locator("#submit-rating")).to_have_accessible_name(re.compile(r"^Submit"))
    expect(page.locator("#submit-rating .arm-wait")).to_be_hidden()
    assert annotator_for(study, pid).ratings.count() == 1
    warning = page.locator("#too-fast")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("Your answer was saved")
    assert_no_serious_axe_violations(page, context=f"card with the too-quick warning, {width_name(page)}")
    assert_no_js_errors(browser_session)


@pytest.mark.parametrize("phone", WIDTHS)
def test_previous_answer_can_be_changed_once_from_the_next_card(browser_session, phone):
    from annotation.models import Rating, RatingRevision
    from annotation.selectors import ratings_frame

    page = browser_session.new_page(phone=phone)
    study = make_study("undo", 3, min_seconds_per_rating=0)
    pid = "undo000000000000000000" + ("p" if phone else "d")
    page.goto(link(study, pid))
    page.locator("#consent-agree").click()
    page.locator("#start-rating").click()
    annotator = annotator_for(study, pid)
    wait_ready(page, 0, 3)
    expect(page.locator("#previous-answer")).to_have_count(0)  # nothing to change on the first card
    first = current_assignment(annotator)
    page.locator("#rating-form .rating-number").fill("40")
    page.locator("#submit-rating").click()
    wait_ready(page, 1, 3)
    toggle = page.locator("#revise-toggle")
    expect(toggle).to_have_text("Change your previous answer (40)")
    toggle.click()
    revise = page.locator("#revise-value")
    revise.click()
    page.keyboard.type("65")  # digits typed here stay here (not sent to the new card's rating box)
    expect(revise).to_have_value("65")
    expect(page.locator("#rating-form .rating-number")).to_have_value("")
    assert_no_serious_axe_violations(page, context=f"card with the change-previous form open, {width_name(page)}")
    page.keyboard.press("Enter")
    expect(page.locator("#revised-notice")).to_contain_text("Your previous answer is now 65")
    expect(page.locator("#revise-form")).to_have_count(0)  # once only
    rating = Rating.objects.get(assignment=first)
    assert rating.value == 65 and not rating.unsure
    revision = RatingRevision.objects.get(rating=rating)
    assert (revision.original_value, revision.value) == (40, 65)
    # The new card still works by keyboard, and its own previous answer can be changed in turn.
    page.locator("#rating-form .rating-number").fill("10")
    page.locator("#submit-rating").click()
    wait_ready(page, 2, 3)
    expect(page.locator("#revise-toggle")).to_have_text("Change your previous answer (10)")
    frame = ratings_frame(study=study, traits=False, features=False).set_index("trial")
    assert frame.loc[first.position, "rating"] == 65 and bool(frame.loc[first.position, "revised"])
    assert frame["revised"].sum() == 1
    assert_no_js_errors(browser_session)


# --- 2. consent ------------------------------------------------------------------------------------


@pytest.mark.parametrize("phone", WIDTHS)
def test_consent_shows_duration_payment_contact_withdrawal_and_asks_before_declining(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    study = make_study(
        "consent",
        30,
        instruments=["demographics", "mfq20"],
        attention_checks=2,
        payment_text="£2.50, paid through Prolific within a week",
        contact_text="Dr Ada Example, ada@example.org",
        withdrawal_text="You may stop at any time; ask us to delete your answers until 1 March.",
    )
    suffix = "p" if phone else "d"
    page.goto(link(study, "consent000000000000000" + suffix))
    # 10 demographic items x 10 s + 20 MFQ items x 6 s + 30 prompts x 15 s + 2 checks x 10 s + 120 s = 810 s.
    expect(page.locator("#consent-duration")).to_have_text("About 14 minutes.")
    expect(page.locator("#consent-payment")).to_have_text("£2.50, paid through Prolific within a week")
    expect(page.locator("#consent-contact a")).to_have_attribute("href", "mailto:ada@example.org")
    expect(page.locator("#consent-withdrawal")).to_contain_text("delete your answers until 1 March")
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    page.locator("#consent-decline").click()
    confirm = page.locator("#decline-confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Are you sure")
    annotator = annotator_for(study, "consent000000000000000" + suffix)
    assert annotator.status == Annotator.Status.NEW  # asked, not ended
    assert_no_serious_axe_violations(page, context=f"consent asking once more, {width_name(page)}")
    page.locator("#consent-agree").click()  # changed their mind
    expect(page).to_have_url(re.compile(r"/survey/demographics/$"))
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.CONSENTED

    page.goto(link(study, "decline000000000000000" + suffix))
    page.locator("#consent-decline").click()
    page.locator("#consent-decline-confirm").click()
    expect(page.locator("#stopped")).to_have_attribute("data-step", "declined")
    assert annotator_for(study, "decline000000000000000" + suffix).status == Annotator.Status.DECLINED
    assert_no_js_errors(browser_session)


# --- 3. questionnaires ------------------------------------------------------------------------------

# The MFQ page's height in px, measured by this test: before issue 10, 3,843 at 1280 px and 9,217 at 375 px
# (the walk-through said 4,563); with the battery as a matrix on wide screens and one-item rows on a phone,
# 1,847 and 3,361. The bounds leave room for fonts, not for a return of the old layout.
MFQ_MAX_HEIGHT = {False: 2_300, True: 4_200}


@pytest.mark.parametrize("phone", WIDTHS)
def test_mfq_page_height(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    study = make_study("mfq", 2, instruments=["mfq20"])
    page.goto(link(study, "mfq0000000000000000000" + ("p" if phone else "d")))
    page.locator("#consent-agree").click()
    expect(page).to_have_url(re.compile(r"/survey/mfq20/$"))
    height = page.evaluate("document.documentElement.scrollHeight")
    print(f"MFQ page height at {width_name(page)}: {height} px")
    assert height <= MFQ_MAX_HEIGHT[phone]
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


SENSITIVE = ("Race_Ethnicity", "Gender", "Sexual_Orientation", "Political_Affiliation", "Religion_Importance", "Income")
PREFER_NOT = re.compile(r"prefer not to (answer|say)", re.IGNORECASE)


@pytest.mark.parametrize("phone", WIDTHS)
def test_demographics_prefer_not_other_text_single_hint_and_draft_survives_refresh(browser_session, phone):
    from annotation.models import SurveyResponse

    page = browser_session.new_page(phone=phone)
    study = make_study("demo", 2, instruments=["demographics"])
    pid = "demo000000000000000000" + ("p" if phone else "d")
    page.goto(link(study, pid))
    page.locator("#consent-agree").click()
    expect(page).to_have_url(re.compile(r"/survey/demographics/$"))
    for item in SENSITIVE:
        expect(page.locator(f"#item-{item} label.option").filter(has_text=PREFER_NOT)).to_have_count(1)
    race = page.locator("#item-Race_Ethnicity legend")
    assert race.inner_text().lower().count("all that apply") == 1  # no doubled hint
    expect(page.locator("#item-Age legend")).not_to_contain_text("all that apply")
    # "Other" comes with a text box.
    page.locator("label[for='Race_Ethnicity-7']").click()
    expect(page.locator("#Race_Ethnicity-7")).to_have_value("Other")
    page.locator("#Race_Ethnicity__other").fill("Pacific Islander")
    page.locator("#item-Gender label.option").filter(has_text="Prefer not to answer").click()
    page.locator("#item-Age label.option").first.click()
    assert_no_serious_axe_violations(page, context=f"demographics, {width_name(page)}")
    # A refresh keeps what was answered on the page.
    page.reload()
    expect(page.locator("#item-Gender input[value='Prefer not to answer']")).to_be_checked()
    expect(page.locator("#item-Race_Ethnicity input[value='Other']")).to_be_checked()
    expect(page.locator("#Race_Ethnicity__other")).to_have_value("Pacific Islander")
    expect(page.locator("#item-Age input").first).to_be_checked()
    for item in ("Sexual_Orientation", "Political_Affiliation", "Education", "Religion_Importance"):
        page.locator(f"#item-{item} label.option").last.click()
    for item in ("Social_Media_Frequency", "Toxicity_Experience", "Income"):
        page.locator(f"#item-{item} label.option").first.click()
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/instructions/$"))
    annotator = annotator_for(study, pid)
    answers = SurveyResponse.objects.get(annotator=annotator).answers
    assert answers["Race_Ethnicity"] == "Other" and answers["Race_Ethnicity__other"] == "Pacific Islander"
    assert answers["Gender"] == "Prefer not to answer" and answers["Sexual_Orientation"] == "Prefer not to answer"
    assert annotator.demographics["Race_Ethnicity"] == "Other" and "Race_Ethnicity__other" not in annotator.demographics
    assert_no_js_errors(browser_session)


@pytest.mark.parametrize("phone", WIDTHS)
def test_likert_battery_is_a_matrix_on_wide_screens_and_rows_on_a_phone(browser_session, phone):
    page = browser_session.new_page(phone=phone)
    study = make_study("matrix", 2, instruments=["mfq20"])
    page.goto(link(study, "matrix0000000000000000" + ("p" if phone else "d")))
    page.locator("#consent-agree").click()
    expect(page).to_have_url(re.compile(r"/survey/mfq20/$"))
    heads = page.locator(".matrix-head")
    expect(heads).to_have_count(2)  # the two parts of the MFQ have different scales
    first = page.locator("#mfq_01_emotionally-1").bounding_box()
    second = page.locator("#mfq_02_treated-1").bounding_box()
    row = [page.locator(f"#mfq_01_emotionally-{n}").bounding_box() for n in range(1, 7)]
    assert max(b["y"] for b in row) - min(b["y"] for b in row) < 2  # the item's options on one line
    if phone:
        expect(heads.first).to_be_hidden()
        expect(page.locator("#item-mfq_01_emotionally .scale-ends")).to_be_visible()
        legend = page.locator("#item-mfq_01_emotionally legend").bounding_box()
        assert legend["y"] + legend["height"] <= row[0]["y"]  # text above, options below: one item per row
    else:
        expect(heads.first).to_be_visible()
        assert abs(first["x"] - second["x"]) < 1  # columns line up under the heads
        legend = page.locator("#item-mfq_01_emotionally legend").bounding_box()
        assert legend["x"] + legend["width"] <= row[0]["x"]  # the statement beside its options
        expect(page.locator("#item-mfq_01_emotionally .scale-ends")).to_be_hidden()
    # Every option keeps its full label as its accessible name.
    expect(page.get_by_role("radio", name=re.compile(r"^0\s*Not at all relevant"))).to_have_count(10)
    expect(page.get_by_role("radio", name=re.compile(r"^3\s*Slightly agree$"))).to_have_count(10)
    page.locator("label[for='mfq_03_lovecountry-4']").click()
    page.reload()
    expect(page.locator("#mfq_03_lovecountry-4")).to_be_checked()
    assert_no_serious_axe_violations(page, context=f"MFQ matrix, {width_name(page)}")
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    assert_no_js_errors(browser_session)


@pytest.mark.parametrize("phone", WIDTHS)
def test_opening_recruitment_without_prompts_is_refused_in_the_form(browser_session, researcher, phone):
    from .test_csp import logged_in_page

    study = Study.objects.create(slug="no-prompts", title="No prompts", owner=researcher, instruments=[])
    page = logged_in_page(browser_session, researcher)
    if phone:
        page.set_viewport_size({"width": 375, "height": 740})
    page.goto(f"/research/studies/{study.slug}/edit/")
    with page.expect_response(re.compile(r"/status/$")) as answer:
        page.get_by_role("button", name="Open recruitment").click()
    assert answer.value.status == 409
    error = page.locator("#status-error")
    expect(error).to_contain_text("Add prompts before opening recruitment")
    expect(error).to_be_visible()
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT
    browser_session.js_errors.clear()  # the browser logs the expected 409
