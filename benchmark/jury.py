"""The jury view of a study: what would a panel drawn from a chosen population say about each prompt?

The science is `benchmark.science.jury` (raking, cross-fitted predictions, juries, validation); this
module reads the study, resolves the population mix ("as collected", "as a named census" or the
researcher's marginals) and the predictor, and returns the JSON result the page, the job and the
`jury` command share.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from annotation.models import Study
from annotation.selectors import annotators_frame
from config.errors import ApplicationError

from .evaluation import benchmark_frame
from .selectors import job_latest_succeeded

Progress = Callable[[float, str], None]

MODES = ("collected", "census", "custom")
# Traits-based predictors, preferred among those tied with the best: a predictor that gives everyone
# the same prediction cannot let the mix move the jury.
TRAIT_PREDICTORS = ("traits_ramp",)


def jury_columns(*, study: Study) -> list[dict]:
    """The study's demographic columns and their levels (as the export writes them, without blanks
    around), for the page's mix form: [{"column", "levels": [{"level", "share"}]}] with the collected
    share of each level (annotators not excluded)."""
    people = annotators_frame(study=study)
    people = people[people["annotator_status"] != "excluded"]
    out = []
    for column in people.attrs.get("demographic_columns", []):
        values = people[column].dropna().astype(str).str.strip()
        values = values[values != ""]
        if values.empty:
            continue
        shares = values.value_counts(normalize=True).sort_index()
        out.append(
            {
                "column": column,
                "levels": [{"level": k, "share": float(v), "percent": 100.0 * float(v)} for k, v in shares.items()],
            }
        )
    return out


def jury_default_predictor(*, study: Study, ratings: bool = False) -> tuple[str, str]:
    """(predictor, why): the best new-annotator predictor (with `ratings`: the best warm-condition
    predictor) of the study's latest benchmark run; among new-annotator predictors whose MAE is inside
    the best one's interval, one that uses traits.  Without a run, `traits_ramp` (tied best in
    new_annotator on the release) or `observed_ramp` (best in warm), BENCHMARKS.md."""
    from .science.jury import (  # noqa: PLC0415  (heavy: at run time)
        DEFAULT_PREDICTOR,
        DEFAULT_RATINGS_PREDICTOR,
        jury_predictors,
    )

    condition = "warm" if ratings else "new_annotator"
    job = job_latest_succeeded(study=study, kind="benchmark")
    usable = set(jury_predictors(ratings=ratings))
    rows = [
        r
        for r in ((job.result or {}).get("results", []) if job else [])
        if r.get("condition") == condition and r.get("predictor") in usable and r.get("mae") is not None
    ]
    if not rows:
        default = DEFAULT_RATINGS_PREDICTOR if ratings else DEFAULT_PREDICTOR
        return default, (
            f"{default}: no benchmark run of this study has {condition} results; on the release it is the "
            + (
                "best predictor from an annotator's own ratings"
                if ratings
                else "tied-best new-annotator predictor that uses traits"
            )
        )
    best = min(rows, key=lambda r: r["mae"])
    if ratings:
        return best["predictor"], f"{best['predictor']}: best warm MAE ({best['mae']:.3f}) in benchmark job #{job.pk}"
    high = best.get("ci_high") if best.get("ci_high") is not None else best["mae"]
    tied = [r for r in rows if r["predictor"] in TRAIT_PREDICTORS and r["mae"] <= high]
    if tied and tied[0]["predictor"] != best["predictor"]:
        chosen = tied[0]
        return chosen["predictor"], (
            f"{chosen['predictor']}: new-annotator MAE {chosen['mae']:.3f} in benchmark job #{job.pk}, inside the "
            f"interval of the best ({best['predictor']}, {best['mae']:.3f}), and it uses traits"
        )
    return best[
        "predictor"
    ], f"{best['predictor']}: best new-annotator MAE ({best['mae']:.3f}) in benchmark job #{job.pk}"


def _mix_for(*, mode: str, mix: dict | None, census: str | None) -> tuple[dict | None, dict]:
    from .science.jury import census_names, census_read  # noqa: PLC0415

    if mode == "collected":
        return None, {"mode": "collected", "label": "as collected"}
    if mode == "census":
        if census not in census_names():
            raise ApplicationError(f"unknown census {census!r}; shipped: {', '.join(census_names())}")
        document = census_read(census)
        return document["mix"], {
            "mode": "census",
            "label": document["title"],
            "census": census,
            "source": document["source"],
            "notes": document["notes"],
        }
    if mode == "custom":
        if not mix:
            raise ApplicationError("give at least one column's shares for a custom mix")
        return mix, {"mode": "custom", "label": "custom marginals"}
    raise ApplicationError(f"unknown mix mode {mode!r}; choose from {', '.join(MODES)}")


def study_jury(
    *,
    study: Study,
    mode: str = "collected",
    mix: dict | None = None,
    census: str | None = None,
    size: int = 1000,
    n_juries: int = 200,
    threshold: float = 50.0,
    predictor: str | None = None,
    n_fits: int = 5,
    seed: int = 0,
    ratings: bool = False,
    validate: bool = True,
    validation_repeats: int = 5,
    progress: Progress | None = None,
) -> dict:
    """The jury of a study for one mix (see benchmark.science.jury.panel), with the raking report and,
    if `validate`, the held-out validation (30 annotators) on this study."""
    from .science.jury import (  # noqa: PLC0415  (the science imports take seconds)
        VALIDATION_COLUMNS,
        MixError,
        jury_draw,
        jury_fit,
        jury_predictors,
        jury_validate,
        marginals,
        people_table,
        rake,
    )

    report = progress or (lambda fraction, message: None)
    requested, about = _mix_for(mode=mode, mix=mix, census=census)
    if predictor and predictor not in jury_predictors(ratings=ratings):
        kind = "a predictor that learns from an annotator's own ratings" if ratings else "a predictor of new annotators"
        raise ApplicationError(
            f"the jury needs {kind}; {predictor!r} is not one "
            f"(choose from {', '.join(jury_predictors(ratings=ratings))})"
        )
    why = "chosen by the researcher"
    if not predictor:
        predictor, why = jury_default_predictor(study=study, ratings=ratings)
    report(0.02, "reading ratings")
    frame = benchmark_frame(study=study)
    if frame["annotator"].nunique() < 5 or frame["prompt"].nunique() < 1:
        raise ApplicationError("the jury needs at least 5 annotators with ratings")
    people = people_table(frame)
    demographic = [c for c in people.columns if not pd.api.types.is_numeric_dtype(people[c])]
    if requested is None:
        weights = pd.Series(1.0 / len(people), index=people.index)
        raking = {"requested": None, "feasible": True, "problems": [], "effective_n": float(len(people))}
        columns = demographic
    else:
        try:
            raked = rake(people, requested)
        except MixError as exc:
            raise ApplicationError(f"population mix: {exc}") from None
        weights = raked.weights
        raking = raked.as_dict()
        columns = list(requested)
    cut = 0.6 if validate else 0.9
    try:
        fit = jury_fit(
            frame,
            predictor=predictor,
            n_fits=n_fits,
            seed=seed,
            ratings=ratings,
            progress=lambda f, m: report(0.05 + (cut - 0.1) * f, f"jury fit: {m}"),
        )
        result = jury_draw(fit, weights, size=size, n_juries=n_juries, threshold=threshold, seed=seed, columns=columns)
    except ValueError as exc:
        raise ApplicationError(str(exc)) from None
    spread = fit.predictions.std(axis=1).max() if len(fit.annotators) > 1 else 0.0
    result.update(
        {
            "study": study.slug,
            "mix": about,
            "requested_marginals": requested,
            "achieved_marginals": marginals(fit.people, weights.reindex(fit.annotators).fillna(0.0), columns),
            "collected_marginals": marginals(fit.people, [1.0] * len(fit.annotators), columns),
            "raking": raking,
            "predictor": predictor,
            "predictor_why": why,
            "predictions_differ": bool(spread > 1e-9),
            "ratings": ratings,
            "n_annotators": len(fit.annotators),
            "seed": seed,
        }
    )
    if validate:
        if len(people) < 40:
            result["validation"] = None
            result["validation_note"] = "not run: the validation holds out 30 annotators and needs at least 40"
        else:
            held_columns = [c for c in VALIDATION_COLUMNS if c in people.columns] or demographic
            try:
                result["validation"] = jury_validate(
                    frame,
                    columns=held_columns,
                    threshold=threshold,
                    size=size,
                    n_juries=n_juries,
                    predictor=predictor,
                    n_fits=n_fits,
                    repeats=validation_repeats,
                    ratings=ratings,
                    seed=seed,
                    progress=lambda f, m: report(cut + (0.98 - cut) * f, f"validation: {m}"),
                )
            except ValueError as exc:  # e.g. no demographic column to build the held-out mix from
                result["validation"] = None
                result["validation_note"] = f"not run: {exc}"
    report(1.0, "done")
    return result
