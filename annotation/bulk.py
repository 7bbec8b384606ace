"""Fast writes of many assignments and ratings: COPY on PostgreSQL, batched inserts elsewhere."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from django.db import connection
from django.utils import timezone

from .models import Assignment, Rating

BATCH = 5000


def _copy_frame(table: str, frame: pd.DataFrame) -> None:
    """COPY a DataFrame into a table in chunks (CSV text; empty field = NULL)."""
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    sql = f'COPY "{table}" ({columns}) FROM STDIN WITH (FORMAT csv)'
    with connection.cursor() as cursor:
        with cursor.cursor.copy(sql) as copy:
            for start in range(0, len(frame), 200_000):
                copy.write(frame.iloc[start : start + 200_000].to_csv(index=False, header=False))


def _reserve_ids(model, n: int) -> np.ndarray:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, n]
        )
        return np.fromiter((row[0] for row in cursor.fetchall()), dtype=np.int64, count=n)


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
        assignment_ids = _reserve_ids(Assignment, n)
        rating_ids = _reserve_ids(Rating, n)
        _copy_frame(
            Assignment._meta.db_table,
            pd.DataFrame(
                {
                    "id": assignment_ids,
                    "annotator_id": annotator_ids,
                    "prompt_id": prompt_ids,
                    "kind": Assignment.Kind.PROMPT.value,
                    "position": positions,
                }
            ),
        )
        _copy_frame(
            Rating._meta.db_table,
            pd.DataFrame(
                {
                    "id": rating_ids,
                    "assignment_id": assignment_ids,
                    "annotator_id": annotator_ids,
                    "prompt_id": prompt_ids,
                    "value": pd.Series(np.where(unsure, np.nan, values)),
                    "unsure": np.where(unsure, "t", "f"),
                    "created_at": now.isoformat(),
                }
            ),
        )
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
