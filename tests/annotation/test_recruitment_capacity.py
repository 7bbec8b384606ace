"""Capacity against anonymous lockout: who counts against `max_annotators`, who is released when, and
which links a study accepts. Time is moved by setting timestamps directly (no freezegun)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotation.models import Annotator, Study, SurveyInstrument, SurveyResponse
from annotation.services import recruitment
from annotation.services.assignment import reservations_release, study_has_capacity
from annotation.services.recruitment import recruitment_hash
from annotation.tasks import release_reservations
from tests.annotation import test_take_flow as flow
from tests.annotation.test_take_flow import current, link, start_rating, submit

pytestmark = pytest.mark.django_db

study, partial_study = flow.study, flow.partial_study  # the flow tests' fixtures


def pid(i: int) -> str:
    return f"random{i:018d}"


def consent(client, study, choice="agree"):
    return client.post(reverse("take:consent", args=[study.slug]), {"consent": choice})


def ago(**kwargs):
    return timezone.now() - timedelta(**kwargs)


def age(annotator, **kwargs):
    """Move an annotator back in time: they were last seen (and arrived) that long ago."""
    Annotator.objects.filter(pk=annotator.pk).update(last_seen_at=ago(**kwargs), created_at=ago(**kwargs))


@pytest.fixture
def capped(study):
    Study.objects.filter(pk=study.pk).update(max_annotators=5)
    study.refresh_from_db()
    return study


# --- 1. capacity counts consented annotators only -----------------------------------------------


def test_random_id_arrivals_do_not_fill_the_study(client, capped):
    for i in range(5):  # the attack: five GETs of the link with made-up ids, no consent
        assert type(client)().get(link(capped, pid(i))).status_code == 302
    assert Annotator.objects.filter(status="new").count() == 5
    person = type(client)()
    response = person.get(link(capped, "realperson00000000000000"))
    assert response.status_code == 302 and response["Location"] == reverse("take:consent", args=["harm"])
    assert consent(person, capped)["Location"] == reverse("take:instructions", args=["harm"])
    assert Annotator.objects.get(recruitment_hash=recruitment_hash("realperson00000000000000")).status == "consented"


def test_consent_beyond_capacity_is_refused_and_changes_nothing(client, study):
    Study.objects.filter(pk=study.pk).update(max_annotators=1)
    first, second = type(client)(), type(client)()
    assert first.get(link(study, pid(1))).status_code == 302
    assert second.get(link(study, pid(2))).status_code == 302  # arriving is free
    assert consent(first, study).status_code == 302
    refused = consent(second, study)
    assert refused.status_code == 403
    page = refused.content.decode()
    assert "This study is full" in page and "all the participants it needs" in page
    late = Annotator.objects.get(recruitment_hash=recruitment_hash(pid(2)))
    assert late.status == "new" and late.consented_at is None
    # Declining is always possible, full or not.
    assert consent(second, study, "decline")["Location"] == reverse("take:stopped", args=["harm"])


def test_arrival_when_full_of_consented_people_sees_the_full_page(client, study):
    Study.objects.filter(pk=study.pk).update(max_annotators=2)
    for i in range(2):
        c = type(client)()
        c.get(link(study, pid(i)))
        consent(c, study)
    response = type(client)().get(link(study, pid(9)))
    assert response.status_code == 403 and "all the participants it needs" in response.content.decode()
    assert not Annotator.objects.filter(recruitment_hash=recruitment_hash(pid(9))).exists()


def test_consent_on_a_study_paused_since_arrival_is_refused(client, study):
    client.get(link(study))
    Study.objects.filter(pk=study.pk).update(status="paused")
    response = consent(client, study)
    assert response.status_code == 403 and "This study is paused" in response.content.decode()
    assert Annotator.objects.get().status == "new"


# --- 2. releasing unconsented entries and unstarted reservations ----------------------------------


def test_idle_unconsented_entries_are_deleted_by_the_periodic_task(client, study, settings):
    settings.RECRUITMENT_UNCONSENTED_MINUTES = 15
    idle, fresh = type(client)(), type(client)()
    idle.get(link(study, pid(1)))
    fresh.get(link(study, pid(2)))
    age(Annotator.objects.get(recruitment_hash=recruitment_hash(pid(1))), minutes=16)
    age(Annotator.objects.get(recruitment_hash=recruitment_hash(pid(2))), minutes=14)
    release_reservations.apply().get()
    assert list(Annotator.objects.values_list("recruitment_hash", flat=True)) == [recruitment_hash(pid(2))]


def test_unconsented_entry_with_data_of_theirs_is_marked_returned_not_deleted(client, study, settings):
    settings.RECRUITMENT_UNCONSENTED_MINUTES = 15
    client.get(link(study))
    annotator = Annotator.objects.get()
    instrument = SurveyInstrument.objects.create(key="x", title="x", definition={"items": []})
    SurveyResponse.objects.create(annotator=annotator, instrument=instrument)
    age(annotator, minutes=30)
    assert recruitment.unconsented_release(study=study) == 1
    annotator.refresh_from_db()
    assert annotator.status == "returned"


def test_released_unconsented_person_coming_back_starts_again(client, study, settings):
    settings.RECRUITMENT_UNCONSENTED_MINUTES = 15
    Study.objects.filter(pk=study.pk).update(max_annotators=2)
    client.get(link(study, pid(1)))  # P0001, never consents
    other = type(client)()
    other.get(link(study, pid(2)))  # P0002 consents
    consent(other, study)
    age(Annotator.objects.get(pseudonym="P0001"), minutes=20)
    assert recruitment.unconsented_release(study=study) == 1
    # Same browser (its session names the deleted row) and same link: a fresh start at consent.
    assert client.get(reverse("take:consent", args=["harm"])).status_code == 403  # no session any more
    back = client.get(link(study, pid(1)))
    assert back.status_code == 302 and back["Location"] == reverse("take:consent", args=["harm"])
    returned = Annotator.objects.get(recruitment_hash=recruitment_hash(pid(1)))
    assert returned.status == "new" and returned.pseudonym == "P0003"  # never a pseudonym twice in use
    # When the study has since filled with consented people, the same person is told so.
    third = type(client)()
    third.get(link(study, pid(3)))
    consent(third, study)
    age(returned, minutes=20)
    recruitment.unconsented_release(study=study)
    full = type(client)().get(link(study, pid(1)))
    assert full.status_code == 403 and "all the participants it needs" in full.content.decode()


def test_resuming_an_unconsented_entry_keeps_it(client, study, settings):
    settings.RECRUITMENT_UNCONSENTED_MINUTES = 15
    client.get(link(study))
    age(Annotator.objects.get(), minutes=20)
    client.get(link(study))  # back before the task ran: seen again
    assert recruitment.unconsented_release(study=study) == 0 and Annotator.objects.get().status == "new"


def test_reservation_with_no_answer_in_the_start_window_is_released(client, partial_study, settings):
    settings.RECRUITMENT_START_MINUTES = 15
    assert partial_study.reservation_minutes > 15
    idle = start_rating(type(client)(), partial_study, pid=pid(1))
    busy_client = type(client)()
    busy = start_rating(busy_client, partial_study, pid=pid(2))
    submit(busy_client, partial_study, current(busy))
    age(idle, minutes=16)
    age(busy, minutes=16)  # answered one, then paused: still within the reservation window
    assert reservations_release(study=partial_study) == 1
    idle.refresh_from_db(), busy.refresh_from_db()
    assert idle.status == "returned" and idle.assignments.count() == 0
    assert busy.status == "rating" and busy.assignments.count() == 2
    newcomer = start_rating(type(client)(), partial_study, pid=pid(3))
    assert newcomer.assignments.count() == 2  # the released prompts went to someone else


def test_reopening_the_link_does_not_extend_a_reservation(client, partial_study, settings):
    settings.RECRUITMENT_START_MINUTES = 15
    holder = start_rating(client, partial_study, pid=pid(1))
    age(holder, minutes=16)
    assert client.get(link(partial_study, pid(1)))["Location"] == reverse("take:rate", args=["harm"])
    assert reservations_release(study=partial_study) == 1  # a GET is not progress; an answer is


def test_consented_but_idle_past_the_reservation_window_frees_the_place(client, study):
    Study.objects.filter(pk=study.pk).update(max_annotators=1, reservation_minutes=90)
    sleeper = type(client)()
    sleeper.get(link(study, pid(1)))
    consent(sleeper, study)
    assert type(client)().get(link(study, pid(2))).status_code == 403  # full
    age(Annotator.objects.get(recruitment_hash=recruitment_hash(pid(1))), minutes=91)
    late = type(client)()
    assert late.get(link(study, pid(2))).status_code == 302
    assert consent(late, study)["Location"] == reverse("take:instructions", args=["harm"])
    assert Annotator.objects.get(recruitment_hash=recruitment_hash(pid(1))).status == "returned"
    assert sleeper.get(link(study, pid(1)))["Location"] == reverse("take:stopped", args=["harm"])


# --- 3. the platform's STUDY_ID ----------------------------------------------------------------


def test_link_with_another_platform_study_id_is_refused(client, study):
    Study.objects.filter(pk=study.pk).update(recruitment_study_id="st999")
    response = client.get(link(study))  # STUDY_ID=st123
    assert response.status_code == 403
    page = response.content.decode()
    assert "This link is not for this study" in page and 'data-reason="wrong-study"' in page
    assert Annotator.objects.count() == 0
    assert client.get(link(study, STUDY_ID="st999")).status_code == 302


def test_resuming_with_another_platform_study_id_is_refused(client, study):
    client.get(link(study))
    Study.objects.filter(pk=study.pk).update(recruitment_study_id="st123")
    assert type(client)().get(link(study)).status_code == 302
    assert type(client)().get(link(study, STUDY_ID="elsewhere")).status_code == 403


# --- 5. predicates do not write -----------------------------------------------------------------


def test_capacity_predicate_is_a_pure_read(client, partial_study):
    holder = start_rating(client, partial_study, pid=pid(1))
    age(holder, days=1)
    with CaptureQueriesContext(connection) as queries:
        study_has_capacity(study=partial_study)
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    holder.refresh_from_db()
    assert holder.status == "rating"  # releasing is reservations_release's job, not the predicate's
