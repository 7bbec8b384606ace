"""A pilot for disagreement targeting (issue 12): ratings already collected in a study (the selection's own
study, or a pilot study of the same owner) placed on a pool's candidates, a model of each candidate's rating
SD fitted to them, and its held-out rank correlation.

A pilot study's prompt matches a candidate by external id, or else by its exact text (a study created from a
selection keeps the ids; one set up by hand may only share the texts). Excluded annotators do not count.
"""

from __future__ import annotations

import math

import numpy as np
from django.db.models import Q

from annotation.models import Annotator, Prompt, Study
from annotation.selectors import rating_rows
from config.errors import ApplicationError
from jobs.registry import Progress

from .science.curation import Pool
from .science.curation.disagreement import (
    MIN_PILOT_PROMPTS,
    MIN_RATINGS,
    disagreement_holdout,
    disagreement_predict,
    standardized,
)

DEFAULT_WEIGHT = 0.05
HOLDOUT_FOLDS = 5


def pilot_study_get(*, study: Study, slug: str, user=None) -> Study:
    """The pilot study a selection of `study` may use: `study` itself or another study of its owner that the
    requester (when known) may see. ApplicationError (400) otherwise, naming why."""
    slug = (slug or "").strip()
    if slug == study.slug:
        return study
    pilot = Study.objects.filter(slug=slug).first()
    if pilot is not None and user is not None and user.is_authenticated:
        from annotation.access import study_allows  # noqa: PLC0415  (annotation is below benchmark: allowed)

        if not study_allows(user, pilot, "view"):
            pilot = None
    if pilot is None:
        raise ApplicationError(f"no study {slug[:60]!r} among the studies you may see", extra={"field": "pilot"})
    if pilot.owner_id != study.owner_id:
        raise ApplicationError(
            f"study {slug!r} belongs to another owner; a pilot must be a study of this study's owner",
            extra={"field": "pilot"},
        )
    return pilot


def pilot_matrix(*, pool: Pool, pilot: Study) -> np.ndarray:
    """The pilot's annotators × the pool's candidates (NaN where not rated or Unsure); ApplicationError if
    fewer than MIN_PILOT_PROMPTS candidates have two ratings or more."""
    prompts = list(Prompt.objects.filter(study=pilot).values_list("id", "external_id", "text"))
    by_id = {external_id: i for i, external_id in enumerate(pool.frame["external_id"])}
    by_text = {}
    for i, text in enumerate(pool.frame["text"]):
        by_text.setdefault(text, i)
    column = {}
    for pk, external_id, text in prompts:
        index = by_id.get(external_id, by_text.get(text))
        if index is not None:
            column[pk] = index
    rows = rating_rows(study=pilot)
    excluded = set(Annotator.objects.filter(study=pilot, status=Annotator.Status.EXCLUDED).values_list("id", flat=True))
    rows = rows[rows["prompt_id"].isin(column.keys()) & ~rows["annotator_id"].isin(excluded)]
    who = {a: i for i, a in enumerate(dict.fromkeys(rows["annotator_id"].tolist()))}
    matrix = np.full((len(who), len(pool)), np.nan)
    if len(rows):
        matrix[rows["annotator_id"].map(who).to_numpy(), rows["prompt_id"].map(column).to_numpy()] = rows[
            "rating"
        ].to_numpy(dtype=np.float64)
    rated = int((np.isfinite(matrix).sum(axis=0) >= MIN_RATINGS).sum())
    if rated < MIN_PILOT_PROMPTS:
        raise ApplicationError(
            f"the pilot (study {pilot.slug!r}) has {rated} candidate prompt(s) rated by two annotators or more; "
            f"disagreement targeting needs at least {MIN_PILOT_PROMPTS}",
            extra={"field": "pilot"},
        )
    return matrix


def studies_with_ratings(*, studies) -> set[int]:
    """The ids of those studies with a prompt rating by an annotator who is not excluded (one query)."""
    return set(
        Annotator.objects.filter(study__in=studies, ratings__prompt__isnull=False)
        .filter(~Q(status=Annotator.Status.EXCLUDED))
        .values_list("study_id", flat=True)
        .distinct()
    )


def selection_disagreement(
    *,
    pool: Pool,
    pilot: Study,
    embedding: bool = True,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, dict]:
    """(each candidate's predicted rating SD, a plain-data report: the pilot's size, the model, its held-out
    Spearman ρ against the harm-level heuristic's on the same prompts). With `embedding`, the candidates'
    MiniLM `embeddings` in pool order if the caller has them, else computed here."""
    matrix = pilot_matrix(pool=pool, pilot=pilot)
    if not embedding:
        embeddings = None
    elif embeddings is None:
        if progress:
            progress(0.05, f"embedding {len(pool)} candidates (MiniLM)")
        from .science.predictors.common import embed_texts  # noqa: PLC0415  (torch: imported when used)

        embeddings = embed_texts(pool.frame["text"].tolist())
    if progress:
        progress(0.08, f"fitting the disagreement model to {matrix.shape[0]} pilot annotators")
    midpoint = (pilot.scale_min + pilot.scale_max) / 2
    predicted = disagreement_predict(pool, matrix, embeddings=embeddings, midpoint=midpoint)
    rated = int((np.isfinite(matrix).sum(axis=0) >= MIN_RATINGS).sum())
    try:
        holdout = disagreement_holdout(
            pool, matrix, embeddings=embeddings, midpoint=midpoint, folds=HOLDOUT_FOLDS, seed=seed
        )
    except ValueError as exc:  # fewer prompts than a fold each needs
        holdout = {"spearman": None, "folds": HOLDOUT_FOLDS, "why": str(exc)}
    for key in ("spearman", "harm_heuristic_spearman"):
        value = holdout.get(key)
        if value is not None and not math.isfinite(value):
            holdout[key] = None  # e.g. a constant SD among the held-out prompts
    info = {
        "pilot_study": pilot.slug,
        "pilot_annotators": int(matrix.shape[0]),
        "pilot_prompts": rated,
        "model": "mean route: features" + (" + MiniLM" if embedding else "") + ", + harm heuristic",
        "heldout": holdout,
    }
    return predicted, info


def selection_score(predicted: np.ndarray) -> np.ndarray:
    """What the objective rewards: the predicted SD standardised (a weight then reads as objective units per
    SD of predicted disagreement, whatever the pilot's scale)."""
    return standardized(predicted)
