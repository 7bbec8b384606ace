"""Prompt selection for a study (issue 12): the study's prompt bank is the pool; the job chooses K prompts
whose distributions match the targets; a researcher can then create a new draft study from the choice.

A prompt bank has no seed-group column, so each prompt is its own group unless its features carry a
`group` value (then at most `max_per_group` prompts of one group are chosen).
"""

from __future__ import annotations

import copy

import pandas as pd
from django.db import transaction

from annotation.models import Prompt, Study
from annotation.services.study import COPY_FIELDS, PROMPT_COPY_FIELDS, study_slug_new
from config.errors import ApplicationError
from jobs.models import Job
from jobs.registry import Progress

from .science.curation import InfeasibleSelection, Pool, TargetsError, curate
from .science.curation.pool import FEATURE_DIMENSIONS

SELECTED_FILE = "selected.csv"
REPORT_FILE = "selection.json"


def selection_pool(*, study: Study, pool_id: int | None = None) -> Pool:
    """The study's prompts as a pool (prompts without a harm level cannot be placed on the harm axis: 400),
    or with `pool_id` the candidates of that pool of the study (benchmark.pool_curation)."""
    if pool_id is not None:
        from .pool_curation import pool_for_study, pool_selection_pool  # noqa: PLC0415

        return pool_selection_pool(pool=pool_for_study(study=study, pool_id=pool_id))
    rows = list(study.prompts.order_by("order", "id").values("external_id", "text", "harm_level", "features"))
    if not rows:
        raise ApplicationError("The study has no prompts to choose from; add a prompt bank first.")
    unplaced = [r["external_id"] for r in rows if r["harm_level"] is None]
    if unplaced:
        shown = ", ".join(unplaced[:5]) + (" …" if len(unplaced) > 5 else "")
        raise ApplicationError(f"{len(unplaced)} prompt(s) have no harm level ({shown}); selection needs one each.")
    prefixes = tuple(FEATURE_DIMENSIONS.values())
    columns = sorted({k for r in rows for k in (r["features"] or {}) if k.startswith(prefixes)})
    frame = pd.DataFrame(
        {
            "external_id": [r["external_id"] for r in rows],
            "text": [r["text"] for r in rows],
            "harm_level": [float(r["harm_level"]) for r in rows],
            "group": [str((r["features"] or {}).get("group") or r["external_id"]) for r in rows],
        }
    )
    for column in columns:
        frame[column] = [float((r["features"] or {}).get(column) or 0.0) for r in rows]
    # keep the release's column order (actions, effects, values) whatever the JSON key order was
    ordered = [c for prefix in prefixes for c in columns if c.startswith(prefix)]
    return Pool(frame[["external_id", "text", "harm_level", "group", *ordered]], ordered)


def selection_run(
    *,
    study: Study,
    k: int,
    targets="paper",
    max_per_group: int | None = 2,
    optimizer: str = "best",
    seed: int = 0,
    pool_id: int | None = None,
    pilot: str | None = None,
    disagreement_weight: float = 0.05,
    embedding: bool = True,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Choose k of the study's prompts; (the chosen rows, the report as `science.curation.curate`).

    With `pilot` (a study slug: this study or another of its owner, `pilot.pilot_study_get`) the objective
    also rewards the disagreement a model fitted to the pilot's ratings predicts, `disagreement_weight`
    objective units per SD of it; the report's `disagreement` block holds the model's held-out Spearman ρ."""
    pool = selection_pool(study=study, pool_id=pool_id)
    score = predicted = disagreement = None
    if pilot:
        from .pilot import pilot_study_get, selection_disagreement, selection_score  # noqa: PLC0415

        vectors = None
        if embedding and pool_id is not None:
            # a candidate pool keeps each candidate's MiniLM embedding (value topics): only new ones are embedded
            from .pool_curation import _embeddings, pool_for_study  # noqa: PLC0415

            scaled = (lambda f, message: progress(0.01 + 0.06 * f, message)) if progress else None
            vectors = _embeddings(pool_for_study(study=study, pool_id=pool_id), scaled)[2].astype("float64")
        predicted, disagreement = selection_disagreement(
            pool=pool,
            pilot=pilot_study_get(study=study, slug=pilot),
            embedding=embedding,
            embeddings=vectors,
            seed=seed,
            progress=progress,
        )
        score = selection_score(predicted)
    if progress:
        progress(0.1, f"choosing {k} of {len(pool)} prompts ({optimizer})")
    try:
        selected, report = curate(
            pool,
            k,
            targets=targets,
            targets_name=targets if isinstance(targets, str) else "custom",
            max_per_group=max_per_group,
            optimizer=optimizer,
            seed=seed,
            score=score,
            score_weight=disagreement_weight if score is not None else 0.0,
        )
    except (TargetsError, InfeasibleSelection) as exc:
        raise ApplicationError(str(exc)) from exc
    report["study"] = study.slug
    if pool_id is not None:
        from .pool_curation import pool_for_study, pool_report_named  # noqa: PLC0415

        pool_report_named(pool=pool_for_study(study=study, pool_id=pool_id), report=report)
    if disagreement is not None:
        chosen = pool.frame["external_id"].isin(set(selected["external_id"])).to_numpy()
        disagreement["weight"] = disagreement_weight
        disagreement["mean_predicted_sd"] = {
            "selected": float(predicted[chosen].mean()),
            "pool": float(predicted.mean()),
        }
        report["disagreement"] = disagreement
        selected = selected.assign(predicted_sd=predicted[chosen])
    return selected, report


@transaction.atomic
def study_from_selection(*, job: Job, user) -> Study:
    """A new draft study with the source study's settings and only the prompts the selection chose
    (in the source's order), owned by `user`; no annotators, ratings or jobs."""
    if job.kind != "selection" or job.status != Job.Status.SUCCEEDED or not job.result:
        raise ApplicationError("Only a finished prompt selection can become a study.", status_code=409)
    source = job.study
    chosen = list(job.result.get("selected", []))
    if (job.params or {}).get("pool") is not None:
        from .pool_curation import pool_for_study, pool_prompts  # noqa: PLC0415

        prompts = pool_prompts(pool=pool_for_study(study=source, pool_id=job.params["pool"]), chosen=chosen)
    else:
        prompts = list(source.prompts.filter(external_id__in=chosen).order_by("order", "id"))
    if len(prompts) != len(chosen):
        raise ApplicationError(
            "Some chosen prompts are no longer in the study or pool; run the selection again.", status_code=409
        )
    study = Study(owner=user, status=Study.Status.DRAFT, slug=study_slug_new(base=f"{source.slug}-selection"))
    for name in COPY_FIELDS:
        setattr(study, name, copy.deepcopy(getattr(source, name)))
    study.meta = {
        **(source.meta or {}),
        "selected_from": {
            "study": source.slug,
            "job": job.pk,
            **({"pool": job.params["pool"]} if job.params.get("pool") else {}),
        },
    }
    study.title = f"{source.title} (selection of {len(prompts)})"[: Study._meta.get_field("title").max_length]
    study.save()
    Prompt.objects.bulk_create(
        [
            Prompt(study=study, **{name: getattr(p, name) for name in PROMPT_COPY_FIELDS if name != "order"}, order=i)
            for i, p in enumerate(prompts)
        ]
    )
    return study
