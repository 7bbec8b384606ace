"""Reads. `ratings_frame` is the one long DataFrame that analyses, benchmarks and exports start from."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from django.db import connection
from django.db.models import Q, QuerySet

from .models import Annotator, Assignment, Prompt, Rating, Study

RATING_COLUMNS = ["annotator", "prompt", "rating", "unsure", "trial", "rt_ms"]


def studies_for_user(user) -> QuerySet[Study]:
    """Studies a user may see as a researcher: staff see all; others what they own or share."""
    if not user.is_authenticated:
        return Study.objects.none()
    if user.is_staff:
        return Study.objects.all()
    return Study.objects.filter(Q(owner=user) | Q(collaborators=user)).distinct()


def prompts_frame(*, study: Study) -> pd.DataFrame:
    """One row per prompt, indexed by prompt pk: external_id, text, harm_level, then feature columns."""
    rows = list(
        Prompt.objects.filter(study=study).order_by("order", "id").values_list("id", "external_id", "text", "harm_level", "features")
    )
    feature_columns = list(study.meta.get("feature_columns") or [])
    for *_, features in rows:
        for key in features or {}:
            if key not in feature_columns:
                feature_columns.append(key)
    frame = pd.DataFrame(
        {
            "external_id": [r[1] for r in rows],
            "text": [r[2] for r in rows],
            "harm_level": pd.array([r[3] for r in rows], dtype="Float64").astype(float),
        },
        index=pd.Index([r[0] for r in rows], name="prompt_id"),
    )
    if feature_columns:
        values = np.array(
            [[(r[4] or {}).get(c, np.nan) for c in feature_columns] for r in rows], dtype=float
        ).reshape(len(rows), len(feature_columns))
        frame = pd.concat([frame, pd.DataFrame(values, index=frame.index, columns=feature_columns)], axis=1)
    return frame


def annotators_frame(*, study: Study, annotator_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per annotator, indexed by pk: pseudonym, source_id, status, demographics, traits."""
    queryset = Annotator.objects.filter(study=study).order_by("id")
    if annotator_ids is not None:
        queryset = queryset.filter(id__in=list(annotator_ids))
    rows = list(queryset.values_list("id", "pseudonym", "source_id", "status", "exclusion_reason", "demographics", "traits"))
    demo_columns = list(study.meta.get("demographic_columns") or [])
    trait_columns = list(study.meta.get("factor_columns") or [])
    for row in rows:
        demo_columns += [k for k in row[5] or {} if k not in demo_columns]
        trait_columns += [k for k in row[6] or {} if k not in trait_columns and not isinstance(row[6][k], dict)]
    data = {
        "pseudonym": [r[1] for r in rows],
        "source_id": [r[2] for r in rows],
        "annotator_status": [r[3] for r in rows],
        "exclusion_reason": [r[4] for r in rows],
    }
    for column in demo_columns:
        data[column] = [(r[5] or {}).get(column) for r in rows]
    for column in trait_columns:
        data[column] = np.array([(r[6] or {}).get(column, np.nan) for r in rows], dtype=float)
    frame = pd.DataFrame(data, index=pd.Index([r[0] for r in rows], name="annotator_id"))
    frame.attrs["demographic_columns"] = demo_columns
    frame.attrs["trait_columns"] = trait_columns
    return frame


def rating_rows(*, study: Study, annotator_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Raw prompt ratings as ids: annotator_id, prompt_id, rating, unsure, trial, rt_ms, server_rt_ms."""
    rating = Rating._meta.db_table
    assignment = Assignment._meta.db_table
    annotator = Annotator._meta.db_table
    sql = (
        f"SELECT r.annotator_id, r.prompt_id, r.value, r.unsure, a.position, r.rt_ms, r.server_rt_ms "
        f"FROM {rating} r JOIN {assignment} a ON a.id = r.assignment_id "
        f"JOIN {annotator} n ON n.id = r.annotator_id "
        f"WHERE n.study_id = %s AND r.prompt_id IS NOT NULL"
    )
    params: list = [study.pk]
    if annotator_ids is not None:
        ids = [int(i) for i in annotator_ids]
        if not ids:
            ids = [-1]
        sql += f" AND r.annotator_id IN ({', '.join(['%s'] * len(ids))})"
        params += ids
    sql += " ORDER BY r.annotator_id, a.position"
    chunks = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(100_000):
            chunks.append(np.array(batch, dtype=object))
    columns = ["annotator_id", "prompt_id", "rating", "unsure", "trial", "rt_ms", "server_rt_ms"]
    block = np.concatenate(chunks) if chunks else np.empty((0, len(columns)), dtype=object)
    return pd.DataFrame(
        {
            "annotator_id": block[:, 0].astype(np.int64),
            "prompt_id": block[:, 1].astype(np.int64),
            "rating": pd.array(block[:, 2], dtype="Float64").astype(float),
            "unsure": block[:, 3].astype(bool),
            "trial": block[:, 4].astype(np.int64),
            "rt_ms": pd.array(block[:, 5], dtype="Int64"),
            "server_rt_ms": pd.array(block[:, 6], dtype="Int64"),
        }
    )


def ratings_frame(
    *,
    study: Study,
    annotator_ids: Sequence[int] | None = None,
    traits: bool = True,
    features: bool = True,
    prompts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The long table: one row per (annotator, prompt) rating.

    Columns: `annotator` (pseudonym), `prompt` (external id), `rating` (0–100, NaN when unsure),
    `unsure`, `trial` (display position), `rt_ms` (browser active time), `server_rt_ms`; then,
    if asked, annotator status, demographics and trait scores, then `harm_level` and prompt features.
    """
    rows = rating_rows(study=study, annotator_ids=annotator_ids)
    people = annotators_frame(study=study, annotator_ids=annotator_ids)
    items = prompts if prompts is not None else prompts_frame(study=study)
    frame = pd.DataFrame(
        {
            "annotator": people["pseudonym"].reindex(rows["annotator_id"]).to_numpy(),
            "prompt": items["external_id"].reindex(rows["prompt_id"]).to_numpy(),
            "rating": rows["rating"].to_numpy(),
            "unsure": rows["unsure"].to_numpy(),
            "trial": rows["trial"].to_numpy(),
            "rt_ms": rows["rt_ms"].array,
            "server_rt_ms": rows["server_rt_ms"].array,
        }
    )
    if traits:
        trait_cols = ["annotator_status", *people.attrs["demographic_columns"], *people.attrs["trait_columns"]]
        joined = people[trait_cols].reindex(rows["annotator_id"]).reset_index(drop=True)
        frame = pd.concat([frame, joined], axis=1)
    if features:
        feature_cols = [c for c in items.columns if c not in ("external_id", "text")]
        joined = items[feature_cols].reindex(rows["prompt_id"]).reset_index(drop=True)
        frame = pd.concat([frame, joined], axis=1)
    return frame


def annotator_id_chunks(*, study: Study, size: int) -> Iterator[list[int]]:
    ids = list(Annotator.objects.filter(study=study).order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
