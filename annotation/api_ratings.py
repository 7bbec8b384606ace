"""Ratings over the API: a cursor-paginated list and a streaming CSV, both filtered the same way.

`GET /api/studies/<slug>/ratings/` pages through the study's prompt ratings in id order (a cursor, so a
page stays right while ratings arrive); `GET /api/studies/<slug>/ratings.csv` streams all of them (or the
filtered ones) as CSV in constant memory. On PostgreSQL the database writes the CSV itself
(`COPY (SELECT …) TO STDOUT`, passed on as it comes, no Python object per cell: BENCHMARKS.md, stream);
elsewhere the rows come from the database in chunks (`QuerySet.iterator`) as plain tuples, annotators
and prompts looked up in two small dicts made once. Both write the same bytes (tests/annotation/
test_datasets.py compares them). Annotators are named by pseudonym; raw recruitment ids are never
stored. Text cells that a spreadsheet would run as a formula get a leading `'` (as
annotation.exports.spreadsheet_safe does).
Attention-check answers are not prompt ratings and are not listed (as in the long table).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator

import django_filters
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.http import StreamingHttpResponse
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer

from config.db_router import replica_read_alias
from config.errors import API_ERROR

from .access import get_study_for_user
from .exports import FORMULA_TRIGGERS, spreadsheet_safe
from .models import Annotator, Assignment, Prompt, Rating

CSV_COLUMNS = [
    "id",
    "annotator",
    "annotator_status",
    "prompt",
    "rating",
    "unsure",
    "trial",
    "rt_ms",
    "server_rt_ms",
    "created_at",
]
CSV_CHUNK_ROWS = 5000  # rows fetched from the server-side cursor at a time, and rows per chunk sent
COPY_BLOCK_BYTES = 256 * 1024
COPY_WORK_MEM = "128MB"

ERROR = API_ERROR  # the one error shape's schema component (config.errors)


class _UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, given to the database in UTC: PostgreSQL refuses offsets beyond ±15:59 that
    Python accepts (the API fuzz test's "+16:00" was a 500)."""

    def clean(self, value):
        value = super().clean(value)
        if value is None:
            return None
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError("That time is out of range.", code="invalid") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = _UtcIsoDateTimeField


class RatingFilter(django_filters.FilterSet):
    annotator = django_filters.CharFilter(
        field_name="annotator__pseudonym", help_text="The annotator's pseudonym, e.g. P0001."
    )
    prompt = django_filters.CharFilter(field_name="prompt__external_id", help_text="The prompt's external id.")
    created_after = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Ratings saved at or after this time (ISO 8601)."
    )
    created_before = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Ratings saved before this time (ISO 8601)."
    )

    class Meta:
        model = Rating
        fields = ["annotator", "prompt", "created_after", "created_before"]


class RatingSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.pseudonym", read_only=True)
    annotator_status = serializers.CharField(source="annotator.status", read_only=True)
    prompt = serializers.CharField(source="prompt.external_id", read_only=True)
    rating = serializers.FloatField(source="value", read_only=True, allow_null=True)
    trial = serializers.IntegerField(source="assignment.position", read_only=True)

    class Meta:
        model = Rating
        fields = CSV_COLUMNS
        read_only_fields = fields


class RatingCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


def _cell(value) -> str:
    """One CSV cell as text, quoted if it must be; `\\r` quoted too (a spreadsheet reads it as a line end)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([spreadsheet_safe(value)])
    return buffer.getvalue()[:-2]


class _Cells(dict):
    """pk → the CSV cells of the other columns of `rows`, made once for all; a pk that appeared after
    the start (an annotator who joined while the CSV streams) is read when first met."""

    def __init__(self, rows):
        self.rows = rows
        super().__init__((pk, ",".join(map(_cell, rest))) for pk, *rest in rows)

    def __missing__(self, pk):
        found = self.rows.filter(pk=pk).first()
        self[pk] = value = ",".join(map(_cell, found[1:]))
        return value


def ratings_csv_lines(queryset, *, study) -> Iterator[str]:
    """The CSV text of `queryset` (ratings of `study`) in chunks of CSV_CHUNK_ROWS lines, header first."""
    yield ",".join(CSV_COLUMNS) + "\n"
    people = _Cells(Annotator.objects.filter(study=study).values_list("id", "pseudonym", "status"))
    prompts = _Cells(Prompt.objects.filter(study=study).values_list("id", "external_id"))
    rows = queryset.order_by("id").values_list(
        "id",
        "annotator_id",
        "prompt_id",
        "value",
        "unsure",
        "assignment__position",
        "rt_ms",
        "server_rt_ms",
        "created_at",
    )
    lines = []
    for pk, annotator_id, prompt_id, value, unsure, trial, rt_ms, server_rt_ms, created_at in rows.iterator(
        chunk_size=CSV_CHUNK_ROWS
    ):
        lines.append(
            f"{pk},{people[annotator_id]},{prompts[prompt_id]},{'' if value is None else repr(value)},"
            f"{unsure},{trial},{'' if rt_ms is None else rt_ms},{'' if server_rt_ms is None else server_rt_ms},"
            f"{created_at.isoformat(timespec='microseconds')}\n"
        )
        if len(lines) >= CSV_CHUNK_ROWS:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


# Formula triggers as SQL string literals (annotation.exports.FORMULA_TRIGGERS; tab and CR as E'' escapes).
_SQL_TRIGGERS = ", ".join(
    {"\t": "E'\\t'", "\r": "E'\\r'"}.get(c, "'" + c.replace("'", "''") + "'") for c in FORMULA_TRIGGERS
)


def _sql_safe(column: str) -> str:
    """SQL for spreadsheet_safe(column): a leading `'` when the text starts like a formula."""
    return f"CASE WHEN left({column}, 1) IN ({_SQL_TRIGGERS}) THEN '''' || {column} ELSE {column} END"


def _copy_sql(queryset, *, study, filtered: bool = True) -> tuple[str, list]:
    """The CSV rows of `queryset` (ratings of `study`) as one SELECT that PostgreSQL formats itself, cell
    for cell what `ratings_csv_lines` writes in Python: floats as Python's repr (65.0, 12.5),
    True/False, UTC times with microseconds. `filtered`: the queryset has filters beyond the study
    (else their SQL, a semi-join, is left out)."""
    rating, annotator = Rating._meta.db_table, Annotator._meta.db_table
    prompt, assignment = Prompt._meta.db_table, Assignment._meta.db_table
    where, params = "n.study_id = %s AND r.prompt_id IS NOT NULL", [study.pk]
    if filtered:
        ids_sql, ids_params = queryset.order_by().values("id").query.sql_with_params()
        where += f" AND r.id IN ({ids_sql})"
        params += list(ids_params)
    # The inner query sorts narrow rows; the outer one formats them (formatting first would sort wide text).
    sql = (
        f"SELECT id, {_sql_safe('pseudonym')}, {_sql_safe('status')}, {_sql_safe('external_id')}, "
        "CASE WHEN value IS NULL THEN NULL WHEN value = trunc(value) AND abs(value) < 1e15 "
        "THEN trunc(value)::bigint::text || '.0' ELSE value::text END, "
        "CASE WHEN unsure THEN 'True' ELSE 'False' END, position, rt_ms, server_rt_ms, "
        """to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') FROM ("""
        "SELECT r.id, n.pseudonym, n.status, p.external_id, r.value, r.unsure, a.position, r.rt_ms, "
        f"r.server_rt_ms, r.created_at FROM {rating} r JOIN {annotator} n ON n.id = r.annotator_id "
        f"JOIN {prompt} p ON p.id = r.prompt_id JOIN {assignment} a ON a.id = r.assignment_id "
        f"WHERE {where} ORDER BY r.id) AS rows"
    )
    return sql, params


def ratings_csv_copy(queryset, *, study, filtered: bool = True, using: str = DEFAULT_DB_ALIAS) -> Iterator[bytes]:
    """PostgreSQL: the same CSV as `ratings_csv_lines`, made by `COPY (…) TO STDOUT` and passed on in
    blocks of about COPY_BLOCK_BYTES: no Python object per cell, and memory stays flat. `using`: the
    database alias to read from (the replica when there is one: export_csv)."""
    yield (",".join(CSV_COLUMNS) + "\n").encode()
    sql, params = _copy_sql(queryset, study=study, filtered=filtered)
    # One transaction, whose settings end with it (SET LOCAL): floats printed as the shortest text that
    # reads back, as Python's repr does (PostgreSQL 12+'s default, unless extra_float_digits was
    # turned down); no JIT compilation (about 2 s of a 1.5M-row download, for a query run once);
    # memory for the hash of the assignments (90 MB at 1.5M ratings) instead of batches on disk.
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        raw = cursor.cursor
        raw.execute("SET LOCAL extra_float_digits = 1")
        raw.execute("SET LOCAL jit = off")
        raw.execute(f"SET LOCAL work_mem = '{COPY_WORK_MEM}'")
        pending, size = [], 0
        with raw.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
            for block in copy:
                pending.append(bytes(block))
                size += len(block)
                if size >= COPY_BLOCK_BYTES:
                    yield b"".join(pending)
                    pending, size = [], 0
        if pending:
            yield b"".join(pending)


class RatingViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """A study's prompt ratings (attention checks are not listed), oldest first."""

    serializer_class = RatingSerializer
    pagination_class = RatingCursorPagination
    filterset_class = RatingFilter
    study_access = {"list": "view", "export_csv": "view"}

    def get_study(self):
        return get_study_for_user(self.request.user, self.kwargs["slug"], self.study_access[self.action])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no slug
            return Rating.objects.none()
        return Rating.objects.filter(annotator__study=self.get_study(), prompt__isnull=False).select_related(
            "annotator", "prompt", "assignment"
        )

    @extend_schema(
        summary="List a study's ratings (cursor-paginated)",
        description=(
            "Ratings in id order, one page at a time: follow `next` (a cursor) until it is null. "
            "`page_size` up to 1000. Filters: `annotator` (pseudonym), `prompt` (external id), "
            "`created_after` / `created_before` (ISO 8601)."
        ),
        parameters=[
            OpenApiParameter("page_size", OpenApiTypes.INT, description="Ratings per page (1–1000, default 100).")
        ],
        responses={200: RatingSerializer(many=True), 400: ERROR, 403: ERROR, 404: ERROR},
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Download a study's ratings as CSV (streamed)",
        description=(
            "Every rating (or those the filters keep) as CSV, streamed in id order: columns "
            + ", ".join(CSV_COLUMNS)
            + ". Annotators by pseudonym; text cells that would start a spreadsheet formula get a leading '."
        ),
        parameters=[
            OpenApiParameter("annotator", OpenApiTypes.STR, description="The annotator's pseudonym."),
            OpenApiParameter("prompt", OpenApiTypes.STR, description="The prompt's external id."),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME, description="Saved at or after (ISO 8601)."),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME, description="Saved before (ISO 8601)."),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, 400: ERROR, 403: ERROR, 404: ERROR},
        filters=False,
    )
    def export_csv(self, request, *args, **kwargs):
        study = self.get_study()
        queryset = self.filter_queryset(Rating.objects.filter(annotator__study=study, prompt__isnull=False))
        if connection.vendor == "postgresql":
            filtered = any(request.query_params.get(name) for name in RatingFilter.base_filters)
            # An export: from the replica when there is one (config/db_router.py).
            using = replica_read_alias(Rating)
            lines = ratings_csv_copy(queryset, study=study, filtered=filtered, using=using)
        else:
            lines = ratings_csv_lines(queryset, study=study)
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{study.slug}-ratings.csv"'
        return response

    def get_renderers(self):
        if getattr(self, "action", None) == "export_csv":  # the CSV is a streaming response; errors are JSON
            return [JSONRenderer()]
        return super().get_renderers()

    def perform_content_negotiation(self, request, force=False):
        # A client asking for text/csv gets the CSV (or a JSON error), never a 406.
        return super().perform_content_negotiation(request, force=force or self.action == "export_csv")
