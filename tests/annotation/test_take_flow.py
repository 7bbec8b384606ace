"""The annotator's path on the server: every view, its refusals, and the never-twice rating rule."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from annotation.models import Annotator, Assignment, Prompt, Rating, Study
from annotation.services.assignment import reservations_release
from annotation.services.recruitment import recruitment_hash

pytestmark = pytest.mark.django_db

PID = "5f3c2a9e8b7d6c5b4a392817"


@pytest.fixture
def study(researcher):
    study = Study.objects.create(
        slug="harm",
        title="Harm study",
        status=Study.Status.RECRUITING,
        owner=researcher,
        completion_code="C0MPLETE",
        failed_checks_code="FAILCHK",
        completion_url="https://example.org/done?cc=C0MPLETE",
        instruments=[],
        min_seconds_per_rating=2.0,
    )
    Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=str(i), text=f"Prompt number {i}", order=i) for i in range(1, 6)]
    )
    return study


def link(study, pid=PID, **extra):
    params = {"PROLIFIC_PID": pid, "STUDY_ID": "st123", "SESSION_ID": "se456", **extra}
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/s/{study.slug}/?{query}"


def start_rating(client, study, pid=PID) -> Annotator:
    client.get(link(study, pid))
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    client.post(reverse("take:instructions", args=[study.slug]))
    annotator = Annotator.objects.get(recruitment_hash=recruitment_hash(pid))
    assert annotator.status == Annotator.Status.RATING
    return annotator


def current(annotator) -> Assignment:
    return annotator.assignments.filter(rating__isnull=True).order_by("position").first()


def submit(client, study, assignment, htmx=True, **data):
    data.setdefault("rating", "40")
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(reverse("take:rate_submit", args=[study.slug, assignment.pk]), data, **headers)


# --- recruitment ---------------------------------------------------------------------------


def test_link_creates_pseudonymous_annotator_and_goes_to_consent(client, study):
    response = client.get(link(study))
    assert response.status_code == 302 and response["Location"] == reverse("take:consent", args=["harm"])
    annotator = Annotator.objects.get()
    assert annotator.pseudonym == "P0001" and annotator.status == "new"
    assert annotator.recruitment_hash == recruitment_hash(PID) and PID not in annotator.recruitment_hash
    stored = " ".join(str(getattr(annotator, f.attname)) for f in Annotator._meta.concrete_fields)
    assert PID not in stored  # the raw id is nowhere in the row
    # STUDY_ID and SESSION_ID are kept as keyed hashes only, like the participant id.
    assert annotator.platform_study_hash == recruitment_hash("st123")
    assert annotator.platform_session_hash == recruitment_hash("se456")
    assert "st123" not in annotator.platform_study_hash and "se456" not in annotator.platform_session_hash


@pytest.mark.parametrize(
    "query,words",
    [
        ("", "needs the link from the recruitment platform"),
        ("?PROLIFIC_PID=abc", "missing STUDY_ID, SESSION_ID"),
        ("?PROLIFIC_PID=a%20b%3Cscript%3E&STUDY_ID=s&SESSION_ID=t", "PROLIFIC_PID is not valid"),
        ("?PROLIFIC_PID=" + "x" * 65 + "&STUDY_ID=s&SESSION_ID=t", "PROLIFIC_PID is not valid"),
    ],
)
def test_missing_or_malformed_parameters_get_a_clear_page(client, study, query, words):
    response = client.get(f"/s/harm/{query}")
    assert response.status_code == 400 and words in response.content.decode()
    assert Annotator.objects.count() == 0


@pytest.mark.parametrize("status,words", [("paused", "paused"), ("closed", "closed"), ("draft", "not open yet")])
def test_closed_paused_or_draft_study_refuses_politely(client, study, status, words):
    Study.objects.filter(pk=study.pk).update(status=status)
    response = client.get(link(study))
    assert response.status_code == 403 and f"This study is {words}" in response.content.decode()
    assert Annotator.objects.count() == 0


def test_full_study_refuses_new_annotators(client, study):
    Study.objects.filter(pk=study.pk).update(max_annotators=1)
    client.get(link(study))
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})  # a place is taken at consent
    response = type(client)().get(link(study, pid="another0000000000000000a"))
    assert response.status_code == 403 and "all the participants it needs" in response.content.decode()
    assert Annotator.objects.count() == 1


def test_unknown_study_is_404(client):
    assert client.get("/s/nope/?PROLIFIC_PID=a&STUDY_ID=b&SESSION_ID=c").status_code == 404


def test_reentering_resumes_mid_way_and_completed_sees_code_again(client, study):
    annotator = start_rating(client, study)
    first = current(annotator)
    submit(client, study, first)
    other_browser = type(client)()
    response = other_browser.get(link(study))
    assert response["Location"] == reverse("take:rate", args=["harm"])
    page = other_browser.get(reverse("take:rate", args=["harm"]))
    assert "1 of 5" in page.content.decode() and current(annotator).prompt.text in page.content.decode()
    for _ in range(4):
        submit(other_browser, study, current(annotator))
    annotator.refresh_from_db()
    assert annotator.status == "completed"
    again = type(client)()
    assert again.get(link(study))["Location"] == reverse("take:done", args=["harm"])
    done = again.get(reverse("take:done", args=["harm"]))
    assert 'id="completion-code">C0MPLETE<' in done.content.decode()
    assert "https://example.org/done?cc=C0MPLETE" in done.content.decode()
    assert Annotator.objects.count() == 1


# --- consent and instructions --------------------------------------------------------------


def test_consent_page_and_choices(client, study):
    client.get(link(study))
    url = reverse("take:consent", args=["harm"])
    page = client.get(url)
    assert page.status_code == 200 and b'value="agree"' in page.content and b"<html" in page.content
    assert client.put(url).status_code == 405
    bad = client.post(url, {"consent": "maybe"})
    assert bad.status_code == 400 and b"Please choose" in bad.content
    response = client.post(url, {"consent": "agree"})
    assert response["Location"] == reverse("take:instructions", args=["harm"])
    assert Annotator.objects.get().consented_at is not None


def test_declining_ends_politely_and_is_recorded(client, study):
    client.get(link(study))
    response = client.post(reverse("take:consent", args=["harm"]), {"consent": "decline"})
    assert response["Location"] == reverse("take:stopped", args=["harm"])
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"chose not to take part" in page.content
    assert Annotator.objects.get().status == "declined"
    # Going back to the consent page does not undo the decision.
    client.post(reverse("take:consent", args=["harm"]), {"consent": "agree"})
    assert Annotator.objects.get().status == "declined"


def test_instructions_show_anchors_and_practice_then_allocate(client, study):
    client.get(link(study))
    client.post(reverse("take:consent", args=["harm"]), {"consent": "agree"})
    page = client.get(reverse("take:instructions", args=["harm"])).content.decode()
    assert "What&#x27;s the weather today in Seattle?" in page
    assert "How do I traffic children across international borders?" in page
    assert 'id="practice-prompt"' in page
    client.post(reverse("take:instructions", args=["harm"]))
    client.post(reverse("take:instructions", args=["harm"]))  # a second click allocates nothing more
    annotator = Annotator.objects.get()
    assert annotator.assignments.count() == 5 and annotator.status == "rating"


@pytest.mark.parametrize("name", ["take:consent", "take:instructions", "take:rate", "take:done", "take:stopped"])
def test_pages_without_session_are_refused(client, study, name):
    response = client.get(reverse(name, args=["harm"]))
    assert response.status_code == 403 and b"Please open the study again" in response.content


def test_forged_session_value_is_refused(client, study):
    other = Study.objects.create(slug="other", title="Other", status="recruiting")
    stranger = Annotator.objects.create(study=other, pseudonym="P0001", status="rating")
    session = client.session
    session[f"annotator:{study.slug}"] = stranger.pk  # an annotator of another study
    session.save()
    assert client.get(reverse("take:rate", args=["harm"])).status_code == 403


def test_steps_redirect_to_where_the_annotator_belongs(client, study):
    start_rating(client, study)
    for name in ("take:consent", "take:instructions", "take:done"):
        response = client.get(reverse(name, args=["harm"]))
        assert response.status_code == 302 and response["Location"] == reverse("take:rate", args=["harm"])


# --- the rating loop -----------------------------------------------------------------------


def test_rate_page_full_and_fragment(client, study):
    start_rating(client, study)
    full = client.get(reverse("take:rate", args=["harm"])).content.decode()
    assert "<html" in full and 'name="rating"' in full and 'name="unsure"' in full and 'type="range"' in full
    assert 'for="rating"' in full  # the number field has a label
    fragment = client.get(reverse("take:rate", args=["harm"]), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment and fragment.strip().startswith('<section class="card take rating-card"')


def test_submit_stores_rating_with_both_times_and_returns_next_card(client, study):
    annotator = start_rating(client, study)
    client.get(reverse("take:rate", args=["harm"]))  # shown: the server clock starts
    first = current(annotator)
    response = submit(client, study, first, rating="37", rt_ms="4321")
    assert response.status_code == 200 and b"<html" not in response.content
    assert b"1 of 5" in response.content
    rating = Rating.objects.get()
    assert rating.value == 37 and not rating.unsure and rating.rt_ms == 4321
    assert rating.server_rt_ms is not None and rating.prompt == first.prompt
    assert Assignment.objects.get(pk=first.pk).answered_at is not None
    assert current(annotator).pk != first.pk


def test_plain_form_post_redirects(client, study):
    annotator = start_rating(client, study)
    response = submit(client, study, current(annotator), htmx=False, rating="10")
    assert response.status_code == 302 and response["Location"] == reverse("take:rate", args=["harm"])


def test_unsure_is_stored_without_value(client, study):
    annotator = start_rating(client, study)
    submit(client, study, current(annotator), rating="", unsure="1")
    rating = Rating.objects.get()
    assert rating.unsure and rating.value is None


def test_double_submission_leaves_one_rating(client, study):
    annotator = start_rating(client, study)
    first = current(annotator)
    submit(client, study, first, rating="20", idempotency_key="k1")
    again = submit(client, study, first, rating="90", idempotency_key="k1")
    assert again.status_code == 200 and b"already rated; your first answer was kept" in again.content
    assert Rating.objects.count() == 1 and Rating.objects.get().value == 20


@pytest.mark.parametrize(
    "value,message",
    [
        ("150", "The rating must be between 0 and 100."),
        ("-1", "The rating must be between 0 and 100."),
        ("abc", "The rating must be a number from 0 to 100."),
        ("nan", "The rating must be a number from 0 to 100."),
        ("inf", "The rating must be a number from 0 to 100."),
        ("", "Choose a rating from 0 to 100, or mark Unsure."),
        ("50.5", "The rating must be a whole number."),
    ],
)
def test_bad_values_get_400_with_message_and_nothing_written(client, study, value, message):
    annotator = start_rating(client, study)
    response = submit(client, study, current(annotator), rating=value)
    assert response.status_code == 400 and message in response.content.decode()
    assert 'id="rating-form"' in response.content.decode()  # the card is shown again to correct
    full = submit(client, study, current(annotator), htmx=False, rating=value)
    assert full.status_code == 400 and b"<html" in full.content
    assert Rating.objects.count() == 0


def test_another_annotators_assignment_is_404_and_nothing_written(client, study):
    mine = start_rating(client, study)
    other_client = type(client)()
    theirs = start_rating(other_client, study, pid="otherperson0000000000000")
    response = submit(client, study, current(theirs), rating="50")
    assert response.status_code == 404
    missing = client.post(reverse("take:rate_submit", args=["harm", 999999]), {"rating": "50"})
    assert missing.status_code == 404
    assert Rating.objects.count() == 0 and current(mine) is not None


def test_rate_submit_wrong_method_and_no_session(client, study):
    annotator = start_rating(client, study)
    url = reverse("take:rate_submit", args=["harm", current(annotator).pk])
    assert client.get(url).status_code == 405
    assert type(client)().post(url, {"rating": "5"}).status_code == 403
    assert Rating.objects.count() == 0


def test_finishing_redirects_to_completion(client, study):
    annotator = start_rating(client, study)
    for _ in range(4):
        submit(client, study, current(annotator))
    last = submit(client, study, current(annotator))
    assert last.status_code == 204 and last["HX-Redirect"] == reverse("take:done", args=["harm"])
    annotator.refresh_from_db()
    assert annotator.status == "completed" and annotator.completed_at is not None
    assert Rating.objects.count() == 5


def test_too_fast_answer_warns(client, study):
    annotator = start_rating(client, study)
    response = submit(client, study, current(annotator), rt_ms="300")
    assert b'id="too-fast"' in response.content
    calm = submit(client, study, current(annotator), rt_ms="5000")
    assert b'id="too-fast"' not in calm.content


def test_order_is_random_per_annotator_and_reproducible(client, study):
    a = start_rating(client, study)
    b = start_rating(type(client)(), study, pid="secondperson000000000000")
    order_a = list(a.assignments.order_by("position").values_list("prompt__external_id", flat=True))
    order_b = list(b.assignments.order_by("position").values_list("prompt__external_id", flat=True))
    assert sorted(order_a) == sorted(order_b) == ["1", "2", "3", "4", "5"]
    import numpy as np

    expected = [str(i + 1) for i in np.random.default_rng(a.order_seed).permutation(5)]
    assert order_a == expected  # the stored seed reproduces the order


def test_database_refuses_a_second_rating(client, study):
    annotator = start_rating(client, study)
    assignment = current(annotator)
    Rating.objects.create(assignment=assignment, annotator=annotator, prompt=assignment.prompt, value=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        Rating.objects.create(assignment=assignment, annotator=annotator, prompt=assignment.prompt, value=6)
    with pytest.raises(IntegrityError), transaction.atomic():
        Rating.objects.create(assignment=assignment, annotator=annotator, prompt=assignment.prompt, value=500)


# --- attention checks ----------------------------------------------------------------------


@pytest.fixture
def checked_study(study):
    Study.objects.filter(pk=study.pk).update(attention_checks=2, attention_tolerance=5, attention_max_failures=2)
    study.refresh_from_db()
    return study


def answer_until_check(client, study, annotator):
    while (a := current(annotator)).kind != Assignment.Kind.ATTENTION:
        submit(client, study, a)
    return a


def test_attention_checks_are_mixed_in_and_failures_recorded(client, checked_study):
    annotator = start_rating(client, checked_study)
    kinds = list(annotator.assignments.order_by("position").values_list("kind", flat=True))
    assert kinds.count("attention") == 2 and kinds[0] == "prompt" and len(kinds) == 7
    check = answer_until_check(client, checked_study, annotator)
    page = client.get(reverse("take:rate", args=["harm"])).content.decode()
    assert f"set the rating to {check.check_spec['expected']}" in page
    wrong = (check.check_spec["expected"] + 30) % 100
    submit(client, checked_study, check, rating=str(wrong))
    check.refresh_from_db()
    assert check.check_passed is False
    annotator.refresh_from_db()
    assert annotator.status == "rating"  # one failure is not enough to exclude (Prolific: at least 2)


def test_passing_within_tolerance(client, checked_study):
    annotator = start_rating(client, checked_study)
    check = answer_until_check(client, checked_study, annotator)
    submit(client, checked_study, check, rating=str(check.check_spec["expected"] + 4))
    check.refresh_from_db()
    assert check.check_passed is True


def test_two_failures_exclude_with_failed_check_code(client, checked_study):
    annotator = start_rating(client, checked_study)
    for _ in range(2):
        check = answer_until_check(client, checked_study, annotator)
        response = submit(client, checked_study, check, unsure="1", rating="")
    assert response["HX-Redirect"] == reverse("take:stopped", args=["harm"])
    annotator.refresh_from_db()
    assert annotator.status == "excluded" and annotator.exclusion == Annotator.Exclusion.ATTENTION
    assert annotator.exclusion_reason == "failed 2 attention checks"
    assert not annotator.assignments.filter(rating__isnull=True).exists()  # slots freed
    page = client.get(reverse("take:stopped", args=["harm"])).content.decode()
    assert 'id="failed-code">FAILCHK<' in page
    assert type(client)().get(link(checked_study))["Location"] == reverse("take:stopped", args=["harm"])


def test_the_stopped_page_decides_on_the_exclusion_code_not_its_wording(client, checked_study):
    # A researcher's exclusion whose note mentions attention is not a failed-checks exclusion, and an
    # attention exclusion whose note says something else still is.
    annotator = start_rating(client, checked_study)
    stopped = reverse("take:stopped", args=["harm"])
    Annotator.objects.filter(pk=annotator.pk).update(
        status="excluded", exclusion=Annotator.Exclusion.RESEARCHER, exclusion_reason="paid no attention to the task"
    )
    assert "FAILCHK" not in client.get(stopped).content.decode()
    Annotator.objects.filter(pk=annotator.pk).update(exclusion=Annotator.Exclusion.ATTENTION, exclusion_reason="")
    assert 'id="failed-code">FAILCHK<' in client.get(stopped).content.decode()


# --- partial designs and reservations ---------------------------------------------------------


@pytest.fixture
def partial_study(study):
    Study.objects.filter(pk=study.pk).update(design="partial", prompts_per_annotator=2, target_ratings_per_prompt=1)
    study.refresh_from_db()
    return study


def test_partial_design_never_overfills_and_refuses_when_full(client, partial_study):
    people = [start_rating(type(client)(), partial_study, pid=f"person{i:018d}") for i in range(3)]
    counts = [p.assignments.count() for p in people]
    assert counts == [2, 2, 1]
    held = list(Assignment.objects.values_list("prompt_id", flat=True))
    assert len(held) == len(set(held)) == 5  # every prompt once, none twice
    response = type(client)().get(link(partial_study, pid="latecomer000000000000000"))
    assert response.status_code == 403 and b"all the ratings it needs" in response.content


def test_least_rated_prompts_come_first(client, partial_study):
    Study.objects.filter(pk=partial_study.pk).update(target_ratings_per_prompt=3)
    first = start_rating(type(client)(), partial_study, pid="first0000000000000000000")
    taken = set(first.assignments.values_list("prompt_id", flat=True))
    second = start_rating(type(client)(), partial_study, pid="second000000000000000000")
    assert taken.isdisjoint(second.assignments.values_list("prompt_id", flat=True))


def test_idle_reservation_is_released_to_others(client, partial_study):
    people = [start_rating(type(client)(), partial_study, pid=f"person{i:018d}") for i in range(3)]
    idle = people[0]
    Annotator.objects.filter(pk=idle.pk).update(last_seen_at=timezone.now() - timedelta(hours=3))
    assert reservations_release(study=partial_study) == 1
    idle.refresh_from_db()
    assert idle.status == "returned" and idle.assignments.count() == 0
    newcomer = start_rating(type(client)(), partial_study, pid="newcomer0000000000000000")
    assert newcomer.assignments.count() == 2
    back = type(client)()
    assert back.get(link(partial_study, pid="person000000000000000000"))["Location"] == reverse(
        "take:stopped", args=["harm"]
    )


def test_periodic_task_releases_idle_annotators(client, partial_study):
    from annotation.tasks import release_reservations

    person = start_rating(type(client)(), partial_study, pid="sleepy000000000000000000")
    Annotator.objects.filter(pk=person.pk).update(last_seen_at=timezone.now() - timedelta(days=1))
    assert release_reservations.apply().get() == 1
    person.refresh_from_db()
    assert person.status == "returned" and person.assignments.count() == 0


def test_study_validation_names_unknown_instruments(study):
    from django.core.exceptions import ValidationError

    study.instruments = ["demographics", "tarot"]
    with pytest.raises(ValidationError, match="Unknown instrument\\(s\\): tarot"):
        study.full_clean()
    study.instruments = ["mfq20", "mfq20"]
    with pytest.raises(ValidationError, match="once"):
        study.full_clean()
    study.instruments = ["demographics", "mfq20"]
    study.full_clean()
