"""Factor scores of collected annotators: the release's loadings on z-scored subscale means, computed on read."""

import numpy as np
import pytest

from annotation import surveys
from annotation.models import Annotator, Study
from annotation.selectors import annotators_frame, study_factor_scores

pytestmark = pytest.mark.django_db

FACTORS = surveys.FACTOR_COLUMNS


def _answered(study, n, seed=3):
    names = surveys.factor_inputs()
    means = np.random.default_rng(seed).uniform(1, 5, size=(n, len(names)))
    people = [
        Annotator.objects.create(study=study, pseudonym=f"P{i}", traits=dict(zip(names, map(float, means[i]))))
        for i in range(n)
    ]
    return people, means


def _by_hand(means):
    z = (means - means.mean(axis=0)) / means.std(axis=0, ddof=1)
    return z @ surveys.load_factor_loadings().to_numpy()


def test_factor_scores_computed_within_the_study_sample():
    study = Study.objects.create(slug="t", title="t")
    names = surveys.factor_inputs()
    assert len(names) == 21 and "MFQ_Harm_mean" in names and "AI_literacy_score_mean" in names
    people, means = _answered(study, 4)
    partial = Annotator.objects.create(study=study, pseudonym="P9", traits={"MFQ_Harm_mean": 3.0})  # incomplete
    other = Study.objects.create(slug="o", title="o")
    _answered(other, 3, seed=4)  # another study's sample does not move these scores

    scores = study_factor_scores(study=study)
    assert list(scores.index) == [p.pk for p in people] and list(scores.columns) == FACTORS
    np.testing.assert_allclose(scores.to_numpy(), _by_hand(means), rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores.mean().to_numpy(), 0, atol=1e-12)

    frame = annotators_frame(study=study)
    np.testing.assert_allclose(frame.loc[[p.pk for p in people], FACTORS].to_numpy(), _by_hand(means), atol=1e-12)
    assert frame.loc[partial.pk, FACTORS].isna().all()
    assert frame.attrs["trait_columns"][:3] == FACTORS
    for person in people:  # nothing was written
        person.refresh_from_db()
        assert "Factor_1" not in person.traits


def test_a_few_annotators_get_the_scores_of_the_whole_study():
    """Exports read annotators in chunks; each chunk's scores are those of the whole sample."""
    study = Study.objects.create(slug="t", title="t")
    people, means = _answered(study, 6)
    chunk = [people[1].pk, people[4].pk]
    frame = annotators_frame(study=study, annotator_ids=chunk)
    assert list(frame.index) == chunk
    np.testing.assert_allclose(frame[FACTORS].to_numpy(), _by_hand(means)[[1, 4]], rtol=0, atol=1e-12)


def test_scores_stored_by_an_earlier_version_are_replaced_and_imported_ones_kept():
    study = Study.objects.create(slug="t", title="t")
    people, means = _answered(study, 3)
    stale = people[0]
    stale.traits = {**stale.traits, "Factor_1": 99.0, "Factor_2": 99.0, "Factor_3": 99.0}
    stale.save(update_fields=["traits"])
    imported = Annotator.objects.create(
        study=study, pseudonym="R1", traits={"Factor_1": 0.5, "Factor_2": -0.25, "Factor_3": 1.0}
    )
    frame = annotators_frame(study=study)
    np.testing.assert_allclose(frame.loc[[p.pk for p in people], FACTORS].to_numpy(), _by_hand(means), atol=1e-12)
    assert frame.loc[imported.pk, FACTORS].tolist() == [0.5, -0.25, 1.0]


def test_one_respondent_gives_no_scores():
    study = Study.objects.create(slug="t1", title="t1")
    person = Annotator.objects.create(study=study, pseudonym="P1", traits=dict.fromkeys(surveys.factor_inputs(), 3.0))
    assert study_factor_scores(study=study).empty
    frame = annotators_frame(study=study)
    assert not set(FACTORS) & set(frame.columns)
    assert frame.loc[person.pk, "MFQ_Harm_mean"] == 3.0


def test_no_spread_gives_no_scores():
    study = Study.objects.create(slug="t2", title="t2")
    for i in range(2):
        Annotator.objects.create(study=study, pseudonym=f"P{i}", traits=dict.fromkeys(surveys.factor_inputs(), 3.0))
    assert study_factor_scores(study=study).empty
    assert not set(FACTORS) & set(annotators_frame(study=study).columns)
