"""Issue 10, the annotator's side, below the browser: consent settings and the duration estimate, one step of
undo (rating_revise), refusals at the link for a full or empty study, the platform return link, and the
failed-check warning (what it costs and what it says)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.consent import duration_minutes, duration_seconds
from annotation.models import Annotator, Assignment, Prompt, Rating, RatingRevision, Study
from annotation.selectors import ratings_frame
from annotation.services import recruitment
from annotation.services.rating import rating_submit
from annotation.services.revision import rating_revise
from config.errors import ApplicationError

HTMX = {"HTTP_HX_REQUEST": "true"}
WARNING_LOOKUP = re.compile(r'NOT "annotation_assignment"\."check_passed"')


def warning_lookups(queries) -> int:
    """The failed-check warning's own query (the hot path's SQL names the column unquoted)."""
    return sum(1 for q in queries.captured_queries if WARNING_LOOKUP.search(q["sql"]))


def make_study(slug="side", n=4, **fields) -> Study:
    values = {"title": "Side", "status": Study.Status.RECRUITING, "instruments": [], "min_seconds_per_rating": 0}
    study = Study.objects.create(slug=slug, **(values | fields))
    Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=f"p{i}", text=f"Prompt {i}", order=i) for i in range(1, n + 1)]
    )
    return study


def enter(client, study, pid):
    return client.get(
        reverse("take:enter", args=[study.slug]), {"PROLIFIC_PID": pid, "STUDY_ID": "st", "SESSION_ID": "se"}
    )


def rating_annotator(client, study, pid="side00000000000000000000") -> Annotator:
    enter(client, study, pid)
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    client.post(reverse("take:instructions", args=[study.slug]))
    return Annotator.objects.get(study=study, recruitment_hash=recruitment.recruitment_hash(pid))


def next_trial(annotator) -> Assignment:
    return annotator.assignments.filter(rating__isnull=True).order_by("position").first()


def answer(annotator, value, trial=None):
    trial = trial or next_trial(annotator)
    return trial, rating_submit(annotator=annotator, assignment_id=trial.pk, raw_value=str(value), unsure=False)


# --- consent ----------------------------------------------------------------------------------------


def test_duration_estimate_follows_instruments_prompts_and_checks(db):
    study = make_study(n=30, instruments=["demographics", "mfq20"], attention_checks=2)
    # demographics: 10 option items x 10 s; mfq20: 20 scale items x 6 s; 30 prompts x 15 s; 2 checks x 10 s; 120 s.
    assert duration_seconds(study) == 100 + 120 + 450 + 20 + 120
    assert duration_minutes(study) == 14  # 810 s rounded up
    study.design, study.prompts_per_annotator = Study.Design.PARTIAL, 10
    assert duration_seconds(study) == 100 + 120 + 150 + 20 + 120
    study.min_seconds_per_rating = 8  # 3 x 8 s beats 15 s per prompt
    assert duration_seconds(study) == 100 + 120 + 240 + 20 + 120


def test_consent_page_shows_duration_payment_contact_withdrawal(client, db):
    study = make_study(
        instruments=["mini_ipip_intellect"],
        payment_text="£2.50 through Prolific",
        contact_text="Dr Ada Example, ada@example.org",
        withdrawal_text="Close the page at any time; your answers so far are deleted on request.",
    )
    page = enter(client, study, "cons0000000000000000000a")
    page = client.get(page["Location"]).content.decode()
    assert f"About {duration_minutes(study)} minutes" in page
    assert "£2.50 through Prolific" in page and 'href="mailto:ada@example.org"' in page
    assert "answers so far are deleted on request" in page


def test_i_do_not_agree_asks_once_more_and_only_the_second_answer_ends(client, db):
    study = make_study()
    enter(client, study, "decl0000000000000000000a")
    url = reverse("take:consent", args=[study.slug])
    ask = client.post(url, {"consent": "ask-decline"})
    assert ask.status_code == 200 and 'id="decline-confirm"' in ask.content.decode()
    assert Annotator.objects.get(study=study).status == Annotator.Status.NEW
    done = client.post(url, {"consent": "decline"})
    assert done["Location"] == reverse("take:stopped", args=[study.slug])
    assert Annotator.objects.get(study=study).status == Annotator.Status.DECLINED


def test_consent_details_are_edited_in_the_consent_section(client, researcher):
    study = make_study(owner=researcher, status=Study.Status.DRAFT)
    client.force_login(researcher)
    data = {
        "consent-consent_text": "Please read.",
        "consent-payment_text": "£3",
        "consent-contact_text": "team@example.org",
        "consent-withdrawal_text": "Stop whenever you like.",
    }
    response = client.post(reverse("annotation:study_section_save", args=[study.slug, "consent"]), data, **HTMX)
    assert response.status_code == 200 and "Saved." in response.content.decode()
    study.refresh_from_db()
    assert (study.payment_text, study.contact_text, study.withdrawal_text) == (
        "£3",
        "team@example.org",
        "Stop whenever you like.",
    )
    edit = client.get(reverse("annotation:study_edit", args=[study.slug])).content.decode()
    assert "consent-payment_text" in edit and "15 s per prompt" in edit  # the assumptions are documented there


# --- undo ---------------------------------------------------------------------------------------------


def test_revise_changes_the_previous_answer_once_and_keeps_the_original(client, db):
    study = make_study()
    annotator = rating_annotator(client, study)
    first, _ = answer(annotator, 40)
    outcome = rating_revise(annotator=annotator, assignment_id=first.pk, raw_value="65", unsure=False)
    assert outcome.created
    rating = Rating.objects.get(assignment=first)
    assert (rating.value, rating.unsure) == (65, False)
    revision = RatingRevision.objects.get(rating=rating)
    assert (revision.original_value, revision.original_unsure, revision.value) == (40, False, 65)
    # The same change again (a retried request) is the same revision; another change is refused.
    again = rating_revise(annotator=annotator, assignment_id=first.pk, raw_value="65", unsure=False)
    assert not again.created and again.revision.pk == revision.pk
    with pytest.raises(ApplicationError, match="already changed that answer once") as refused:
        rating_revise(annotator=annotator, assignment_id=first.pk, raw_value="10", unsure=False)
    assert refused.value.status_code == 409
    assert RatingRevision.objects.count() == 1 and Rating.objects.get(assignment=first).value == 65


def test_revise_to_unsure_and_export_flag(client, db):
    study = make_study()
    annotator = rating_annotator(client, study)
    first, _ = answer(annotator, 40)
    rating_revise(annotator=annotator, assignment_id=first.pk, raw_value="", unsure=True)
    answer(annotator, 70)
    frame = ratings_frame(study=study, traits=False, features=False)
    assert frame["revised"].tolist() == [True, False]
    assert bool(frame["unsure"].iloc[0]) and frame["rating"].isna().iloc[0]


def test_only_the_immediately_previous_answer_while_rating(client, db):
    study = make_study(n=3)
    annotator = rating_annotator(client, study)
    first, _ = answer(annotator, 40)
    answer(annotator, 50)
    with pytest.raises(ApplicationError, match="Only your previous answer") as refused:
        rating_revise(annotator=annotator, assignment_id=first.pk, raw_value="60", unsure=False)
    assert refused.value.status_code == 409
    last, outcome = answer(annotator, 55)
    assert outcome.completed
    with pytest.raises(ApplicationError, match="not rating now"):
        rating_revise(annotator=annotator, assignment_id=last.pk, raw_value="60", unsure=False)
    with pytest.raises(ApplicationError) as missing:
        rating_revise(annotator=annotator, assignment_id=next_trial(annotator) or 10**9, raw_value="1", unsure=False)
    assert missing.value.status_code == 404
    assert not RatingRevision.objects.exists()


def test_revise_refuses_attention_checks_bad_values_and_someone_elses_answer(client, db):
    study = make_study(n=2, attention_checks=1, attention_max_failures=3)
    annotator = rating_annotator(client, study)
    check = annotator.assignments.get(kind="attention")
    answer(annotator, check.check_spec["expected"], trial=check)
    with pytest.raises(ApplicationError, match="cannot be changed"):
        rating_revise(annotator=annotator, assignment_id=check.pk, raw_value="1", unsure=False)
    trial, _ = answer(annotator, 30)
    with pytest.raises(ApplicationError, match="between 0 and 100"):
        rating_revise(annotator=annotator, assignment_id=trial.pk, raw_value="101", unsure=False)
    other = rating_annotator(client.__class__(), study, pid="other0000000000000000000")
    with pytest.raises(ApplicationError) as foreign:
        rating_revise(annotator=other, assignment_id=trial.pk, raw_value="1", unsure=False)
    assert foreign.value.status_code == 404
    assert not RatingRevision.objects.exists()


def test_revise_view_htmx_full_page_wrong_method_and_no_session(client, db):
    study = make_study()
    annotator = rating_annotator(client, study)
    first = next_trial(annotator)
    url = reverse("take:rate_submit", args=[study.slug, first.pk])
    card = client.post(url, {"rating": "40", "idempotency_key": "k1"}, **HTMX).content.decode()
    revise_url = reverse("take:revise", args=[study.slug, first.pk])
    assert f'hx-post="{revise_url}"' in card and "Change your previous answer (40)" in card
    assert client.get(revise_url).status_code == 405
    bad = client.post(revise_url, {"rating": "abc"}, **HTMX)
    assert bad.status_code == 400 and 'id="revise-error"' in bad.content.decode()
    ok = client.post(revise_url, {"rating": "65"}, **HTMX)
    assert ok.status_code == 200 and "Your previous answer is now <strong>65</strong>" in ok.content.decode()
    again = client.post(revise_url, {"rating": "70"})  # without htmx: back to the card, nothing changed
    assert again.status_code == 302 and Rating.objects.get(assignment=first).value == 65
    assert client.__class__().post(revise_url, {"rating": "1"}).status_code == 403


def test_the_next_card_knows_the_previous_trial_without_a_query(client, db):
    """The submission passes the rating it stored into the card: no query is added for the undo offer."""
    study = make_study()
    annotator = rating_annotator(client, study)
    trial = next_trial(annotator)
    url = reverse("take:rate_submit", args=[study.slug, trial.pk])
    with CaptureQueriesContext(connection) as queries:
        card = client.post(url, {"rating": "40", "idempotency_key": "k2"}, **HTMX).content.decode()
    assert "Change your previous answer (40)" in card
    assert not [q for q in queries.captured_queries if "ratingrevision" in q["sql"].lower()]
    assert warning_lookups(queries) == 0  # nor the failed-check warning's (asked only after an attention check)


# --- attention checks ---------------------------------------------------------------------------------


def test_failed_check_warning_on_the_next_card_only(client, db):
    study = make_study(n=3, attention_checks=1, attention_max_failures=3)
    annotator = rating_annotator(client, study)
    check = annotator.assignments.get(kind="attention")
    if not annotator.assignments.filter(position__gt=check.position).exists():  # check last: a prompt after it
        last_prompt = annotator.assignments.filter(kind="prompt").order_by("-position").first()
        positions = check.position, last_prompt.position
        Assignment.objects.filter(pk=check.pk).update(position=10_000)
        Assignment.objects.filter(pk=last_prompt.pk).update(position=positions[0])
        Assignment.objects.filter(pk=check.pk).update(position=positions[1])
        check.refresh_from_db()
    while next_trial(annotator).pk != check.pk:
        answer(annotator, 20)
    wrong = 50 if abs(50 - check.check_spec["expected"]) > 5 else 95
    with CaptureQueriesContext(connection) as queries:
        card = client.post(
            reverse("take:rate_submit", args=[study.slug, check.pk]),
            {"rating": str(wrong), "idempotency_key": "c1"},
            **HTMX,
        ).content.decode()
    assert warning_lookups(queries) == 0  # the submission's own counts say it: no query of its own
    assert 'id="check-warning"' in card and "2 more will end the study for you" in card
    assert check.check_spec["text"] not in card.split('id="check-warning"')[1].split("</p>")[0]
    assert "Change your previous answer" not in card  # an attention check's answer cannot be changed
    following = next_trial(annotator)
    card = client.post(
        reverse("take:rate_submit", args=[study.slug, following.pk]), {"rating": "5", "idempotency_key": "c2"}, **HTMX
    ).content.decode()
    assert 'id="check-warning"' not in card


# --- a study that cannot take anyone ------------------------------------------------------------------


def test_recruiting_study_without_prompts_admits_nobody(client, db):
    study = Study.objects.create(slug="empty", title="E", status=Study.Status.RECRUITING, instruments=[])
    response = enter(client, study, "empt0000000000000000000a")
    assert response.status_code == 403 and 'data-reason="empty"' in response.content.decode()
    assert not Annotator.objects.filter(study=study).exists()


def test_an_arrival_who_has_not_consented_learns_at_the_link_that_the_study_filled(client, db):
    study = make_study(max_annotators=1, completion_url="https://app.prolific.com/submissions/complete?cc=C1")
    assert enter(client, study, "wait0000000000000000000a").status_code == 302  # arrived, not consented
    other = client.__class__()
    enter(other, study, "take0000000000000000000a")
    other.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    again = enter(client, study, "wait0000000000000000000a")
    page = again.content.decode()
    assert again.status_code == 403 and 'data-reason="full"' in page
    assert 'href="https://app.prolific.com/submissions/complete"' in page


def test_platform_return_url_swaps_or_drops_the_code(db):
    study = Study(completion_url="https://app.prolific.com/submissions/complete?cc=DONE&x=1")
    assert recruitment.platform_return_url(study=study, code="FAIL") == (
        "https://app.prolific.com/submissions/complete?x=1&cc=FAIL"
    )
    assert recruitment.platform_return_url(study=study) == "https://app.prolific.com/submissions/complete?x=1"
    assert recruitment.platform_return_url(study=Study(completion_url="https://lab.example/back")) == (
        "https://lab.example/back"
    )
    assert recruitment.platform_return_url(study=Study()) == ""


# --- questionnaires -----------------------------------------------------------------------------------


def test_other_option_takes_a_text_kept_only_with_that_option():
    from annotation.surveys import answers_validate, instrument_load

    definition = instrument_load("demographics")
    answers, errors = answers_validate(
        definition, {"Race_Ethnicity": ["White", "Other"], "Race_Ethnicity__other": "  Pacific   Islander "}
    )
    assert answers["Race_Ethnicity"] == "White,Other" and answers["Race_Ethnicity__other"] == "Pacific Islander"
    answers, _ = answers_validate(definition, {"Race_Ethnicity": ["White"], "Race_Ethnicity__other": "ignored"})
    assert "Race_Ethnicity__other" not in answers  # the text goes with the option only
    answers, errors = answers_validate(definition, {"Gender": "Other", "Gender__other": "x" * 201})
    assert "Gender" not in answers and "200 characters" in errors["Gender"]
    _, errors = answers_validate(definition, {"Race_Ethnicity": ["White", "Prefer not to answer"]})
    assert "cannot be combined" in errors["Race_Ethnicity"]


def test_other_must_name_one_of_the_options_and_only_on_option_items():
    from annotation.surveys import instrument_validate

    base = {"key": "t", "version": "1", "title": "T", "source": "s", "instructions": "i"}
    with pytest.raises(ValueError, match="'other' must be one of the item's options"):
        instrument_validate(
            {**base, "items": [{"id": "a", "text": "A", "type": "single", "options": ["x", "y"], "other": "z"}]}
        )
    scale = {"min": 1, "max": 2}
    with pytest.raises(ValueError, match="a scale item cannot have 'other'"):
        instrument_validate(
            {**base, "scale": scale, "items": [{"id": "a", "text": "A", "type": "scale", "other": "x"}]}
        )


def test_demographics_text_beside_other_stays_out_of_the_annotator_demographics(client, db):
    from annotation.models import SurveyResponse

    study = make_study(instruments=["demographics"])
    enter(client, study, "demo0000000000000000000a")
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    page = client.get(reverse("take:survey", args=[study.slug, "demographics"])).content.decode()
    assert page.lower().count("all that apply") == 2  # once per multi item (race, orientation), not doubled
    data = {
        "Race_Ethnicity": "Other",
        "Race_Ethnicity__other": "Pacific Islander",
        "Gender": "Prefer not to answer",
        "Sexual_Orientation": "Prefer not to answer",
        "Age": "25-34 years old",
        "Political_Affiliation": "Prefer not to answer",
        "Education": "Bachelor’s degree",
        "Religion_Importance": "Prefer not to answer",
        "Social_Media_Frequency": "At least once a day",
        "Toxicity_Experience": "Not a problem",
        "Income": "I prefer not to answer.",
    }
    response = client.post(reverse("take:survey", args=[study.slug, "demographics"]), data)
    assert response.status_code == 302
    annotator = Annotator.objects.get(study=study)
    assert annotator.demographics["Race_Ethnicity"] == "Other" and "Race_Ethnicity__other" not in annotator.demographics
    assert SurveyResponse.objects.get(annotator=annotator).answers["Race_Ethnicity__other"] == "Pacific Islander"


@pytest.mark.parametrize("fmt", ["long-csv", "jsonl", "parquet", "hub"])
def test_exports_carry_the_final_value_and_the_revised_flag(client, db, tmp_path, fmt):
    import io
    import json as jsonlib
    import zipfile

    import pandas as pd

    from annotation.exports import export_study

    study = make_study()
    annotator = rating_annotator(client, study)
    first, _ = answer(annotator, 40)
    rating_revise(annotator=annotator, assignment_id=first.pk, raw_value="65", unsure=False)
    second, _ = answer(annotator, 70)
    paths = export_study(study=study, fmt=fmt, out_dir=tmp_path / fmt)
    if fmt == "long-csv":
        frame = pd.read_csv(next(p for p in paths if p.suffix == ".csv"))
    elif fmt == "jsonl":
        lines = next(p for p in paths if p.suffix == ".jsonl").read_text().splitlines()
        frame = pd.DataFrame([jsonlib.loads(line) for line in lines])
    elif fmt == "parquet":
        frame = pd.read_parquet(next(p for p in paths if p.suffix == ".parquet"))
    else:
        with zipfile.ZipFile(next(p for p in paths if p.suffix == ".zip")) as bundle:
            names = bundle.namelist()
            frame = pd.read_parquet(io.BytesIO(bundle.read(next(n for n in names if n.endswith("ratings.parquet")))))
            card = bundle.read(next(n for n in names if n.endswith("README.md"))).decode()
        assert "`revised`" in card and "changed this answer once" in card
    frame = frame.set_index("trial")
    assert frame.loc[first.position, "rating"] == 65 and bool(frame.loc[first.position, "revised"])
    assert frame.loc[second.position, "rating"] == 70 and not bool(frame.loc[second.position, "revised"])


def test_practice_without_javascript_says_what_would_be_stored(client, db):
    study = make_study()
    enter(client, study, "prac0000000000000000000a")
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    url = reverse("take:instructions", args=[study.slug])
    assert "would have been stored as <strong>42</strong>" in client.get(url, {"practice": "42"}).content.decode()
    assert "stored as <strong>Unsure</strong>" in client.get(url, {"practice_unsure": "1"}).content.decode()
    assert "between 0 and 100" in client.get(url, {"practice": "120"}).content.decode()
    assert Annotator.objects.get(study=study).status == Annotator.Status.CONSENTED  # nothing started or stored
