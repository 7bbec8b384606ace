"""Predictions made elsewhere (a CSV upload), scored like any model.

File format: a header row and columns `prompt` and `prediction`, optionally `annotator` (column names
are case-insensitive; `prompt_id`/`question_index`, `annotator_id`/`participant_id` and `score` are
accepted as aliases).  Predictions are on 0–1 or 0–100: declare `scale="unit"` or `"percent"`, or
leave `"auto"`, which reads the file as 0–100 if any value exceeds 1 (a 0–100 file whose values are
all ≤ 1 must be declared).

`read_predictions_csv` validates the whole file and raises `PredictionsFileError` (a ValueError) that
lists every bad row by its spreadsheet row number (the header is row 1, the first data row is row 2):
unknown prompt or annotator ids, empty ids, non-numeric or non-finite values, values out of range,
and duplicates of an earlier row.

`UploadedPredictions(frame)` looks each row up: per-annotator predictions where the file has them,
else the file's per-prompt value; the aggregated row takes the file's per-prompt value or, if the file
is per annotator, the mean over its annotators.  Rows the file does not cover are NaN, which the
protocol leaves out of the scores (and reports as `coverage`).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.science.predictors.base import AGGREGATE, Predictor, register

ALIASES = {
    "prompt": ("prompt", "prompt_id", "question_index"),
    "annotator": ("annotator", "annotator_id", "participant_id"),
    "prediction": ("prediction", "score"),
}
SCALES = ("auto", "unit", "percent")
MAX_LISTED = 25


class PredictionsFileError(ValueError):
    """A predictions file that cannot be used; `errors` lists (row, message) pairs."""

    def __init__(self, errors: list[tuple[int | None, str]]):
        self.errors = errors
        lines = [f"row {row}: {message}" if row is not None else message for row, message in errors[:MAX_LISTED]]
        if len(errors) > MAX_LISTED:
            lines.append(f"… and {len(errors) - MAX_LISTED} more problems")
        super().__init__("invalid predictions file:\n" + "\n".join(lines))


def _column_key(column: str) -> str:
    return column.strip().casefold()


def _duplicate_columns(columns: list[str]) -> list[tuple[int | None, str]]:
    """Header names that repeat an earlier one (ignoring case and spaces), as row-1 errors."""
    first: dict[str, int] = {}
    errors = []
    for position, column in enumerate(columns, start=1):
        key = _column_key(column)
        if key in first:
            message = (
                f"duplicate column {column!r} (column {position}; column {first[key]} has the same name, "
                "ignoring case and spaces): keep one"
            )
            errors.append((1, message))
        else:
            first[key] = position
    return errors


def _resolve_columns(columns: list[str]) -> tuple[dict[str, str], list[tuple[int | None, str]]]:
    lowered = {_column_key(c): c for c in columns}
    found, errors = {}, []
    for canonical, names in ALIASES.items():
        matches = [lowered[n] for n in names if n in lowered]
        if len(matches) > 1:
            errors.append((None, f"columns {', '.join(map(repr, matches))} all mean {canonical!r}; keep one"))
        elif matches:
            found[canonical] = matches[0]
    for required in ("prompt", "prediction"):
        if required not in found:
            errors.append((None, f"missing column {required!r} (found: {', '.join(map(repr, columns)) or 'none'})"))
    return found, errors


def read_predictions_csv(
    path_or_buffer,
    *,
    prompts=None,
    annotators=None,
    scale: str = "auto",
) -> pd.DataFrame:
    """Read and validate a predictions CSV → DataFrame(prompt, [annotator], prediction on 0–1).

    `prompts` / `annotators`: the known ids (anything iterable); ids outside them are errors.
    The returned frame's `attrs["scale"]` says how the file was read ("unit" or "percent").
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
    if isinstance(path_or_buffer, (bytes, bytearray)):
        path_or_buffer = io.BytesIO(path_or_buffer)
    elif isinstance(path_or_buffer, str) and "\n" not in path_or_buffer and not Path(path_or_buffer).exists():
        raise PredictionsFileError([(None, f"no such file: {path_or_buffer}")])
    try:
        # The header as a row of its own: pandas would rename a repeated name (`prompt`, `prompt.1`)
        # and read on, and would take a data row one field longer than the header as an index.
        cells = pd.read_csv(path_or_buffer, dtype=str, keep_default_na=False, skipinitialspace=True, header=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise PredictionsFileError([(None, f"not a readable CSV file: {error}")]) from error
    header = [str(name) for name in cells.iloc[0]]
    duplicates = _duplicate_columns(header)
    if duplicates:
        raise PredictionsFileError(duplicates)
    raw = cells.iloc[1:].reset_index(drop=True)
    raw.columns = header
    columns, errors = _resolve_columns(header)
    if errors:
        raise PredictionsFileError(errors)
    if raw.empty:
        raise PredictionsFileError([(None, "the file has a header but no rows")])
    known_prompts = None if prompts is None else {str(p).strip() for p in prompts}
    known_annotators = None if annotators is None else {str(a).strip() for a in annotators}
    has_annotator = "annotator" in columns
    limit = {"unit": 1.0, "percent": 100.0, "auto": 100.0}[scale]
    out_prompts, out_annotators, values, rows = [], [], [], []
    seen: dict[tuple, int] = {}
    for i, record in enumerate(raw.itertuples(index=False)):
        row = i + 2
        record = dict(zip(raw.columns, record))
        prompt = str(record[columns["prompt"]]).strip()
        annotator = str(record[columns["annotator"]]).strip() if has_annotator else None
        text = str(record[columns["prediction"]]).strip()
        bad = False
        if not prompt:
            errors.append((row, "empty prompt id"))
            bad = True
        elif known_prompts is not None and prompt not in known_prompts:
            errors.append((row, f"unknown prompt id {prompt!r}"))
            bad = True
        if has_annotator:
            if not annotator:
                errors.append((row, "empty annotator id"))
                bad = True
            elif known_annotators is not None and annotator != AGGREGATE and annotator not in known_annotators:
                errors.append((row, f"unknown annotator id {annotator!r}"))
                bad = True
        try:
            value = float(text)
        except ValueError:
            errors.append((row, f"prediction {text!r} is not a number"))
            continue
        if not math.isfinite(value):
            errors.append((row, f"prediction {text!r} is not a finite number"))
            continue
        if value < 0 or value > limit:
            errors.append((row, f"prediction {text} is outside 0–{limit:g}"))
            bad = True
        key = (prompt, annotator)
        if not bad and key in seen:
            who = f", annotator {annotator!r}" if has_annotator else ""
            errors.append((row, f"duplicate of row {seen[key]} (prompt {prompt!r}{who})"))
            bad = True
        if bad:
            continue
        seen[key] = row
        out_prompts.append(prompt)
        out_annotators.append(annotator)
        values.append(value)
        rows.append(row)
    if errors:
        raise PredictionsFileError(errors)
    values = np.asarray(values, dtype=float)
    used = scale if scale != "auto" else ("percent" if (values > 1.0).any() else "unit")
    frame = pd.DataFrame({"prompt": out_prompts})
    if has_annotator:
        frame["annotator"] = out_annotators
    frame["prediction"] = values / 100.0 if used == "percent" else values
    frame.attrs["scale"] = used
    return frame


@register
class UploadedPredictions(Predictor):
    name = "uploaded"
    description = "Predictions from an uploaded CSV (prompt[, annotator], prediction), scored like any model."
    conditions = ("individual", "aggregated")
    needs_config = True

    def __init__(self, frame: pd.DataFrame | None = None, scale: str = "auto", label: str = "uploaded"):
        self.frame = frame
        self.scale = scale
        self.label = label

    def fit(self, train: pd.DataFrame) -> UploadedPredictions:
        if self.frame is None:
            raise ValueError("UploadedPredictions needs a frame (see read_predictions_csv)")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {self.scale!r}")
        frame = self.frame.copy()
        frame["prompt"] = frame["prompt"].astype(str).str.strip()
        values = pd.to_numeric(frame["prediction"], errors="coerce").to_numpy(dtype=float)
        scale = self.scale
        if scale == "auto":
            # A frame from read_predictions_csv (it sets attrs["scale"]) is already on 0–1.
            already = "scale" in self.frame.attrs
            scale = "unit" if already or np.nanmax(values, initial=0.0) <= 1.0 else "percent"
        frame["prediction"] = values / 100.0 if scale == "percent" else values
        if "annotator" in frame.columns:
            frame["annotator"] = frame["annotator"].astype(str).str.strip()
            personal = frame[frame["annotator"] != AGGREGATE]
            self.personal_ = personal.set_index(["annotator", "prompt"])["prediction"]
            explicit = frame[frame["annotator"] == AGGREGATE].set_index("prompt")["prediction"]
            self.per_prompt_ = explicit.combine_first(personal.groupby("prompt")["prediction"].mean())
        else:
            self.personal_ = None
            self.per_prompt_ = frame.set_index("prompt")["prediction"]
        return self

    def predict(self, test: pd.DataFrame) -> pd.Series:
        prompts = test["prompt"].astype(str)
        values = prompts.map(self.per_prompt_).to_numpy(dtype=float)
        if self.personal_ is not None:
            keys = pd.MultiIndex.from_arrays([test["annotator"].astype(str), prompts])
            personal = self.personal_.reindex(keys).to_numpy(dtype=float)
            values = np.where(np.isnan(personal), values, personal)
        return pd.Series(np.clip(values, 0.0, 1.0), index=test.index)
