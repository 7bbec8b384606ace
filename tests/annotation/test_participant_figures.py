"""The participants table's figures kept up to date by annotator (annotation.participant_figures): after each
kind of write the table equals one computed from scratch, and only the annotators whose rows changed were
read again; writes that bypass the annotator's row rebuild the whole state."""

import math

import numpy as np
import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.admin import RatingAdmin
from annotation.models import Annotator, Assignment, Rating
from annotation.participant_figures import _state_key, agreement
from annotation.participants import _participants_columns, participants_table
from annotation.services.review import annotator_exclude
from annotation.services.revision import rating_revise
from annotation.study_cache import study_changed
from tests.annotation.test_take_flow import current, link, start_rating, submit
from tests.annotation.test_take_flow import study as take_study  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db

# Per annotator, the ratings of their first trials in order (None: Unsure); the second and the fourth rate
# all five prompts, so that every prompt's consensus is in the second's agreement.
ANSWERS = {
    "5f3c2a9e8b7d6c5b4a392801": ["10", "80", None],
    "5f3c2a9e8b7d6c5b4a392802": ["20", "30", "90", "60", "45"],
    "5f3c2a9e8b7d6c5b4a392803": ["70", "70", "70"],
    "5f3c2a9e8b7d6c5b4a392804": ["0", "50", "100", "25", "75"],
}


def _answer(client, study, annotator, value) -> Assignment:
    trial = current(annotator)
    data = {"unsure": "1"} if value is None else {"rating": value}
    assert submit(client, study, trial, **data).status_code in (200, 204)  # 204: done, to the end page
    return trial


def _rated(study) -> dict[str, tuple[Client, Annotator]]:
    people = {}
    for pid, answers in ANSWERS.items():
        client = Client()
        annotator = start_rating(client, study, pid=pid)
        for value in answers:
            _answer(client, study, annotator, value)
        people[pid] = (client, annotator)
    return people


def _rows(study) -> list[dict]:
    columns = _participants_columns(study, None)
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _scratch(study) -> list[dict]:
    """The rows computed from the whole study, leaving the kept state as it was."""
    kept = cache.get(_state_key(study.pk))
    cache.delete(_state_key(study.pk))
    try:
        return _rows(study)
    finally:
        cache.set(_state_key(study.pk), kept)


def _same(rows: list[dict], expected: list[dict]) -> None:
    assert [r["pseudonym"] for r in rows] == [r["pseudonym"] for r in expected]
    for row, want in zip(rows, expected):
        for name, value in want.items():
            got = row[name]
            if isinstance(value, float) and isinstance(got, float):
                assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12), (row["pseudonym"], name, got, value)
            else:
                assert got == value, (row["pseudonym"], name, got, value)


def _check(study, reread: int) -> dict[str, dict]:
    """The table as the page gets it equals the table from scratch, and the refresh read `reread` annotators."""
    rows = participants_table(study=study)
    assert cache.get(_state_key(study.pk)).reread == reread
    _same(rows, _scratch(study))
    return {row["pseudonym"]: row for row in rows}


def test_each_write_rereads_its_annotator_only_and_matches_a_table_from_scratch(take_study):  # noqa: F811
    study = take_study
    people = _rated(study)
    first = _check(study, reread=4)  # built from the whole study
    assert first["P0001"]["answered"] == 3 and first["P0003"]["straight_lining"] == 1.0
    assert first["P0002"]["agreement_r"] is not None

    # A new rating: its annotator's own figures and everyone's agreement move.
    client, annotator = people["5f3c2a9e8b7d6c5b4a392801"]
    trial = _answer(client, study, annotator, "37")  # no mean of the others: the consensus moves
    rated = _check(study, reread=1)
    assert rated["P0001"]["answered"] == 4
    assert rated["P0002"]["agreement_r"] != first["P0002"]["agreement_r"]  # the consensus of that prompt moved

    # A revision of that answer (it touches the annotator's row like an answer does).
    rating_revise(
        annotator=Annotator.objects.get(pk=annotator.pk), assignment_id=trial.pk, raw_value="95", unsure=False
    )
    revised = _check(study, reread=1)
    assert revised["P0002"]["agreement_r"] != rated["P0002"]["agreement_r"]

    # An exclusion: the excluded annotator leaves the others' consensus.
    staff = study.owner
    annotator_exclude(annotator=Annotator.objects.get(pseudonym="P0004", study=study), reason="test", user=staff)
    excluded = _check(study, reread=1)
    assert excluded["P0004"]["status"] == "excluded"
    assert excluded["P0002"]["agreement_r"] != revised["P0002"]["agreement_r"]

    # A newcomer who rates.
    newcomer = Client()
    fifth = start_rating(newcomer, study, pid="5f3c2a9e8b7d6c5b4a392805")
    for value in ("15", "45", "75"):
        _answer(newcomer, study, fifth, value)
    arrived = _check(study, reread=1)
    assert arrived[fifth.pseudonym]["answered"] == 3

    # Nothing changed: the state is used as it is (the page itself would not even ask: its cache holds).
    _same(_rows(study), list(arrived.values()))
    assert cache.get(_state_key(study.pk)).reread == 0


def test_a_trial_written_behind_the_annotators_row_rebuilds_everything(take_study):  # noqa: F811
    study = take_study
    _rated(study)
    before = {r["pseudonym"]: r for r in participants_table(study=study)}
    annotator = Annotator.objects.get(study=study, pseudonym="P0003")
    # As a script or the admin would: a trial answered and its rating, the annotator's row untouched.
    trial = current(annotator)
    trial.answered_at = timezone.now()
    trial.save()
    Rating.objects.create(assignment=trial, annotator=annotator, prompt=trial.prompt, value=5.0)
    after = _check(study, reread=4)
    assert after["P0003"]["answered"] == before["P0003"]["answered"] + 1
    assert after["P0003"]["straight_lining"] < 1.0


def test_a_rating_edited_in_the_admin_reaches_the_table(take_study, rf, staff):  # noqa: F811
    study = take_study
    _rated(study)
    before = {r["pseudonym"]: r for r in participants_table(study=study)}
    rating = Rating.objects.filter(annotator__pseudonym="P0003", annotator__study=study).order_by("id").first()
    rating.value = 10.0
    request = rf.post("/")
    request.user = staff
    RatingAdmin(Rating, None).save_model(request, rating, form=None, change=True)
    after = {r["pseudonym"]: r for r in participants_table(study=study)}
    assert before["P0003"]["straight_lining"] == 1.0 and after["P0003"]["straight_lining"] == 0.5
    _same(list(after.values()), _scratch(study))


def test_the_page_survives_a_cache_that_fails(take_study, researcher, monkeypatch):  # noqa: F811
    from django.core.cache import caches

    study = take_study
    _rated(study)
    expected = _scratch(study)
    client = Client()
    client.force_login(researcher)
    backend = caches["default"]  # the backend itself (the proxy would undo the patches on another one)

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    for name in ("get", "get_many", "set", "set_many", "add", "incr"):
        monkeypatch.setattr(backend, name, broken)
    response = client.get(reverse("annotation:participants", args=[study.slug]))
    assert response.status_code == 200
    _same(list(response.context["table"].data), expected)


def test_agreement_is_the_leave_one_out_correlation_of_its_definition():
    rng = np.random.default_rng(5)
    k, n_items = 12, 9
    who, item = np.meshgrid(np.arange(k), np.arange(n_items), indexing="ij")
    who, item = who.ravel(), item.ravel()
    keep = rng.random(len(who)) < 0.8
    who, item = who[keep], item[keep]
    value = rng.integers(0, 101, len(who)).astype(float)
    value[rng.random(len(value)) < 0.1] = np.nan  # Unsure
    excluded = np.zeros(k, dtype=bool)
    excluded[[2, 7]] = True
    matrix = np.full((k, n_items), np.nan)
    matrix[who, item] = value
    got = agreement(matrix, excluded)
    for a in range(k):
        xs, ms = [], []
        for i in range(n_items):
            mine = (who == a) & (item == i)
            if not mine.any() or np.isnan(value[mine][0]):
                continue
            others = (who != a) & (item == i) & ~np.isnan(value) & ~excluded[who]
            if others.any():
                xs.append(value[mine][0])
                ms.append(value[others].mean())
        if len(xs) >= 3 and np.std(xs) > 0 and np.std(ms) > 0:
            assert got[a] == pytest.approx(np.corrcoef(xs, ms)[0, 1], rel=1e-9)
        else:
            assert np.isnan(got[a])


def test_a_state_of_another_layout_is_rebuilt_not_read(take_study):  # noqa: F811
    """A state kept by code with another layout of StudyFigures (a deploy, a rolling restart) unpickles
    into the current class without the current fields: it is rebuilt, never refreshed."""
    study = take_study
    people = _rated(study)
    participants_table(study=study)
    state = cache.get(_state_key(study.pk))
    old = object.__new__(type(state))  # what unpickling an earlier layout gives
    old.__dict__ = {k: v for k, v in vars(state).items() if k not in ("values", "layout")}
    old.__dict__.update(who=np.zeros(3, dtype=np.int32), item=np.zeros(3, dtype=np.int16))
    cache.set(_state_key(study.pk), old)
    client, annotator = people["5f3c2a9e8b7d6c5b4a392801"]
    _answer(client, study, annotator, "37")
    _check(study, reread=4)


@pytest.mark.django_db(transaction=True)
def test_an_admin_bulk_delete_reaches_a_page_computed_while_it_ran(take_study, staff, monkeypatch, rf):  # noqa: F811
    """The admin's "delete selected" runs outside a transaction: its bump must also come after the delete
    has committed, else a page computed in between keeps the deleted ratings under the new version."""
    from django.contrib import admin as django_admin

    study = take_study
    people = _rated(study)
    participants_table(study=study)
    original = django_admin.ModelAdmin.delete_queryset

    def with_a_page_in_between(self, request, queryset):
        participants_table(study=study)  # another request, after the first bump, before the delete
        return original(self, request, queryset)

    monkeypatch.setattr(django_admin.ModelAdmin, "delete_queryset", with_a_page_in_between)
    request = rf.post("/")
    request.user = staff
    first = people["5f3c2a9e8b7d6c5b4a392801"][1]
    RatingAdmin(Rating, django_admin.site).delete_queryset(request, Rating.objects.filter(annotator=first))
    rows = {r["pseudonym"]: r for r in participants_table(study=study)}
    assert rows[first.pseudonym]["answered"] == 0
    _same(list(rows.values()), _scratch(study))


@pytest.mark.django_db(transaction=True)
def test_a_lost_bump_is_made_good_once_the_state_is_old(take_study, staff, monkeypatch, rf):  # noqa: F811
    """An admin edit while the cache cannot be bumped: the state, refreshed by later writes, is still
    rebuilt from the whole study STATE_SECONDS after its last build."""
    import django.core.cache.backends.locmem as locmem
    from django.contrib import admin as django_admin
    from django.core.cache import caches

    from annotation import participant_figures

    clock = {"now": 1_000_000.0}
    fake = type("Clock", (), {"time": staticmethod(lambda: clock["now"])})
    monkeypatch.setattr(locmem, "time", fake)
    monkeypatch.setattr(participant_figures, "time", fake)
    study = take_study
    people = _rated(study)
    participants_table(study=study)
    third = people["5f3c2a9e8b7d6c5b4a392803"][1]
    rating = Rating.objects.filter(annotator=third).order_by("id").first()
    rating.value = 10.0  # 70, 70, 70 -> 10, 70, 70: straight-lining 1.0 -> 0.5
    request = rf.post("/")
    request.user = staff

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    with monkeypatch.context() as patch:
        patch.setattr(caches["default"], "incr", down)
        RatingAdmin(Rating, django_admin.site).save_model(request, rating, form=None, change=True)
    client, annotator = people["5f3c2a9e8b7d6c5b4a392801"]
    clock["now"] += 20 * 60
    _answer(client, study, annotator, "37")  # a later write: refreshed, the edit unseen (its bump was lost)
    assert {r["pseudonym"]: r for r in participants_table(study=study)}["P0003"]["straight_lining"] == 1.0
    clock["now"] += 45 * 60  # past STATE_SECONDS since the build, though refreshed 45 minutes ago
    study_changed(study.pk)  # any change: the page recomputes
    rows = {r["pseudonym"]: r for r in participants_table(study=study)}
    assert rows["P0003"]["straight_lining"] == 0.5
    assert cache.get(_state_key(study.pk)).reread == 4


def test_an_idle_arrival_released_leaves_the_ratings_alone(take_study, settings):  # noqa: F811
    """The periodic release deletes arrivals who never consented: they have no ratings, so the study's
    ratings version (per-prompt tallies, this state) stays; the table drops them without a rebuild."""
    from datetime import timedelta

    from annotation.services.recruitment import unconsented_release
    from annotation.study_cache import ratings_version

    study = take_study
    _rated(study)
    Client().get(link(study, "5f3c2a9e8b7d6c5b4a3928ff"))  # arrives, never consents
    arrival = Annotator.objects.get(study=study, status=Annotator.Status.NEW)
    assert arrival.pseudonym in {r["pseudonym"] for r in participants_table(study=study)}
    version = ratings_version(study.pk)
    later = timezone.now() + timedelta(minutes=settings.RECRUITMENT_UNCONSENTED_MINUTES + 1)
    assert unconsented_release(study=study, now=later) == 1
    assert ratings_version(study.pk) == version
    rows = _check(study, reread=0)
    assert arrival.pseudonym not in rows and len(rows) == 4

    # An annotator who had consented takes their ratings with them: a rebuild.
    Annotator.objects.get(study=study, pseudonym="P0003").delete()
    assert ratings_version(study.pk) != version
    _check(study, reread=3)
