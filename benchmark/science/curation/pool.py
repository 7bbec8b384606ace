"""A candidate pool read from CSV: `pool_read(raw, name) -> Pool`, and the objective's `Problem` from it.

Columns: `external_id`, `text`, `harm_level` (0–1), optional `group` (the seed prompt a candidate is a
variant of; at most `max_per_group` of a group are chosen; blank or absent: the candidate is its own
group) and optional feature columns `action_*`, `effect_*` (non-negative), `value_topic_*` (signed, as
released).  A `harm_benefit_tree` column is allowed and ignored here.  A release's `prompts.csv`
(`Question_Index`, `Question_Content`, `Harm_Level`, features) is read by the release reader as it is
released; it has no seed column, so each of its prompts is its own group.  Every problem is collected
with its row and column before `PoolFormatError` is raised.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.science.release import PROMPT_ID, ReleaseFormatError, prompts_read

from .objective import HARM_LEVELS, Dimension, Problem, harm_one_hot
from .targets import targets_resolve

REQUIRED = ("external_id", "text", "harm_level")
OPTIONAL = ("group", "harm_benefit_tree")
# dimension name → the column prefix of its categories
FEATURE_DIMENSIONS = {"actions": "action_", "effects": "effect_", "values": "value_topic_"}
MAX_SHOWN_PROBLEMS = 20


class PoolFormatError(ValueError):
    """A pool file that cannot be used; `problems` holds (row, column, message), rows counted from 1."""

    def __init__(self, name: str, problems: list[tuple[int | None, str | None, str]]):
        self.name = name
        self.problems = list(problems)
        lines = []
        for row, column, message in self.problems[:MAX_SHOWN_PROBLEMS]:
            where = name + (f", row {row}" if row is not None else "") + (f", column {column}" if column else "")
            lines.append(f"{where}: {message}")
        if len(self.problems) > MAX_SHOWN_PROBLEMS:
            lines.append(f"… and {len(self.problems) - MAX_SHOWN_PROBLEMS} more problem(s)")
        super().__init__("\n".join(lines))


@dataclass
class Pool:
    frame: pd.DataFrame  # external_id, text, harm_level, group, then the feature columns
    feature_columns: list[str]

    def __len__(self) -> int:
        return len(self.frame)

    def dimensions_available(self) -> dict[str, tuple[tuple[str, ...], str]]:
        """Dimension → (category labels, column prefix), for the harm level and each feature family present."""
        out = {"harm_level": (tuple(f"{level:.1f}" for level in HARM_LEVELS), "")}
        for name, prefix in FEATURE_DIMENSIONS.items():
            columns = [c for c in self.feature_columns if c.startswith(prefix)]
            if columns:
                out[name] = (tuple(c.removeprefix(prefix) for c in columns), prefix)
        return out

    def problem(self, targets="paper", *, score: np.ndarray | None = None, score_weight: float = 0.0) -> Problem:
        """The objective over this pool for `targets` (a preset name or a parsed targets object)."""
        available = self.dimensions_available()
        shares, weights = targets_resolve(targets, available)
        blocks = [harm_one_hot(self.frame["harm_level"].to_numpy())]
        dimensions = []
        start = 0
        for name, (labels, prefix) in available.items():
            if name != "harm_level":
                values = self.frame[[prefix + label for label in labels]].to_numpy(dtype=np.float64)
                blocks.append(np.abs(values))
            weight = weights.get(name, 1.0)
            if weight > 0:
                dimensions.append(Dimension(name, labels, start, start + len(labels), shares[name], weight))
            start += len(labels)
        groups = pd.factorize(self.frame["group"])[0]
        return Problem(np.hstack(blocks), dimensions, groups, score=score, score_weight=score_weight)


def _sniff_header(text: str) -> list[str]:
    first = next(csv.reader(io.StringIO(text)), [])
    return [c.strip() for c in first]


def pool_read(raw: bytes, *, name: str = "pool.csv") -> Pool:
    """Read and validate a pool's CSV bytes (see the module docstring)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PoolFormatError(name, [(None, None, f"not UTF-8 (byte 0x{raw[exc.start]:02x})")]) from exc
    if not text.strip():
        raise PoolFormatError(name, [(None, None, "empty file")])
    if "\x00" in text:
        raise PoolFormatError(name, [(None, None, "the file holds NUL bytes")])
    header = _sniff_header(text)
    if PROMPT_ID in header:
        try:
            frame, features = prompts_read(raw, name=name)
        except ReleaseFormatError as exc:
            records = exc.records or [(name, None, None, problem) for problem in exc.problems]
            raise PoolFormatError(name, [(row, column, message) for _, row, column, message in records]) from exc
        frame.insert(3, "group", frame["external_id"])
        return Pool(frame.reset_index(drop=True), features)
    return _pool_parse(text, name)


def _pool_parse(text: str, name: str) -> Pool:
    problems: list[tuple[int | None, str | None, str]] = []
    header = _sniff_header(text)
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise PoolFormatError(name, [(None, c, "column appears more than once") for c in duplicated])
    # Text columns as text; the rest parsed as numbers by the C parser (a column holding anything else
    # comes back as text and is checked cell by cell below), which keeps a 60,000-row pool fast.
    raw_names = next(csv.reader(io.StringIO(text)), [])
    as_text = {raw: str for raw in raw_names if raw.strip() in ("external_id", "text", "group", "harm_benefit_tree")}
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=as_text, keep_default_na=False, skipinitialspace=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise PoolFormatError(name, [(None, None, f"not a CSV file: {exc}")]) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        problems.append((None, None, f"missing column(s): {', '.join(missing)}"))
    prefixes = tuple(FEATURE_DIMENSIONS.values())
    unknown = [c for c in frame.columns if c not in (*REQUIRED, *OPTIONAL) and not c.startswith(prefixes)]
    if unknown:
        problems.append(
            (
                None,
                None,
                f"unknown column(s): {', '.join(unknown)} (allowed: {', '.join(REQUIRED + OPTIONAL)} and "
                f"features starting with {', '.join(prefixes)})",
            )
        )
    if problems:
        raise PoolFormatError(name, problems)
    if frame.empty:
        raise PoolFormatError(name, [(None, None, "no candidates")])

    ids = frame["external_id"].str.strip()
    first_row: dict[str, int] = {}
    for row, value in enumerate(ids, start=1):
        if not value:
            problems.append((row, "external_id", "empty id"))
        elif value in first_row:
            problems.append((row, "external_id", f"duplicate id {value!r} (also row {first_row[value]})"))
        else:
            first_row[value] = row
    for row, value in enumerate(frame["text"], start=1):
        if not value.strip():
            problems.append((row, "text", "empty text"))
    harm = _numbers(frame["harm_level"], "harm_level", problems)
    for row in np.flatnonzero((harm < 0) | (harm > 1)) + 1:
        problems.append((int(row), "harm_level", f"harm level {harm[row - 1]} is outside 0–1"))
    features = [c for c in frame.columns if c.startswith(prefixes)]
    out = pd.DataFrame({"external_id": ids, "text": frame["text"], "harm_level": harm})
    groups = frame["group"].str.strip() if "group" in frame.columns else pd.Series([""] * len(frame))
    out["group"] = np.where(groups.to_numpy() == "", ids.to_numpy(), groups.to_numpy())
    for column in features:
        values = _numbers(frame[column], column, problems)
        if not column.startswith(FEATURE_DIMENSIONS["values"]):
            for row in np.flatnonzero(values < 0) + 1:
                problems.append((int(row), column, f"{values[row - 1]} is negative (a category share is ≥ 0)"))
        out[column] = values
    if problems:
        problems.sort(key=lambda p: (p[0] or 0, p[1] or ""))
        raise PoolFormatError(name, problems)
    return Pool(out, features)


def _numbers(series: pd.Series, column: str, problems: list) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=np.float64)
    else:
        series = series.astype(str)
        values = pd.to_numeric(series.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(values)):
        problems.append((int(i) + 1, column, f"{series.iloc[i]!r} is not a number"))
    return values
