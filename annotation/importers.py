"""Import a dataset in the PluriHarms release format (prompts.csv + annotations.csv).

The files are read and validated by the one reader of the format, `benchmark.science.release`,
completely before anything is written, so a file with a problem leaves the database exactly as it
was; its problems come back as an `ImportProblem`. Annotators get the release's ids as pseudonyms
("P0001" … in file row order, as in `Release.long()`) and keep the released Participant_ID as
`source_id`. The write is one transaction on PostgreSQL; on SQLite it is a series
of short ones to a hidden study, deleted again if any of them fails (see `pluriharms_import`).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from benchmark.science.release import (
    DEMOGRAPHIC_COLUMNS,
    FACTOR_COLUMNS,
    Release,
    ReleaseFormatError,
    release_read,
)
from config.errors import ApplicationError

from .bulk import bulk_insert_ratings, columns_copy, objects_create
from .models import Annotator, Assignment, Prompt, Rating, Study
from .study_cache import study_changed

MAX_REPORTED_PROBLEMS = 20
# SQLite only (see _import_in_chunks): ratings per transaction (about 1 s of writing on the
# development machine), prompts per transaction, and the longest pause between two transactions.
IMPORT_CHUNK_RATINGS = 10_000
IMPORT_CHUNK_PROMPTS = 5_000
IMPORT_PAUSE_SECONDS = 0.1

logger = logging.getLogger(__name__)


class ImportProblem(ApplicationError):
    """Raised with every problem found (up to a limit), each naming file, row and column."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        message = "\n".join(shown) + (f"\n… and {more} more problem(s)" if more > 0 else "")
        super().__init__(message, extra={"problems": shown})


def release_validated(directory: str | Path) -> Release:
    """`benchmark.science.release.release_read`, its format problems raised as an `ImportProblem`."""
    try:
        return release_read(directory)
    except ReleaseFormatError as error:
        raise ImportProblem(error.problems) from None


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def prompts_create(
    *, study: Study, prompts: pd.DataFrame, feature_columns: list[str], first_order: int = 0
) -> list[Prompt]:
    """Create a study's prompts from a validated prompts frame (`Release.prompts`).

    `first_order`: the display order of the frame's first row, when a frame is written in parts.
    """
    values = prompts[feature_columns].to_numpy(dtype=float)
    return objects_create(
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
        "demographic_columns": list(DEMOGRAPHIC_COLUMNS),
        "factor_columns": list(FACTOR_COLUMNS),
        # Only so that an export reproduces the source file byte for byte.
        "decimal_rating_columns": release.decimal_rating_columns,
    }


def _annotators_create(*, study: Study, release: Release, rows: range) -> np.ndarray:
    """The release's participants in `rows`, with its ids ("P0001" … in row order) as pseudonyms."""
    columns = list(release.demographics.columns)
    part = release.demographics.iloc[rows.start : rows.stop]
    demographics = [dict(zip(columns, values)) for values in zip(*(part[c].tolist() for c in columns))]
    traits = [
        {c: _clean(v) for c, v in zip(FACTOR_COLUMNS, factors)}
        for factors in release.factors[rows.start : rows.stop].tolist()
    ]
    pseudonyms = release.annotators[rows.start : rows.stop]
    source_ids = release.participants[rows.start : rows.stop]
    template = Annotator(study=study, status=Annotator.Status.COMPLETED)
    if connection.vendor == "postgresql":  # one COPY, no model object per annotator
        return columns_copy(
            template,
            {"pseudonym": pseudonyms, "source_id": source_ids, "demographics": demographics, "traits": traits},
        )
    annotators = [
        Annotator(
            study=study,
            pseudonym=pseudonym,
            source_id=source_id,
            status=Annotator.Status.COMPLETED,
            demographics=demographic,
            traits=trait,
        )
        for pseudonym, source_id, demographic, trait in zip(pseudonyms, source_ids, demographics, traits)
    ]
    Annotator.objects.bulk_create(annotators, batch_size=1000)
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
    release = release_validated(directory)
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
        study_changed(study.pk, ratings=True)  # written in bulk: no signal says so
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
            study_changed(study.pk, ratings=True)
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
