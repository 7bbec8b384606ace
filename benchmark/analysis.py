"""The study report: ratings from the database, statistics from the Django-free science core."""

from __future__ import annotations

from collections.abc import Callable

from django.utils import timezone

from annotation.models import Study
from annotation.selectors import prompts_frame, ratings_frame

from .science.mixed_effects import fit_all
from .science.report import descriptive_report, to_jsonable

Progress = Callable[[float, str], None]


def study_frame(*, study: Study, include_excluded: bool = False):
    """The long ratings frame the analyses use; annotators excluded for failed checks are left out."""
    frame = ratings_frame(study=study)
    if not include_excluded and "annotator_status" in frame:
        frame = frame[frame["annotator_status"] != "excluded"].reset_index(drop=True)
    return frame


def study_report(
    *,
    study: Study,
    mixed_effects: bool = True,
    include_excluded: bool = False,
    seed: int = 0,
    n_boot: int = 1000,
    progress: Progress | None = None,
) -> dict:
    """The disagreement report of a study (see benchmark.science.report), with prompt texts added."""
    report_progress = progress or (lambda fraction, message: None)
    report_progress(0.05, "reading ratings")
    frame = study_frame(study=study, include_excluded=include_excluded)
    report_progress(0.2, f"agreement statistics over {len(frame):,} ratings")
    report = descriptive_report(frame, seed=seed, n_boot=n_boot)
    if mixed_effects:
        report_progress(0.6, "mixed-effects models (RQ1–RQ3)")
        try:
            report["mixed_effects"] = to_jsonable(fit_all(frame, seed=seed))
        except (KeyError, ValueError) as exc:  # no features or traits to model
            report["mixed_effects"] = None
            report["reasons"]["mixed_effects"] = f"not fitted: {exc}"
    prompts = prompts_frame(study=study)
    texts = dict(zip(prompts["external_id"], prompts["text"]))
    for row in report["prompts"]:
        row["text"] = texts.get(row["prompt"], "")
    report["study"] = study.slug
    report["generated_at"] = timezone.now().isoformat()
    report["include_excluded"] = include_excluded
    report_progress(0.95, "saving")
    return report
