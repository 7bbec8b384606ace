"""Fast writes of many assignments and ratings: COPY on PostgreSQL, batched inserts elsewhere."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from django.db import connection, transaction
from django.utils import timezone

from .models import Assignment, Rating

BATCH = 5000


def _csv_chunks(table: pa.Table, rows: int = 250_000):
    """CSV text (no header; null = empty field) of a table, in chunks, from pyarrow's C++ writer."""
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    for start in range(0, table.num_rows, rows):
        sink = io.BytesIO()
        pa_csv.write_csv(table.slice(start, rows), sink, options)
        yield sink.getvalue()


def _copy_in(sql: str, table: pa.Table) -> None:
    with connection.cursor() as cursor:
        with cursor.cursor.copy(sql) as copy:
            for chunk in _csv_chunks(table):
                copy.write(chunk)


def _bulk_insert_postgresql(annotator_ids, prompt_ids, positions, values, unsure, now) -> None:
    """COPY into a temporary staging table, then two INSERT … SELECT run inside the server.

    The staging table draws each assignment id from the assignment table's own sequence as rows
    arrive, so ratings can point at their assignment without a join and nothing round-trips
    through Python. Rating ids come from the rating table's default as usual.
    """
    assignment = Assignment._meta.db_table
    rating = Rating._meta.db_table
    stage = "annotation_bulk_ratings_stage"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE IF EXISTS "{stage}"')
        cursor.execute(
            f'CREATE TEMPORARY TABLE "{stage}" ('
            "annotator_id bigint NOT NULL, prompt_id bigint NOT NULL, position integer NOT NULL, "
            "value double precision, unsure boolean NOT NULL, "
            f"assignment_id bigint NOT NULL DEFAULT nextval(pg_get_serial_sequence('{assignment}', 'id'))"
            ") ON COMMIT DROP"
        )
        _fill_stage(stage, annotator_ids, prompt_ids, positions, values, unsure)
        cursor.execute(
            f'INSERT INTO "{assignment}" (id, annotator_id, prompt_id, kind, position) '
            f'SELECT assignment_id, annotator_id, prompt_id, %s, position FROM "{stage}"',
            [Assignment.Kind.PROMPT.value],
        )
        cursor.execute(
            f'INSERT INTO "{rating}" (assignment_id, annotator_id, prompt_id, value, unsure, created_at) '
            f'SELECT assignment_id, annotator_id, prompt_id, value, unsure, %s FROM "{stage}"',
            [now],
        )
        cursor.execute(f'DROP TABLE "{stage}"')


def _fill_stage(stage, annotator_ids, prompt_ids, positions, values, unsure) -> None:
    value_array = np.asarray(values, dtype=float)
    _copy_in(
        f'COPY "{stage}" (annotator_id, prompt_id, position, value, unsure) FROM STDIN WITH (FORMAT csv)',
        pa.table(
            {
                "annotator_id": np.asarray(annotator_ids, dtype=np.int64),
                "prompt_id": np.asarray(prompt_ids, dtype=np.int64),
                "position": np.asarray(positions, dtype=np.int64),
                "value": pa.array(value_array, mask=np.asarray(unsure, dtype=bool) | np.isnan(value_array)),
                "unsure": np.asarray(unsure, dtype=bool),
            }
        ),
    )


def bulk_insert_ratings(
    *,
    annotator_ids: np.ndarray,
    prompt_ids: np.ndarray,
    positions: np.ndarray,
    values: np.ndarray,
    unsure: np.ndarray,
) -> int:
    """Insert one answered prompt assignment and its rating per element; call inside a transaction.

    `values` holds NaN where `unsure` is true. Returns the number of ratings written.
    """
    n = len(annotator_ids)
    if n == 0:
        return 0
    now = timezone.now()
    if connection.vendor == "postgresql":
        _bulk_insert_postgresql(annotator_ids, prompt_ids, positions, values, unsure, now)
        return n
    for start in range(0, n, BATCH):
        end = min(start + BATCH, n)
        assignments = Assignment.objects.bulk_create(
            [
                Assignment(annotator_id=int(a), prompt_id=int(p), kind=Assignment.Kind.PROMPT, position=int(pos))
                for a, p, pos in zip(annotator_ids[start:end], prompt_ids[start:end], positions[start:end])
            ]
        )
        Rating.objects.bulk_create(
            [
                Rating(
                    assignment_id=assignment.pk,
                    annotator_id=assignment.annotator_id,
                    prompt_id=assignment.prompt_id,
                    value=None if u else float(v),
                    unsure=bool(u),
                    created_at=now,
                )
                for assignment, v, u in zip(assignments, values[start:end], unsure[start:end])
            ]
        )
    return n
