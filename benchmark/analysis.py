"""The study report: ratings from the database, statistics from the Django-free science core."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from django.utils import timezone

from annotation.models import Study
from annotation.selectors import RatingsParts, prompts_frame, ratings_frame, ratings_parts

from .science.mixed_effects import fit_all
from .science.release import DEMOGRAPHIC_COLUMNS
from .science.report import descriptive_columns, descriptive_report, to_jsonable

Progress = Callable[[float, str], None]


def study_frame(*, study: Study, include_excluded: bool = False):
    """The long ratings frame the analyses use; annotators excluded for failed checks are left out."""
    return _kept(ratings_frame(study=study), include_excluded=include_excluded)


def _kept(frame: pd.DataFrame, *, include_excluded: bool, columns: list[str] | None = None) -> pd.DataFrame:
    """`frame` without the ratings of excluded annotators (unless `include_excluded`), cut to `columns`."""
    columns = list(frame.columns) if columns is None else columns
    if include_excluded or "annotator_status" not in frame:
        return frame if columns == list(frame.columns) else frame[columns]
    keep = (frame["annotator_status"] != "excluded").to_numpy()
    return frame.loc[keep, columns].reset_index(drop=True)


def descriptive_frame(parts: RatingsParts, *, include_excluded: bool = False) -> pd.DataFrame:
    """The frame `descriptive_report` gets: the `study_frame` rows with only the columns it reads
    (`report.descriptive_columns`): without the prompt features, trait scores and timings that the mixed
    models need, which at 1.5 million ratings are 0.8 GB of the 1.3 GB frame; the demographics as categoricals."""
    annotator_columns = ["annotator_status", *DEMOGRAPHIC_COLUMNS]
    # The demographics as categoricals (RatingsMatrix.from_frame reads them back as their values): at 1.5
    # million ratings, 15 MB instead of 280.
    frame = parts.frame(traits=annotator_columns, features=["harm_level"], categories=annotator_columns)
    return _kept(frame, include_excluded=include_excluded, columns=descriptive_columns(frame.columns))


def mixed_frame(parts: RatingsParts, *, include_excluded: bool = False) -> pd.DataFrame:
    """The frame the mixed models get: the whole `study_frame`, joined from `parts`."""
    return _kept(parts.frame(), include_excluded=include_excluded)


def study_report(
    *,
    study: Study,
    mixed_effects: bool = True,
    include_excluded: bool = False,
    seed: int = 0,
    n_boot: int = 1000,
    progress: Progress | None = None,
) -> dict:
    """The disagreement report of a study (see benchmark.science.report), with prompt texts added.

    The descriptive report reads a frame of the columns it needs (`descriptive_frame`); the mixed models,
    after it, the whole `study_frame` (they need the prompt features), joined from the same rows."""
    report_progress = progress or (lambda fraction, message: None)
    report_progress(0.05, "reading ratings")
    prompts = prompts_frame(study=study)
    parts = ratings_parts(study=study, prompts=prompts)
    frame = descriptive_frame(parts, include_excluded=include_excluded)
    if not mixed_effects:
        del parts  # nothing else joins from them: their memory goes before the report's
    report_progress(0.2, f"agreement statistics over {len(frame):,} ratings")
    report = descriptive_report(frame, seed=seed, n_boot=n_boot)
    del frame
    if mixed_effects:
        report_progress(0.6, "mixed-effects models (RQ1–RQ3)")
        frame = mixed_frame(parts, include_excluded=include_excluded)
        del parts
        try:
            report["mixed_effects"] = to_jsonable(fit_all(frame, seed=seed))
        except (KeyError, ValueError) as exc:  # no features or traits to model
            report["mixed_effects"] = None
            report["reasons"]["mixed_effects"] = f"not fitted: {exc}"
        del frame
    texts = dict(zip(prompts["external_id"], prompts["text"]))
    for row in report["prompts"]:
        row["text"] = texts.get(row["prompt"], "")
    report["study"] = study.slug
    report["generated_at"] = timezone.now().isoformat()
    report["include_excluded"] = include_excluded
    report_progress(0.95, "saving")
    return report
