"""Candidate pools (issue 12): create a pool, upload seed prompts or candidates into it, import trees and
features for its candidates, and add candidates from a job (graded variants).

An upload is read by the prompt bank's reader (`annotation.services.prompt_bank.bank_read`: CSV, JSON lines
or a release's prompts.csv, every row-level problem with its row and column) with a `group` column on top;
nothing is written unless the whole file is good, ids repeated in the file or already in the pool are
refused row by row. A candidate with a harm-benefit tree and no action/effect shares gets them from the
tree (`science.curation.trees.tree_features`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from annotation.models import Study
from annotation.services.prompt_bank import (
    MAX_GROUP_CHARS,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    Bank,
    BankProblems,
    bank_existing_refuse,
    bank_read,
)
from annotation.services.uploads import MAX_UPLOAD_BYTES
from config.errors import ApplicationError

from .models import Candidate, CandidatePool
from .science.release.columns import FEATURE_PREFIXES, is_feature_column

MAX_POOL_NAME = CandidatePool._meta.get_field("name").max_length
# A generated pool of 60,000 candidates (the scale) fits with room to spare.
MAX_POOL_CANDIDATES = 100_000
MAX_SHOWN_PROBLEMS = 1000
MAX_POOL_BYTES = MAX_UPLOAD_BYTES
TREE_FEATURE_PREFIXES = ("action_", "effect_")


class CandidateProblems(ApplicationError):
    """Rows that cannot be written (400); `extra["problems"]` lists {row, column, message}; nothing was written."""

    def __init__(self, problems: list[tuple[int | None, str | None, str]], *, what: str = "candidates"):
        shown = problems[:MAX_SHOWN_PROBLEMS]
        first = shown[0]
        where = (f"row {first[0]}" if first[0] is not None else "") + (f", column {first[1]}" if first[1] else "")
        s = "" if len(problems) == 1 else "s"
        super().__init__(
            f"{len(problems)} problem{s} in the {what}; nothing was written. {where + ': ' if where else ''}{first[2]}",
            extra={
                "problems": [{"row": r, "column": c, "message": m} for r, c, m in shown],
                "n_problems": len(problems),
            },
            status_code=400,
        )


def pool_create(*, study: Study, name: str, description: str = "", user=None) -> CandidatePool:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("Give the pool a name.", extra={"field": "name"})
    if len(name) > MAX_POOL_NAME:
        raise ApplicationError(f"The name is longer than {MAX_POOL_NAME} characters.", extra={"field": "name"})
    return CandidatePool.objects.create(
        study=study,
        name=name,
        description=(description or "").strip(),
        created_by=user if user is not None and user.is_authenticated else None,
    )


def _features_with_tree(features: Mapping[str, float | None], tree) -> dict[str, float]:
    """The given features (empty cells dropped), completed by the tree's action/effect shares when the
    file gave none of those."""
    out = {k: float(v) for k, v in features.items() if v is not None}
    if tree is not None and not any(k.startswith(TREE_FEATURE_PREFIXES) for k in out):
        from .science.curation.trees import tree_features  # noqa: PLC0415  (numpy-heavy; only with trees)

        out = {**tree_features(tree), **out}
    return out


def _read_upload(upload, max_bytes: int | None = None) -> bytes:
    max_bytes = MAX_POOL_BYTES if max_bytes is None else max_bytes
    if upload is None:
        raise ApplicationError("Choose a file to upload.", extra={"field": "file"})
    if upload.size is not None and upload.size > max_bytes:
        raise ApplicationError(f"The file is larger than {max_bytes // 2**20} MB.", extra={"field": "file"})
    raw = upload.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApplicationError(f"The file is larger than {max_bytes // 2**20} MB.", extra={"field": "file"})
    return raw


def pool_bank_check(*, pool: CandidatePool, bank: Bank) -> None:
    """Row-level problems for ids already in the pool and for a pool that would grow past its limit."""
    existing = set(pool.candidates.values_list("external_id", flat=True))
    bank_existing_refuse(bank, existing, already="a candidate of this pool")
    if len(existing) + len(bank.rows) > MAX_POOL_CANDIDATES:
        bank.problem(
            f"the pool would hold {len(existing) + len(bank.rows):,} candidates; at most {MAX_POOL_CANDIDATES:,}"
        )


def pool_candidates_upload(*, pool: CandidatePool, upload, fmt: str = "auto") -> Bank:
    """Read an uploaded file of seed prompts or candidates and write all of it, or nothing: a file with any
    problem raises `BankProblems` (400, every problem with its row and column). Returns the written bank."""
    raw = _read_upload(upload)
    bank = bank_read(raw=raw, name=getattr(upload, "name", "") or "upload", fmt=fmt, allow_group=True)
    return pool_bank_write(pool=pool, bank=bank)


def pool_bank_write(*, pool: CandidatePool, bank: Bank) -> Bank:
    if not bank.ok:
        raise BankProblems(bank)
    try:
        with transaction.atomic():
            CandidatePool.objects.select_for_update().filter(pk=pool.pk).first()
            pool_bank_check(pool=pool, bank=bank)  # under the lock: another upload may have added ids
            if not bank.ok:
                raise BankProblems(bank)
            start = _next_order(pool)
            Candidate.objects.bulk_create(
                [
                    Candidate(
                        pool=pool,
                        external_id=r.external_id,
                        text=r.text,
                        harm_level=r.harm_level,
                        group=r.group,
                        source=Candidate.Source.UPLOADED,
                        features=_features_with_tree(r.features, r.tree),
                        harm_benefit_tree=r.tree,
                        order=start + i,
                    )
                    for i, r in enumerate(bank.rows)
                ],
                batch_size=2000,
            )
            CandidatePool.objects.filter(pk=pool.pk).update(updated_at=pool.updated_at)
    except IntegrityError:
        raise ApplicationError(
            "another upload added candidates with the same external ids at the same time; nothing was written, "
            "try again",
            status_code=409,
        ) from None
    return bank


def _next_order(pool: CandidatePool) -> int:
    last = pool.candidates.aggregate(m=Max("order"))["m"]
    return 0 if last is None else last + 1


# --- for jobs: candidates, trees and features one by one or in bulk -----------------------------------


def _features_clean(features: Any, row: int | None, problems: list) -> dict[str, float]:
    if features is None:
        return {}
    if not isinstance(features, Mapping):
        problems.append((row, "features", f"features must be an object, got {type(features).__name__}"))
        return {}
    out = {}
    for name, value in features.items():
        if not isinstance(name, str) or not is_feature_column(name):
            problems.append(
                (row, "features", f"feature {str(name)[:64]!r} must start with {', '.join(FEATURE_PREFIXES)}")
            )
        elif (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value != value
            or abs(value) == float("inf")
        ):
            problems.append((row, name, f"{str(value)[:40]!r} is not a finite number"))
        elif value < 0 and not name.startswith("value_topic_"):
            problems.append((row, name, f"{value} is negative (a category share is ≥ 0)"))
        else:
            out[name] = float(value)
    return out


def _tree_clean(tree: Any, row: int | None, problems: list) -> list | None:
    if tree is None:
        return None
    # Here, not at the top: the package imports scipy (~0.5 s), which job workers and management commands
    # would pay at start-up (the benchmark app's ready() imports this module through benchmark.pool_jobs);
    # a web process loads it anyway with the URL conf (benchmark.api, the predictors).
    from .science.harm_benefit import TreeError, tree_validate  # noqa: PLC0415

    try:
        return tree_validate(tree)
    except TreeError as exc:
        problems.append((row, "harm_benefit_tree", f"harm-benefit tree: {exc}"))
    except RecursionError:
        problems.append((row, "harm_benefit_tree", "harm-benefit tree: nested too deeply"))
    return None


@transaction.atomic
def candidates_add(
    *, pool: CandidatePool, rows: Iterable[Mapping[str, Any]], source: str = Candidate.Source.VARIANT
) -> list[Candidate]:
    """Add candidates (e.g. a job's graded variants), all or none.

    Each row: `external_id`, `text`, optional `harm_level` (0–1 or None), `group`, `seed` (a Candidate of
    this pool), `features` (dict), `harm_benefit_tree`. A variant without a group takes its seed's group
    (or the seed's external id). Any problem raises `CandidateProblems` (rows counted from 1).
    """
    CandidatePool.objects.select_for_update().filter(pk=pool.pk).first()
    existing = set(pool.candidates.values_list("external_id", flat=True))
    problems: list[tuple[int | None, str | None, str]] = []
    seen: dict[str, int] = {}
    made = []
    for row, item in enumerate(rows, start=1):
        external_id = str(item.get("external_id", "") or "").strip()
        text = item.get("text")
        if not external_id:
            problems.append((row, "external_id", "empty external id"))
        elif len(external_id) > MAX_ID_CHARS:
            problems.append((row, "external_id", f"the external id is longer than {MAX_ID_CHARS} characters"))
        elif external_id in existing:
            problems.append((row, "external_id", f"external id {external_id!r} is already a candidate of this pool"))
        elif external_id in seen:
            problems.append(
                (row, "external_id", f"duplicate external id {external_id!r} (also row {seen[external_id]})")
            )
        else:
            seen[external_id] = row
        if not isinstance(text, str) or not text.strip():
            problems.append((row, "text", "empty text"))
        elif len(text) > MAX_TEXT_CHARS or "\x00" in text:
            problems.append((row, "text", f"the text is longer than {MAX_TEXT_CHARS:,} characters or holds NUL"))
        harm = item.get("harm_level")
        if harm is not None and (isinstance(harm, bool) or not isinstance(harm, (int, float)) or not 0 <= harm <= 1):
            problems.append((row, "harm_level", f"harm level {str(harm)[:40]!r} is not a number in 0–1"))
        seed = item.get("seed")
        if seed is not None and (not isinstance(seed, Candidate) or seed.pool_id != pool.pk):
            problems.append((row, "seed", "the seed must be a candidate of this pool"))
            seed = None
        group = str(item.get("group") or "").strip() or (seed.group or seed.external_id if seed else "")
        if len(group) > MAX_GROUP_CHARS:
            problems.append((row, "group", f"the group is longer than {MAX_GROUP_CHARS} characters"))
        features = _features_clean(item.get("features"), row, problems)
        tree = _tree_clean(item.get("harm_benefit_tree"), row, problems)
        made.append(
            Candidate(
                pool=pool,
                external_id=external_id,
                text=text if isinstance(text, str) else "",
                harm_level=None if harm is None else float(harm),
                group=group,
                source=source,
                seed=seed,
                features=_features_with_tree(features, tree) if not problems else features,
                harm_benefit_tree=tree,
            )
        )
    if problems:
        raise CandidateProblems(problems)
    if len(existing) + len(made) > MAX_POOL_CANDIDATES:
        raise CandidateProblems(
            [
                (
                    None,
                    None,
                    f"the pool would hold {len(existing) + len(made):,} candidates; at most {MAX_POOL_CANDIDATES:,}",
                )
            ]
        )
    start = _next_order(pool)
    for i, candidate in enumerate(made):
        candidate.order = start + i
    return Candidate.objects.bulk_create(made, batch_size=2000)


@transaction.atomic
def candidate_tree_set(*, candidate: Candidate, tree) -> Candidate:
    """Store a (validated) harm-benefit tree and the action/effect shares it gives; value topics untouched."""
    problems: list = []
    clean = _tree_clean(tree, None, problems)
    if problems:
        raise ApplicationError(problems[0][2], extra={"field": "harm_benefit_tree"})
    from .science.curation.trees import tree_features  # noqa: PLC0415

    kept = {k: v for k, v in (candidate.features or {}).items() if not k.startswith(TREE_FEATURE_PREFIXES)}
    candidate.harm_benefit_tree = clean
    candidate.features = {**kept, **tree_features(clean)}
    candidate.save(update_fields=["harm_benefit_tree", "features"])
    return candidate


@transaction.atomic
def candidates_trees_set(*, pool: CandidatePool, trees: Mapping[str, Any]) -> int:
    """`candidate_tree_set` for many candidates by external id, all or none (`CandidateProblems`)."""
    from .science.curation.trees import tree_features  # noqa: PLC0415

    by_id = {
        c.external_id: c
        for c in pool.candidates.filter(external_id__in=list(trees)).only("id", "external_id", "features")
    }
    problems: list = []
    changed = []
    for row, (external_id, tree) in enumerate(trees.items(), start=1):
        candidate = by_id.get(external_id)
        if candidate is None:
            problems.append((row, "external_id", f"no candidate {str(external_id)[:64]!r} in this pool"))
            continue
        clean = _tree_clean(tree, row, problems)
        if clean is None:
            continue
        kept = {k: v for k, v in (candidate.features or {}).items() if not k.startswith(TREE_FEATURE_PREFIXES)}
        candidate.harm_benefit_tree = clean
        candidate.features = {**kept, **tree_features(clean)}
        changed.append(candidate)
    if problems:
        raise CandidateProblems(problems, what="trees")
    Candidate.objects.bulk_update(changed, ["harm_benefit_tree", "features"], batch_size=1000)
    return len(changed)


@transaction.atomic
def candidate_features_set(*, candidate: Candidate, features: Mapping[str, Any]) -> Candidate:
    """Merge numeric features (action_*, effect_*, value_topic_*) into the candidate's."""
    problems: list = []
    clean = _features_clean(features, None, problems)
    if problems:
        raise ApplicationError(problems[0][2], extra={"field": "features"})
    candidate.features = {**(candidate.features or {}), **clean}
    candidate.save(update_fields=["features"])
    return candidate


# --- a file of trees and features for candidates already in the pool ----------------------------------

ANNOTATION_COLUMNS = ("external_id", "harm_level", "harm_benefit_tree", "features")


def _annotation_objects(raw: bytes, name: str) -> tuple[list[tuple[int, Any]], list]:
    """(row number, object) from a CSV (a JSON cell for the tree) or JSON-lines file; file-level problems."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [(None, None, f"bad encoding: byte 0x{raw[exc.start]:02x} is not UTF-8")]
    if "\x00" in text:
        return [], [(None, None, "a NUL character: not a text file")]
    if not text.strip():
        return [], [(None, None, "the file is empty")]
    if Path(name).suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{"):
        objects, problems = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    objects.append((number, json.loads(line)))
                except (ValueError, RecursionError) as exc:
                    problems.append((number, None, f"not valid JSON ({exc})"[:200]))
        return objects, problems
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [c.strip() for c in reader.fieldnames or []]
        rows = list(reader)
    except csv.Error as exc:
        return [], [(None, None, f"not a readable CSV file: {exc}")]
    unknown = [c for c in header if c not in ANNOTATION_COLUMNS and not is_feature_column(c)]
    if unknown:
        return [], [
            (None, c, "unexpected column (allowed: external_id, harm_level, harm_benefit_tree, features)")
            for c in unknown
        ]
    objects = []
    problems = []
    for number, cells in enumerate(rows, start=1):
        obj: dict[str, Any] = {}
        for key, value in cells.items():
            key = (key or "").strip()
            if value is None or not value.strip():
                continue
            if key == "harm_benefit_tree":
                try:
                    obj[key] = json.loads(value)
                except (ValueError, RecursionError) as exc:
                    problems.append((number, key, f"not valid JSON ({exc})"[:200]))
            elif key == "external_id":
                obj[key] = value.strip()
            else:
                try:
                    obj[key] = float(value)
                except ValueError:
                    problems.append((number, key, f"{value[:40]!r} is not a number"))
        objects.append((number, obj))
    return objects, problems


def pool_annotations_upload(*, pool: CandidatePool, upload) -> int:
    """Import harm-benefit trees, features and harm levels for candidates already in the pool (CSV or JSON
    lines keyed by `external_id`), all or nothing; returns how many candidates changed."""
    raw = _read_upload(upload)
    objects, problems = _annotation_objects(raw, getattr(upload, "name", "") or "upload")
    if not objects and not problems:
        problems.append((None, None, "no rows"))
    with transaction.atomic():
        CandidatePool.objects.select_for_update().filter(pk=pool.pk).first()
        ids = [str(obj.get("external_id", "")).strip() for _, obj in objects if isinstance(obj, dict)]
        by_id = {c.external_id: c for c in pool.candidates.filter(external_id__in=ids)}
        seen: dict[str, int] = {}
        changed = []
        for row, obj in objects:
            if not isinstance(obj, dict):
                problems.append((row, None, f"expected an object, got {type(obj).__name__}"))
                continue
            unknown = [k for k in obj if k not in ANNOTATION_COLUMNS and not is_feature_column(k)]
            for key in unknown:
                problems.append(
                    (row, str(key)[:64], "unknown key (allowed: external_id, harm_level, harm_benefit_tree, features)")
                )
            external_id = str(obj.get("external_id", "")).strip()
            candidate = by_id.get(external_id)
            if not external_id:
                problems.append((row, "external_id", "empty external id"))
                continue
            if candidate is None:
                problems.append((row, "external_id", f"no candidate {external_id[:64]!r} in this pool"))
                continue
            if external_id in seen:
                problems.append(
                    (row, "external_id", f"duplicate external id {external_id!r} (also row {seen[external_id]})")
                )
                continue
            seen[external_id] = row
            n_before = len(problems)
            features = _features_clean({k: v for k, v in obj.items() if is_feature_column(k)}, row, problems)
            features.update(_features_clean(obj.get("features"), row, problems))
            tree = _tree_clean(obj.get("harm_benefit_tree"), row, problems)
            harm = obj.get("harm_level")
            if harm is not None and (
                isinstance(harm, bool) or not isinstance(harm, (int, float)) or not 0 <= harm <= 1
            ):
                problems.append((row, "harm_level", f"harm level {str(harm)[:40]!r} is not a number in 0–1"))
            if len(problems) > n_before or unknown:
                continue
            if tree is not None:
                candidate.harm_benefit_tree = tree
                if not any(k.startswith(TREE_FEATURE_PREFIXES) for k in features):
                    from .science.curation.trees import tree_features  # noqa: PLC0415

                    kept = {k: v for k, v in candidate.features.items() if not k.startswith(TREE_FEATURE_PREFIXES)}
                    candidate.features = {**kept, **tree_features(tree)}
            candidate.features = {**(candidate.features or {}), **features}
            if harm is not None:
                candidate.harm_level = float(harm)
            changed.append(candidate)
        if problems:
            problems.sort(key=lambda p: (p[0] or 0, p[1] or ""))
            raise CandidateProblems(problems, what="file")
        Candidate.objects.bulk_update(changed, ["harm_benefit_tree", "features", "harm_level"], batch_size=1000)
    return len(changed)


__all__ = [
    "MAX_POOL_CANDIDATES",
    "CandidateProblems",
    "candidate_features_set",
    "candidate_tree_set",
    "candidates_add",
    "candidates_trees_set",
    "pool_annotations_upload",
    "pool_candidates_upload",
    "pool_create",
]
