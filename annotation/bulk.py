"""Fast writes of many rows: binary COPY on PostgreSQL, batched inserts elsewhere.

On PostgreSQL the rows go straight into their tables with `COPY … (FORMAT binary)`, the buffers built
with numpy in blocks (no Python object per row). The assignments take their ids from their column
default during the COPY, and the ratings then name them: the ids are known from the sequence's values
before and after (`_copied_ids`), without reading 1.5 million rows back. The per-row foreign-key triggers are the
largest cost of such a write (7.5 million checks for 1.5 million ratings, each one a query, run at
commit); when the database role may, the write skips them for its own rows (`SET LOCAL
session_replication_role = replica`, undone right after the COPY) and checks the same keys set-wise
instead, taking the same locks the triggers would (`_references_check`). Durability is untouched:
the rows are written and logged as usual, in the caller's transaction.
"""

from __future__ import annotations

import itertools
import json
import struct
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone
from psycopg import sql

from .models import Annotator, Assignment, Prompt, Rating

BATCH = 5000
# Rows per COPY block on PostgreSQL: about 15 MB of buffer for ratings.
COPY_BLOCK_ROWS = 250_000

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _binary_block(columns: list[tuple[np.ndarray | bytes, np.ndarray | None]], start: int, stop: int) -> bytes:
    """Rows start..stop of COPY's binary format: per row a field count, then per field its length
    (-1 for NULL) and big-endian value. `columns`: (values or one constant, NULL mask or None)."""
    n = stop - start
    layout = [("count", ">i2")]
    for i, (values, _) in enumerate(columns):
        dtype = np.dtype(f"S{len(values)}") if isinstance(values, bytes) else values.dtype.newbyteorder(">")
        layout += [(f"len{i}", ">i4"), (f"val{i}", dtype)]
    rows = np.empty(n, dtype=np.dtype(layout))
    rows["count"] = len(columns)
    nullable = []
    for i, (values, nulls) in enumerate(columns):
        rows[f"val{i}"] = values if isinstance(values, bytes) else values[start:stop]
        rows[f"len{i}"] = rows.dtype[f"val{i}"].itemsize
        if nulls is not None and nulls[start:stop].any():
            rows[f"len{i}"][nulls[start:stop]] = -1
            nullable.append((i, nulls[start:stop]))
    if not nullable:
        return rows.tobytes()
    # A NULL field is its length (-1) alone: drop the value bytes of those cells.
    raw = rows.view(np.uint8).reshape(n, rows.dtype.itemsize)
    keep = np.ones(raw.shape, dtype=bool)
    for i, nulls in nullable:
        offset = rows.dtype.fields[f"val{i}"][1]
        keep[nulls, offset : offset + rows.dtype[f"val{i}"].itemsize] = False
    return raw[keep].tobytes()


def binary_copy_blocks(columns: list[tuple[np.ndarray | bytes, np.ndarray | None]], n: int):
    """The whole input of a binary COPY of n rows, in blocks: header, COPY_BLOCK_ROWS rows a block, trailer."""
    yield _COPY_HEADER
    for start in range(0, n, COPY_BLOCK_ROWS):
        yield _binary_block(columns, start, min(start + COPY_BLOCK_ROWS, n))
    yield _COPY_TRAILER


def _copy_binary(cursor, table: str, names: list[str], columns: list, n: int) -> int:
    """COPY n rows into `table`; returns the row count the server reports."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with cursor.copy(statement) as copy:
        for block in binary_copy_blocks(columns, n):
            copy.write(block)
    return cursor.rowcount


def _sequence_of(cursor, table: str) -> str:
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    return cursor.fetchone()[0]


def ids_reserve(cursor, table: str, n: int) -> np.ndarray:
    """Draw n ids from the sequence of `table`'s id column, as its default would, in ascending order.

    The server sends them as runs of consecutive ids (one run unless another session drew ids meanwhile).
    """
    sequence = _sequence_of(cursor, table)
    cursor.execute(
        "SELECT min(id), max(id) FROM ("
        "  SELECT id, id - row_number() OVER (ORDER BY id) AS run"
        "  FROM (SELECT nextval(%s::regclass) AS id FROM generate_series(1, %s)) AS drawn"
        ") AS numbered GROUP BY run ORDER BY 1",
        [sequence, n],
    )
    ids = np.concatenate([np.arange(low, high + 1, dtype=np.int64) for low, high in cursor.fetchall()])
    if len(ids) != n:
        raise DatabaseError(f"drew {len(ids)} ids from {sequence}, expected {n}")
    return ids


def _rows_copy(meta, fields: list, n: int, rows) -> np.ndarray:
    """COPY n rows into `meta`'s table: ids drawn from its sequence first, then `rows(ids)` gives each row's
    values for `fields` in order (without the id). Returns the ids, in row order."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(meta.db_table), sql.SQL(", ").join(sql.Identifier(f.column) for f in [meta.pk, *fields])
    )
    with connection.cursor() as wrapper, connection.wrap_database_errors:
        cursor = wrapper.cursor
        ids = ids_reserve(cursor, meta.db_table, n)
        with cursor.copy(statement) as copy:
            for pk, values in zip(ids.tolist(), rows(ids)):
                copy.write_row([pk, *values])
        if cursor.rowcount != n:
            raise DatabaseError(f"COPY wrote {cursor.rowcount} rows to {meta.db_table}, expected {n}")
    return ids


def objects_copy(objects: list) -> list:
    """PostgreSQL: what `bulk_create` does (ids set on the objects, each field saved as the ORM saves it),
    by one COPY instead of INSERT statements. All objects are of one model."""
    if not objects:
        return objects
    meta = type(objects[0])._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]

    def rows(ids):
        for obj, pk in zip(objects, ids.tolist()):
            obj.pk = pk
            values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
            obj._state.adding = False
            obj._state.db = connection.alias
            yield values

    _rows_copy(meta, fields, len(objects), rows)
    return objects


def columns_copy(template, columns: dict[str, list]) -> np.ndarray:
    """PostgreSQL: len(values) rows of `template`'s model by one COPY, without a model object per row;
    returns their ids, in row order.

    `columns` maps field names to one value per row (JSON fields as Python values, the others as the
    database takes them); every other field of every row is what saving `template` would write
    (its defaults, `auto_now_add` times, its foreign keys).
    """
    meta = template._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    unknown = set(columns) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"not fields of {meta.label}: {', '.join(sorted(unknown))}")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError("every column needs one value per row")
    n = lengths.pop()
    per_row = []
    for f in fields:
        if f.name not in columns:
            per_row.append(itertools.repeat(f.get_db_prep_save(f.pre_save(template, True), connection), n))
        elif isinstance(f, models.JSONField):
            per_row.append([json.dumps(v, cls=f.encoder) for v in columns[f.name]])
        else:
            per_row.append(columns[f.name])
    return _rows_copy(meta, fields, n, lambda ids: zip(*per_row))


def objects_create(objects: list, *, batch_size: int = 1000) -> list:
    """`bulk_create` of many objects of one model: by COPY on PostgreSQL (`objects_copy`)."""
    if connection.vendor == "postgresql":
        return objects_copy(objects)
    return type(objects[0]).objects.bulk_create(objects, batch_size=batch_size) if objects else objects


def _row_triggers_skipped(cursor) -> str | None:
    """Skip this session's row triggers for the rest of the transaction, if the role may (a superuser,
    or one granted SET on session_replication_role); returns the setting to restore, or None."""
    cursor.execute("SHOW session_replication_role")
    previous = cursor.fetchone()[0]
    try:
        with transaction.atomic():  # a savepoint: a refusal must not abort the caller's transaction
            cursor.execute("SET LOCAL session_replication_role = replica")
    except (DatabaseError, psycopg.Error):  # psycopg's own: this is its cursor
        return None
    return previous


def _references_check(cursor, parents: list[tuple[str, np.ndarray]]) -> None:
    """What the skipped foreign-key triggers do, once per parent table instead of once per row: every
    referenced id exists, and is locked against deletion until the transaction ends (FOR KEY SHARE)."""
    for table, referenced in parents:
        ids = np.unique(referenced)
        cursor.execute(
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE id = ANY(%s) FOR KEY SHARE) AS locked").format(
                sql.Identifier(table)
            ),
            [ids.tolist()],
        )
        found = cursor.fetchone()[0]
        if found != len(ids):
            raise DatabaseError(f"{len(ids) - found} referenced row(s) missing from {table}")


def _copied_ids(cursor, table: str, sequence: str, before: int, annotator_ids: np.ndarray, n: int) -> np.ndarray:
    """The ids the column default drew, in row order, for the n rows just COPYed into `table`.

    `before` is a value this session drew from the sequence just before the COPY. The COPY drew n
    values, one per row in row order, each larger than the one before; if the last is before + n, they
    are exactly before + 1 … before + n. Otherwise another session drew values meanwhile, and the rows'
    own ids are read back (ascending, so in row order).
    """
    cursor.execute("SELECT currval(%s::regclass)", [sequence])
    last = cursor.fetchone()[0]
    if last - before == n:
        return np.arange(before + 1, last + 1, dtype=np.int64)
    cursor.execute(
        sql.SQL("SELECT id FROM {} WHERE id > %s AND id <= %s AND annotator_id = ANY(%s) ORDER BY id").format(
            sql.Identifier(table)
        ),
        [before, last, np.unique(annotator_ids).tolist()],
    )
    ids = np.array([row[0] for row in cursor.fetchall()], dtype=np.int64)
    if len(ids) != n:
        raise DatabaseError(f"found {len(ids)} of the {n} rows just written to {table}")
    return ids


def _bulk_insert_postgresql(annotator_ids, prompt_ids, positions, values, unsure, now) -> None:
    """Assignments and ratings by binary COPY; the assignments' ids come from their column default
    (one sequence draw per row, in the COPY itself) and are then known without reading the rows back
    (`_copied_ids`)."""
    n = len(annotator_ids)
    annotator_ids = np.asarray(annotator_ids, dtype=np.int64)
    prompt_ids = np.asarray(prompt_ids, dtype=np.int64)
    value_array = np.asarray(values, dtype=np.float64)
    unsure = np.asarray(unsure, dtype=bool)
    created = np.array([(now - _PG_EPOCH) // timedelta(microseconds=1)], dtype=np.int64)
    assignment, rating = Assignment._meta, Rating._meta
    with transaction.atomic(), connection.cursor() as wrapper, connection.wrap_database_errors:
        cursor = wrapper.cursor  # psycopg's own cursor, for COPY; its errors raised as Django's
        sequence = _sequence_of(cursor, assignment.db_table)
        cursor.execute("SELECT nextval(%s::regclass)", [sequence])
        before = cursor.fetchone()[0]
        restore = _row_triggers_skipped(cursor)
        written = _copy_binary(
            cursor,
            assignment.db_table,
            ["annotator_id", "prompt_id", "kind", "position"],
            [
                (annotator_ids, None),
                (prompt_ids, None),
                (Assignment.Kind.PROMPT.value.encode(), None),
                (np.asarray(positions, dtype=np.int32), None),
            ],
            n,
        )
        if written != n:
            raise DatabaseError(f"COPY wrote {written} assignments, expected {n}")
        assignment_ids = _copied_ids(cursor, assignment.db_table, sequence, before, annotator_ids, n)
        written += _copy_binary(
            cursor,
            rating.db_table,
            ["assignment_id", "annotator_id", "prompt_id", "value", "unsure", "created_at"],
            [
                (assignment_ids, None),
                (annotator_ids, None),
                (prompt_ids, None),
                (value_array, unsure | np.isnan(value_array)),
                (unsure, None),
                (np.broadcast_to(created, n), None),
            ],
            n,
        )
        if written != 2 * n:
            raise DatabaseError(f"COPY wrote {written} rows, expected {2 * n}")
        if restore is not None:
            cursor.execute("SELECT set_config('session_replication_role', %s, true)", [restore])
            # The assignments were written just now with these ids (`written` counts them all).
            _references_check(
                cursor,
                [
                    (Annotator._meta.db_table, annotator_ids),
                    (Prompt._meta.db_table, prompt_ids),
                ],
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
