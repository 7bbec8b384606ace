"""Read and validate a release directory: `release_read(directory) -> Release`.

Both files are read completely, every cell as text, and every problem is collected, each naming
file, row and column, before `ReleaseFormatError` is raised with all of them: a file with a problem
is refused as a whole, so an importer that reads through here writes nothing from it.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .columns import (
    ANNOTATIONS_FILE,
    DEMOGRAPHIC_COLUMNS,
    FACTOR_COLUMNS,
    FEATURE_PREFIXES,
    HARM_LEVEL,
    PARTICIPANT_ID,
    PROMPT_ID,
    PROMPT_TEXT,
    PROMPTS_FILE,
    PSEUDONYMOUS_ID,
    RATING_RE,
    TRIAL_RE,
    annotator_id,
    is_feature_column,
    rating_column,
    trial_column,
)
from .long import long_frame

MAX_SHOWN_PROBLEMS = 20
PROMPT_COLUMN = re.compile(r"^(rating|trial)_(\d+)$")  # on a case-folded name
# A prompt id is a whole number that fits a 64-bit integer (the long frame orders prompts by it).
MAX_PROMPT_DIGITS = 18
# A trial position is stored as a 32-bit integer.
MAX_TRIAL_POSITION = 2**31 - 1
# A number `_number_block` parses column-wise: up to 9 digits, a point and up to 6 more.
PLAIN_NUMBER = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"


class ReleaseFormatError(ValueError):
    """A release directory that does not hold the format; `problems` lists every problem found, and
    `records` the same problems as (file, row, column, message) tuples when the reader made them."""

    def __init__(self, problems: list[str], records: list[tuple[str, int | None, str | None, str]] | None = None):
        self.problems = list(problems)
        self.records = list(records or [])
        shown = self.problems[:MAX_SHOWN_PROBLEMS]
        more = len(self.problems) - len(shown)
        super().__init__("\n".join(shown) + (f"\n… and {more} more problem(s)" if more > 0 else ""))


@dataclass
class Release:
    """A validated release, as parsed values; `long()` gives the long ratings frame.

    Annotator arrays are in the order of the annotation file's rows, prompt arrays (and the columns
    of `ratings` and `trials`) in the order of the prompt file's rows.
    """

    prompts: pd.DataFrame  # external_id (Question_Index as a string, "01" read as "1"), text, harm_level, features
    feature_columns: list[str]
    participants: list[str]  # Participant_ID as released (stripped)
    demographics: pd.DataFrame  # the ten demographic columns as released (text, leading spaces kept)
    factors: np.ndarray  # (n_annotators, 3) float, NaN where empty
    ratings: np.ndarray  # (n_annotators, n_prompts) float, NaN = Unsure
    trials: np.ndarray  # (n_annotators, n_prompts) int
    decimal_rating_columns: list[str]  # prompt ids whose Rating_ column was written as 50.0, not 50

    @property
    def annotators(self) -> list[str]:
        """The annotators' ids, "P0001" … in row order: the long frame's and the imported pseudonyms."""
        return [annotator_id(i) for i in range(len(self.participants))]

    def long(self, *, include_text: bool = False) -> pd.DataFrame:
        """One row per (annotator, prompt) rating, "P0001" … in row order (see `long.long_frame`)."""
        return long_frame(self, include_text=include_text)


@dataclass
class _Problems:
    items: list[str] = field(default_factory=list)
    records: list[tuple[str, int | None, str | None, str]] = field(default_factory=list)

    def add(self, file: str, message: str, row: int | None = None, column: str | None = None) -> None:
        self.records.append((file, row, column, message))
        where = file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column}"
        self.items.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ReleaseFormatError(self.items, self.records)


def _read_csv(path: Path, problems: _Problems) -> pd.DataFrame | None:
    name = path.name
    if not path.exists():
        problems.add(name, f"file not found in {path.parent.name or '.'}")
        return None
    return _read_csv_bytes(name, path.read_bytes(), problems)


def _read_csv_bytes(name: str, raw: bytes, problems: _Problems) -> pd.DataFrame | None:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.add(name, f"bad encoding: byte 0x{raw[exc.start]:02x} at line {line} is not UTF-8")
        return None
    if "\x00" in text:  # no text column of the database can hold it (PostgreSQL refuses the row)
        line = text[: text.index("\x00")].count("\n") + 1
        problems.add(name, f"a NUL character (byte 0x00) at line {line}: not a text file")
        return None
    try:
        # Everything as text: values are parsed below so that errors can name the cell, and
        # strings (with their leading spaces) survive the round trip unchanged.
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        problems.add(name, f"not a readable CSV file: {exc}")
        return None
    if _duplicate_columns(name, text, problems):
        return None
    return frame


def _shown(column: str) -> str:
    """A column name for a message: quoted when spaces around it would otherwise be invisible."""
    return column if column and column == column.strip() else repr(column)


def _prompt_number(digits: str) -> str:
    """The prompt a run of digits names: "01" is prompt 1. Digit by digit, not int(), which refuses
    more than 4,300 digits (a header or a cell may hold any number of them)."""
    return "".join(str(int(c)) for c in digits).lstrip("0") or "0"


def _column_key(column: str) -> tuple[str, str | None]:
    """What a column name means: case and surrounding spaces aside, and Rating_01 is Rating_1."""
    key = column.strip().casefold()
    match = PROMPT_COLUMN.match(key)
    if match:
        prompt = _prompt_number(match.group(2))
        return f"{match.group(1)}_{prompt}", prompt
    return key, None


def _duplicate_columns(name: str, text: str, problems: _Problems) -> bool:
    """Report every column whose name repeats an earlier one's; True if there was any.

    Read from the header line itself: pandas renames a repeat (`X`, `X.1`) and keeps going, so the
    study would be built from whichever copy it kept.
    """
    try:
        header = next((row for row in csv.reader(io.StringIO(text)) if row), [])
    except csv.Error:
        return False  # pandas read it; a header the csv module cannot is left to the checks below
    first: dict[str, str] = {}
    found = False
    for column in header:
        key, prompt = _column_key(column)
        if key not in first:
            first[key] = column
            continue
        found = True
        earlier = first[key]
        if column == earlier:
            problems.add(name, "duplicate column", column=_shown(column))
        elif prompt is not None:
            problems.add(
                name,
                f"duplicate column: {_shown(earlier)} and {_shown(column)} both name prompt {prompt}",
                column=_shown(column),
            )
        else:
            problems.add(name, f"duplicate column: same name as {_shown(earlier)}", column=_shown(column))
    return found


def _numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse a text column: returns (values with NaN for empty/NaN cells, mask of unparsable cells)."""
    text = series.str.strip()
    empty = (text.eq("") | text.str.lower().isin(["nan", "na"])).to_numpy()
    values = pd.to_numeric(text.mask(empty), errors="coerce").to_numpy(dtype=float, copy=True)
    bad = (np.isnan(values) & ~empty) | np.isinf(values)
    values[bad] = np.nan
    return values, bad


def _text_cells(frame: pd.DataFrame, columns: list[str]) -> pa.ChunkedArray:
    """The cells of `columns`, column after column, as one arrow string array (no copy of the text)."""
    chunks = []
    for column in columns:
        cells = pa.array(frame[column]).cast(pa.large_string())
        chunks += cells.chunks if isinstance(cells, pa.ChunkedArray) else [cells]
    return pa.chunked_array(chunks, type=pa.large_string())


def _number_block(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`_numbers` over several columns at once: (values, bad), n_rows × n_columns.

    Column-wise in arrow: a plain number (`PLAIN_NUMBER`) is parsed by arrow's cast and an empty
    cell is NaN, both exactly as `_numbers` reads them (every such number has at most 15 significant
    digits, so any correctly rounding parser gives the same double); only the other cells (spaces,
    signs, exponents, "nan", text: few in a real file) go through `_numbers` itself.
    """
    n_rows = len(frame)
    if not columns:
        return np.empty((n_rows, 0)), np.zeros((n_rows, 0), dtype=bool)
    cells = _text_cells(frame, columns)
    plain = pc.match_substring_regex(cells, PLAIN_NUMBER).to_numpy(zero_copy_only=False)
    values = pc.cast(pc.if_else(plain, cells, None), pa.float64()).to_numpy(zero_copy_only=False)
    values = np.array(values, dtype=float)  # writable; NaN where not plain
    bad = np.zeros(len(values), dtype=bool)
    other = np.flatnonzero(~plain & (pc.binary_length(cells).to_numpy(zero_copy_only=False) > 0))
    if len(other):
        odd_values, odd_bad = _numbers(pd.Series(cells.take(other).to_pylist(), dtype=object))
        values[other] = odd_values
        bad[other] = odd_bad
    shape = (n_rows, len(columns))
    return (
        np.ascontiguousarray(values.reshape(shape, order="F")),
        np.ascontiguousarray(bad.reshape(shape, order="F")),
    )


def _parse_prompts(
    frame: pd.DataFrame, problems: _Problems, name: str = PROMPTS_FILE
) -> tuple[pd.DataFrame, list[str]] | None:
    required = [PROMPT_ID, PROMPT_TEXT, HARM_LEVEL]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        problems.add(name, f"missing column(s): {', '.join(missing)}")
    extra = [c for c in frame.columns if c not in required and not is_feature_column(c)]
    if extra:
        problems.add(
            name,
            f"unexpected column(s): {', '.join(extra)} (allowed: {', '.join(required)} and features "
            f"starting with {', '.join(FEATURE_PREFIXES)})",
        )
    if missing:
        return None
    if frame.empty:
        problems.add(name, "no prompts")
        return None
    features = [c for c in frame.columns if is_feature_column(c)]

    ids = frame[PROMPT_ID].str.strip()
    seen: dict[str, int] = {}
    for i, value in enumerate(ids, start=1):
        if not (value.isascii() and value.isdigit()):
            problems.add(name, f"{value!r} is not a whole number", row=i, column=PROMPT_ID)
            continue
        prompt = _prompt_number(value)  # 01 and 1 are the same prompt, as they are the same Rating_ column
        if len(prompt) > MAX_PROMPT_DIGITS:
            problems.add(
                name, f"prompt id {prompt[:24]}… has more than {MAX_PROMPT_DIGITS} digits", row=i, column=PROMPT_ID
            )
        elif prompt in seen:
            problems.add(name, f"duplicate prompt {prompt} (also row {seen[prompt]})", row=i, column=PROMPT_ID)
        else:
            seen[prompt] = i
    ids = ids.map(lambda v: _prompt_number(v) if v.isascii() and v.isdigit() else v)
    for i, text in enumerate(frame[PROMPT_TEXT], start=1):
        if not text.strip():
            problems.add(name, "empty prompt text", row=i, column=PROMPT_TEXT)

    out = pd.DataFrame({"external_id": ids, "text": frame[PROMPT_TEXT]})
    harm, bad = _numbers(frame[HARM_LEVEL])
    for i in np.flatnonzero(bad):
        problems.add(name, f"{frame[HARM_LEVEL].iloc[i]!r} is not a number", row=i + 1, column=HARM_LEVEL)
    for i in np.flatnonzero((harm < 0) | (harm > 1)):
        problems.add(name, f"harm level {harm[i]} is outside 0–1", row=i + 1, column=HARM_LEVEL)
    out["harm_level"] = harm
    values, bad = _number_block(frame, features)
    for j, column in enumerate(features):
        for i in np.flatnonzero(bad[:, j]):
            problems.add(name, f"{frame[column].iloc[i]!r} is not a number", row=i + 1, column=column)
        out[column] = values[:, j]
    return out, features


def _annotation_columns(frame: pd.DataFrame, prompt_ids: list[str], problems: _Problems) -> bool:
    """Check the annotation file's header against the prompts; True if it holds exactly the columns needed."""
    name = ANNOTATIONS_FILE
    columns = list(frame.columns)
    fixed = [PARTICIPANT_ID, *DEMOGRAPHIC_COLUMNS, *FACTOR_COLUMNS]
    expected = set(fixed) | {rating_column(p) for p in prompt_ids} | {trial_column(p) for p in prompt_ids}
    known = set(prompt_ids)
    ok = True
    for column in columns:
        match = RATING_RE.match(column) or TRIAL_RE.match(column)
        if match and _prompt_number(match.group(1)) not in known:
            problems.add(name, f"no prompt with {PROMPT_ID} {match.group(1)} in {PROMPTS_FILE}", column=column)
            ok = False
        elif column not in expected and not match:
            problems.add(name, "unexpected column", column=column)
            ok = False
    missing = [c for c in fixed if c not in columns]
    missing += [f"{kind}_{p}" for kind in ("Rating", "Trial") for p in prompt_ids if f"{kind}_{p}" not in columns]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
        problems.add(name, f"missing column(s): {shown}")
        ok = False
    return ok


def _participants(frame: pd.DataFrame, problems: _Problems) -> pd.Series:
    name = ANNOTATIONS_FILE
    participants = frame[PARTICIPANT_ID].str.strip()
    first_row: dict[str, int] = {}
    for i, pid in enumerate(participants, start=1):
        if not pid:
            problems.add(name, "empty participant id", row=i, column=PARTICIPANT_ID)
        elif not PSEUDONYMOUS_ID.match(pid):
            # Anything but a pseudonymous id may be a raw recruitment id, which must never enter
            # the database or an export.
            problems.add(
                name,
                f"{pid!r} is not a pseudonymous id (a whole number or P0001-style)",
                row=i,
                column=PARTICIPANT_ID,
            )
        elif pid in first_row:
            problems.add(name, f"duplicate participant {pid} (also row {first_row[pid]})", row=i, column=PARTICIPANT_ID)
        else:
            first_row[pid] = i
    return participants


def _parse_annotations(frame: pd.DataFrame, prompt_ids: list[str], problems: _Problems):
    name = ANNOTATIONS_FILE
    if not _annotation_columns(frame, prompt_ids, problems):
        return None
    if frame.empty:
        problems.add(name, "no participants")
        return None
    participants = _participants(frame, problems)

    rating_cols = [rating_column(p) for p in prompt_ids]
    trial_cols = [trial_column(p) for p in prompt_ids]
    ratings, bad_ratings = _number_block(frame, rating_cols)
    for j, column in enumerate(rating_cols):
        values, bad = ratings[:, j], bad_ratings[:, j]
        for i in np.flatnonzero(bad):
            problems.add(
                name,
                f"rating {frame[column].iloc[i]!r} is not a number (participant {participants.iloc[i]})",
                row=i + 1,
                column=column,
            )
        for i in np.flatnonzero((values < 0) | (values > 100)):
            problems.add(
                name,
                f"rating {values[i]:g} is outside 0–100 (participant {participants.iloc[i]})",
                row=i + 1,
                column=column,
            )
    positions, bad_positions = _number_block(frame, trial_cols)
    trials = np.zeros((len(frame), len(prompt_ids)), dtype=np.int64)
    for j, column in enumerate(trial_cols):
        values, bad = positions[:, j], bad_positions[:, j]
        invalid = bad | np.isnan(values) | (values < 0) | (np.nan_to_num(values) % 1 != 0)
        for i in np.flatnonzero(invalid):
            problems.add(
                name, f"trial position {frame[column].iloc[i]!r} is not a whole number ≥ 0", row=i + 1, column=column
            )
        for i in np.flatnonzero(~invalid & (values > MAX_TRIAL_POSITION)):
            problems.add(
                name,
                f"trial position {frame[column].iloc[i]!r} is above {MAX_TRIAL_POSITION}",
                row=i + 1,
                column=column,
            )
        trials[:, j] = np.minimum(np.nan_to_num(values), MAX_TRIAL_POSITION).astype(np.int64)
    # A trial position is where a prompt was shown; two prompts cannot share one.
    ordered = np.sort(trials, axis=1)
    for i in np.flatnonzero((np.diff(ordered, axis=1) == 0).any(axis=1)):
        repeated = ordered[i][1:][np.diff(ordered[i]) == 0][0]
        problems.add(name, f"trial position {repeated} is used twice (participant {participants.iloc[i]})", row=i + 1)
    factors, bad_factors = _number_block(frame, list(FACTOR_COLUMNS))
    for j, column in enumerate(FACTOR_COLUMNS):
        for i in np.flatnonzero(bad_factors[:, j]):
            problems.add(name, f"{frame[column].iloc[i]!r} is not a number", row=i + 1, column=column)
    decimal = [p for p, c in zip(prompt_ids, rating_cols) if frame[c].str.contains(".", regex=False).any()]
    return list(participants), frame[list(DEMOGRAPHIC_COLUMNS)], factors, ratings, trials, decimal


def release_read(directory: str | Path) -> Release:
    """Read and validate a release directory; raises `ReleaseFormatError` naming every bad cell."""
    directory = Path(directory)
    problems = _Problems()
    if not directory.is_dir():
        raise ReleaseFormatError([f"{directory}: not a directory"])
    prompts_frame = _read_csv(directory / PROMPTS_FILE, problems)
    annotations_frame = _read_csv(directory / ANNOTATIONS_FILE, problems)
    parsed_prompts = _parse_prompts(prompts_frame, problems) if prompts_frame is not None else None
    parsed_annotations = None
    if parsed_prompts is not None and annotations_frame is not None:
        parsed_annotations = _parse_annotations(annotations_frame, list(parsed_prompts[0]["external_id"]), problems)
    problems.raise_if_any()
    assert parsed_prompts is not None and parsed_annotations is not None
    prompts, features = parsed_prompts
    return Release(prompts, features, *parsed_annotations)


def prompts_read(raw: bytes, *, name: str = PROMPTS_FILE) -> tuple[pd.DataFrame, list[str]]:
    """Read and validate the bytes of a release's prompt file alone (a prompt bank in the release format):
    the frame as `Release.prompts` and its feature columns. Raises `ReleaseFormatError` naming every bad cell
    (rows counted from 1 under the header, as everywhere in this reader)."""
    problems = _Problems()
    frame = _read_csv_bytes(name, raw, problems)
    parsed = _parse_prompts(frame, problems, name) if frame is not None else None
    problems.raise_if_any()
    assert parsed is not None
    return parsed
