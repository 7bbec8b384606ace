"""Writing a dump: canonical JSON, one row per line, the same bytes for the same rows."""

from __future__ import annotations

import base64
import gzip
import hashlib

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import models

from ...models import Study, SurveyInstrument
from .format import (
    FORMAT,
    INSTRUMENT_KEY,
    PARTS,
    VERSION,
    BackupError,
    canonical,
    encode,
    file_fields,
    relation_kind,
    schema,
)


def study_dump(*, study: Study, with_files: bool = False) -> bytes:
    """The study's rows (and its files' checksums, or bytes with `with_files`) as canonical JSON."""
    sections, files, user_ids, instrument_ids, dumped = [], {}, set(), set(), {}
    for label, path in PARTS:
        model = apps.get_model(label)
        fields = list(model._meta.concrete_fields)
        attnames = [f.attname for f in fields]
        rows = list(model._base_manager.filter(**{path: study.pk}).order_by("pk").values_list(*attnames))
        pk_index = next(i for i, f in enumerate(fields) if f.primary_key)
        dumped[label] = {row[pk_index] for row in rows}
        sections.append((label, model, fields, rows))
        for index, f in enumerate(fields):
            kind = relation_kind(f)
            if kind in ("user", "instrument"):
                (user_ids if kind == "user" else instrument_ids).update(row[index] for row in rows)
        for f in file_fields(model):
            index = fields.index(f)
            for row in rows:
                if row[index] and row[index] not in files:
                    files[row[index]] = _file_entry(f.storage, row[index], with_files)
    links = _m2m_links(sections, dumped, user_ids)
    User = get_user_model()
    user_ids.discard(None)
    usernames = dict(User._base_manager.filter(pk__in=user_ids).values_list("pk", User.USERNAME_FIELD))
    instrument_ids.discard(None)
    instruments = {
        row[0]: list(row[1:])
        for row in SurveyInstrument.objects.filter(pk__in=instrument_ids).values_list("pk", *INSTRUMENT_KEY)
    }
    shared_fields = [f for f in SurveyInstrument._meta.concrete_fields if not f.primary_key]
    shared_rows = sorted(
        SurveyInstrument.objects.filter(pk__in=instrument_ids).values_list(*[f.attname for f in shared_fields])
    )

    header = {"format": FORMAT, "version": VERSION, "study": study.slug, "schema": schema()}
    lines = [canonical(header)[:-1] + ","]
    lines.append('"instruments":' + canonical({"fields": [f.name for f in shared_fields]})[:-1] + ',"rows":[')
    _append_rows(lines, ([encode(f, v) for f, v in zip(shared_fields, row)] for row in shared_rows))
    lines.append("]},")
    lines.append('"models":[')
    for number, (label, _, fields, rows) in enumerate(sections):
        m2m_names = sorted(name for owner, name in links if owner == label)
        by_row = {name: {} for name in m2m_names}
        for name in m2m_names:
            for source, user in links[(label, name)]:
                by_row[name].setdefault(source, []).append(usernames[user])
        encoders = [_encoder(f, dumped, usernames, instruments) for f in fields]
        head = {"model": label, "fields": [f.name for f in fields] + m2m_names}
        lines.append(canonical(head)[:-1] + ',"rows":[')
        _append_rows(
            lines,
            (
                [to_json(value) for to_json, value in zip(encoders, row)]
                + [sorted(by_row[name].get(row[0], [])) for name in m2m_names]
                for row in rows
            ),
        )
        lines.append("]}" if number == len(sections) - 1 else "]},")
    lines.append("],")
    lines.append('"files":[')
    _append_rows(lines, (files[name] for name in sorted(files)))
    lines.append("]}")
    return ("\n".join(lines) + "\n").encode("ascii")


def dump_bytes(raw: bytes, *, gzipped: bool) -> bytes:
    """The file's bytes: gzip with a fixed header (no name, mtime 0) so that they are deterministic."""
    return gzip.compress(raw, compresslevel=6, mtime=0) if gzipped else raw


def _file_entry(storage, name: str, with_files: bool) -> dict:
    if not storage.exists(name):
        return {"missing": True, "name": name}
    with storage.open(name, "rb") as handle:
        raw = handle.read()
    entry = {"name": name, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    if with_files:
        entry["content"] = base64.b64encode(raw).decode("ascii")
    return entry


def _m2m_links(sections, dumped: dict[str, set], user_ids: set) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(model, field) -> [(row id, user id)] for many-to-many fields (only links to users are held).
    A field through a model of its own (study collaborators and their roles) is not listed here: that
    model is a part, dumped with its rows."""
    links = {}
    for label, model, _, _ in sections:
        for f in model._meta.many_to_many:
            through = f.remote_field.through
            if not through._meta.auto_created:
                if through._meta.label_lower not in dumped:
                    raise BackupError(f"{label}.{f.name}: its through model {through._meta.label} is not a part")
                continue
            if relation_kind(f) != "user":
                raise BackupError(f"{label}.{f.name}: only many-to-many links to users can be dumped")
            source, target = f.m2m_column_name(), f.m2m_reverse_name()
            pairs = list(through._base_manager.filter(**{f"{source}__in": dumped[label]}).values_list(source, target))
            user_ids.update(user for _, user in pairs)
            links[(label, f.name)] = pairs
    return links


def _append_rows(lines: list[str], rows) -> None:
    """One canonical JSON value per line, separated by commas."""
    previous = None
    for row in rows:
        if previous is not None:
            lines.append(previous + ",")
        previous = canonical(row)
    if previous is not None:
        lines.append(previous)


def _encoder(f: models.Field, dumped: dict[str, set], usernames: dict, instruments: dict):
    kind = relation_kind(f)
    if kind == "row":
        known = dumped[f.related_model._meta.label_lower]

        def row_id(value):
            if value is not None and value not in known:
                raise BackupError(f"{f.model._meta.label}.{f.name} = {value} is a row outside this study")
            return value

        return row_id
    if kind == "user":
        return lambda value: None if value is None else usernames[value]
    if kind == "instrument":
        return lambda value: None if value is None else instruments[value]
    return lambda value: encode(f, value)
