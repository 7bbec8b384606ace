"""The researcher's pages read a study's figures from the cache (annotation.study_cache): after a rating,
a revision, an exclusion, an import or a deletion, the next request shows the new numbers."""

import uuid

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from annotation.importers import pluriharms_import
from annotation.models import Annotator, Rating, Study
from annotation.services.prompt_bank import bank_parse, bank_rows_write
from annotation.services.review import annotator_exclude
from annotation.services.revision import rating_revise
from annotation.study_cache import _prompt_key, prompt_versions, study_changed, study_version
from config import settings as project
from tests.annotation.test_take_flow import current, start_rating, submit
from tests.annotation.test_take_flow import study as take_study  # noqa: F401  (the fixture)
from tests.conftest import write_small_release

pytestmark = pytest.mark.django_db


def _researcher_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _page(client, name, study, *args, **query):
    app = "annotation" if name in ("study_detail", "participants") else "benchmark"
    response = client.get(reverse(f"{app}:{name}", args=[study.slug, *args]), query)
    assert response.status_code == 200, response.content[:300]
    return response.context


def _stored(study) -> tuple[int, int]:
    ratings = Rating.objects.filter(annotator__study=study, prompt__isnull=False)
    return ratings.count(), ratings.filter(unsure=True).count()


def _figures(client, study, prompt) -> dict:
    """What the five pages say about the study's ratings, each page asked once."""
    counts = _page(client, "study_detail", study)["counts"]
    overview = _page(client, "overview", study)["overview"]
    rows = {row["pseudonym"]: row for row in _page(client, "participants", study)["table"].data}
    histogram = _page(client, "prompt_detail", study, prompt.external_id)["figures"]["histogram"]
    return {
        "study page": (counts["n_ratings"], counts["n_unsure"]),
        "dashboard": (overview["n_ratings"], overview["n_unsure"], overview["per_prompt"][prompt.external_id]),
        "timeline": overview["over_time"][-1]["cumulative"] if overview["over_time"] else 0,
        "participants": {p: (r["answered"], r["status"]) for p, r in rows.items()},
        "histogram": histogram,
    }


def test_a_new_rating_is_on_every_page_at_the_next_request(client, researcher, take_study):  # noqa: F811
    annotator = start_rating(client, take_study)
    researcher_client = _researcher_client(researcher)
    trial = current(annotator)
    before = _figures(researcher_client, take_study, trial.prompt)
    assert before == _figures(researcher_client, take_study, trial.prompt)  # the second time from the cache
    assert before["study page"] == _stored(take_study) == (0, 0)

    submit(client, take_study, trial, rating="70")
    after = _figures(researcher_client, take_study, trial.prompt)
    assert after["study page"] == _stored(take_study) == (1, 0)
    assert after["dashboard"] == (1, 0, before["dashboard"][2] + 1)
    assert after["timeline"] == 1
    assert after["participants"][annotator.pseudonym][0] == 1
    assert '"y": [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]' in after["histogram"]  # 70 is in the eighth bin

    # A revision to Unsure: the Unsure count and the histogram follow.
    rating_revise(annotator=Annotator.objects.get(pk=annotator.pk), assignment_id=trial.pk, raw_value=None, unsure=True)
    revised = _figures(researcher_client, take_study, trial.prompt)
    assert revised["study page"] == _stored(take_study) == (1, 1)
    assert '"y": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]' in revised["histogram"]


def test_an_exclusion_and_a_deletion_reach_the_pages(researcher, small_study):
    client = _researcher_client(researcher)
    prompt = small_study.prompts.order_by("order", "id").first()
    before = _figures(client, small_study, prompt)
    first = Annotator.objects.filter(study=small_study).order_by("id").first()

    annotator_exclude(annotator=first, reason="test", user=researcher)
    excluded = _figures(client, small_study, prompt)
    assert excluded["participants"][first.pseudonym][1] == "excluded"
    assert excluded["histogram"] != before["histogram"]  # the prompt page leaves excluded annotators out

    n_ratings = Rating.objects.filter(annotator=first, prompt__isnull=False).count()
    first.delete()  # as the admin does: their ratings go with them
    deleted = _figures(client, small_study, prompt)
    assert deleted["study page"] == _stored(small_study)
    assert deleted["study page"][0] == before["study page"][0] - n_ratings
    assert first.pseudonym not in deleted["participants"]


def test_imports_reach_the_pages(researcher, small_study, tmp_path):
    client = _researcher_client(researcher)
    assert _page(client, "study_detail", small_study)["counts"]["n_ratings"] == 20

    # The same slug imported again after a deletion (another release), and prompts added to a study.
    small_study.delete()
    again = pluriharms_import(
        directory=write_small_release(tmp_path / "again", n_prompts=3, n_annotators=2), slug="small", owner=researcher
    )
    assert _page(client, "study_detail", again)["counts"]["n_ratings"] == _stored(again)[0] == 6

    draft = Study.objects.create(slug="bank", title="bank", owner=researcher, instruments=[])
    assert _page(client, "overview", draft)["overview"]["per_prompt"] == {}
    bank = bank_parse(study=draft, raw=b"external_id,text\nq1,First prompt\nq2,Second prompt\n", name="bank.csv")
    bank_rows_write(study=draft, bank=bank)
    assert _page(client, "overview", draft)["overview"]["per_prompt"] == {"q1": 0, "q2": 0}


def test_a_change_bumps_the_version_now_and_again_at_the_commit(small_study, django_capture_on_commit_callbacks):
    start = study_version(small_study.pk)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        study_changed(small_study.pk)
        study_changed(small_study.pk)  # nothing read in between: nothing more to do
        assert study_version(small_study.pk) == start + 1
        study_changed(small_study.pk)  # read since: this transaction's own reads need a new version
    assert len(callbacks) == 1
    assert study_version(small_study.pk) == start + 3


def test_a_lost_version_starts_anew_and_the_cache_failing_is_not_an_error(small_study, researcher, monkeypatch):
    from django.core.cache import caches

    cache = caches["default"]  # the backend itself (the proxy would undo the patches on another one)
    client = _researcher_client(researcher)
    before = _page(client, "study_detail", small_study)["counts"]
    cache.clear()  # an evicted version: a new random one, never an old entry
    assert _page(client, "study_detail", small_study)["counts"] == before

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    for name in ("get", "get_many", "set", "set_many", "add", "incr"):
        monkeypatch.setattr(cache, name, broken)
    Rating.objects.filter(annotator__study=small_study).first().delete()
    study_changed(small_study.pk, ratings=True)
    assert _page(client, "study_detail", small_study)["counts"]["n_ratings"] == before["n_ratings"] - 1


def test_the_configured_cache_bumps_existing_versions_only(settings, small_study):
    """The project's own cache (Redis when REDIS_URL is set: one round trip, config.cache.incr_existing;
    else the database cache): a version is bumped in place, a missing one stays missing."""
    settings.CACHES = project.CACHES
    study_id = uuid.uuid4().int % 10**9 + 10**9  # no study's: the cache may be shared
    start = study_version(study_id)
    study_changed(study_id, prompt_id=7)  # the prompt's version was never read: nothing to bump
    assert study_version(study_id) == start + 1
    assert cache.get(_prompt_key(study_id, 7)) is None
    _, (prompt_version,) = prompt_versions(study_id, [7])
    study_changed(study_id, prompt_id=7)
    assert prompt_versions(study_id, [7])[1] == [prompt_version + 1]
