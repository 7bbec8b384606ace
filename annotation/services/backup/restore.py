"""Reading a dump back: the whole file is checked first, then written in one transaction."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import posixpath
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management.color import no_style
from django.db import IntegrityError, connection, models, transaction

from ...models import Study, SurveyInstrument
from ...study_cache import study_changed
from .format import (
    FORMAT,
    GZIP_MAGIC,
    INSTRUMENT_KEY,
    JSON_REFERENCES,
    LEGACY_M2M_DEFAULTS,
    PART_LABELS,
    VERSION,
    BackupError,
    decode,
    file_fields,
    relation_kind,
    schema,
)


@dataclass
class RestoreReport:
    study: Study | None = None
    counts: dict[str, int] = field(default_factory=dict)
    remapped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Section:
    label: str
    model: type[models.Model]
    fields: list[models.Field]  # concrete, in the file's order
    m2m: list[models.ManyToManyField]  # their values follow the concrete ones in each row
    rows: list[list]
    pk_index: int = 0
    kinds: list[str | None] = field(default_factory=list)  # relation_kind of each concrete field


def dump_parse(raw: bytes) -> dict:
    """The document of a dump file (gzip or not), its header checked; BackupError if it is not one."""
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise BackupError(f"not a study dump: the gzip data is damaged ({exc})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BackupError(f"not a study dump: the file is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(f"not a study dump: the file does not say format {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise BackupError(f"unknown dump version {doc.get('version')!r}: this program reads version {VERSION}")
    shapes = {"study": str, "schema": dict, "instruments": dict, "models": list, "files": list}
    wrong = [key for key, kind in shapes.items() if not isinstance(doc.get(key), kind)]
    if wrong:
        raise BackupError(f"malformed dump: {', '.join(wrong)} missing or of the wrong type")
    return doc


def study_restore(*, raw: bytes, create_users: bool = False) -> RestoreReport:
    """Restore a dump made by `study_dump` (see the package docstring); all or nothing."""
    report = RestoreReport()
    doc = dump_parse(raw)
    sections = _sections(doc, report.warnings)
    instruments = _instruments(doc)
    missing = sorted({f"{i[0]} v{i[1]}" for s in sections for i in _instrument_refs(s) if i not in instruments})
    if missing:
        raise BackupError(f"malformed dump: answers to instruments the file does not hold: {', '.join(missing)}")
    files = _files(doc)
    report.warnings += _unfinished_jobs(sections)
    if doc["schema"] != schema():
        report.warnings.append(f"the dump was made at migrations {doc['schema']}, this database is at {schema()}")
    written: list[tuple] = []  # (storage, name) of files stored, removed again if the transaction fails
    try:
        with transaction.atomic():
            _write(doc, sections, instruments, files, create_users, report, written)
            if report.study is not None:  # rows written in bulk (no signals), perhaps under the ids of a deleted study
                study_changed(report.study.pk, ratings=True)
    except IntegrityError as exc:
        _discard(written)
        raise BackupError(f"the database refused the restored rows, so nothing was kept: {exc}") from None
    except BaseException:
        _discard(written)
        raise
    return report


# --- checks before any write ----------------------------------------------------------------------


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sections(doc: dict, warnings: list[str]) -> list[_Section]:
    sections = []
    for number, raw_section in enumerate(doc["models"]):
        section = _section_head(raw_section, number, [s.label for s in sections], warnings)
        sections.append(section)
    if not sections or sections[0].label != "annotation.study":
        raise BackupError("malformed dump: no study section")
    ids: dict[str, set] = {}
    for section in sections:
        width = len(section.fields) + len(section.m2m)
        # A row may name another row of its own part (a variant its seed): the part's ids come first.
        ids[section.label] = {
            row[section.pk_index]
            for row in section.rows
            if isinstance(row, list) and len(row) == width and _is_id(row[section.pk_index])
        }
        decoded = []
        for index, row in enumerate(section.rows):
            where = f"{section.label} row {index + 1}"
            if not isinstance(row, list) or len(row) != width:
                raise BackupError(f"malformed dump: {where} does not have {width} values")
            links = row[len(section.fields) :]
            if not all(isinstance(names, list) and all(isinstance(n, str) for n in names) for names in links):
                raise BackupError(f"malformed dump: {where}: many-to-many values are lists of usernames")
            values = [_value(f, kind, v, where, ids) for f, kind, v in zip(section.fields, section.kinds, row)]
            decoded.append(values + links)
        section.rows = decoded
        section_ids = [row[section.pk_index] for row in decoded]
        if not all(_is_id(pk) for pk in section_ids) or len(set(section_ids)) != len(section_ids):
            raise BackupError(f"malformed dump: {section.label} ids are not distinct whole numbers")
        ids[section.label] = set(section_ids)
    study = sections[0]
    names = [f.name for f in study.fields]
    if len(study.rows) != 1 or "slug" not in names or study.rows[0][names.index("slug")] != doc["study"]:
        raise BackupError("malformed dump: the study section must hold exactly the study the header names")
    return sections


def _section_head(raw_section, number: int, seen: list[str], warnings: list[str]) -> _Section:
    if not isinstance(raw_section, dict) or not isinstance(raw_section.get("fields"), list):
        raise BackupError(f"malformed dump: models[{number}] is not a model section")
    label = raw_section.get("model")
    if label not in PART_LABELS or label in seen or (seen and PART_LABELS.index(label) < PART_LABELS.index(seen[-1])):
        raise BackupError(f"malformed dump: models[{number}] ({label!r}) is not the next part of a study")
    model = apps.get_model(label)
    by_name = {f.name: f for f in [*model._meta.concrete_fields, *model._meta.many_to_many]}
    names = raw_section["fields"]
    unknown = [str(name) for name in names if name not in by_name]
    if unknown or len(set(names)) != len(names):
        raise BackupError(f"{label}: field(s) {', '.join(unknown) or 'named twice'} not in this database's schema")
    for f in model._meta.concrete_fields:
        if f.name not in names:
            if f.primary_key or not (f.has_default() or f.null):
                raise BackupError(f"{label}: the dump has no {f.name}, which this database requires")
            warnings.append(f"{label}: the dump has no {f.name}; restored rows get its default")
    if not isinstance(raw_section.get("rows"), list):
        raise BackupError(f"malformed dump: {label} has no rows list")
    fields = [by_name[name] for name in names]
    concrete = [f for f in fields if not f.many_to_many]
    if fields != concrete + [f for f in fields if f.many_to_many]:
        raise BackupError(f"malformed dump: {label}: many-to-many fields come last")
    pk_index = next(i for i, f in enumerate(concrete) if f.primary_key)
    kinds = [relation_kind(f) for f in concrete]
    return _Section(label, model, concrete, fields[len(concrete) :], raw_section["rows"], pk_index, kinds)


def _value(f: models.Field, kind: str | None, value, where: str, ids: dict[str, set]):
    if kind is None:
        return decode(f, value, where)
    if value is None:
        if not f.null:
            raise BackupError(f"{where}: {f.name} is empty but may not be")
        return None
    if kind == "row":
        target = f.related_model._meta.label_lower
        if not _is_id(value) or value not in ids.get(target, ()):
            raise BackupError(f"malformed dump: {where}: {f.name} = {value!r} is no {target} row in the file")
        return value
    if kind == "user" and isinstance(value, str):
        return value
    if kind == "instrument" and isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BackupError(f"malformed dump: {where}: {f.name} = {value!r} is not a {kind} reference")


def _instruments(doc: dict) -> dict[tuple[str, str], dict]:
    section = doc["instruments"]
    shared = {f.name: f for f in SurveyInstrument._meta.concrete_fields if not f.primary_key}
    names = section.get("fields")
    if not isinstance(names, list) or sorted(names) != sorted(shared) or not isinstance(section.get("rows"), list):
        raise BackupError("malformed dump: the instruments section does not match this database's schema")
    wanted = {}
    for index, row in enumerate(section["rows"]):
        where = f"instruments row {index + 1}"
        if not isinstance(row, list) or len(row) != len(names):
            raise BackupError(f"malformed dump: {where} does not have {len(names)} values")
        values = {name: decode(shared[name], v, where) for name, v in zip(names, row)}
        wanted[tuple(values[k] for k in INSTRUMENT_KEY)] = values
    return wanted


def _files(doc: dict) -> dict[str, dict]:
    entries = {}
    for index, entry in enumerate(doc["files"]):
        where = f"files[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry["name"] in entries:
            raise BackupError(f"malformed dump: {where} has no name, or names a file twice")
        if "content" in entry:
            try:
                raw = base64.b64decode(entry["content"], validate=True)
            except (ValueError, TypeError):
                raise BackupError(f"malformed dump: {where}: the content is not base64") from None
            if hashlib.sha256(raw).hexdigest() != entry.get("sha256") or len(raw) != entry.get("size"):
                raise BackupError(f"malformed dump: {where}: the content does not match its sha256 and size")
            entry = entry | {"content": raw}
        elif not entry.get("missing") and not (isinstance(entry.get("sha256"), str) and _is_id(entry.get("size"))):
            raise BackupError(f"malformed dump: {where} has no sha256 and size")
        entries[entry["name"]] = entry
    return entries


def _unfinished_jobs(sections: list[_Section]) -> list[str]:
    jobs = next((s for s in sections if s.label == "jobs.job"), None)
    names = [f.name for f in jobs.fields] if jobs else []
    if "status" not in names:
        return []
    status = names.index("status")
    waiting = sorted(row[jobs.pk_index] for row in jobs.rows if row[status] in ("queued", "running"))
    if not waiting:
        return []
    return [
        f"job(s) {', '.join(map(str, waiting))} were queued or running when dumped: restored as they were, not queued"
    ]


# --- writing -------------------------------------------------------------------------------------


def _write(doc, sections, instruments, files, create_users, report: RestoreReport, written) -> None:
    if Study.objects.filter(slug=doc["study"]).exists():
        raise BackupError(f"a study with slug {doc['study']!r} already exists; nothing was restored")
    users = _users(sections, create_users, report.warnings)
    instrument_ids = _instruments_resolve(instruments, report.warnings)
    id_maps: dict[str, dict[int, int]] = {}
    names: dict[str, tuple] = {}  # file name in the dump -> (storage, name now)
    kept = []
    for section in sections:
        model = section.model
        _rows_without_their_user(section, users, report.warnings)
        remap = _ids_taken(model, [row[section.pk_index] for row in section.rows])
        # References to rows of the same part (a variant's seed) are written once every row has its id.
        inner = [
            i
            for i, (f, kind) in enumerate(zip(section.fields, section.kinds))
            if kind == "row" and f.related_model._meta.label_lower == section.label
        ]
        objs = [
            model(**_attrs(section, _without(row, inner), remap, id_maps, users, instrument_ids))
            for row in section.rows
        ]
        with _raw_timestamps(model):
            model._base_manager.bulk_create(objs, batch_size=2000)
        if remap and any(obj.pk is None for obj in objs):
            raise BackupError("this database does not return the ids of inserted rows; restore into an empty one")
        if remap:
            report.remapped.append(section.label)
        else:
            kept.append(model)
        id_maps[section.label] = {row[section.pk_index]: obj.pk for row, obj in zip(section.rows, objs)}
        _inner_references_set(section, inner, objs, id_maps[section.label])
        _file_names(section, objs, names)
        for offset, f in enumerate(section.m2m, start=len(section.fields)):
            through = f.remote_field.through
            source, target = f"{f.m2m_field_name()}_id", f"{f.m2m_reverse_field_name()}_id"
            defaults = LEGACY_M2M_DEFAULTS.get((section.label, f.name), {})
            through._base_manager.bulk_create(
                through(**{source: obj.pk, target: users[name]}, **defaults)
                for obj, row in zip(objs, section.rows)
                for name in row[offset]
                if users.get(name) is not None
            )
        report.counts[section.label] = len(objs)
    _files_write(files, names, report.warnings, written)
    if kept:  # explicit ids: move PostgreSQL's sequences past them (SQLite needs nothing)
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), kept):
                cursor.execute(sql)
    report.study = Study.objects.get(slug=doc["study"])


def _without(row: list, columns: list[int]) -> list:
    return [None if i in columns else value for i, value in enumerate(row)] if columns else row


def _inner_references_set(section: _Section, columns: list[int], objs: list, id_map: dict[int, int]) -> None:
    """Second pass for references within one part: each to the new id of a row restored with it."""
    for i in columns:
        f = section.fields[i]
        changed = []
        for obj, row in zip(objs, section.rows):
            if row[i] is None:
                continue
            if row[i] not in id_map:
                raise BackupError(f"{section.label}.{f.name} = {row[i]} is a {section.label} row that was left out")
            setattr(obj, f.attname, id_map[row[i]])
            changed.append(obj)
        section.model._base_manager.bulk_update(changed, [f.name], batch_size=2000)


def _rows_without_their_user(section: _Section, users: dict[str, int], warnings: list[str]) -> None:
    """Leave out the rows that need a user this database does not have (a collaborator whose account
    is not here); a warning says how many. Rows of other parts that point to them are refused later."""
    required = [i for i, (f, kind) in enumerate(zip(section.fields, section.kinds)) if kind == "user" and not f.null]
    if not required:
        return
    kept = [row for row in section.rows if all(users.get(row[i]) is not None for i in required)]
    if len(kept) != len(section.rows):
        missing = sorted({row[i] for row in section.rows for i in required if users.get(row[i]) is None})
        warnings.append(
            f"{section.label}: {len(section.rows) - len(kept)} row(s) left out: they need user(s) "
            f"{', '.join(map(repr, missing))}, who are not here (restore with create_users to keep them)"
        )
        section.rows = kept


def _attrs(section: _Section, row: list, remap: bool, id_maps, users, instrument_ids) -> dict:
    """A row's values by attribute name, its references translated to the ids of this database."""
    attrs = {}
    for f, kind, value in zip(section.fields, section.kinds, row):
        if value is not None and kind == "row":
            target = f.related_model._meta.label_lower
            if value not in id_maps[target]:
                raise BackupError(f"{section.label}.{f.name} = {value} is a {target} row that was left out")
            value = id_maps[target][value]
        elif value is not None and kind == "user":
            value = users.get(value)
        elif value is not None and kind == "instrument":
            value = instrument_ids.get(value)
        attrs[f.attname] = value
    for (label, column), refs in JSON_REFERENCES.items():
        value = attrs.get(column)
        if label == section.label and isinstance(value, dict):
            attrs[column] = {
                key: id_maps[refs[key]].get(v, v) if key in refs and refs[key] in id_maps and _is_id(v) else v
                for key, v in value.items()
            }
    if remap:
        attrs[section.model._meta.pk.attname] = None
    return attrs


def _instrument_refs(section: _Section) -> Iterator[tuple[str, str]]:
    columns = [i for i, kind in enumerate(section.kinds) if kind == "instrument"]
    return (row[i] for row in section.rows for i in columns if row[i] is not None)


@contextmanager
def _raw_timestamps(model) -> Iterator[None]:
    """Insert stored creation and update times as they are (auto_now fields would overwrite them)."""
    flipped = [(f, f.auto_now, f.auto_now_add) for f in model._meta.concrete_fields if hasattr(f, "auto_now_add")]
    for f, _, _ in flipped:
        f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, now, now_add in flipped:
            f.auto_now, f.auto_now_add = now, now_add


def _ids_taken(model, ids: list[int]) -> bool:
    step = 5000  # below every database's limit on query parameters
    return any(model._base_manager.filter(pk__in=ids[i : i + step]).exists() for i in range(0, len(ids), step))


def _users(sections: list[_Section], create_users: bool, warnings: list[str]) -> dict[str, int]:
    User = get_user_model()
    names = set()
    for section in sections:
        columns = [i for i, kind in enumerate(section.kinds) if kind == "user"]
        for row in section.rows:
            names.update(row[i] for i in columns if row[i] is not None)
            for links in row[len(section.fields) :]:
                names.update(links)
    found = dict(
        User._base_manager.filter(**{f"{User.USERNAME_FIELD}__in": names}).values_list(User.USERNAME_FIELD, "pk")
    )
    for name in sorted(names - set(found)):
        if create_users:
            user = User(**{User.USERNAME_FIELD: name})
            user.set_unusable_password()
            user.save()
            found[name] = user.pk
            warnings.append(f"created user {name!r} with no usable password (set one to log in)")
        else:
            warnings.append(f"no user {name!r} here: the references to them are left empty")
    return found


def _instruments_resolve(wanted: dict, warnings: list[str]) -> dict[tuple[str, str], int]:
    resolved = {}
    for key, values in sorted(wanted.items()):
        defaults = {name: v for name, v in values.items() if name not in INSTRUMENT_KEY}
        instrument, created = SurveyInstrument.objects.get_or_create(
            **dict(zip(INSTRUMENT_KEY, key)), defaults=defaults
        )
        if not created and instrument.definition != values.get("definition"):
            warnings.append(f"instrument {key[0]} v{key[1]} here differs from the dump's; the answers now point to it")
        resolved[key] = instrument.pk
    return resolved


def _file_names(section: _Section, objs: list, names: dict) -> None:
    """Record each file a row names; a name built from ids (a callable upload_to) follows new ids."""
    for f in file_fields(section.model):
        if f not in section.fields:
            continue
        index = section.fields.index(f)
        for obj, row in zip(objs, section.rows):
            name = row[index]
            if not name:
                continue
            names[name] = (f.storage, name)
            if not callable(f.upload_to):
                continue
            before = section.model(
                **{g.attname: v for g, kind, v in zip(section.fields, section.kinds, row) if kind in (None, "row")}
            )
            base = posixpath.basename(name)
            if f.generate_filename(before, base) == name and (renamed := f.generate_filename(obj, base)) != name:
                type(obj)._base_manager.filter(pk=obj.pk).update(**{f.attname: renamed})
                names[name] = (f.storage, renamed)


def _files_write(files: dict[str, dict], names: dict, warnings: list[str], written: list) -> None:
    unnamed = sorted(set(files) - set(names))
    if unnamed:
        raise BackupError(f"malformed dump: file(s) no row names: {', '.join(unnamed)}")
    for old, (storage, name) in sorted(names.items()):
        entry = files.get(old)
        if entry is None or entry.get("missing"):
            warnings.append(f"the dump has no file {old}: it was missing when the dump was made")
            continue
        present = storage.exists(name)
        same = present and _sha256(storage, name) == entry["sha256"]
        if "content" in entry:
            if present and not same:
                raise BackupError(f"a different file is already stored as {name}; nothing was restored")
            if not present:
                saved = storage.save(name, ContentFile(entry["content"]))
                written.append((storage, saved))
                if saved != name:
                    raise BackupError(f"could not store {name} under its own name; nothing was restored")
        elif not present:
            warnings.append(f"file {name} is not in this media folder (the dump was made without --with-files)")
        elif not same:
            warnings.append(f"file {name} here differs from the one dumped (sha256)")


def _sha256(storage, name: str) -> str:
    with storage.open(name, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _discard(written: list[tuple]) -> None:
    for storage, name in written:
        storage.delete(name)
