"""The prompt page at scale (issue 14): its histograms read the prompt's ratings (three columns) and take the
annotators' groups and exclusions from data cached under the study's annotator version, which new ratings
leave alone and every writer of demographics or statuses bumps. The figures are those of the computation
before (kept here as the reference)."""

import json

import numpy as np
import pytest
from django.urls import reverse

from annotation.importers import pluriharms_import
from annotation.models import Annotator, Rating
from annotation.services.backup import study_dump, study_restore
from annotation.services.rating import rating_submit
from annotation.services.recruitment import survey_submit
from annotation.services.review import annotator_exclude, annotator_reinstate
from annotation.study_cache import people_version
from benchmark import figures
from benchmark.views.dashboards import _prompt_histograms
from tests.annotation.test_annotator_side import enter, make_study
from tests.annotation.test_take_flow import (  # noqa: F401
    answer_until_check,
    checked_study,
    current,
    start_rating,
    study,  # noqa: F401  (the fixture checked_study uses)
    submit,
)
from tests.conftest import write_small_release

pytestmark = pytest.mark.django_db


def _old_histograms(prompt) -> dict:
    """The prompt page's computation before issue 14 (every rating joined to its annotator's demographics)."""
    rows = list(
        prompt.ratings.filter(unsure=False)
        .exclude(annotator__status="excluded")
        .values_list("value", "annotator__demographics")
    )
    n_bins = len(figures.HISTOGRAM_EDGES) - 1
    bins = np.clip((np.array([v for v, _ in rows], dtype=float) // 10).astype(int), 0, n_bins - 1)
    by_column = {"": {"all annotators": np.bincount(bins, minlength=n_bins).tolist()}}
    for column in sorted({k for _, demo in rows for k in (demo or {})}):
        labels = np.array([str((demo or {}).get(column, figures.MISSING_GROUP)).strip() for _, demo in rows])
        groups, which = np.unique(labels, return_inverse=True)
        counts = np.zeros((len(groups), n_bins), dtype=int)
        np.add.at(counts, (which, bins), 1)
        by_column[column] = {str(g): counts[i].tolist() for i, g in enumerate(groups)}
    return {"by_column": by_column, "n_unsure": prompt.ratings.filter(unsure=True).count()}


def _page(client, of_study, prompt, group="") -> dict:
    """What the prompt page shows: the Unsure count, each group's number of ratings (the traces' names),
    and the bins of the only trace (counts; with several groups the traces show percentages)."""
    url = reverse("benchmark:prompt_detail", args=[of_study.slug, prompt.external_id])
    response = client.get(url, {"group": group} if group else {})
    assert response.status_code == 200, response.content[:300]
    traces = json.loads(response.context["figures"]["histogram"])["data"]
    groups = {}
    for trace in traces:
        name, n = trace["name"].rsplit(" (n=", 1)
        groups[name] = int(n.rstrip(")"))
    return {
        "n_unsure": response.context["n_unsure"],
        "groups": groups,
        "bins": traces[0]["y"] if len(traces) == 1 else None,
    }


@pytest.fixture
def mixed_study(tmp_path, researcher):
    """Twelve release annotators × eight prompts, with exclusions, Unsure answers and untidy demographics."""
    mixed = pluriharms_import(
        directory=write_small_release(tmp_path / "s", n_prompts=8, n_annotators=12), slug="mixed", owner=researcher
    )
    people = list(Annotator.objects.filter(study=mixed).order_by("id"))
    Annotator.objects.filter(pk__in=[people[1].pk, people[6].pk]).update(status=Annotator.Status.EXCLUDED)
    edits = {
        0: lambda d: {k: v for k, v in d.items() if k != "Gender"},  # a question unanswered
        2: lambda d: {**d, "Gender": "  Woman  ", "Only_me": "x"},  # spaces; a key one annotator has
        3: lambda d: {**d, "Age": 41, "Income": None},  # not text
        4: lambda d: {},
        5: lambda d: {**d, "Gender": ""},
    }
    for i, edit in edits.items():
        Annotator.objects.filter(pk=people[i].pk).update(demographics=edit(people[i].demographics or {}))
    Annotator.objects.filter(pk=people[7].pk).update(demographics={"Only_me": "y"})
    excluded = {**(people[6].demographics or {}), "Excluded_only": "z"}  # a question only an excluded one answered
    Annotator.objects.filter(pk=people[6].pk).update(demographics=excluded)
    ids = list(Rating.objects.filter(annotator__study=mixed).order_by("id").values_list("id", flat=True))
    Rating.objects.filter(id__in=ids[::5]).update(unsure=True, value=None)
    Rating.objects.filter(id__in=ids[1::9], unsure=False).update(value=100)  # the last bin's right edge
    return mixed


def test_the_figures_are_those_of_the_computation_before(mixed_study):
    prompts = list(mixed_study.prompts.order_by("order", "id"))
    seen_groups = set()
    for prompt in prompts:
        new, old = _prompt_histograms(prompt), _old_histograms(prompt)
        assert json.dumps(new) == json.dumps(old)  # the same columns, groups, counts and order
        seen_groups |= {(c, g) for c, groups in new["by_column"].items() for g in groups}
    assert {("Gender", "Woman"), ("Gender", figures.MISSING_GROUP), ("Gender", ""), ("Age", "41")} <= seen_groups
    assert ("Income", "None") in seen_groups and any(c == "Only_me" for c, _ in seen_groups)
    assert not any(c == "Excluded_only" for c, _ in seen_groups)
    assert sum(_old_histograms(p)["n_unsure"] for p in prompts) > 0


def test_a_new_rating_leaves_the_annotator_version_alone(client, study):  # noqa: F811
    annotator = start_rating(client, study)
    before = people_version(study.pk)
    rating_submit(annotator=annotator, assignment_id=current(annotator).pk, raw_value="30", unsure=False)
    assert people_version(study.pk) == before


DEMOGRAPHICS = {
    "Race_Ethnicity": "White",
    "Gender": "Woman",
    "Sexual_Orientation": "Prefer not to answer",
    "Age": "25-34 years old",
    "Political_Affiliation": "Prefer not to answer",
    "Education": "Bachelor’s degree",
    "Religion_Importance": "Prefer not to answer",
    "Social_Media_Frequency": "At least once a day",
    "Toxicity_Experience": "Not a problem",
    "Income": "I prefer not to answer.",
}


@pytest.mark.parametrize("write", ["questionnaire", "exclusion", "reinstatement", "admin save", "restore", "deletion"])
def test_every_writer_of_demographics_or_statuses_bumps_the_annotator_version(write, researcher, tmp_path):
    imported = pluriharms_import(
        directory=write_small_release(tmp_path / "w", n_prompts=2, n_annotators=3), slug="w", owner=researcher
    )
    study_id = imported.pk
    first = Annotator.objects.filter(study=imported).order_by("id").first()
    if write == "questionnaire":
        imported.instruments = ["demographics"]
        imported.save(update_fields=["instruments"])
        first.study = imported
    if write == "reinstatement":
        annotator_exclude(annotator=first, reason="r", user=researcher)
    if write == "restore":
        dump = study_dump(study=imported)
        imported.delete()
    before = people_version(study_id)
    if write == "questionnaire":
        assert survey_submit(annotator=first, key="demographics", data=DEMOGRAPHICS) == {}
        assert Annotator.objects.get(pk=first.pk).demographics["Gender"] == "Woman"
    elif write == "exclusion":
        annotator_exclude(annotator=first, reason="r", user=researcher)
    elif write == "reinstatement":
        annotator_reinstate(annotator=first, reason="r", user=researcher)
    elif write == "admin save":  # a change form saves every field
        first.demographics = {"Gender": "Man"}
        first.save()
    elif write == "restore":  # under the ids of the deleted study, in bulk
        assert study_restore(raw=dump).study.pk == study_id
    elif write == "deletion":
        first.delete()
    assert people_version(study_id) != before, write


def test_writes_in_bulk_bump_the_annotator_version(small_study):
    """Imports, restores and deletions say `ratings=True` (annotation.importers, backup.restore)."""
    from annotation.study_cache import study_changed

    before = people_version(small_study.pk)
    study_changed(small_study.pk, ratings=True)
    assert people_version(small_study.pk) == before + 1
    study_changed(small_study.pk, prompt_id=small_study.prompts.first().pk)  # a rating
    study_changed(small_study.pk)  # a trial, a prompt, a consent
    assert people_version(small_study.pk) == before + 1


def test_the_page_follows_a_questionnaire_an_exclusion_and_a_reinstatement(client, researcher):
    demo = make_study(slug="demo", n=2, instruments=["demographics"], owner=researcher)
    prompt = demo.prompts.order_by("order").first()
    researcher_client = type(client)()
    researcher_client.force_login(researcher)

    def rater(pid: str, gender: str) -> Annotator:
        """A person through the link: consent, the questionnaire (the page asked in between), then a rating
        of 70 for `prompt`."""
        rater_client = type(client)()
        enter(rater_client, demo, pid)
        rater_client.post(reverse("take:consent", args=[demo.slug]), {"consent": "agree"})
        _page(researcher_client, demo, prompt, "")  # the annotators cached before the answers
        page = rater_client.post(
            reverse("take:survey", args=[demo.slug, "demographics"]), {**DEMOGRAPHICS, "Gender": gender}
        )
        assert page.status_code == 302
        rater_client.post(reverse("take:instructions", args=[demo.slug]))
        annotator = Annotator.objects.get(study=demo, demographics__Gender=gender)
        trial = annotator.assignments.get(prompt=prompt)
        rating_submit(annotator=annotator, assignment_id=trial.pk, raw_value="70", unsure=False)
        return annotator

    woman = rater("demo0000000000000000000a", "Woman")
    assert _page(researcher_client, demo, prompt, "Gender") == {
        "n_unsure": 0,
        "groups": {"Woman": 1},
        "bins": [0] * 7 + [1, 0, 0],
    }
    man = rater("demo0000000000000000000b", "Man")
    by_gender = _page(researcher_client, demo, prompt, "Gender")
    assert by_gender["groups"] == {"Man": 1, "Woman": 1}

    annotator_exclude(annotator=woman, reason="r", user=researcher)
    assert _page(researcher_client, demo, prompt, "Gender")["groups"] == {"Man": 1}
    annotator_reinstate(annotator=Annotator.objects.get(pk=woman.pk), reason="r", user=researcher)
    assert _page(researcher_client, demo, prompt, "Gender") == by_gender
    man.demographics = {**man.demographics, "Gender": "Non-binary"}
    man.save()  # the admin
    assert _page(researcher_client, demo, prompt, "Gender")["groups"] == {"Non-binary": 1, "Woman": 1}
    for prompt_ in demo.prompts.all():
        assert json.dumps(_prompt_histograms(prompt_)) == json.dumps(_old_histograms(prompt_))


def test_the_page_leaves_out_an_annotator_the_attention_checks_exclude(client, researcher, checked_study):  # noqa: F811
    checked_study.owner = researcher
    checked_study.save(update_fields=["owner"])
    researcher_client = type(client)()
    researcher_client.force_login(researcher)
    annotator = start_rating(client, checked_study)
    check = answer_until_check(client, checked_study, annotator)  # prompts answered 40 up to the first check
    rated = Rating.objects.filter(annotator=annotator, prompt__isnull=False).first().prompt
    counted = _page(researcher_client, checked_study, rated)
    assert counted["groups"] == {"all annotators": 1} and counted["bins"] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    submit(client, checked_study, check, unsure="1", rating="")  # one failure
    assert _page(researcher_client, checked_study, rated) == counted
    check = answer_until_check(client, checked_study, annotator)
    before = people_version(checked_study.pk)
    submit(client, checked_study, check, unsure="1", rating="")  # the second: excluded by the rating itself
    assert Annotator.objects.get(pk=annotator.pk).status == Annotator.Status.EXCLUDED
    assert people_version(checked_study.pk) != before
    assert _page(researcher_client, checked_study, rated)["groups"] == {"all annotators": 0}
