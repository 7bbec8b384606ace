"""Import a dataset in the PluriHarms release format (prompts.csv + annotations.csv).

Validation reads both files completely before anything is written, so a file with a problem leaves
the database exactly as it was. The write is one transaction on PostgreSQL; on SQLite it is a series
of short ones to a hidden study, deleted again if any of them fails (see `pluriharms_import`).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from config.errors import ApplicationError

from . import release_format as rf
from .bulk import bulk_insert_ratings
from .models import Annotator, Assignment, Prompt, Rating, Study

MAX_REPORTED_PROBLEMS = 20
# SQLite only (see _import_in_chunks): ratings per transaction (about 1 s of writing on the
# development machine), prompts per transaction, and the longest pause between two transactions.
IMPORT_CHUNK_RATINGS = 10_000
IMPORT_CHUNK_PROMPTS = 5_000
IMPORT_PAUSE_SECONDS = 0.1
PSEUDONYMOUS_ID = re.compile(r"^(\d{1,9}|P\d{1,9})$")
PROMPT_COLUMN = re.compile(r"^(rating|trial)_(\d+)$")  # on a case-folded name

logger = logging.getLogger(__name__)


class ImportProblem(ApplicationError):
    """Raised with every problem found (up to a limit), each naming file, row and column."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        message = "\n".join(shown) + (f"\n… and {more} more problem(s)" if more > 0 else "")
        super().__init__(message, extra={"problems": shown})


@dataclass
class Problems:
    items: list[str] = field(default_factory=list)

    def add(self, file: str, message: str, row: int | None = None, column: str | None = None) -> None:
        where = file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column}"
        self.items.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ImportProblem(self.items)


@dataclass
class Release:
    prompts: pd.DataFrame  # Question_Index (str id), text, harm_level, features...
    feature_columns: list[str]
    participants: list[str]
    demographics: pd.DataFrame  # raw strings, one row per participant
    factors: np.ndarray  # (n_annotators, 3) float, NaN where empty
    ratings: np.ndarray  # (n_annotators, n_prompts) float, NaN = Unsure
    trials: np.ndarray  # (n_annotators, n_prompts) int
    decimal_rating_columns: list[str]  # prompt ids whose Rating_ column was written as 50.0, not 50


def _read_csv(path: Path, problems: Problems) -> pd.DataFrame | None:
    name = path.name
    if not path.exists():
        problems.add(name, f"file not found in {path.parent.name or '.'}")
        return None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.add(name, f"bad encoding: byte 0x{raw[exc.start]:02x} at line {line} is not UTF-8")
        return None
    try:
        # Everything as text: values are parsed below so that errors can name the cell, and
        # strings (with their leading spaces) survive the round trip unchanged.
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        problems.add(name, f"not a readable CSV file: {exc}")
        return None
    if _duplicate_columns(name, text, problems):
        return None
    return frame


def _shown(column: str) -> str:
    """A column name for a message: quoted when spaces around it would otherwise be invisible."""
    return column if column and column == column.strip() else repr(column)


def _column_key(column: str) -> tuple[str, str | None]:
    """What a column name means: case and surrounding spaces aside, and Rating_01 is Rating_1."""
    key = column.strip().casefold()
    match = PROMPT_COLUMN.match(key)
    if match:
        prompt = str(int(match.group(2)))
        return f"{match.group(1)}_{prompt}", prompt
    return key, None


def _duplicate_columns(name: str, text: str, problems: Problems) -> bool:
    """Report every column whose name repeats an earlier one's; True if there was any.

    Read from the header line itself: pandas renames a repeat (`X`, `X.1`) and keeps going, so the
    study would be built from whichever copy it kept.
    """
    try:
        header = next((row for row in csv.reader(io.StringIO(text)) if row), [])
    except csv.Error:
        return False  # pandas read it; a header the csv module cannot is left to the checks below
    first: dict[str, str] = {}
    found = False
    for column in header:
        key, prompt = _column_key(column)
        if key not in first:
            first[key] = column
            continue
        found = True
        earlier = first[key]
        if column == earlier:
            problems.add(name, "duplicate column", column=_shown(column))
        elif prompt is not None:
            problems.add(
                name, f"duplicate column: {_shown(earlier)} and {_shown(column)} both name prompt {prompt}",
                column=_shown(column),
            )
        else:
            problems.add(name, f"duplicate column: same name as {_shown(earlier)}", column=_shown(column))
    return found


def _numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse a text column: returns (values with NaN for empty/NaN cells, mask of unparsable cells)."""
    text = series.str.strip()
    empty = (text.eq("") | text.str.lower().isin(["nan", "na"])).to_numpy()
    values = pd.to_numeric(text.mask(empty), errors="coerce").to_numpy(dtype=float, copy=True)
    bad = (np.isnan(values) & ~empty) | np.isinf(values)
    values[bad] = np.nan
    return values, bad


def _parse_prompts(frame: pd.DataFrame, problems: Problems) -> tuple[pd.DataFrame, list[str]] | None:
    name = rf.PROMPTS_FILE
    required = [rf.PROMPT_ID, rf.PROMPT_TEXT, rf.HARM_LEVEL]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        problems.add(name, f"missing column(s): {', '.join(missing)}")
    extra = [c for c in frame.columns if c not in required and not rf.is_feature_column(c)]
    if extra:
        problems.add(
            name,
            f"unexpected column(s): {', '.join(extra)} (allowed: {', '.join(required)} and features "
            f"starting with {', '.join(rf.FEATURE_PREFIXES)})",
        )
    if missing:
        return None
    if frame.empty:
        problems.add(name, "no prompts")
        return None
    features = [c for c in frame.columns if rf.is_feature_column(c)]

    ids = frame[rf.PROMPT_ID].str.strip()
    seen: dict[str, int] = {}
    for i, value in enumerate(ids, start=1):
        if not (value.isascii() and value.isdigit()):
            problems.add(name, f"{value!r} is not a whole number", row=i, column=rf.PROMPT_ID)
            continue
        prompt = str(int(value))  # 01 and 1 are the same prompt, as they are the same Rating_ column
        if prompt in seen:
            problems.add(name, f"duplicate prompt {prompt} (also row {seen[prompt]})", row=i, column=rf.PROMPT_ID)
        else:
            seen[prompt] = i
    ids = ids.map(lambda v: str(int(v)) if v.isascii() and v.isdigit() else v)
    for i, text in enumerate(frame[rf.PROMPT_TEXT], start=1):
        if not text.strip():
            problems.add(name, "empty prompt text", row=i, column=rf.PROMPT_TEXT)

    out = pd.DataFrame({"external_id": ids, "text": frame[rf.PROMPT_TEXT]})
    harm, bad = _numbers(frame[rf.HARM_LEVEL])
    for i in np.flatnonzero(bad):
        problems.add(name, f"{frame[rf.HARM_LEVEL].iloc[i]!r} is not a number", row=i + 1, column=rf.HARM_LEVEL)
    for i in np.flatnonzero((harm < 0) | (harm > 1)):
        problems.add(name, f"harm level {harm[i]} is outside 0–1", row=i + 1, column=rf.HARM_LEVEL)
    out["harm_level"] = harm
    for column in features:
        values, bad = _numbers(frame[column])
        for i in np.flatnonzero(bad):
            problems.add(name, f"{frame[column].iloc[i]!r} is not a number", row=i + 1, column=column)
        out[column] = values
    return out, features


def _parse_annotations(frame: pd.DataFrame, prompt_ids: list[str], problems: Problems):
    name = rf.ANNOTATIONS_FILE
    columns = list(frame.columns)
    fixed = [rf.PARTICIPANT_ID, *rf.DEMOGRAPHIC_COLUMNS, *rf.FACTOR_COLUMNS]
    expected = set(fixed) | {f"Rating_{p}" for p in prompt_ids} | {f"Trial_{p}" for p in prompt_ids}
    known = set(prompt_ids)
    ok = True
    for column in columns:
        match = rf.RATING_RE.match(column) or rf.TRIAL_RE.match(column)
        if match and str(int(match.group(1))) not in known:
            problems.add(
                name, f"no prompt with {rf.PROMPT_ID} {match.group(1)} in {rf.PROMPTS_FILE}", column=column
            )
            ok = False
        elif column not in expected and not match:
            problems.add(name, "unexpected column", column=column)
            ok = False
    missing = [c for c in fixed if c not in columns]
    missing += [f"{kind}_{p}" for kind in ("Rating", "Trial") for p in prompt_ids if f"{kind}_{p}" not in columns]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
        problems.add(name, f"missing column(s): {shown}")
        ok = False
    if not ok:
        return None
    if frame.empty:
        problems.add(name, "no participants")
        return None

    participants = frame[rf.PARTICIPANT_ID].str.strip()
    first_row: dict[str, int] = {}
    for i, pid in enumerate(participants, start=1):
        if not pid:
            problems.add(name, "empty participant id", row=i, column=rf.PARTICIPANT_ID)
        elif not PSEUDONYMOUS_ID.match(pid):
            # Released ids are pseudonymous (0..99, or our own P0001); anything else may be a raw
            # recruitment id, which must never enter the database or an export.
            problems.add(
                name, f"{pid!r} is not a pseudonymous id (a whole number or P0001-style)", row=i,
                column=rf.PARTICIPANT_ID,
            )
        elif pid in first_row:
            problems.add(
                name, f"duplicate participant {pid} (also row {first_row[pid]})", row=i, column=rf.PARTICIPANT_ID
            )
        else:
            first_row[pid] = i

    def where(i: int) -> int:
        return i + 1

    rating_cols = [f"Rating_{p}" for p in prompt_ids]
    trial_cols = [f"Trial_{p}" for p in prompt_ids]
    ratings = np.empty((len(frame), len(prompt_ids)))
    trials = np.zeros((len(frame), len(prompt_ids)), dtype=np.int64)
    for j, column in enumerate(rating_cols):
        values, bad = _numbers(frame[column])
        for i in np.flatnonzero(bad):
            problems.add(
                name,
                f"rating {frame[column].iloc[i]!r} is not a number (participant {participants.iloc[i]})",
                row=where(i),
                column=column,
            )
        for i in np.flatnonzero((values < 0) | (values > 100)):
            problems.add(
                name,
                f"rating {values[i]:g} is outside 0–100 (participant {participants.iloc[i]})",
                row=where(i),
                column=column,
            )
        ratings[:, j] = values
    for j, column in enumerate(trial_cols):
        values, bad = _numbers(frame[column])
        invalid = bad | np.isnan(values) | (values < 0) | (np.nan_to_num(values) % 1 != 0)
        for i in np.flatnonzero(invalid):
            problems.add(
                name,
                f"trial position {frame[column].iloc[i]!r} is not a whole number ≥ 0",
                row=where(i),
                column=column,
            )
        trials[:, j] = np.nan_to_num(values).astype(np.int64)
    # A trial position is where a prompt was shown; two prompts cannot share one.
    ordered = np.sort(trials, axis=1)
    for i in np.flatnonzero((np.diff(ordered, axis=1) == 0).any(axis=1)):
        repeated = ordered[i][1:][np.diff(ordered[i]) == 0][0]
        problems.add(
            name, f"trial position {repeated} is used twice (participant {participants.iloc[i]})", row=where(i)
        )
    factors = np.empty((len(frame), len(rf.FACTOR_COLUMNS)))
    for j, column in enumerate(rf.FACTOR_COLUMNS):
        values, bad = _numbers(frame[column])
        for i in np.flatnonzero(bad):
            problems.add(name, f"{frame[column].iloc[i]!r} is not a number", row=where(i), column=column)
        factors[:, j] = values
    decimal = [p for p, c in zip(prompt_ids, rating_cols) if frame[c].str.contains(".", regex=False).any()]
    return list(participants), frame[rf.DEMOGRAPHIC_COLUMNS], factors, ratings, trials, decimal


def release_read(directory: str | Path) -> Release:
    """Read and validate a release directory; raises ImportProblem naming every bad cell."""
    directory = Path(directory)
    problems = Problems()
    if not directory.is_dir():
        raise ImportProblem([f"{directory}: not a directory"])
    prompts_frame = _read_csv(directory / rf.PROMPTS_FILE, problems)
    annotations_frame = _read_csv(directory / rf.ANNOTATIONS_FILE, problems)
    parsed_prompts = _parse_prompts(prompts_frame, problems) if prompts_frame is not None else None
    parsed_annotations = None
    if parsed_prompts is not None and annotations_frame is not None:
        parsed_annotations = _parse_annotations(annotations_frame, list(parsed_prompts[0]["external_id"]), problems)
    problems.raise_if_any()
    assert parsed_prompts is not None and parsed_annotations is not None
    prompts, features = parsed_prompts
    return Release(prompts, features, *parsed_annotations)


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def prompts_create(
    *, study: Study, prompts: pd.DataFrame, feature_columns: list[str], first_order: int = 0
) -> list[Prompt]:
    """Create a study's prompts from a validated prompts frame (as `release_read` returns it).

    `first_order`: the display order of the frame's first row, when a frame is written in parts.
    """
    values = prompts[feature_columns].to_numpy(dtype=float)
    return Prompt.objects.bulk_create(
        [
            Prompt(
                study=study,
                external_id=row.external_id,
                text=row.text,
                harm_level=_clean(row.harm_level),
                features={c: _clean(v) for c, v in zip(feature_columns, values[i])},
                order=first_order + i,
            )
            for i, row in enumerate(prompts.itertuples(index=False))
        ],
        batch_size=1000,
    )


def _refuse_taken_slug(slug: str) -> None:
    existing = Study.objects.filter(slug=slug).only("meta").first()
    if existing is None:
        return
    if (existing.meta or {}).get("importing"):
        raise ApplicationError(
            f"a study with slug {slug!r} already exists: an import that is still running or did not finish "
            "(delete it in the admin if no import is running); choose another --study"
        )
    raise ApplicationError(f"a study with slug {slug!r} already exists; choose another --study")


def _study_meta(release: Release) -> dict:
    return {
        "source_format": "pluriharms",
        "feature_columns": release.feature_columns,
        "demographic_columns": rf.DEMOGRAPHIC_COLUMNS,
        "factor_columns": rf.FACTOR_COLUMNS,
        # Only so that an export reproduces the source file byte for byte.
        "decimal_rating_columns": release.decimal_rating_columns,
    }


def _annotators_create(*, study: Study, release: Release, rows: range) -> np.ndarray:
    demographics = release.demographics.iloc[rows.start : rows.stop].to_dict("records")
    annotators = Annotator.objects.bulk_create(
        [
            Annotator(
                study=study,
                pseudonym=f"P{i + 1:04d}",
                source_id=release.participants[i],
                status=Annotator.Status.COMPLETED,
                demographics=demographics[i - rows.start],
                traits={c: _clean(v) for c, v in zip(rf.FACTOR_COLUMNS, release.factors[i])},
            )
            for i in rows
        ],
        batch_size=1000,
    )
    return np.array([a.pk for a in annotators], dtype=np.int64)


def _ratings_write(*, release: Release, rows: range, annotator_ids: np.ndarray, prompt_ids: np.ndarray) -> None:
    """One answered assignment and rating per (annotator in `rows`, prompt) cell of the release."""
    values = release.ratings[rows.start : rows.stop].ravel()
    bulk_insert_ratings(
        annotator_ids=np.repeat(annotator_ids, len(prompt_ids)),
        prompt_ids=np.tile(prompt_ids, len(annotator_ids)),
        positions=release.trials[rows.start : rows.stop].ravel(),
        values=values,
        unsure=np.isnan(values),
    )


def pluriharms_import(*, directory: str | Path, slug: str, title: str = "", owner=None) -> Study:
    """Create a study from a release directory: prompts, annotators, assignments and ratings.

    Both files are validated completely before the first write, and a failure leaves nothing behind.
    On PostgreSQL (and inside a caller's transaction) the write is one transaction, which other
    writers do not wait for. SQLite lets one connection write at a time and others give up after
    their busy timeout, so there the write goes in short transactions (`_import_in_chunks`).
    """
    _refuse_taken_slug(slug)
    release = release_read(directory)
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        return _import_in_chunks(release, slug=slug, title=title, owner=owner)
    with transaction.atomic():
        _refuse_taken_slug(slug)
        study = Study.objects.create(
            slug=slug,
            title=title or f"PluriHarms import ({slug})",
            status=Study.Status.CLOSED,
            design=Study.Design.FULL,
            owner=owner,
            meta=_study_meta(release),
        )
        prompts = prompts_create(study=study, prompts=release.prompts, feature_columns=release.feature_columns)
        everyone = range(len(release.participants))
        _ratings_write(
            release=release,
            rows=everyone,
            annotator_ids=_annotators_create(study=study, release=release, rows=everyone),
            prompt_ids=np.array([p.pk for p in prompts], dtype=np.int64),
        )
    return study


def _yield_write_lock(held: float) -> None:
    """Pause between two transactions so that a writer waiting on SQLite's lock gets it.

    SQLite's busy wait polls at intervals that grow with the wait, up to 100 ms, never more than
    about twice the time waited so far; a writer that started waiting during a transaction that held
    the lock `held` seconds meets at least one poll in a pause of 2 * held (capped at 100 ms).
    """
    time.sleep(min(IMPORT_PAUSE_SECONDS, 2 * held + 0.005))


def _import_in_chunks(release: Release, *, slug: str, title: str, owner) -> Study:
    """SQLite: write in transactions of about IMPORT_CHUNK_RATINGS ratings, pausing between them.

    The study is created hidden (draft, so nobody can be recruited; no owner, so it is in nobody's
    study list; meta["importing"]) and shown in one last transaction. If anything fails the partial
    study is deleted, again in short transactions. A process killed halfway leaves a hidden study
    marked "importing", which a new import under the same slug names in its refusal.
    """
    meta = _study_meta(release)
    with transaction.atomic():
        _refuse_taken_slug(slug)  # again, under the write lock: another import may have taken it
        study = Study.objects.create(
            slug=slug,
            title=title or f"PluriHarms import ({slug})",
            status=Study.Status.DRAFT,
            design=Study.Design.FULL,
            owner=None,
            meta={**meta, "importing": True},
        )
    n_prompts = len(release.prompts)
    try:
        prompt_ids: list[int] = []
        held = 0.0
        for start in range(0, n_prompts, IMPORT_CHUNK_PROMPTS):
            if start:
                _yield_write_lock(held)
            began = time.monotonic()
            with transaction.atomic():
                part = release.prompts.iloc[start : start + IMPORT_CHUNK_PROMPTS]
                created = prompts_create(
                    study=study, prompts=part, feature_columns=release.feature_columns, first_order=start
                )
                prompt_ids += [p.pk for p in created]
            held = time.monotonic() - began
        prompt_array = np.array(prompt_ids, dtype=np.int64)
        per_chunk = max(1, IMPORT_CHUNK_RATINGS // max(1, n_prompts))
        n_annotators = len(release.participants)
        for start in range(0, n_annotators, per_chunk):
            _yield_write_lock(held)
            rows = range(start, min(start + per_chunk, n_annotators))
            began = time.monotonic()
            with transaction.atomic():
                annotator_ids = _annotators_create(study=study, release=release, rows=rows)
                _ratings_write(release=release, rows=rows, annotator_ids=annotator_ids, prompt_ids=prompt_array)
            held = time.monotonic() - began
        with transaction.atomic():
            Study.objects.filter(pk=study.pk).update(
                status=Study.Status.CLOSED, owner=owner, meta=meta, updated_at=timezone.now()
            )
    except BaseException:
        try:
            _study_discard(study, per_chunk=max(1, IMPORT_CHUNK_RATINGS // max(1, n_prompts)))
        except Exception:  # keep the import's own error; the hidden study stays marked "importing"
            logger.exception("could not delete the partly imported study %r", slug)
        raise
    study.refresh_from_db()
    return study


def _study_discard(study: Study, *, per_chunk: int) -> None:
    """Delete a partly imported study, its ratings in short transactions like the ones that wrote them."""
    annotator_ids = list(Annotator.objects.filter(study=study).order_by("id").values_list("id", flat=True))
    held = 0.0
    for start in range(0, len(annotator_ids), per_chunk):
        if start:
            _yield_write_lock(held)
        began = time.monotonic()
        ids = annotator_ids[start : start + per_chunk]
        with transaction.atomic():
            Rating.objects.filter(annotator_id__in=ids).delete()
            Assignment.objects.filter(annotator_id__in=ids).delete()
            Annotator.objects.filter(id__in=ids).delete()
        held = time.monotonic() - began
    with transaction.atomic():
        Study.objects.filter(pk=study.pk).delete()  # its prompts go with it
