"""The model benchmark of a study: predictors scored on the PluriHarms protocol (science/protocol.py)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import pandas as pd
from django.conf import settings

from annotation.models import Study, Upload
from annotation.selectors import prompts_frame
from annotation.services.uploads import upload_get, upload_read
from config.errors import ApplicationError

from .analysis import study_frame
from .science.predictors import REGISTRY, builtin_names, get_predictor
from .science.predictors.uploaded import PredictionsFileError, read_predictions_csv
from .science.protocol import CONDITIONS, LOCKED_SEEDS, run_seeds

Progress = Callable[[float, str], None]

# The paper's figures (PluriHarms, Table 3), shown beside ours and marked as published, not rerun,
# and only for a study whose prompts are the release's (`shows_published`): elsewhere they mean nothing.
# The paper's SafetyAnalyst-8B is the full system (harm-benefit trees); our safetyanalyst_* predictors
# see only the 16 released action-category probabilities (no effects, extent, likelihood, immediacy or
# benefits), so they are not a rerun of it.
PUBLISHED = [
    {"predictor": "GPT-5 k-shot", "condition": "individual", "mae": 0.195},
    {"predictor": "Claude Sonnet-3.7 k-shot", "condition": "aggregated", "mae": 0.250},
    {"predictor": "SafetyAnalyst-8B", "condition": "individual", "mae": 0.311},
    {"predictor": "SafetyAnalyst-8B", "condition": "aggregated", "mae": 0.361},
    {"predictor": "WildGuard-7B", "condition": "individual", "mae": 0.364},
    {"predictor": "random", "condition": "individual", "mae": 0.386},
]


@functools.lru_cache(maxsize=1)
def _release_prompts() -> frozenset[tuple[str, str]]:
    from .science.release import RELEASE_DIR, release_read  # noqa: PLC0415  (read once, when first asked)

    prompts = release_read(RELEASE_DIR).prompts
    return frozenset(zip(prompts["external_id"].astype(str), prompts["text"].astype(str).str.strip()))


def shows_published(*, study: Study) -> bool:
    """True when the study's prompts are exactly the PluriHarms release's (same ids and texts)."""
    prompts = prompts_frame(study=study)
    if len(prompts) != len(_release_prompts()):
        return False
    mine = frozenset(zip(prompts["external_id"].astype(str), prompts["text"].astype(str).str.strip()))
    return mine == _release_prompts()


def published_for(*, study: Study) -> list[dict]:
    return PUBLISHED if shows_published(study=study) else []


def benchmark_frame(*, study: Study) -> pd.DataFrame:
    """The long frame with prompt text, which the text models need."""
    frame = study_frame(study=study)
    prompts = prompts_frame(study=study)
    frame["text"] = frame["prompt"].map(dict(zip(prompts["external_id"], prompts["text"]))).fillna("")
    return frame


# The benchmark form groups the built-in predictors by family (the module that defines them), with one
# line on what the family does.
FAMILIES = {
    "baselines": (
        "Baselines",
        "Chance, constants and per-annotator or per-prompt averages: the floor every model must beat.",
    ),
    "features": (
        "Prompt features",
        "A prompt's mean or median rating from its 62 annotated features and harm level; the same for everyone.",
    ),
    "embeddings": ("Text embeddings", "Models on MiniLM embeddings of the prompt text (computed offline, no network)."),
    "personalized": ("Personalized ramps", "A population score passed through each annotator's own saturating ramp."),
    "traits_model": ("Annotator traits", "New annotators: the ramp predicted from demographics and survey traits."),
    "collaborative": (
        "Collaborative (warm only)",
        "Other annotators' ratings of the same prompt; scored in the warm condition only.",
    ),
    "safetyanalyst": (
        "SafetyAnalyst aggregation",
        "SafetyAnalyst's aggregation of the 16 released action-category probabilities.",
    ),
}
OTHER_FAMILY = ("Other", "Predictors registered outside the families above.")

# Seconds of fit + predict per split and seed, all of the predictor's conditions together, on the
# PluriHarms release (100 annotators x 150 prompts): the "Seconds" column of BENCHMARKS.md's Prediction
# table (10 splits x 10 seeds, run 2026-11-29 on 2 shared CPUs) summed over conditions and divided by 100.
# tests/benchmark/test_benchmark_form.py checks them against that table. None: not measured.
SECONDS_PER_SPLIT_SEED = {
    "uniform_random": 0.09,
    "global_mean": 0.07,
    "global_median": 0.11,
    "annotator_mean": 0.13,
    "annotator_median": 0.14,
    "prompt_mean": 0.09,
    "prompt_median": 0.10,
    "observed_ramp": 2.53,
    "soft_impute": 2.70,
    "feature_ridge": 0.62,
    "feature_ridge_median": 0.63,
    "feature_boosting": 3.61,
    "embedding_ridge": 0.75,
    "embedding_knn": 2.20,
    "feature_ramp": 0.99,
    "embedding_ramp": 0.88,
    "ensemble_ramp": 5.31,
    "traits_ramp": 0.28,
    "pooled_ramp": 0.24,
    "safetyanalyst_reference": 0.47,
}
# The form preselects the predictors measured at most this many seconds per split and seed: a default
# run of the fast ones (15 of the 21 at the figures above), not all of them.
DEFAULT_MAX_SECONDS = 1.0


def _one_line(description: str, limit: int = 150) -> str:
    """A predictor's description cut to its first clause (to the first ". ", ": " or "; "), at most `limit`."""
    line = re.split(r"\. |: |; ", description, maxsplit=1)[0].rstrip(".")
    return line if len(line) <= limit else line[: limit - 1].rsplit(" ", 1)[0] + "…"


def predictor_families() -> list[dict]:
    """The built-in predictors for the benchmark form, by family: name, one line on what it does, the
    time estimate per split and seed (None if not measured) and whether it is preselected."""
    families: dict[str, dict] = {}
    for name in builtin_names():
        cls = REGISTRY[name]
        module = cls.__module__.rsplit(".", 1)[-1]
        label, blurb = FAMILIES.get(module, OTHER_FAMILY)
        family = families.setdefault(module, {"key": module, "label": label, "blurb": blurb, "predictors": []})
        seconds = SECONDS_PER_SPLIT_SEED.get(name)
        family["predictors"].append(
            {
                "name": name,
                "description": _one_line(cls.description or ""),
                "seconds": seconds,
                "default": seconds is not None and seconds <= DEFAULT_MAX_SECONDS,
            }
        )
    order = list(FAMILIES)
    return sorted(families.values(), key=lambda f: order.index(f["key"]) if f["key"] in order else len(order))


def run_estimate_text(seconds: float, *, unmeasured: int = 0) -> str:
    """'about 9 min' for the form (static/js/site.js writes the same text as boxes are ticked)."""
    text = f"about {round(seconds)} s" if seconds < 90 else f"about {round(seconds / 60)} min"
    return text + (f", plus {unmeasured} predictor(s) not measured" if unmeasured else "")


def default_run_estimate(families: list[dict], *, splits: int = 10, seeds: int = 10) -> str:
    chosen = [p["seconds"] for f in families for p in f["predictors"] if p["default"]]
    return run_estimate_text(sum(chosen) * splits * seeds)


def predictor_names() -> list[str]:

    return sorted(REGISTRY)


def builtin_predictors() -> list[str]:

    return builtin_names()


def _instantiate(name: str, *, study: Study, upload_id: int | None, frame: pd.DataFrame):

    if name == "uploaded":
        if upload_id is None:
            raise ApplicationError("the 'uploaded' predictor needs an uploaded predictions file")
        upload = upload_get(study=study, upload_id=upload_id, kind=Upload.Kind.PREDICTIONS)
        try:
            predictions = read_predictions_csv(
                upload_read(upload=upload),
                prompts=frame["prompt"].unique(),
                annotators=frame["annotator"].unique(),
            )
        except PredictionsFileError as exc:  # e.g. the study's prompts changed since the upload was checked
            raise ApplicationError(f"predictions upload #{upload.pk} no longer fits the study: {exc}") from None
        return get_predictor("uploaded", frame=predictions)
    if name.startswith("llm_"):
        if not settings.LLM_BASE_URL or not settings.LLM_MODEL:
            raise ApplicationError(f"{name} needs LLM_BASE_URL and LLM_MODEL in the settings")
        return get_predictor(
            name,
            base_url=settings.LLM_BASE_URL,
            model=settings.LLM_MODEL,
            api_key=settings.LLM_API_KEY or None,
            cache_dir=str(settings.LLM_CACHE_DIR),
        )
    return get_predictor(name)


GROUP_PERMUTATIONS = 999
GROUPS_METHOD = (
    "Per predictor × condition and trait column: each annotator's MAE (averaged over the splits and seeds "
    "where they were scored), its mean per level with the 95% t-interval over annotators (numeric traits "
    "in tertiles), the gap between the worst- and best-served level among levels of at least 5 "
    f"annotators, and a permutation test of that gap ({GROUP_PERMUTATIONS} shuffles of the level labels), "
    "with Benjamini–Hochberg q-values over every gap of the run."
)


def benchmark_groups(frame: pd.DataFrame, result, *, n_perm: int = GROUP_PERMUTATIONS, seed: int = 0) -> list[dict]:
    """Error by group (`science.jury.seeds_error_by_group`) for every predictor × condition of a
    SeedsResult kept with its per-seed results: one dict per predictor × condition × trait column."""
    from .science.jury import seeds_error_by_group  # noqa: PLC0415  (only a run needs it)

    return seeds_error_by_group(frame, result, n_perm=n_perm, seed=seed)


def groups_table(groups: list[dict]) -> pd.DataFrame:
    """The `groups` block as one row per predictor × condition × column × level (the CSV download)."""
    rows = [
        {
            "predictor": g["predictor"],
            "condition": g["condition"],
            "column": g["column"],
            "level": level["level"],
            "n": level["n"],
            "mae": level["mae"],
            "ci_low": level["ci_low"],
            "ci_high": level["ci_high"],
            "best": g["best"],
            "worst": g["worst"],
            "gap": g["gap"],
            "p_value": g["p_value"],
            "q_value": g.get("q_value"),
        }
        for g in groups
        for level in g["levels"]
    ]
    columns = ["predictor", "condition", "column", "level", "n", "mae", "ci_low", "ci_high", "best", "worst"]
    return pd.DataFrame(rows, columns=[*columns, "gap", "p_value", "q_value"])


def study_benchmark(
    *,
    study: Study,
    predictors: list[str] | None = None,
    n_splits: int = 10,
    seed: int = 0,
    n_seeds: int = 10,
    locked: bool = False,
    conditions: list[str] | None = None,
    upload_id: int | None = None,
    progress: Progress | None = None,
) -> tuple[dict, object]:
    """Run the protocol over `n_seeds` seeds (seed, seed + 1, …; `locked`: the locked seeds of
    `protocol.LOCKED_SEEDS`, the ones for claims); returns (the JSON result: seed-averaged MAE with
    its SD over seeds and two-way bootstrap CI, paired differences against annotator_mean; the
    SeedsResult, whose `results` hold each seed's per-split frames)."""

    report = progress or (lambda fraction, message: None)
    names = predictors or builtin_predictors()
    unknown = sorted(set(names) - set(predictor_names()))
    if unknown:
        raise ApplicationError(f"unknown predictor(s): {', '.join(unknown)}; known: {', '.join(predictor_names())}")
    report(0.02, "reading ratings")
    frame = benchmark_frame(study=study)
    if frame["annotator"].nunique() < 2 or frame["prompt"].nunique() < 3:
        raise ApplicationError("the benchmark needs at least 2 annotators and 3 prompts with ratings")
    instances = [_instantiate(name, study=study, upload_id=upload_id, frame=frame) for name in names]
    seeds = LOCKED_SEEDS if locked else tuple(range(seed, seed + n_seeds))
    result = run_seeds(
        frame,
        instances,
        seeds=seeds,
        conditions=conditions or CONDITIONS,
        n_splits=n_splits,
        keep_results=True,
        progress=lambda fraction, message: report(0.05 + 0.9 * fraction, message),
    )
    report(0.96, "error by group")
    groups = benchmark_groups(frame, result)
    summary = result.summary()
    reference = "annotator_mean"
    return {
        "protocol": "pluriharms",
        "splits": n_splits,
        "seed": seeds[0],
        "seeds": list(seeds),
        "locked": locked,
        "predictors": names,
        "results": summary,
        "ci": "two-way bootstrap (annotators and test prompts resampled together), 95%",
        "paired": result.paired(reference) if reference in names else [],
        "published": published_for(study=study),
        "groups": groups,
        "groups_method": GROUPS_METHOD,
    }, result
