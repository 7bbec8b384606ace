"""`manage.py curate select POOL.csv --k K …`: choose K prompts from a pool to match target distributions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from benchmark.pool_jobs import curation_llm_client
from benchmark.science.curation import (
    OPTIMIZERS,
    TARGET_PRESETS,
    InfeasibleSelection,
    PoolFormatError,
    TargetsError,
    curate,
    pool_read,
)
from benchmark.science.curation.disagreement import (
    PilotFormatError,
    disagreement_predict,
    pilot_read,
    standardized,
)
from benchmark.science.curation.trees import trees_generate
from benchmark.science.curation.variants import DEFAULT_TEMPLATE, TemplateError, template_check, variants_generate
from benchmark.science.predictors.common import embed_texts
from benchmark.science.predictors.llm import ChatClient


class Command(BaseCommand):
    help = (
        "Prompt-bank curation. `curate variants SEEDS.csv --out POOL.csv --json COUNTS.json` asks the LLM "
        "endpoint (LLM_BASE_URL, LLM_MODEL) for a variant of each seed at harm levels 0.0–1.0; `curate trees "
        "POOL.csv --out OUT.csv --json COUNTS.json` adds action and effect features from harm-benefit trees; "
        "`curate select POOL.csv --k K [--targets paper|uniform|FILE.json] "
        "[--max-per-group 2] [--optimizer ga|best] [--seed S] --out SELECTED.csv --json REPORT.json` chooses K "
        "prompts whose harm-level, action, effect and value-topic distributions are closest (Jensen–Shannon "
        "distance) to the targets. POOL.csv has external_id, text, harm_level, group and optional action_*, "
        "effect_*, value_topic_* columns; a release's prompts.csv works as released."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sel = sub.add_parser("select", help="choose K prompts from a pool")
        sel.add_argument("pool", metavar="POOL.csv")
        sel.add_argument("--k", type=int, required=True, help="how many prompts to choose")
        sel.add_argument(
            "--targets",
            default="paper",
            help="paper (PluriHarms' harm-level target, uniform for the rest), uniform, or a JSON file",
        )
        sel.add_argument(
            "--max-per-group", type=int, default=2, help="at most this many prompts of one seed group (0: no limit)"
        )
        sel.add_argument("--optimizer", choices=OPTIMIZERS, default="best")
        sel.add_argument("--seed", type=int, default=0)
        sel.add_argument(
            "--pilot",
            default="",
            metavar="PILOT.csv",
            help="pilot ratings of pool prompts (external_id, annotator, rating; empty = Unsure): lean the "
            "selection toward the disagreement a model trained on them predicts",
        )
        sel.add_argument(
            "--disagreement-weight",
            type=float,
            default=0.05,
            help="with --pilot: objective units per SD of standardised predicted disagreement (default 0.05)",
        )
        sel.add_argument(
            "--no-embedding", action="store_true", help="with --pilot: features only, no MiniLM (large pools)"
        )
        sel.add_argument("--out", required=True, metavar="SELECTED.csv")
        sel.add_argument("--json", dest="report", required=True, metavar="REPORT.json")
        var = sub.add_parser("variants", help="graded harm variants of seed prompts through the LLM endpoint")
        var.add_argument("seeds", metavar="SEEDS.csv", help="columns seed_id (or group) and text")
        var.add_argument("--template", default="", help="a text file with the instructions ({seed}, {levels})")
        var.add_argument("--attempts", type=int, default=3, help="replies asked per seed at most")
        var.add_argument("--out", required=True, metavar="POOL.csv")
        var.add_argument("--json", dest="report", required=True, metavar="COUNTS.json")
        tree = sub.add_parser("trees", help="harm-benefit trees and action/effect features through the LLM endpoint")
        tree.add_argument("pool", metavar="POOL.csv")
        tree.add_argument("--attempts", type=int, default=3)
        tree.add_argument("--out", required=True, metavar="POOL_WITH_FEATURES.csv")
        tree.add_argument("--json", dest="report", required=True, metavar="COUNTS.json")

    def handle(self, *args, action, **options):
        if action == "variants":
            self._variants(**options)
        elif action == "trees":
            self._trees(**options)
        else:
            self._select(**options)

    def _variants(self, *, seeds, template, attempts, out, report, **_):
        frame = _read_csv(seeds)
        id_column = "seed_id" if "seed_id" in frame.columns else "group"
        missing = [c for c in (id_column, "text") if c not in frame.columns]
        if missing:
            raise CommandError(f"{seeds}: missing column(s): {', '.join(missing)} (need seed_id or group, and text)")
        empty = [i + 1 for i, (a, b) in enumerate(zip(frame[id_column], frame["text"], strict=True)) if not a or not b]
        if empty:
            raise CommandError(f"{seeds}: empty seed id or text in row(s) {', '.join(map(str, empty[:10]))}")
        if frame[id_column].duplicated().any():
            raise CommandError(f"{seeds}: seed ids must be unique")
        text = DEFAULT_TEMPLATE
        if template:
            try:
                text = Path(template).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read the template {template}: {exc}") from exc
        try:
            template_check(text)
            pool, _, counts = variants_generate(
                _llm_client(),
                list(zip(frame[id_column], frame["text"], strict=True)),
                template=text,
                max_attempts=attempts,
            )
        except (TemplateError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        _write(pool, counts, out, report)
        self.stdout.write(_counts_line(counts))

    def _trees(self, *, pool, attempts, out, report, **_):
        path = Path(pool)
        try:
            candidates = pool_read(path.read_bytes(), name=path.name)
        except OSError as exc:
            raise CommandError(f"cannot read the pool {pool}: {exc.strerror or exc}") from exc
        except PoolFormatError as exc:
            raise CommandError(f"the pool has problems:\n{exc}") from exc
        frame = candidates.frame
        try:
            features, outcomes, counts = trees_generate(
                _llm_client(), list(zip(frame["external_id"], frame["text"], strict=True)), max_attempts=attempts
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        keep = [c for c in frame.columns if not c.startswith(("action_", "effect_"))]
        merged = frame[keep].merge(features, on="external_id", how="inner")
        counts["not_accepted"] = [
            {"external_id": o.candidate_id, "status": o.status, "why": o.why} for o in outcomes if o.status != "ok"
        ]
        _write(merged, counts, out, report)
        self.stdout.write(_counts_line(counts))

    def _select(
        self,
        *,
        pool,
        k,
        targets,
        max_per_group,
        optimizer,
        seed,
        out,
        report,
        pilot,
        disagreement_weight,
        no_embedding,
        **_,
    ):
        path = Path(pool)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read the pool {pool}: {exc.strerror or exc}") from exc
        try:
            candidates = pool_read(raw, name=path.name)
        except PoolFormatError as exc:
            raise CommandError(f"the pool has problems:\n{exc}") from exc
        spec = targets if targets in TARGET_PRESETS else _targets_file(targets)
        if max_per_group < 0:
            raise CommandError("--max-per-group must be 0 (no limit) or more")
        score, disagreement = None, None
        if pilot:
            if not math.isfinite(disagreement_weight) or disagreement_weight < 0:
                raise CommandError("--disagreement-weight must be a non-negative number")
            score, disagreement = _predicted_disagreement(candidates, pilot, no_embedding)
        try:
            selected, result = curate(
                candidates,
                k,
                targets=spec,
                targets_name=targets if targets in TARGET_PRESETS else Path(targets).name,
                max_per_group=max_per_group or None,
                optimizer=optimizer,
                seed=seed,
                score=standardized(score) if score is not None else None,
                score_weight=disagreement_weight if score is not None else 0.0,
            )
        except TargetsError as exc:
            raise CommandError(f"bad targets: {exc}") from exc
        except InfeasibleSelection as exc:
            raise CommandError(str(exc)) from exc
        result["pool"] = path.name
        if disagreement is not None:
            chosen = candidates.frame["external_id"].isin(set(selected["external_id"])).to_numpy()
            disagreement["weight"] = disagreement_weight
            disagreement["mean_predicted_sd"] = {
                "selected": float(score[chosen].mean()),
                "pool": float(score.mean()),
            }
            result["disagreement"] = disagreement
            selected = selected.assign(predicted_sd=score[chosen])
        try:
            selected.to_csv(out, index=False)
            Path(report).write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write the output: {exc}") from exc
        distances = ", ".join(f"{name} {value:.4f}" for name, value in result["js_distance"].items())
        self.stdout.write(
            f"chose {k} of {len(candidates)} with {optimizer} in {result['seconds']:.2f} s: "
            f"objective {result['objective']:.4f} (JS distance: {distances})"
        )


def _read_csv(name: str) -> pd.DataFrame:
    try:
        return pd.read_csv(name, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CommandError(f"cannot read {name}: {exc}") from exc


def _llm_client() -> ChatClient:
    """The same client as the pool's variants and trees jobs (so each reuses the other's cached replies)."""
    if not settings.LLM_BASE_URL or not settings.LLM_MODEL:
        raise CommandError("set LLM_BASE_URL and LLM_MODEL (an OpenAI-compatible endpoint) in the environment")
    return curation_llm_client()


def _write(frame: pd.DataFrame, counts: dict, out: str, report: str) -> None:
    try:
        frame.to_csv(out, index=False)
        Path(report).write_text(json.dumps(counts, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write the output: {exc}") from exc


def _counts_line(counts: dict) -> str:
    keys = ("accepted", "refused", "malformed", "failed", "retried", "http_calls", "cache_hits")
    return ", ".join(f"{key} {counts[key]}" for key in keys if key in counts)


def _predicted_disagreement(candidates, pilot: str, no_embedding: bool):
    path = Path(pilot)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read the pilot {pilot}: {exc.strerror or exc}") from exc
    try:
        ratings = pilot_read(raw, candidates, name=path.name)
    except PilotFormatError as exc:
        raise CommandError(f"the pilot has problems:\n{exc}") from exc
    embeddings = None if no_embedding else embed_texts(candidates.frame["text"].tolist())
    predicted = disagreement_predict(candidates, ratings, embeddings=embeddings)
    info = {
        "pilot": path.name,
        "model": "mean route: features" + ("" if no_embedding else " + MiniLM") + ", + harm heuristic",
        "pilot_annotators": int(ratings.shape[0]),
        "pilot_prompts": int((np.isfinite(ratings).sum(axis=0) >= 2).sum()),
    }
    return predicted, info


def _targets_file(name: str):
    path = Path(name)
    if path.suffix.lower() != ".json" and not path.exists():
        raise CommandError(f"--targets must be one of {', '.join(TARGET_PRESETS)} or a JSON file, not {name!r}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot read the targets file {name}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"the targets file {name} is not valid JSON: {exc}") from exc
