"""The dump format: what is dumped, in which order, and how a value is written and read back."""

from __future__ import annotations

import base64
import json
from datetime import UTC, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.db.migrations.loader import MigrationLoader

from config.errors import ApplicationError

from ...models import SurveyInstrument

FORMAT = "pluriharms.study-dump"
VERSION = 1
GZIP_MAGIC = b"\x1f\x8b"

# Every model whose rows belong to one study, parents first, with the lookup from the model to the
# study's primary key. tests/annotation/test_backup.py fails when a model hanging off Study is missing.
PARTS: tuple[tuple[str, str], ...] = (
    ("annotation.study", "pk"),
    ("annotation.collaborator", "study"),
    ("annotation.prompt", "study"),
    ("annotation.annotator", "study"),
    ("annotation.surveyresponse", "annotator__study"),
    ("annotation.assignment", "annotator__study"),
    ("annotation.rating", "annotator__study"),
    ("annotation.ratingrevision", "rating__annotator__study"),
    ("annotation.annotatorstatuschange", "annotator__study"),
    ("annotation.upload", "study"),
    ("benchmark.candidatepool", "study"),
    ("benchmark.valuetopic", "pool__study"),
    ("benchmark.candidate", "pool__study"),  # a variant names its seed: a reference within the part
    ("jobs.job", "study"),  # after what its params name (JSON_REFERENCES)
    ("jobs.jobartifact", "job__study"),
)
PART_LABELS = tuple(label for label, _ in PARTS)
# Ids of dumped rows inside JSON fields: (model, field) -> {key: model the id belongs to}.
JSON_REFERENCES = {("jobs.job", "params"): {"upload": "annotation.upload", "pool": "benchmark.candidatepool"}}
INSTRUMENT_KEY = ("key", "version")
# Many-to-many fields that once had no model of their own, which older dumps list as usernames in the
# row: (model, field) -> the values their link rows get on restore. Collaborators had no role before
# migration annotation 0004 and could change everything, so they come back as editors (as it made them).
LEGACY_M2M_DEFAULTS = {("annotation.study", "collaborators"): {"role": "editor"}}


class BackupError(ApplicationError):
    """A dump that cannot be written, or a file that cannot be restored (nothing was written)."""


# --- values --------------------------------------------------------------------------------------


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def relation_kind(f: models.Field) -> str | None:
    """How a relation is written: a dumped row's pk, a username, or an instrument's (key, version)."""
    if not f.is_relation:
        return None
    target = f.related_model
    if target is get_user_model():
        return "user"
    if target is SurveyInstrument:
        return "instrument"
    if target._meta.label_lower in PART_LABELS:
        return "row"
    raise BackupError(f"{f.model._meta.label}.{f.name} refers to {target._meta.label}, which a dump cannot hold")


def encode(f: models.Field, value):
    """A field's value as JSON: datetimes in ISO UTC to the microsecond, decimals and UUIDs as text."""
    if value is None:
        return None
    kind = f.get_internal_type()
    if kind == "DateTimeField":
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if kind in ("DateField", "TimeField"):
        return value.isoformat()
    if kind in ("DecimalField", "UUIDField"):
        return str(value)
    if kind == "BinaryField":
        return base64.b64encode(bytes(value)).decode()
    if kind == "DurationField":
        return value // value.resolution
    if kind == "JSONField" or isinstance(value, (str, int, float, bool)):
        return value
    raise BackupError(f"{f.model._meta.label}.{f.name}: cannot write a {kind} value")


def decode(f: models.Field, value, where: str):
    """The value `encode` wrote, checked against the field; BackupError naming `where` if it is not one."""
    if value is None:
        if not f.null:
            raise BackupError(f"{where}: {f.name} is empty but may not be")
        return None
    kind = f.get_internal_type()
    try:
        # PostgreSQL refuses a NUL character in text and JSON (SQLite would keep it): refused on both.
        if (isinstance(value, str) and "\x00" in value) or (kind == "JSONField" and "\\u0000" in json.dumps(value)):
            raise ValidationError("a NUL character (0x00), which no text column can hold")
        if kind == "BinaryField":
            return base64.b64decode(value, validate=True)
        if kind == "DurationField":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError("a whole number of microseconds")
            return timedelta(microseconds=value)
        if kind in ("JSONField", "FileField", "ImageField"):
            if kind != "JSONField" and not isinstance(value, str):
                raise ValidationError("a file name")
            return value
        if kind in ("CharField", "TextField", "SlugField", "URLField", "EmailField") and not isinstance(value, str):
            raise ValidationError("text")
        return f.to_python(value)
    except (ValidationError, ValueError, TypeError) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        raise BackupError(f"{where}: {f.name} = {value!r} is not valid ({message})") from None


def file_fields(model) -> list[models.FileField]:
    return [f for f in model._meta.concrete_fields if isinstance(f, models.FileField)]


def schema() -> dict[str, str]:
    """The latest migration of each app in the dump (informative: restore warns when it differs)."""
    leaves = MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes()
    wanted = {label.split(".")[0] for label in PART_LABELS}
    return {app: name for app, name in sorted(leaves) if app in wanted}
