"""Factor scores of collected annotators: the release's loadings on z-scored subscale means."""

import numpy as np
import pandas as pd
import pytest

from annotation import surveys
from annotation.models import Annotator, Study
from annotation.services.traits import factor_inputs, study_factor_scores_refresh

pytestmark = pytest.mark.django_db


def test_factor_scores_computed_within_the_study_sample():
    study = Study.objects.create(slug="t", title="t")
    names = factor_inputs()
    assert len(names) == 21 and "MFQ_Harm_mean" in names and "AI_literacy_score_mean" in names
    rng = np.random.default_rng(3)
    means = rng.uniform(1, 5, size=(4, 21))
    people = [
        Annotator.objects.create(study=study, pseudonym=f"P{i}", traits=dict(zip(names, means[i]))) for i in range(4)
    ]
    Annotator.objects.create(study=study, pseudonym="P9", traits={"MFQ_Harm_mean": 3.0})  # incomplete
    assert study_factor_scores_refresh(study=study) == 4
    loadings = surveys.load_factor_loadings().to_numpy()
    z = (means - means.mean(axis=0)) / means.std(axis=0, ddof=1)
    expected = z @ loadings
    for person, row in zip(people, expected):
        person.refresh_from_db()
        got = [person.traits[f"Factor_{k}"] for k in (1, 2, 3)]
        np.testing.assert_allclose(got, row, rtol=0, atol=1e-12)
    assert "Factor_1" not in Annotator.objects.get(pseudonym="P9").traits
    scores = pd.DataFrame([[p.traits[f"Factor_{k}"] for k in (1, 2, 3)] for p in people])
    np.testing.assert_allclose(scores.mean().to_numpy(), 0, atol=1e-12)


def test_one_respondent_gives_no_scores():
    study = Study.objects.create(slug="t1", title="t1")
    Annotator.objects.create(study=study, pseudonym="P1", traits=dict.fromkeys(factor_inputs(), 3.0))
    assert study_factor_scores_refresh(study=study) == 0
