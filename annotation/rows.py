"""Model instances from hand-written SQL, for the rating loop's hot path.

Building a query with the ORM costs about 0.5–1 ms of CPU per query (compiling joins, filters and
ordering); the rating loop runs a handful per rating, and at hundreds of ratings a second that was most
of the server's CPU (bench/load.py). The loop's few queries are therefore written once as SQL. This
module turns their rows back into model instances with the same per-field conversions the ORM applies
(JSON, datetimes on SQLite, …), so that the rest of the code and the templates see ordinary objects.
"""

from __future__ import annotations

import time
from functools import cache

from django.db import connection


@cache
def _columns(model, vendor: str) -> tuple[list, list[str]]:
    fields = list(model._meta.concrete_fields)
    names = [field.column for field in fields]
    return fields, names


def columns_sql(model, alias: str) -> str:
    """`alias.col1, alias.col2, …` for every concrete field of the model, in field order."""
    return _columns_sql(model, alias, connection.vendor)


@cache
def _columns_sql(model, alias: str, vendor: str) -> str:
    _, names = _columns(model, vendor)
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(name)}" for name in names)


def column_count(model) -> int:
    return len(_columns(model, connection.vendor)[1])


@cache
def _converters(model, vendor: str) -> list[tuple[list, object]]:
    fields, _ = _columns(model, vendor)
    result = []
    for field in fields:
        expression = field.get_col(model._meta.db_table)
        result.append((connection.ops.get_db_converters(expression) + field.get_db_converters(connection), expression))
    return result


def convert(model, field_name: str, value):
    """One column's value as the ORM would give it (e.g. a JSON or a datetime column)."""
    field = model._meta.get_field(field_name)
    expression = field.get_col(model._meta.db_table)
    for converter in connection.ops.get_db_converters(expression) + field.get_db_converters(connection):
        value = converter(value, expression, connection)
    return value


def instance(model, values):
    """A model instance from the values of `columns_sql(model, …)`, converted as the ORM converts them."""
    fields, _ = _columns(model, connection.vendor)
    converted = []
    for value, (converters, expression) in zip(values, _converters(model, connection.vendor)):
        for converter in converters:
            value = converter(value, expression, connection)
        converted.append(value)
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def fetchone(sql: str, params):
    """Run one of the rating loop's statements and return its first row.

    On PostgreSQL the statement is sent with server-side parameters and prepared on the connection
    (psycopg prepares it from its first execution with `prepare=True`): the database parses and plans it
    once per connection instead of once per rating, and the client does not quote parameters into the
    text (Django's psycopg cursor binds on the client, which for the submission's statement cost more
    CPU than the rest of the query). Parameters therefore carry explicit casts where their type is not
    clear from context (a NULL in a select list, say). Errors are Django's, as from any cursor, and the
    query is logged when queries are (DEBUG, or a test capturing them). Elsewhere, Django's cursor.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    import psycopg  # noqa: PLC0415  (PostgreSQL only)

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    logged = connection.queries_logged
    start = time.monotonic() if logged else 0.0
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        row = cursor.fetchone()
    if logged:
        connection.queries_log.append({"sql": f"{sql} -- {params!r}", "time": f"{time.monotonic() - start:.3f}"})
    return row
