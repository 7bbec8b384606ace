"""Dataset exports: the PluriHarms release format, and long tables as CSV, Parquet or JSON lines.

Every format identifies annotators by pseudonym (or the released dataset's own pseudonymous id);
raw recruitment ids are never stored, so they can never be exported.

Spreadsheet-facing CSV (the long table here, the dashboards' CSV downloads) goes through
`spreadsheet_csv` / `spreadsheet_safe`: a text cell that a spreadsheet would run as a formula gets a
leading `'` (OWASP, CSV injection). The release format, Parquet and JSON lines stay exact.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.utils import timezone

from benchmark.science.release import (
    ANNOTATIONS_FILE,
    DEMOGRAPHIC_COLUMNS,
    FACTOR_COLUMNS,
    HARM_LEVEL,
    PARTICIPANT_ID,
    PROMPT_ID,
    PROMPT_TEXT,
    PROMPTS_FILE,
    rating_column,
    trial_column,
)
from config.errors import ApplicationError

from .export_formats import export_hub, export_lewidi
from .models import Study
from .selectors import (
    RatingsParts,
    annotator_id_chunks,
    annotators_frame,
    prompts_frame,
    rating_rows,
    ratings_parts,
)

FORMATS = ("pluriharms", "long-csv", "parquet", "jsonl", "lewidi", "hub")
FORMAT_LABELS = {
    "pluriharms": "PluriHarms release (prompts.csv, annotations.csv)",
    "long-csv": "Long table, CSV (one row per rating)",
    "parquet": "Long table, Parquet",
    "jsonl": "Long table, JSON lines",
    "lewidi": "LeWiDi JSON (items with soft labels, annotator metadata)",
    "hub": "Dataset-hub folder (Parquet and README.md dataset card, zipped)",
}
LONG_CHUNK_ANNOTATORS = 1000
Progress = Callable[[float, str], None]

# What a spreadsheet takes as the start of a formula (OWASP "CSV injection"): `=`, `+`, `-`, `@`, and
# tab and carriage return, which some spreadsheets skip before looking for one of the others.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """One cell for a spreadsheet: text that starts like a formula gets a leading `'`.

    Only text is touched: numbers (negative ones too), booleans, dates and empty cells come back as
    they are, so a numeric column stays numeric. The `'` makes a spreadsheet show the text as text
    (and drop the quote); other readers see it, which is why the exact formats do not use this.
    """
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def spreadsheet_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`spreadsheet_safe` over every text cell and column name; numeric columns are skipped unread."""
    safe = frame
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        if column.dtype.kind in "biufcmM":
            continue
        # Most columns hold a few distinct values (pseudonyms, prompt ids, answers): test those once.
        try:
            distinct = pd.unique(column)
        except TypeError:  # unhashable cells (lists): test them all
            distinct = column.to_numpy()
        if not any(spreadsheet_safe(value) is not value for value in distinct):
            continue
        if safe is frame:
            safe = frame.copy(deep=False)
        safe.isetitem(position, column.map(spreadsheet_safe).astype(object))
    names = [spreadsheet_safe(name) for name in frame.columns]
    if names != list(frame.columns):
        if safe is frame:
            safe = frame.copy(deep=False)
        safe.columns = names
    return safe


def spreadsheet_csv(frame: pd.DataFrame, *, header: bool = True) -> str:
    r"""CSV text for a spreadsheet: `spreadsheet_safe_frame`, and a carriage return inside a cell quoted.

    pandas (and Python's csv module) quote a cell holding `\n` but not one holding a bare `\r`, which
    spreadsheets read as a line break: the rest of the cell would start a new row, where a formula
    would not be neutralised. Rendering with `\r\n` line ends makes the writer quote both; the line
    ends are then written as `\n`, unless a cell itself holds `\r\n`, in which case every text cell
    is quoted instead.
    """
    safe = spreadsheet_safe_frame(frame)
    text = safe.to_csv(index=False, header=header, lineterminator="\r\n")
    if text.count("\r\n") == len(safe) + int(header):
        return text.replace("\r\n", "\n")
    return safe.to_csv(index=False, header=header, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)


def _release_column(values: np.ndarray, decimal: bool = False) -> np.ndarray:
    """Format one column as the release (pandas) does: whole numbers without NaN as `50`, else `50.0`."""
    if not decimal and not np.isnan(values).any() and np.all(values == np.round(values)):
        return values.astype(np.int64)
    return values


def _release_csv(frame: pd.DataFrame, path: Path) -> None:
    r"""Write a release file as pandas does (the published files come out byte for byte), except that a
    cell holding a bare `\r` is quoted: pandas quotes `\n` but not `\r`, which every reader, the
    importer included, takes as a line end, so such a text would not read back. Rendering with `\r\n`
    line ends makes the writer quote both; they are then written as `\n`, unless a cell itself holds
    `\r\n`, in which case every cell is quoted instead."""
    text = frame.to_csv(index=False, lineterminator="\r\n")
    if text.count("\r\n") == len(frame) + 1:
        text = text.replace("\r\n", "\n")
    else:
        text = frame.to_csv(index=False, lineterminator="\n", quoting=csv.QUOTE_ALL)
    path.write_bytes(text.encode("utf-8"))


def _export_pluriharms(study: Study, out: Path, progress: Progress) -> list[Path]:
    prompts = prompts_frame(study=study)
    progress(0.1, "reading ratings")
    rows = rating_rows(study=study)
    people = annotators_frame(study=study)
    people = people[people.index.isin(rows["annotator_id"].unique())]
    progress(0.6, "writing files")

    feature_cols = [c for c in prompts.columns if c not in ("external_id", "text", "harm_level")]
    prompt_out = pd.DataFrame(
        {
            PROMPT_ID: prompts["external_id"].to_numpy(),
            PROMPT_TEXT: prompts["text"].to_numpy(),
            HARM_LEVEL: prompts["harm_level"].to_numpy(),
        }
    )
    prompt_out = pd.concat([prompt_out, prompts[feature_cols].reset_index(drop=True)], axis=1)
    prompt_path = out / PROMPTS_FILE
    _release_csv(prompt_out, prompt_path)

    a_index = pd.Index(people.index)
    p_index = pd.Index(prompts.index)
    ai = a_index.get_indexer(rows["annotator_id"])
    pi = p_index.get_indexer(rows["prompt_id"])
    shape = (len(a_index), len(p_index))
    ratings = np.full(shape, np.nan)
    ratings[ai, pi] = rows["rating"].to_numpy()
    trials = np.full(shape, np.nan)
    trials[ai, pi] = rows["trial"].to_numpy(dtype=float)

    ids = prompts["external_id"].tolist()
    columns: dict[str, object] = {PARTICIPANT_ID: [s or p for s, p in zip(people["source_id"], people["pseudonym"])]}
    for column in DEMOGRAPHIC_COLUMNS:
        columns[column] = people[column].to_numpy() if column in people else None
    decimal = set(study.meta.get("decimal_rating_columns", []))
    for j, pid in enumerate(ids):
        columns[rating_column(pid)] = _release_column(ratings[:, j], decimal=pid in decimal)
    for column in FACTOR_COLUMNS:
        columns[column] = people[column].to_numpy() if column in people else np.nan
    for j, pid in enumerate(ids):
        columns[trial_column(pid)] = _release_column(trials[:, j])
    annotations = pd.DataFrame(columns)
    annotation_path = out / ANNOTATIONS_FILE
    _release_csv(annotations, annotation_path)
    return [prompt_path, annotation_path]


def _csv_row_texts(frame: pd.DataFrame) -> np.ndarray | None:
    r"""Each row as `spreadsheet_csv(frame, header=False)` writes it, without the line end.

    None if a value holds `\r\n` (the split would be ambiguous). A constant first column keeps the
    csv module from writing a row's lone empty field as `""`, as it would not within a wider row.
    """
    marked = spreadsheet_safe_frame(frame).copy(deep=False)
    marked.insert(0, "", "m", allow_duplicates=True)
    # `\r\n` line ends so that a cell holding `\r` or `\n` is quoted (see spreadsheet_csv).
    lines = marked.to_csv(index=False, header=False, lineterminator="\r\n").split("\r\n")
    if len(lines) != len(frame) + 1:
        return None
    lines.pop()
    return np.array([line[2:] for line in lines], dtype=object)


def _json_row_texts(frame: pd.DataFrame) -> np.ndarray | None:
    """Each row's members as `frame.to_json(orient="records", lines=True)` writes them, without braces."""
    lines = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=15).split("\n")
    if len(lines) != len(frame) + 1:
        return None
    lines.pop()
    return np.array([line[1:-1] for line in lines], dtype=object)


class _LongText:
    """Long-table rows as CSV or JSON-lines text, byte for byte what `spreadsheet_csv` (or `to_json`)
    writes for `ratings_frame`, but each annotator's and each prompt's columns are formatted once,
    not once per rating: a full crossing repeats every prompt's 60-odd feature values per annotator.
    """

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.render = _csv_row_texts if fmt == "long-csv" else _json_row_texts
        self._prompt_key = None
        self._prompt_text = None

    def _prompts(self, parts: RatingsParts) -> np.ndarray | None:
        key = (id(parts.items), tuple(parts.feature_columns))
        if key != self._prompt_key:
            self._prompt_key = key
            self._prompt_text = self.render(parts.items[parts.feature_columns])
        return self._prompt_text

    def header(self, parts: RatingsParts) -> str:
        if self.fmt != "long-csv":
            return ""
        columns = [*parts.base.columns, *parts.trait_columns, *parts.feature_columns]
        return spreadsheet_csv(pd.DataFrame(columns=columns))

    def rows(self, parts: RatingsParts) -> str:
        pieces = [self.render(parts.base)]
        if parts.trait_columns:
            people = self.render(parts.people[parts.trait_columns])
            at = parts.annotator_rows
            pieces.append(people[at] if people is not None and not (at < 0).any() else None)
        if parts.feature_columns:
            prompts = self._prompts(parts)
            at = parts.prompt_rows
            pieces.append(prompts[at] if prompts is not None and not (at < 0).any() else None)
        if any(piece is None for piece in pieces):  # a value spans lines: let pandas write the rows
            frame = parts.frame()
            if self.fmt == "long-csv":
                return spreadsheet_csv(frame, header=False)
            return frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=15)
        if self.fmt == "long-csv":
            return "\n".join(map(",".join, zip(*pieces))) + "\n"
        return "".join(["{" + ",".join(row) + "}\n" for row in zip(*pieces)])


def _with_review_columns(parts: RatingsParts) -> RatingsParts:
    """The long formats' annotator columns start with `status` and `exclusion_reason`: excluded
    annotators stay in every export (analyses filter them; nothing is deleted). Should a demographic or
    trait column already be called `status`, the status keeps its name `annotator_status`."""
    people = parts.people
    rest = [c for c in parts.trait_columns if c not in ("annotator_status", "exclusion_reason")]
    status = "annotator_status" if "status" in people.columns else "status"
    people = people.rename(columns={"annotator_status": status})
    return dataclasses.replace(parts, people=people, trait_columns=[status, "exclusion_reason", *rest])


def _long_parts(study: Study):
    prompts = prompts_frame(study=study)
    for ids in annotator_id_chunks(study=study, size=LONG_CHUNK_ANNOTATORS):
        parts = ratings_parts(study=study, annotator_ids=ids, prompts=prompts)
        if len(parts.base):
            yield _with_review_columns(parts)


def _export_long(study: Study, out: Path, fmt: str, progress: Progress) -> list[Path]:
    total = max(1, study.annotators.count())
    suffix = {"long-csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}[fmt]
    path = out / f"ratings.{suffix}"
    writer = None
    done = 0
    n_rows = 0
    text = _LongText(fmt) if fmt != "parquet" else None
    with open(path, "w", encoding="utf-8") if fmt != "parquet" else nullcontext() as handle:
        for parts in _long_parts(study):
            if text is not None:
                if n_rows == 0:
                    handle.write(text.header(parts))
                handle.write(text.rows(parts))
            else:
                table = pa.Table.from_pandas(parts.frame(), preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table.cast(writer.schema))
            n_rows += len(parts.base)
            done += parts.rows["annotator_id"].nunique()
            progress(min(0.95, done / total), f"{n_rows:,} rows written")
    if fmt == "parquet":
        if writer is None:
            empty = _with_review_columns(ratings_parts(study=study)).frame()
            pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), path)
        else:
            writer.close()
    return [path]


def export_study(
    *, study: Study, fmt: str, out_dir: str | Path, progress: Progress | None = None, license_id: str = "other"
) -> list[Path]:
    """Write the study's data in `fmt` into `out_dir` (created if missing); returns the files written.
    `license_id` is the licence named in the dataset-hub card (format "hub")."""
    if fmt not in FORMATS:
        raise ApplicationError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda fraction, message: None)
    if fmt == "pluriharms":
        paths = _export_pluriharms(study, out, report)
    elif fmt == "lewidi":
        paths = export_lewidi(study, out, report)
    elif fmt == "hub":
        paths = export_hub(study, out, report, license_id=license_id)
    else:
        paths = _export_long(study, out, fmt, report)
    manifest = {
        "study": study.slug,
        "format": fmt,
        "created_at": timezone.now().isoformat(),
        "files": [p.name for p in paths],
    }
    if fmt == "hub":
        manifest["license"] = license_id
    manifest_path = out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2))
    report(1.0, "done")
    return [*paths, manifest_path]
