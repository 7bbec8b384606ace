"""A pool's generation jobs (issue 12): graded variants of its seed prompts and harm-benefit trees of its
candidates, through the OpenAI-compatible adapter (settings.LLM_BASE_URL, LLM_MODEL).

- `variants` (kind): each uploaded seed of the pool that has no variants yet → 11 variants at harm levels
  0.0 … 1.0 (`science.curation.variants`), asked with the researcher's instruction template (checked: it
  must hold {seed}, may hold {levels}; kept on the pool for the next run), validated, cached, counted
  (accepted, refused, malformed, failed, retried), and written into the pool as candidates whose seed is
  the uploaded one (`pools.candidates_add`).
- `trees` (kind): each candidate without a tree (or every one) → a SafetyAnalyst tree validated against
  the schema (`science.curation.trees`), stored with its 16 action and 7 effect category shares as the
  candidate's features (`pools.candidates_trees_set`); a candidate whose reply stays unusable is reported
  with its status and why.

Both work in chunks: each chunk's results are written in one transaction before the next starts, and
each chunk ends with a progress call, where a cancel takes effect. A cancelled or interrupted job keeps
the chunks it wrote; running it again does only what is left (seeds without variants, candidates without
a tree), and the client's disk cache answers what was asked before without a request.
"""

from __future__ import annotations

import json

import pandas as pd
from django.conf import settings
from django.db import transaction
from rest_framework import serializers

from annotation.exports import spreadsheet_csv
from annotation.services.prompt_bank import MAX_ID_CHARS
from config.errors import ApplicationError
from jobs.models import Job
from jobs.params import StrictParams
from jobs.registry import JobKind, Progress
from jobs.services import artifact_dir, artifact_save

from .models import Candidate, CandidatePool
from .pool_curation import pool_for_params, pool_for_study
from .pools import candidates_add, candidates_trees_set

CHUNK = 20  # seeds (variants) or candidates (trees) per write and progress point
MAX_ATTEMPTS = 5
MAX_TEMPLATE_CHARS = 5000
LLM_MAX_TOKENS = 2048  # 11 variants of a long seed do not fit in the adapter's default 512
COUNT_KEYS = ("accepted", "refused", "malformed", "failed", "retried", "http_calls", "cache_hits")
SHOWN_PROBLEMS = 200  # per-item outcomes kept in the job's result (all of them are in its CSV file)
VARIANTS_TEMPLATE_KEY = "variants_template"


def curation_llm_client():
    """The OpenAI-compatible client of the settings (ApplicationError when none is configured)."""
    from .science.predictors.llm import ChatClient  # noqa: PLC0415  (see benchmark.jobs' note on imports)

    if not settings.LLM_BASE_URL or not settings.LLM_MODEL:
        raise ApplicationError(
            "no LLM endpoint is configured: set LLM_BASE_URL and LLM_MODEL (an OpenAI-compatible endpoint)"
        )
    return ChatClient(
        settings.LLM_BASE_URL,
        settings.LLM_MODEL,
        settings.LLM_API_KEY or None,
        cache_dir=settings.LLM_CACHE_DIR,
        max_tokens=LLM_MAX_TOKENS,
    )


def variants_template(*, pool: CandidatePool) -> str:
    """The pool's instruction template for variants: the researcher's last one, else the default."""
    from .science.curation.variants import DEFAULT_TEMPLATE  # noqa: PLC0415

    return (pool.meta or {}).get(VARIANTS_TEMPLATE_KEY) or DEFAULT_TEMPLATE


def _add(total: dict, counts: dict) -> None:
    for key in (*COUNT_KEYS, "items"):
        total[key] = total.get(key, 0) + counts.get(key, 0)


def _so_far(total: dict) -> str:
    """The counts so far, for the progress message the job card shows while the job runs."""
    if not total.get("items") and not total.get("accepted"):
        return ""
    return " (so far: " + ", ".join(f"{key} {total.get(key, 0)}" for key in COUNT_KEYS[:5]) + ")"


def _write_outcomes(job: Job, name: str, rows: list[dict], result: dict) -> None:
    out = artifact_dir(job)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["external_id", "status", "attempts", "why"])
    (out / f"{name}_outcomes.csv").write_text(spreadsheet_csv(frame), encoding="utf-8")
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    for path in (out / f"{name}_outcomes.csv", out / f"{name}.json"):
        artifact_save(job=job, path=path)


# --- graded variants -------------------------------------------------------------------------------


def pool_variants_generate(
    *, pool: CandidatePool, template: str, attempts: int = 3, client=None, progress: Progress | None = None
) -> tuple[dict, list[dict]]:
    """Variants of each uploaded seed without variants yet; (the result with counts, per-seed outcomes)."""
    from .science.curation.variants import (  # noqa: PLC0415
        LEVEL_KEYS,
        template_check,
        variant_id,
        variants_generate,
    )

    template_check(template)
    client = client or curation_llm_client()
    done_seeds = set(pool.candidates.filter(seed__isnull=False).values_list("seed_id", flat=True))
    existing = set(pool.candidates.values_list("external_id", flat=True))
    seeds, outcomes = [], []
    for c in pool.candidates.filter(source=Candidate.Source.UPLOADED).order_by("order", "id"):
        if c.pk in done_seeds:
            continue
        # a variant id that cannot be written would refuse its whole chunk: such a seed is skipped, and said
        ids = [variant_id(c.external_id, level) for level in LEVEL_KEYS]
        taken = next((i for i in ids if i in existing), None)
        if taken or len(ids[-1]) > MAX_ID_CHARS:
            why = (
                f"the variant id {taken!r} is already a candidate of this pool"
                if taken
                else f"the variant ids (e.g. {ids[-1][:80]!r}) would be longer than {MAX_ID_CHARS} characters"
            )
            outcomes.append({"external_id": c.external_id, "status": "skipped", "attempts": 0, "why": why})
            continue
        seeds.append(c)
    total: dict = {
        "seeds": len(seeds),
        "skipped_with_variants": len(done_seeds),
        "skipped_id_conflict": len(outcomes),
        "candidates": 0,
    }
    for start in range(0, len(seeds), CHUNK):
        if progress:
            progress(
                0.02 + 0.96 * start / len(seeds),
                f"variants of seeds {start + 1}–{min(start + CHUNK, len(seeds))} of {len(seeds)}{_so_far(total)}",
            )
        chunk = {c.external_id: c for c in seeds[start : start + CHUNK]}
        frame, chunk_outcomes, counts = variants_generate(
            client, [(c.external_id, c.text) for c in chunk.values()], template=template, max_attempts=attempts
        )
        rows = [
            {
                "external_id": row.external_id,
                "text": row.text,
                "harm_level": float(row.harm_level),
                "seed": chunk[row.group],
            }
            for row in frame.itertuples(index=False)
        ]
        candidates_add(pool=pool, rows=rows, source=Candidate.Source.VARIANT)
        _add(total, {**counts, "items": len(chunk)})
        total["candidates"] += len(rows)
        outcomes += [
            {"external_id": o.seed_id, "status": o.status, "attempts": o.attempts, "why": o.why} for o in chunk_outcomes
        ]
    if progress:
        progress(0.99, f"{total.get('accepted', 0)} of {len(seeds)} seeds gave {total['candidates']} variants")
    total.pop("items", None)
    result = {
        "pool": pool.pk,
        "counts": {
            key: total.get(key, 0)
            for key in ("seeds", *COUNT_KEYS, "candidates", "skipped_with_variants", "skipped_id_conflict")
        },
        "levels": list(LEVEL_KEYS),
        "template": template,
        "not_accepted": [o for o in outcomes if o["status"] != "ok"][:SHOWN_PROBLEMS],
    }
    return result, outcomes


class VariantsParams(StrictParams):
    pool = serializers.IntegerField(min_value=1, help_text="The candidate pool (its number) whose seeds get variants.")
    template = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=MAX_TEMPLATE_CHARS,
        trim_whitespace=False,
        help_text="The instructions: must contain {seed} (the seed prompt) and may contain {levels} (0.0, 0.1, … 1.0); "
        "empty: the pool's last template, else the default.",
    )
    attempts = serializers.IntegerField(
        min_value=1, max_value=MAX_ATTEMPTS, default=3, help_text="Replies asked per seed at most (malformed ones)."
    )

    def validate(self, attrs):
        from .science.curation.variants import TemplateError, template_check  # noqa: PLC0415

        study = self.context.get("study")
        if study is not None:
            pool = pool_for_params(study=study, pool_id=attrs["pool"])
            if not attrs["template"].strip():
                attrs["template"] = variants_template(pool=pool)
            if not pool.candidates.filter(source=Candidate.Source.UPLOADED).exists():
                raise serializers.ValidationError({"pool": "the pool has no uploaded seed prompts to vary"})
        try:
            template_check(attrs["template"])
        except TemplateError as exc:
            raise serializers.ValidationError({"template": str(exc)}) from None
        _llm_configured()
        return attrs


def _llm_configured() -> None:
    if not settings.LLM_BASE_URL or not settings.LLM_MODEL:
        raise serializers.ValidationError(
            {"pool": "no LLM endpoint is configured: set LLM_BASE_URL and LLM_MODEL (an OpenAI-compatible endpoint)"}
        )


@transaction.atomic
def pool_variants_template_save(*, pool: CandidatePool, template: str) -> CandidatePool:
    """Keep the researcher's template on the pool (the form shows it next time)."""
    from .science.curation.variants import TemplateError, template_check  # noqa: PLC0415

    try:
        template_check(template)
    except TemplateError as exc:
        raise ApplicationError(str(exc), extra={"field": "template"}) from None
    pool = CandidatePool.objects.select_for_update().get(pk=pool.pk)
    pool.meta = {**(pool.meta or {}), VARIANTS_TEMPLATE_KEY: template}
    pool.save(update_fields=["meta", "updated_at"])
    return pool


def variants_run(job: Job, progress: Progress) -> dict:
    p = job.params
    pool = pool_for_study(study=job.study, pool_id=p["pool"])
    result, outcomes = pool_variants_generate(
        pool=pool, template=p["template"], attempts=p["attempts"], progress=progress
    )
    _write_outcomes(job, "variants", outcomes, result)
    return result


# --- harm-benefit trees ----------------------------------------------------------------------------


def pool_trees_generate(
    *, pool: CandidatePool, which: str = "missing", attempts: int = 3, client=None, progress: Progress | None = None
) -> tuple[dict, list[dict]]:
    """A tree (and its action/effect features) for each candidate without one (`which="all"`: every one)."""
    from .science.curation.trees import trees_generate  # noqa: PLC0415

    client = client or curation_llm_client()
    candidates = pool.candidates.order_by("order", "id")
    if which == "missing":
        candidates = candidates.filter(harm_benefit_tree__isnull=True)
    items = list(candidates.values_list("external_id", "text"))
    total: dict = {"candidates": len(items), "written": 0}
    outcomes: list[dict] = []
    for start in range(0, len(items), CHUNK):
        if progress:
            progress(
                0.02 + 0.96 * start / len(items),
                f"trees of candidates {start + 1}–{min(start + CHUNK, len(items))} of {len(items)}{_so_far(total)}",
            )
        chunk = items[start : start + CHUNK]
        _, chunk_outcomes, counts = trees_generate(client, chunk, max_attempts=attempts)
        trees = {o.candidate_id: o.tree for o in chunk_outcomes if o.status == "ok"}
        if trees:
            total["written"] += candidates_trees_set(pool=pool, trees=trees)
        _add(total, {**counts, "items": len(chunk)})
        outcomes += [
            {"external_id": o.candidate_id, "status": o.status, "attempts": o.attempts, "why": o.why}
            for o in chunk_outcomes
        ]
    if progress:
        progress(0.99, f"{total['written']} of {len(items)} candidates have a tree")
    total.pop("items", None)
    result = {
        "pool": pool.pk,
        "which": which,
        "counts": {key: total.get(key, 0) for key in ("candidates", *COUNT_KEYS, "written")},
        "not_accepted": [o for o in outcomes if o["status"] != "ok"][:SHOWN_PROBLEMS],
    }
    return result, outcomes


class TreesParams(StrictParams):
    pool = serializers.IntegerField(min_value=1, help_text="The candidate pool (its number).")
    which = serializers.ChoiceField(
        choices=["missing", "all"],
        default="missing",
        help_text="missing: candidates without a tree; all: every candidate (a new tree replaces the old).",
    )
    attempts = serializers.IntegerField(min_value=1, max_value=MAX_ATTEMPTS, default=3)

    def validate(self, attrs):
        study = self.context.get("study")
        if study is not None:
            pool = pool_for_params(study=study, pool_id=attrs["pool"])
            if not pool.candidates.exists():
                raise serializers.ValidationError({"pool": "the pool has no candidates"})
        _llm_configured()
        return attrs


def trees_run(job: Job, progress: Progress) -> dict:
    p = job.params
    pool = pool_for_study(study=job.study, pool_id=p["pool"])
    result, outcomes = pool_trees_generate(pool=pool, which=p["which"], attempts=p["attempts"], progress=progress)
    _write_outcomes(job, "trees", outcomes, result)
    return result


VARIANTS = JobKind(
    name="variants", label="Graded variants of a pool's seeds", params=VariantsParams, handler=variants_run
)
TREES = JobKind(name="trees", label="Harm-benefit trees of a pool", params=TreesParams, handler=trees_run)
