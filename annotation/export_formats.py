"""Two dataset layouts beyond the long table: LeWiDi JSON and a dataset-hub folder.

- **LeWiDi JSON** follows the Learning-with-Disagreements shared tasks (third edition's common format):
  one JSON object keyed by item id, each item with its `text`, `annotators` (comma-separated ids),
  `annotations` (annotator id → label), `number of annotators`, `number of annotations`, a
  `soft_label` (here a distribution over 10 equal bins of the study's scale), a `hard_label`, `split`
  (null: studies define no split) and `other_info`; plus an annotator-metadata file keyed by
  annotator id, and a metadata file that says how the labels were made.
- **Dataset hub**: a zip of Parquet tables (ratings, annotators, prompts) under `data/` and a
  `README.md` dataset card whose YAML header the hub reads (licence, configs, features).

Annotators are named by pseudonym only: raw recruitment ids are never stored, so never exported.
"""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from .models import Annotator, Study
from .selectors import annotator_id_chunks, annotators_frame, prompts_frame, rating_rows, ratings_parts

Progress = Callable[[float, str], None]

SOFT_LABEL_BINS = 10
UNSURE_LABEL = "Unsure"
# What the researcher may pick on the datasets page (hub licence identifiers); "other" until they choose.
LICENSES = {
    "other": "Other (state the terms in the card)",
    "cc-by-4.0": "CC BY 4.0",
    "cc-by-sa-4.0": "CC BY-SA 4.0",
    "cc-by-nc-4.0": "CC BY-NC 4.0",
    "cc0-1.0": "CC0 1.0 (public domain)",
    "odc-by": "ODC-By",
    "mit": "MIT",
}
LEWIDI_ITEMS = "lewidi.json"
LEWIDI_ANNOTATORS = "lewidi_annotators_meta.json"
LEWIDI_METADATA = "lewidi_metadata.json"
HUB_ZIP = "dataset-hub.zip"
RATINGS_COLUMNS = ["annotator", "prompt", "rating", "unsure", "trial", "rt_ms", "server_rt_ms", "revised"]


def _number(value: float) -> str:
    """A scale value as short text: 10 not 10.0, 1.6 not 1.6000000000000001."""
    return f"{float(value):.10g}"


def bin_edges(study: Study) -> np.ndarray:
    """The 11 edges of 10 equal bins over [scale_min, scale_max]."""
    return np.linspace(float(study.scale_min), float(study.scale_max), SOFT_LABEL_BINS + 1)


def bin_labels(study: Study) -> list[str]:
    """`"0-10"`, `"10-20"`, … `"90-100"` on a 0–100 scale: bin i holds [lower, upper), the last also upper."""
    edges = bin_edges(study)
    return [f"{_number(edges[i])}-{_number(edges[i + 1])}" for i in range(SOFT_LABEL_BINS)]


def bin_index(values, study: Study) -> np.ndarray:
    """The bin (0–9) of each rating; the scale maximum falls in the last bin, anything outside in the
    nearest end bin. Computed as (v − min)·10 / (max − min) so that an edge lands in the bin it opens."""
    values = np.asarray(values, dtype=float)
    span = float(study.scale_max - study.scale_min)
    position = (values - float(study.scale_min)) * SOFT_LABEL_BINS / span
    return np.clip(np.floor(position + 1e-9), 0, SOFT_LABEL_BINS - 1).astype(int)


def soft_label(values, study: Study) -> dict[str, float] | None:
    """Share of the (non-Unsure) ratings in each bin, every bin named; None if there are none."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    counts = np.bincount(bin_index(values, study), minlength=SOFT_LABEL_BINS)
    return {label: float(n / len(values)) for label, n in zip(bin_labels(study), counts)}


def hard_label(distribution: dict[str, float] | None) -> str | None:
    """The bin holding the most ratings; None when two or more bins tie for the most (no majority)."""
    if not distribution:
        return None
    top = max(distribution.values())
    winners = [label for label, share in distribution.items() if math.isclose(share, top)]
    return winners[0] if len(winners) == 1 else None


def _annotation_text(value: float, unsure: bool) -> str:
    return UNSURE_LABEL if unsure or value != value else _number(value)


def _json_value(value):
    """A cell for JSON: NaN and pandas' missing values become null, numpy scalars plain numbers."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _task_text(study: Study) -> str:
    return f"harm rating on a {_number(study.scale_min)}-{_number(study.scale_max)} scale"


def export_lewidi(study: Study, out: Path, progress: Progress) -> list[Path]:
    """Write the LeWiDi item file, the annotator-metadata file and the metadata file."""
    prompts = prompts_frame(study=study)
    progress(0.1, "reading ratings")
    rows = rating_rows(study=study)
    people = annotators_frame(study=study)
    excluded = set(people.index[people["annotator_status"] == Annotator.Status.EXCLUDED])
    progress(0.5, "grouping ratings by item")

    pseudonyms = people["pseudonym"]
    rows = rows.assign(pseudonym=pseudonyms.reindex(rows["annotator_id"]).to_numpy())
    rows = rows.sort_values(["prompt_id", "annotator_id"], kind="stable")
    grouped = {pk: group for pk, group in rows.groupby("prompt_id", sort=False)}
    items: dict[str, dict] = {}
    for pk, prompt in prompts.iterrows():
        group = grouped.get(pk)
        names = [] if group is None else group["pseudonym"].tolist()
        annotations = {}
        counted = []
        if group is not None:
            for name, annotator_id, value, unsure in zip(
                names, group["annotator_id"].to_numpy(), group["rating"].to_numpy(), group["unsure"].to_numpy()
            ):
                annotations[name] = _annotation_text(value, bool(unsure))
                if not unsure and annotator_id not in excluded:
                    counted.append(value)
        distribution = soft_label(counted, study)
        items[str(prompt["external_id"])] = {
            "annotation task": _task_text(study),
            "text": prompt["text"],
            "number of annotators": len(annotations),
            "annotators": ",".join(names),
            "number of annotations": len(annotations),
            "annotations": annotations,
            "hard_label": hard_label(distribution),
            "soft_label": distribution,
            "split": None,  # a study's prompts carry no train/dev/test split (yet)
            "other_info": {
                "harm_level": _json_value(prompt["harm_level"]),
                "number of unsure": sum(1 for v in annotations.values() if v == UNSURE_LABEL),
                "number in soft label": len(counted),
            },
        }
    progress(0.8, "writing files")
    item_path = out / LEWIDI_ITEMS
    item_path.write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")

    skip = {"pseudonym", "source_id"}
    meta = {}
    for _, person in people.iterrows():
        record = {"Annotator_id": person["pseudonym"]}
        for column in people.columns:
            if column in skip:
                continue
            name = "status" if column == "annotator_status" else column
            record[name] = _json_value(person[column])
        meta[person["pseudonym"]] = record
    meta_path = out / LEWIDI_ANNOTATORS
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")

    edges = bin_edges(study)
    about = {
        "study": study.slug,
        "title": study.title,
        "annotation task": _task_text(study),
        "item id": "the prompt's external id",
        "annotator id": "the annotator's pseudonym in this study (never a recruitment id)",
        "annotations": f"each annotator's rating as text; {UNSURE_LABEL!r} when they chose Unsure",
        "scale": {"min": study.scale_min, "max": study.scale_max, "step": study.scale_step},
        "soft_label": {
            "bins": [
                {"label": label, "lower": float(edges[i]), "upper": float(edges[i + 1])}
                for i, label in enumerate(bin_labels(study))
            ],
            "definition": (
                f"share of the item's ratings in each of {SOFT_LABEL_BINS} equal bins of the scale; a bin holds "
                "[lower, upper), the last bin also its upper edge"
            ),
            "unsure": "Unsure answers are left out of the soft label and the hard label (they are kept in annotations)",
            "excluded annotators": (
                "ratings of annotators with status 'excluded' are left out of the soft label and the hard label; "
                "they are kept in annotations, and their status and exclusion_reason are in "
                f"{LEWIDI_ANNOTATORS}"
            ),
            "empty": "null when no rating is left to count",
        },
        "hard_label": "the bin with the most ratings in the soft label; null when bins tie",
        "split": "null: the study defines no train/dev/test split of its prompts",
        "files": [LEWIDI_ITEMS, LEWIDI_ANNOTATORS, LEWIDI_METADATA],
        "counts": {
            "items": len(items),
            "annotators": len(people),
            "annotations": int(len(rows)),
            "unsure": int(rows["unsure"].sum()),
        },
    }
    about_path = out / LEWIDI_METADATA
    about_path.write_text(json.dumps(about, ensure_ascii=False, indent=1), encoding="utf-8")
    return [item_path, meta_path, about_path]


# --- dataset hub -----------------------------------------------------------------------------------


def _hub_dtype(arrow_type: pa.DataType) -> str:
    """The hub's `dtype` name for an Arrow type (datasets' Value types)."""
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return str(arrow_type)  # int8 … uint64, as datasets names them
    if pa.types.is_floating(arrow_type):
        return {16: "float16", 32: "float32"}.get(arrow_type.bit_width, "float64")
    if pa.types.is_timestamp(arrow_type):
        return f"timestamp[{arrow_type.unit}]"
    if pa.types.is_null(arrow_type):
        return "null"
    return "string"


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ):
        if n < limit:
            return name
    return "10M<n<100M"


def _write_parquet(frame: pd.DataFrame, path: Path) -> pa.Schema:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, compression="zstd")
    return table.schema


def _ratings_parquet(study: Study, path: Path, progress: Progress) -> tuple[pa.Schema, int, int]:
    """The ratings long table (per-rating columns and the annotator's status), written per annotator chunk."""
    prompts = prompts_frame(study=study)
    total = max(1, study.annotators.count())
    writer = None
    n_rows = n_unsure = done = 0
    for ids in annotator_id_chunks(study=study, size=1000):
        parts = ratings_parts(study=study, annotator_ids=ids, prompts=prompts)
        done += len(ids)
        if not len(parts.base):
            continue
        frame = parts.base.copy()
        frame["rt_ms"] = frame["rt_ms"].astype("Int64")
        frame["server_rt_ms"] = frame["server_rt_ms"].astype("Int64")
        frame["annotator_status"] = parts.people["annotator_status"].reindex(parts.rows["annotator_id"]).to_numpy()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table.cast(writer.schema))
        n_rows += len(frame)
        n_unsure += int(frame["unsure"].sum())
        progress(0.1 + 0.6 * done / total, f"{n_rows:,} ratings written")
    if writer is None:
        empty = pd.DataFrame(
            {
                "annotator": pd.Series([], dtype=object),
                "prompt": pd.Series([], dtype=object),
                "rating": pd.Series([], dtype=float),
                "unsure": pd.Series([], dtype=bool),
                "trial": pd.Series([], dtype="int64"),
                "rt_ms": pd.Series([], dtype="Int64"),
                "server_rt_ms": pd.Series([], dtype="Int64"),
                "revised": pd.Series([], dtype=bool),
                "annotator_status": pd.Series([], dtype=object),
            }
        )
        return _write_parquet(empty, path), 0, 0
    writer.close()
    return pq.read_schema(path), n_rows, n_unsure


def _instruments(study: Study) -> list[dict]:
    from . import surveys  # noqa: PLC0415  (surveys imports models; kept local like the selectors do)

    found = []
    for key in study.instruments or []:
        try:
            definition = surveys.instrument_load(key)
        except ValueError:
            found.append({"key": key, "title": key, "version": "?", "source": "", "items": 0})
            continue
        found.append(
            {
                "key": key,
                "title": definition.get("title", key),
                "version": str(definition.get("version", "1")),
                "source": definition.get("source", ""),
                "items": len(definition.get("items", [])),
            }
        )
    return found


def _features(schema: pa.Schema) -> list[dict]:
    return [{"name": field.name, "dtype": _hub_dtype(field.type)} for field in schema]


def _schema_table(schema: pa.Schema, notes: dict[str, str]) -> str:
    lines = ["| Column | Type | Meaning |", "|---|---|---|"]
    for field in schema:
        lines.append(f"| `{field.name}` | {_hub_dtype(field.type)} | {notes.get(field.name, '')} |")
    return "\n".join(lines)


RATING_NOTES = {
    "annotator": "the annotator's pseudonym in this study (never a recruitment id)",
    "prompt": "the prompt's external id",
    "rating": "the rating on the study's scale; empty when Unsure",
    "unsure": "the annotator chose Unsure",
    "trial": "position in the annotator's sequence (attention checks take positions too)",
    "rt_ms": "active time measured in the browser, ms",
    "server_rt_ms": "time from shown to saved on the server, ms",
    "revised": "the annotator changed this answer once, from the next card; `rating` is the final answer",
    "annotator_status": "the annotator's status; `excluded` ones are kept (filter them in analyses)",
}
ANNOTATOR_NOTES = {
    "annotator": "pseudonym",
    "status": "status at export time",
    "exclusion_reason": "why the annotator was excluded, if they were",
}
PROMPT_NOTES = {"prompt": "external id", "text": "the text annotators rated", "harm_level": "harm level, if given"}


def _card(
    study: Study,
    *,
    license_id: str,
    counts: dict,
    schemas: dict[str, pa.Schema],
    instruments: list[dict],
) -> str:
    header = {
        "license": license_id,
        "pretty_name": study.title,
        "language": ["en"],
        "task_categories": ["text-classification"],
        "tags": ["human-label-variation", "perspectivist", "annotator-disagreement", "harm-rating"],
        "size_categories": [_size_category(counts["ratings"])],
        "configs": [
            {
                "config_name": name,
                "data_files": [{"split": "train", "path": f"data/{name}.parquet"}],
                **({"default": True} if name == "ratings" else {}),
            }
            for name in ("ratings", "annotators", "prompts")
        ],
        "dataset_info": [
            {
                "config_name": name,
                "features": _features(schemas[name]),
                "splits": [{"name": "train", "num_examples": counts[name]}],
            }
            for name in ("ratings", "annotators", "prompts")
        ],
    }
    yaml_text = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=1000)
    design = study.get_design_display()
    if study.design == Study.Design.PARTIAL:
        design += f" ({study.prompts_per_annotator} prompts per annotator"
        if study.target_ratings_per_prompt:
            design += f", target {study.target_ratings_per_prompt} ratings per prompt"
        design += ")"
    licence_name = LICENSES.get(license_id, license_id)
    instrument_lines = "\n".join(
        f"- `{i['key']}` v{i['version']}: {i['title']} ({i['items']} items)"
        + (f"; {i['source']}" if i["source"] else "")
        for i in instruments
    )
    status_lines = "\n".join(f"| {status} | {n:,} |" for status, n in counts["by_status"].items()) or "| — | 0 |"
    body = f"""
# {study.title}

{study.description.strip() or "A dataset of harm ratings collected with pluriharms, one row per rating."}

## Files

- `data/ratings.parquet`: one row per rating (the long table), {counts["ratings"]:,} rows.
- `data/annotators.parquet`: one row per annotator (status, demographics, trait scores), {counts["annotators"]:,} rows.
- `data/prompts.parquet`: one row per prompt (text, harm level, features), {counts["prompts"]:,} rows.

Annotators are named by a pseudonym that is stable within this study; recruitment-platform ids are never
stored and are not in this dataset. Excluded annotators are kept with their `status` and
`exclusion_reason`: filter them in analyses.

## Collection design

- Scale: {_number(study.scale_min)} to {_number(study.scale_max)} in steps of {_number(study.scale_step)};
  Unsure {"allowed (stored as `unsure` true with an empty `rating`)" if study.allow_unsure else "not offered"}.
- Design: {design}.
- Attention checks: {study.attention_checks} per annotator, tolerance ±{study.attention_tolerance};
  {study.attention_max_failures} or more failures exclude the annotator.
- Minimum time per rating: {study.min_seconds_per_rating:g} s.

## Counts

| What | Count |
|---|---:|
| Prompts | {counts["prompts"]:,} |
| Annotators | {counts["annotators"]:,} |
| Ratings | {counts["ratings"]:,} |
| Unsure | {counts["unsure"]:,} |

Annotators by status:

| Status | Annotators |
|---|---:|
{status_lines}

## Instruments

{instrument_lines or "- none"}

## Schema

### ratings

{_schema_table(schemas["ratings"], RATING_NOTES)}

### annotators

{_schema_table(schemas["annotators"], ANNOTATOR_NOTES)}

### prompts

{_schema_table(schemas["prompts"], PROMPT_NOTES)}

## Licence

{licence_name} (`{license_id}`).

## Citation

```bibtex
@misc{{{study.slug.replace("-", "_")},
  title  = {{{study.title}}},
  author = {{TODO: authors}},
  year   = {{TODO}},
  note   = {{TODO: paper or DOI}}
}}
```
"""
    return f"---\n{yaml_text}---\n{body}"


def export_hub(study: Study, out: Path, progress: Progress, *, license_id: str = "other") -> list[Path]:
    """Write the dataset-hub folder (data/*.parquet and README.md) and zip it as one file."""
    if license_id not in LICENSES:
        from config.errors import ApplicationError  # noqa: PLC0415

        raise ApplicationError(f"unknown licence {license_id!r}; choose one of {', '.join(LICENSES)}")
    folder = out / "dataset-hub"
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    progress(0.05, "writing ratings")
    ratings_schema, n_ratings, n_unsure = _ratings_parquet(study, data / "ratings.parquet", progress)

    progress(0.75, "writing annotators and prompts")
    people = annotators_frame(study=study).reset_index(drop=True)
    people = people.drop(columns=["source_id"]).rename(columns={"pseudonym": "annotator", "annotator_status": "status"})
    annotators_schema = _write_parquet(people, data / "annotators.parquet")
    prompts = prompts_frame(study=study).reset_index(drop=True).rename(columns={"external_id": "prompt"})
    prompts_schema = _write_parquet(prompts, data / "prompts.parquet")

    counts = {
        "ratings": n_ratings,
        "unsure": n_unsure,
        "annotators": len(people),
        "prompts": len(prompts),
        "by_status": people["status"].value_counts().sort_index().to_dict(),
    }
    card = _card(
        study,
        license_id=license_id,
        counts=counts,
        schemas={"ratings": ratings_schema, "annotators": annotators_schema, "prompts": prompts_schema},
        instruments=_instruments(study),
    )
    (folder / "README.md").write_text(card, encoding="utf-8")

    progress(0.9, "zipping")
    archive = out / HUB_ZIP
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as bundle:
        # Parquet is already compressed; the card is small.
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, arcname=str(Path(folder.name) / path.relative_to(folder)))
    shutil.rmtree(folder)  # the zip is the artifact
    return [archive]
