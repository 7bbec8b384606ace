"""Prompt banks: a researcher's own prompts, from a CSV, a JSON-lines file or a release's prompts.csv.

Two steps, the same for the pages and the API:

    bank = bank_upload(study=..., upload=file, fmt="auto", user=...)   # store (size-limited) and parse
    bank_import(study=..., upload_id=bank.upload.pk, fmt=bank.fmt)     # parse again, write all or nothing

`bank_parse` reads a file completely and returns every row-level problem as a `Problem` (file, row,
column, message) next to the parsed rows and a summary; nothing is written unless there is none. A file
in the release format goes through the one reader of that format (`benchmark.science.release`), trees
through the SafetyAnalyst schema's validator (`benchmark.science.harm_benefit.tree_validate`).

Columns (CSV header, JSON-lines keys): `external_id` (or `id`), `text` (or `prompt`), optional
`harm_level` (0–1), optional feature columns (`action_*`, `effect_*`, `value_topic_*`; in JSON lines
also as a `features` object) and optional `harm_benefit_tree` (a JSON cell in CSV, an object or list in
JSON lines). Rows are counted from 1: under the header in a CSV file, by line in a JSON-lines file.
Refused: a missing or unknown column, an empty text or id, an id in the file twice or already in the
study, a text over MAX_TEXT_CHARS, a text or id that a spreadsheet would run as a formula (`=`, `+`,
`-`, `@`, tab, CR at the start), a bad number, a tree that does not follow the schema, NUL characters,
non-UTF-8 bytes, an empty file. A study with ratings cannot get new prompts (409).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from benchmark.science.release import (
    FEATURE_PREFIXES,
    PROMPT_TEXT,
    ReleaseFormatError,
    is_feature_column,
    prompts_read,
)
from config.errors import ApplicationError

from ..bulk import objects_create
from ..exports import FORMULA_TRIGGERS
from ..models import Prompt, Study, Upload
from ..study_cache import study_changed
from .study import study_prompts_change_check
from .uploads import upload_create, upload_discard, upload_get, upload_read

FORMATS = {
    "auto": "Detect from the file",
    "csv": "CSV (external_id, text, …)",
    "jsonl": "JSON lines (one object a line)",
    "pluriharms": "PluriHarms release prompts.csv",
}
MAX_TEXT_CHARS = 10_000
MAX_ID_CHARS = Prompt._meta.get_field("external_id").max_length
PREVIEW_ROWS = 10
# Problems kept (and shown) per file; the count says how many there were in all.
MAX_PROBLEMS = 1000

ID, TEXT, HARM, TREE, FEATURES = "external_id", "text", "harm_level", "harm_benefit_tree", "features"
# The seed group of a candidate: read only where groups exist (a curation pool, `Bank.allow_group`).
GROUP = "group"
ALIASES = {
    "external_id": ID,
    "id": ID,
    "text": TEXT,
    "prompt": TEXT,
    "harm_level": HARM,
    "harm_benefit_tree": TREE,
    "group": GROUP,
    "seed_group": GROUP,
}
MAX_GROUP_CHARS = 64
ROLES = {ID: "external id", TEXT: "text", HARM: "harm level", TREE: "harm-benefit tree", GROUP: "group"}


@dataclass(frozen=True)
class Problem:
    file: str
    row: int | None
    column: str | None
    message: str

    def as_dict(self) -> dict:
        return {"file": self.file, "row": self.row, "column": self.column, "message": self.message}

    def __str__(self) -> str:
        where = self.file + (f", row {self.row}" if self.row is not None else "")
        return where + (f", column {self.column}" if self.column else "") + f": {self.message}"


@dataclass
class BankRow:
    row: int
    external_id: str
    text: str
    harm_level: float | None = None
    features: dict[str, float | None] = field(default_factory=dict)
    tree: list | None = None
    group: str = ""


@dataclass
class Bank:
    """A parsed prompt bank: rows, every problem (up to MAX_PROBLEMS; `n_problems` counts all), and what
    the preview shows."""

    file: str
    fmt: str
    rows: list[BankRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    n_problems: int = 0
    columns: list[tuple[str, str]] = field(default_factory=list)  # (column, what it was read as)
    n_existing: int = 0
    upload: Upload | None = None
    allow_group: bool = False

    def problem(self, message: str, row: int | None = None, column: str | None = None) -> None:
        self.n_problems += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(self.file, row, column, message))

    @property
    def ok(self) -> bool:
        return self.n_problems == 0

    @property
    def preview(self) -> list[BankRow]:
        return self.rows[:PREVIEW_ROWS]

    @property
    def feature_columns(self) -> list[str]:
        return sorted({name for r in self.rows for name in r.features})

    def summary(self) -> dict:
        return {
            "file": self.file,
            "format": self.fmt,
            "rows": len(self.rows),
            "with_harm_level": sum(r.harm_level is not None for r in self.rows),
            "with_tree": sum(r.tree is not None for r in self.rows),
            "feature_columns": len(self.feature_columns),
            "columns": [{"column": c, "read_as": role} for c, role in self.columns],
            "existing_prompts": self.n_existing,
            "problems": self.n_problems,
        }


class BankProblems(ApplicationError):
    """A prompt bank with problems: the message counts them, `extra` lists them (file, row, column, message)."""

    def __init__(self, bank: Bank):
        self.bank = bank
        shown = len(bank.problems)
        more = f" (the first {shown} are listed)" if shown < bank.n_problems else ""
        s = "" if bank.n_problems == 1 else "s"
        super().__init__(
            f"{bank.file}: {bank.n_problems} problem{s}{more}; nothing was imported. {bank.problems[0]}",
            extra={"problems": [p.as_dict() for p in bank.problems], "n_problems": bank.n_problems},
            status_code=400,
        )


# --- parsing -------------------------------------------------------------------------------------


def _decode(raw: bytes, bank: Bank) -> str | None:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bank.problem(f"bad encoding: byte 0x{raw[exc.start]:02x} at line {line} is not UTF-8 (save the file as UTF-8)")
        return None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        bank.problem(f"a NUL character (byte 0x00) at line {line}: not a text file")
        return None
    if not text.strip():
        bank.problem("the file is empty")
        return None
    return text


def _detect(text: str, name: str) -> str:
    if Path(name).suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith(("{", "[")):
        return "jsonl"
    header = text.split("\n", 1)[0]
    return "pluriharms" if PROMPT_TEXT in header else "csv"


def _number(value: Any, bank: Bank, row: int, column: str, *, unit: bool = False) -> float | None:
    """A finite number (or None for an empty cell / null); a row-level problem otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        bank.problem(f"expected a number, got {type(value).__name__}", row, column)
        return None
    try:
        number = float(value.strip() if isinstance(value, str) and len(value) < 100 else value)
    except (ValueError, OverflowError):
        bank.problem(f"{str(value)[:40]!r} is not a number", row, column)
        return None
    if not math.isfinite(number):
        bank.problem(f"{str(value)[:40]!r} is not a finite number", row, column)
        return None
    if unit and not 0 <= number <= 1:
        bank.problem(f"harm level {number:g} is outside 0–1", row, column)
        return None
    return number


def _tree(value: Any, bank: Bank, row: int, column: str) -> list | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    # Here, not at the top: the package imports scipy (~0.5 s), which job workers and management commands
    # would pay at start-up (the benchmark app's ready() imports this module through benchmark.pool_jobs);
    # a web process loads it anyway with the URL conf (benchmark.api, the predictors).
    from benchmark.science.harm_benefit import TreeError, tree_validate  # noqa: PLC0415

    try:
        tree = tree_validate(value)
        unstorable = _unstorable(tree)  # a JSON cell may spell a NUL or a lone surrogate as an escape
        if unstorable:
            bank.problem(f"harm-benefit tree: {unstorable}", row, column)
            return None
        return tree
    except TreeError as exc:
        bank.problem(f"harm-benefit tree: {exc}", row, column)
    except RecursionError:
        bank.problem("harm-benefit tree: nested too deeply", row, column)
    return None


def _group(value: Any, bank: Bank, row: int, column: str) -> str:
    """A seed group id: text or a whole number, at most MAX_GROUP_CHARS; empty means its own group."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        bank.problem(f"the group must be text or a whole number, got {type(value).__name__}", row, column)
        return ""
    value = value.strip()
    if len(value) > MAX_GROUP_CHARS:
        bank.problem(f"the group is longer than {MAX_GROUP_CHARS} characters", row, column)
        return ""
    return value


def _text_checks(bank: Bank, row: int, external_id: str, text: str, id_column: str, text_column: str) -> bool:
    """Checks every format shares, on the id and text of one row; True if both pass."""
    ok = True
    if not external_id:
        bank.problem("empty external id", row, id_column)
        ok = False
    elif len(external_id) > MAX_ID_CHARS:
        bank.problem(f"the external id is longer than {MAX_ID_CHARS} characters", row, id_column)
        ok = False
    elif external_id.startswith(FORMULA_TRIGGERS):
        bank.problem(
            f"the external id starts with {external_id[0]!r}, which a spreadsheet runs as a formula", row, id_column
        )
        ok = False
    if not text.strip():
        bank.problem("empty prompt text", row, text_column)
        ok = False
    elif len(text) > MAX_TEXT_CHARS:
        bank.problem(f"the text has {len(text):,} characters; at most {MAX_TEXT_CHARS:,} are allowed", row, text_column)
        ok = False
    elif text.startswith(FORMULA_TRIGGERS):
        bank.problem(
            f"the text starts with {text[0]!r}, which a spreadsheet runs as a formula (such as =HYPERLINK(…)); "
            "remove or reword the first character",
            row,
            text_column,
        )
        ok = False
    return ok


def _parse_csv(text: str, bank: Bank) -> None:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
    except csv.Error as exc:
        bank.problem(f"not a readable CSV file: {exc}")
        return
    roles: list[str | None] = []
    seen: dict[str, str] = {}
    for column in header:
        name = column.strip()
        key = ALIASES.get(name.casefold().replace(" ", "_").replace("-", "_"))
        if key == GROUP and not bank.allow_group:
            key = None
        if key is None and is_feature_column(name):
            key = name
        if key is None:
            group = "group, " if bank.allow_group else ""
            bank.problem(
                f"unexpected column (allowed: external_id, text, harm_level, {group}harm_benefit_tree and features "
                f"starting with {', '.join(FEATURE_PREFIXES)})",
                column=name,
            )
        elif key in seen:
            bank.problem(f"duplicate column: {seen[key]!r} and {name!r} are both read as {key}", column=name)
            key = None
        else:
            seen[key] = name
            bank.columns.append((name, ROLES.get(key, "feature")))
        roles.append(key)
    for needed in (ID, TEXT):
        if needed not in seen:
            bank.problem(f"missing column {needed}" + (" (the header row is empty)" if not header else ""))
    if bank.n_problems:
        return
    index = {key: i for i, key in enumerate(roles)}
    features = [(key, i) for i, key in enumerate(roles) if key is not None and key not in ROLES]
    ids: dict[str, int] = {}
    row = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            bank.problem(f"not readable as CSV: {exc}", row + 1)
            return
        if not any(c.strip() for c in cells):
            continue  # a blank line
        row += 1
        if len(cells) != len(header):
            bank.problem(f"{len(cells)} cells, but the header has {len(header)} columns", row)
            continue
        external_id, prompt_text = cells[index[ID]].strip(), cells[index[TEXT]]
        good = _text_checks(bank, row, external_id, prompt_text, seen[ID], seen[TEXT])
        if external_id in ids:
            bank.problem(f"duplicate external id {external_id!r} (also row {ids[external_id]})", row, seen[ID])
            good = False
        elif external_id:
            ids[external_id] = row
        n_before = bank.n_problems
        harm = _number(cells[index[HARM]], bank, row, seen[HARM], unit=True) if HARM in index else None
        values = {name: _number(cells[i], bank, row, name) for name, i in features}
        tree = _tree(cells[index[TREE]], bank, row, seen[TREE]) if TREE in index else None
        group = _group(cells[index[GROUP]], bank, row, seen[GROUP]) if GROUP in index else ""
        if good and bank.n_problems == n_before:
            bank.rows.append(BankRow(row, external_id, prompt_text, harm, values, tree, group))
    if row == 0:
        bank.problem("no prompts: the file has a header but no rows")


def _unstorable(obj: Any) -> str | None:
    """Why a JSON value cannot be stored as it is (the database refuses NUL characters and lone surrogates
    in text and in JSON), or None. A file's bytes are checked on decoding; the API's JSON body is checked here."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "text that is not valid Unicode (a lone surrogate such as \\ud800)"
    except (ValueError, RecursionError):
        return "a value nested too deeply"
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            return "a NUL character (\\u0000): not text"
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def _parse_objects(objects: list[tuple[int, Any]], bank: Bank) -> None:
    """Rows given as JSON objects (a JSON-lines file, or the API's list), each with its row number."""
    ids: dict[str, int] = {}
    found: dict[str, str] = {}
    for row, obj in objects:
        if not isinstance(obj, dict):
            bank.problem(f"expected an object, got {type(obj).__name__}", row)
            continue
        unstorable = _unstorable(obj)
        if unstorable:
            bank.problem(unstorable, row)
            continue
        known = (ID, TEXT, HARM, TREE, FEATURES, GROUP) if bank.allow_group else (ID, TEXT, HARM, TREE, FEATURES)
        unknown = [k for k in obj if k not in known and not is_feature_column(k)]
        for key in unknown:
            group = "group, " if bank.allow_group else ""
            bank.problem(
                f"unknown key (allowed: external_id, text, harm_level, {group}features, harm_benefit_tree and features "
                f"starting with {', '.join(FEATURE_PREFIXES)})",
                row,
                str(key)[:64],
            )
        good = not unknown
        for key in (ID, TEXT):
            if key not in obj:
                bank.problem(f"missing key {key}", row)
                good = False
        if not good:
            continue
        external_id = obj[ID]
        if isinstance(external_id, int) and not isinstance(external_id, bool):
            external_id = str(external_id)
        if not isinstance(external_id, str):
            bank.problem(f"the external id must be text or a whole number, got {type(obj[ID]).__name__}", row, ID)
            continue
        if not isinstance(obj[TEXT], str):
            bank.problem(f"the text must be a string, got {type(obj[TEXT]).__name__}", row, TEXT)
            continue
        external_id, prompt_text = external_id.strip(), obj[TEXT]
        good = _text_checks(bank, row, external_id, prompt_text, ID, TEXT)
        if external_id in ids:
            bank.problem(f"duplicate external id {external_id!r} (also row {ids[external_id]})", row, ID)
            good = False
        elif external_id:
            ids[external_id] = row
        n_before = bank.n_problems
        harm = _number(obj.get(HARM), bank, row, HARM, unit=True)
        values = {k: _number(v, bank, row, k) for k, v in obj.items() if is_feature_column(k)}
        nested = obj.get(FEATURES)
        if nested is not None and not isinstance(nested, dict):
            bank.problem(f"features must be an object of name: number, got {type(nested).__name__}", row, FEATURES)
        for k, v in (nested or {}).items() if isinstance(nested, dict) else ():
            if not is_feature_column(k):
                bank.problem(f"feature {str(k)[:64]!r} must start with {', '.join(FEATURE_PREFIXES)}", row, FEATURES)
            elif k in values:
                bank.problem(f"feature {k!r} is given twice (in features and as a key)", row, FEATURES)
            else:
                values[k] = _number(v, bank, row, f"{FEATURES}.{k}")
        tree = _tree(obj.get(TREE), bank, row, TREE)
        group = _group(obj.get(GROUP), bank, row, GROUP)
        for key in obj:
            found.setdefault(key, "features" if key == FEATURES else ROLES.get(key, "feature"))
        if good and bank.n_problems == n_before:
            bank.rows.append(BankRow(row, external_id, prompt_text, harm, values, tree, group))
    bank.columns = list(found.items())
    if not objects:
        bank.problem("no prompts")


def _parse_jsonl(text: str, bank: Bank) -> None:
    if text.lstrip().startswith("["):  # one JSON list of objects (as the API takes), not JSON lines
        try:
            rows = json.loads(text)
        except ValueError as exc:
            bank.problem(f"not valid JSON ({exc})")
            return
        except RecursionError:
            bank.problem("not valid JSON (nested too deeply)")
            return
        _parse_objects(list(enumerate(rows, start=1)) if isinstance(rows, list) else [], bank)
        return
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            objects.append((number, json.loads(line)))
        except ValueError as exc:
            bank.problem(f"not valid JSON ({exc})", number)
        except RecursionError:
            bank.problem("not valid JSON (nested too deeply)", number)
    _parse_objects(objects, bank)


def _parse_release(raw: bytes, bank: Bank) -> None:
    """A release's prompts.csv, read by the one reader of the format; then the checks it leaves to us."""
    try:
        frame, features = prompts_read(raw, name=bank.file)
    except ReleaseFormatError as exc:
        for file, row, column, message in exc.records:
            bank.n_problems += 1
            if len(bank.problems) < MAX_PROBLEMS:
                bank.problems.append(Problem(file, row, column, message))
        _release_text_checks(raw, bank)
        return
    bank.columns = [
        (c, "external id" if i == 0 else "text" if i == 1 else "harm level")
        for i, c in enumerate(["Question_Index", PROMPT_TEXT, "Harm_Level"])
    ] + [(c, "feature") for c in features]
    values = frame[features].to_numpy(dtype=float)
    for i, item in enumerate(frame.itertuples(index=False)):
        row = i + 1
        if not _text_checks(bank, row, item.external_id, item.text, "Question_Index", PROMPT_TEXT):
            continue
        harm = None if math.isnan(item.harm_level) else float(item.harm_level)
        cells = {c: (None if math.isnan(v) else float(v)) for c, v in zip(features, values[i])}
        bank.rows.append(BankRow(row, item.external_id, item.text, harm, cells))


def _release_text_checks(raw: bytes, bank: Bank) -> None:
    """When the release reader refused the file, still report the texts this importer refuses (formula-like,
    too long), so that one round of fixes is enough; the reader has reported everything else."""
    try:
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return
    for row, cells in enumerate(rows, start=1):
        text = cells.get(PROMPT_TEXT)
        if not isinstance(text, str) or not text.strip():
            continue
        if len(text) > MAX_TEXT_CHARS:
            bank.problem(
                f"the text has {len(text):,} characters; at most {MAX_TEXT_CHARS:,} are allowed", row, PROMPT_TEXT
            )
        elif text.startswith(FORMULA_TRIGGERS):
            bank.problem(
                f"the text starts with {text[0]!r}, which a spreadsheet runs as a formula (such as =HYPERLINK(…)); "
                "remove or reword the first character",
                row,
                PROMPT_TEXT,
            )


def bank_read(*, raw: bytes, name: str, fmt: str = "auto", allow_group: bool = False) -> Bank:
    """Read rows in any of the FORMATS with every row-level problem, checking nothing against the database
    (a study's import and a curation pool's upload, which also reads a `group` column, share it)."""
    if fmt not in FORMATS:
        raise ApplicationError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", extra={"field": "format"})
    bank = Bank(file=Path(name or "").name or "upload", fmt=fmt, allow_group=allow_group)
    text = _decode(raw, bank)
    if text is None:
        return bank
    if fmt == "auto":
        bank.fmt = fmt = _detect(text, bank.file)
    if fmt == "csv":
        _parse_csv(text, bank)
    elif fmt == "jsonl":
        _parse_jsonl(text, bank)
    else:
        _parse_release(raw, bank)
    return bank


def bank_parse(*, study: Study, raw: bytes, name: str, fmt: str = "auto") -> Bank:
    """Read a prompt bank completely: its rows, every problem, and what the preview shows. Writes nothing."""
    bank = bank_read(raw=raw, name=name, fmt=fmt)
    _existing_check(study, bank)
    return bank


def bank_parse_objects(*, study: Study, objects: Any, name: str = "request body") -> Bank:
    """The API's JSON list of rows, parsed like a JSON-lines file (row N is the list's N-th item)."""
    bank = Bank(file=name, fmt="json")
    if not isinstance(objects, list):
        bank.problem(f"expected a list of prompt objects, got {type(objects).__name__}")
        return bank
    _parse_objects(list(enumerate(objects, start=1)), bank)
    _existing_check(study, bank)
    return bank


def bank_existing_refuse(bank: Bank, existing: set[str], *, already: str) -> None:
    """Refuse (row-level, on the id column) and drop the bank's rows whose id is in `existing`, the ids the
    target already holds ("external id 'x' is already {already}"), and set `bank.n_existing`. Shared by a
    study's prompt bank (`_existing_check`) and a candidate pool's uploads (benchmark.pools)."""
    bank.n_existing = len(existing)
    column = dict((role, c) for c, role in bank.columns).get("external id", ID)
    kept = []
    for r in bank.rows:
        if r.external_id in existing:
            bank.problem(f"external id {r.external_id!r} is already {already}", r.row, column)
        else:
            kept.append(r)
    bank.rows = kept


def _existing_check(study: Study, bank: Bank) -> None:
    """Ids already in the study are refused (row-level), as are ids repeated in the file (by the parsers)."""
    existing = set(study.prompts.values_list("external_id", flat=True))
    bank_existing_refuse(bank, existing, already="a prompt of this study")


# --- the two steps ----------------------------------------------------------------------------------


def bank_upload(*, study: Study, upload, fmt: str = "auto", user=None) -> Bank:
    """Step 1: store the file under the study (size-limited) and parse it. A file with problems is not
    kept (the Bank lists them, `upload` is None); a good one stays as an Upload for `bank_import`."""
    study_prompts_change_check(study=study)
    if fmt not in FORMATS:
        raise ApplicationError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", extra={"field": "format"})
    stored = upload_create(study=study, kind=Upload.Kind.PROMPTS, upload=upload, user=user)
    try:
        bank = bank_parse(study=study, raw=upload_read(upload=stored), name=stored.original_name, fmt=fmt)
    except BaseException:
        upload_discard(upload=stored)
        raise
    if not bank.ok:
        upload_discard(upload=stored)
        return bank
    bank.upload = stored
    return bank


def bank_rows_write(*, study: Study, bank: Bank) -> int:
    """Write a problem-free bank's rows in one transaction, after the study's order; returns how many.

    Refuses (409) a study with ratings, and refuses a bank with problems as `BankProblems`; the study
    row is locked so that two imports into one study run one after the other.
    """
    if not bank.ok:
        raise BankProblems(bank)
    try:
        with transaction.atomic():
            Study.objects.select_for_update().filter(pk=study.pk).first()
            study_prompts_change_check(study=study)
            _existing_check(study, bank)  # again, under the lock: another import may have added ids
            if not bank.ok:
                raise BankProblems(bank)
            last = study.prompts.aggregate(m=Max("order"))["m"]
            start = 0 if last is None else last + 1
            objects_create(
                [
                    Prompt(
                        study=study,
                        external_id=r.external_id,
                        text=r.text,
                        harm_level=r.harm_level,
                        features=r.features,
                        harm_benefit_tree=r.tree,
                        order=start + i,
                    )
                    for i, r in enumerate(bank.rows)
                ],
                batch_size=1000,
            )
            study_changed(study.pk)
    except IntegrityError:
        raise ApplicationError(
            "another import added prompts with the same external ids at the same time; nothing was imported, try again",
            status_code=409,
        ) from None
    return len(bank.rows)


def bank_import(*, study: Study, upload_id, fmt: str = "auto") -> Bank:
    """Step 2: import a previewed upload completely, or nothing (its problems raised as `BankProblems`)."""
    study_prompts_change_check(study=study)
    upload = upload_get(study=study, upload_id=upload_id, kind=Upload.Kind.PROMPTS)
    bank = bank_parse(study=study, raw=upload_read(upload=upload), name=upload.original_name, fmt=fmt)
    bank.upload = upload
    bank_rows_write(study=study, bank=bank)
    return bank
