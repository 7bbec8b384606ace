"""Finishing the questionnaires touches only the finisher's rows: no study-wide work in a participant's request.

Factor scores are computed across the study's annotators; they are read (`annotators_frame`) from the
subscale means, never written for everyone when one person finishes. Two annotators finishing at the
same moment used to lock each other's rows in opposite orders and deadlock on PostgreSQL.
"""

import re

import numpy as np
import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation import surveys
from annotation.models import Annotator, Prompt, Study, SurveyResponse
from annotation.selectors import annotators_frame
from annotation.services.recruitment import (
    RecruitmentParams,
    annotator_consent,
    annotator_enter,
    annotator_next_step,
    instrument_get,
    survey_submit,
)
from tests.integration.test_concurrency import run_together

# The five questionnaires whose subscale means feed Factor_1..3.
SCORED = ["schwartz_short", "mfq20", "iri_brief", "mini_ipip_intellect", "ai_literacy"]
FACTORS = surveys.FACTOR_COLUMNS


def _answers(key: str, rng: np.random.Generator) -> dict[str, str]:
    """Form data answering every item of a scored questionnaire at random within its scale."""
    definition = surveys.instrument_load(key)
    data = {}
    for item in definition["items"]:
        assert item["type"] == "scale", f"{key}: only scale items are expected here"
        scale = item.get("scale") or definition["scale"]
        data[item["id"]] = str(int(rng.integers(scale["min"], scale["max"] + 1)))
    return data


def _study(slug: str) -> Study:
    study = Study.objects.create(slug=slug, title=slug, status="recruiting", instruments=list(SCORED))
    # A recruiting study admits annotators only with something to rate.
    Prompt.objects.bulk_create([Prompt(study=study, external_id=str(i), text=f"P{i}", order=i) for i in range(3)])
    return study


def _consented(study: Study, i: int) -> Annotator:
    annotator, _ = annotator_enter(study=study, params=RecruitmentParams(f"surveyor{i:016d}", "s", "t"))
    return annotator_consent(annotator=annotator, agree=True)


def _all_but_last(annotator: Annotator, rng: np.random.Generator) -> None:
    for key in SCORED[:-1]:
        assert survey_submit(annotator=annotator, key=key, data=_answers(key, rng)) == {}


def _expected_factors(study: Study) -> pd.DataFrame:
    """Factor_1..3 computed serially from the stored answers' subscale means (one row per annotator pk)."""
    means: dict[int, dict] = {}
    for annotator_id, scores in SurveyResponse.objects.filter(annotator__study=study).values_list(
        "annotator_id", "scores"
    ):
        means.setdefault(annotator_id, {}).update(scores)
    frame = pd.DataFrame.from_dict(means, orient="index").sort_index()
    return surveys.factor_scores(frame)


@pytest.mark.services
def test_simultaneous_last_questionnaires_all_succeed(postgres):
    study = _study("crowd-surveys")
    rng = np.random.default_rng(8)
    people = [_consented(study, i) for i in range(8)]
    for person in people:
        _all_but_last(person, rng)
    last = SCORED[-1]
    forms = [_answers(last, rng) for _ in people]

    results, errors = run_together(
        [lambda a=a, f=f: survey_submit(annotator=a, key=last, data=f) for a, f in zip(people, forms)]
    )

    assert errors == []
    assert results == [{}] * len(people)
    for person in people:
        person.refresh_from_db()
        assert person.status == Annotator.Status.SURVEYING
        assert annotator_next_step(annotator=person) == ("instructions", None)
    assert SurveyResponse.objects.filter(annotator__study=study).count() == len(people) * len(SCORED)
    read = annotators_frame(study=study)[FACTORS]
    expected = _expected_factors(study)
    assert list(read.index) == list(expected.index) == sorted(p.pk for p in people)
    np.testing.assert_allclose(read.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)


def _finisher_queries(n_others: int) -> tuple[Annotator, list[str]]:
    """SQL of one annotator's last questionnaire in a study where `n_others` have finished theirs."""
    study = _study(f"others-{n_others}")
    rng = np.random.default_rng(n_others)
    inputs = [name[: -len(surveys.Z_SUFFIX)] for name in surveys.load_factor_loadings().index]
    Annotator.objects.bulk_create(
        Annotator(
            study=study,
            pseudonym=f"O{i}",
            status=Annotator.Status.SURVEYING,
            traits=dict(zip(inputs, map(float, rng.uniform(1, 5, size=len(inputs))))),
        )
        for i in range(n_others)
    )
    person = _consented(study, 0)
    _all_but_last(person, rng)
    instrument_get(SCORED[-1])  # the questionnaire's row exists, as it does after the first participant
    form = _answers(SCORED[-1], rng)
    with CaptureQueriesContext(connection) as captured:
        assert survey_submit(annotator=person, key=SCORED[-1], data=form) == {}
    assert annotator_next_step(annotator=person) == ("instructions", None)
    return person, [q["sql"] for q in captured.captured_queries]


@pytest.mark.django_db
def test_last_questionnaire_touches_only_the_finishers_rows():
    _, few = _finisher_queries(2)
    person, many = _finisher_queries(30)
    print(f"queries of the last questionnaire: {len(few)} (2 others), {len(many)} (30 others)")
    assert len(few) == len(many), "queries of one submission grow with the study's size"
    table = Annotator._meta.db_table
    on_annotators = re.compile(rf'^(UPDATE|DELETE FROM) "{table}"|FROM "{table}"')
    only_theirs = re.compile(rf'^\(?"{table}"\."id" = {person.pk}\)?( LIMIT \d+)?( FOR UPDATE)?$')
    touched = [sql for sql in many if on_annotators.search(sql)]
    assert touched, "the submission reads and writes the finisher's row"
    for sql in touched:  # every read, lock or write of annotator rows names this annotator alone
        assert only_theirs.match(sql.rsplit(" WHERE ", 1)[-1]), sql[:200] + " … " + sql[-200:]
