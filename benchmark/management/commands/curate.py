"""`manage.py curate select POOL.csv --k K …`: choose K prompts from a pool to match target distributions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

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
from benchmark.science.predictors.common import embed_texts


class Command(BaseCommand):
    help = (
        "Prompt-bank curation. `curate select POOL.csv --k K [--targets paper|uniform|FILE.json] "
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

    def handle(self, *args, action, **options):
        self._select(**options)

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
