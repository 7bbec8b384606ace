"""Derived annotator traits: the three PluriHarms factor scores from questionnaire subscale means."""

from __future__ import annotations

import pandas as pd
from django.db import transaction

from .. import surveys
from ..models import Annotator, Study


def factor_inputs() -> list[str]:
    """The 21 subscale means the loadings expect (names as stored in Annotator.traits)."""
    return [name[: -len(surveys.Z_SUFFIX)] for name in surveys.load_factor_loadings().index]


@transaction.atomic
def study_factor_scores_refresh(*, study: Study) -> int:
    """Recompute Factor_1..3 for every annotator of the study who has all 21 subscale means.

    The release z-scored each subscale mean within its own sample before applying the loadings; the
    product does the same within the study's sample, so scores move a little as people join. With
    fewer than two complete annotators, or a subscale nobody varies on, there is nothing to compute.
    Returns the number of annotators updated.
    """
    needed = factor_inputs()
    people = [
        a
        for a in Annotator.objects.select_for_update().filter(study=study).exclude(traits={})
        if all(isinstance(a.traits.get(n), (int, float)) for n in needed)
    ]
    if len(people) < 2:
        return 0
    frame = pd.DataFrame([[a.traits[n] for n in needed] for a in people], columns=needed)
    try:
        scores = surveys.factor_scores(frame)
    except ValueError:  # zero spread on some subscale (e.g. two identical respondents)
        return 0
    for annotator, row in zip(people, scores.itertuples(index=False)):
        annotator.traits = {**annotator.traits, **dict(zip(scores.columns, map(float, row)))}
    Annotator.objects.bulk_update(people, ["traits"], batch_size=500)
    return len(people)
