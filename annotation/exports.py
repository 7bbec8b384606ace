"""Dataset exports: the PluriHarms release format, and long tables as CSV, Parquet or JSON lines.

Every format identifies annotators by pseudonym (or the released dataset's own pseudonymous id);
raw recruitment ids are never stored, so they can never be exported.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.utils import timezone

from config.errors import ApplicationError

from . import release_format as rf
from .models import Study
from .selectors import annotator_id_chunks, annotators_frame, prompts_frame, rating_rows, ratings_frame

FORMATS = ("pluriharms", "long-csv", "parquet", "jsonl")
LONG_CHUNK_ANNOTATORS = 1000
Progress = Callable[[float, str], None]


def _release_column(values: np.ndarray, decimal: bool = False) -> np.ndarray:
    """Format one column as the release (pandas) does: whole numbers without NaN as `50`, else `50.0`."""
    if not decimal and not np.isnan(values).any() and np.all(values == np.round(values)):
        return values.astype(np.int64)
    return values


def _export_pluriharms(study: Study, out: Path, progress: Progress) -> list[Path]:
    prompts = prompts_frame(study=study)
    progress(0.1, "reading ratings")
    rows = rating_rows(study=study)
    people = annotators_frame(study=study)
    people = people[people.index.isin(rows["annotator_id"].unique())]
    progress(0.6, "writing files")

    feature_cols = [c for c in prompts.columns if c not in ("external_id", "text", "harm_level")]
    prompt_out = pd.DataFrame(
        {rf.PROMPT_ID: prompts["external_id"].to_numpy(), rf.PROMPT_TEXT: prompts["text"].to_numpy(),
         rf.HARM_LEVEL: prompts["harm_level"].to_numpy()}
    )
    prompt_out = pd.concat([prompt_out, prompts[feature_cols].reset_index(drop=True)], axis=1)
    prompt_path = out / rf.PROMPTS_FILE
    prompt_out.to_csv(prompt_path, index=False)

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
    columns: dict[str, object] = {
        rf.PARTICIPANT_ID: [s or p for s, p in zip(people["source_id"], people["pseudonym"])]
    }
    for column in rf.DEMOGRAPHIC_COLUMNS:
        columns[column] = people[column].to_numpy() if column in people else None
    decimal = set(study.meta.get("decimal_rating_columns", []))
    for j, pid in enumerate(ids):
        columns[f"Rating_{pid}"] = _release_column(ratings[:, j], decimal=pid in decimal)
    for column in rf.FACTOR_COLUMNS:
        columns[column] = people[column].to_numpy() if column in people else np.nan
    for j, pid in enumerate(ids):
        columns[f"Trial_{pid}"] = _release_column(trials[:, j])
    annotations = pd.DataFrame(columns)
    annotation_path = out / rf.ANNOTATIONS_FILE
    annotations.to_csv(annotation_path, index=False)
    return [prompt_path, annotation_path]


def _long_chunks(study: Study):
    prompts = prompts_frame(study=study)
    for ids in annotator_id_chunks(study=study, size=LONG_CHUNK_ANNOTATORS):
        frame = ratings_frame(study=study, annotator_ids=ids, prompts=prompts)
        if len(frame):
            yield frame


def _export_long(study: Study, out: Path, fmt: str, progress: Progress) -> list[Path]:
    total = max(1, study.annotators.count())
    suffix = {"long-csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}[fmt]
    path = out / f"ratings.{suffix}"
    writer = None
    done = 0
    n_rows = 0
    with open(path, "w", encoding="utf-8") if fmt != "parquet" else nullcontext() as handle:
        for chunk in _long_chunks(study):
            if fmt == "long-csv":
                chunk.to_csv(handle, index=False, header=(n_rows == 0))
            elif fmt == "jsonl":
                handle.write(chunk.to_json(orient="records", lines=True, force_ascii=False))
            else:
                table = pa.Table.from_pandas(chunk, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table.cast(writer.schema))
            n_rows += len(chunk)
            done += chunk["annotator"].nunique()
            progress(min(0.95, done / total), f"{n_rows:,} rows written")
    if fmt == "parquet":
        if writer is None:
            pq.write_table(pa.Table.from_pandas(ratings_frame(study=study), preserve_index=False), path)
        else:
            writer.close()
    return [path]


def export_study(*, study: Study, fmt: str, out_dir: str | Path, progress: Progress | None = None) -> list[Path]:
    """Write the study's data in `fmt` into `out_dir` (created if missing); returns the files written."""
    if fmt not in FORMATS:
        raise ApplicationError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda fraction, message: None)
    if fmt == "pluriharms":
        paths = _export_pluriharms(study, out, report)
    else:
        paths = _export_long(study, out, fmt, report)
    manifest = {
        "study": study.slug,
        "format": fmt,
        "created_at": timezone.now().isoformat(),
        "files": [p.name for p in paths],
    }
    manifest_path = out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2))
    report(1.0, "done")
    return [*paths, manifest_path]
