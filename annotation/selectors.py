"""Reads. `ratings_frame` is the one long DataFrame that analyses, benchmarks and exports start from."""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from django.core.cache import cache as shared_cache  # `cache` is functools' here
from django.db import connection, connections, router
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncDay, TruncHour, TruncMinute

from . import surveys
from .models import Annotator, Assignment, Prompt, Rating, RatingRevision, Study
from .rows import column_count, columns_sql, fetchone, instance
from .study_cache import ENTRY_SECONDS, prompt_versions

logger = logging.getLogger(__name__)


def annotator_in_study(*, annotator_id, slug: str) -> Annotator | None:
    """The annotator with its study loaded, if it belongs to the study with this slug (one SQL query:
    every page of the annotator's path starts here, so it skips the ORM's query building)."""
    try:
        annotator_id = int(annotator_id)
    except (TypeError, ValueError):
        return None
    if not 0 < annotator_id < 2**63:  # a tampered session holds no such id (and no bigint could)
        return None
    row = fetchone(_annotator_in_study_sql(connection.vendor), [annotator_id, slug])
    if row is None:
        return None
    split = column_count(Annotator)
    annotator = instance(Annotator, row[:split])
    annotator.study = instance(Study, row[split:])
    return annotator


@cache
def _annotator_in_study_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    return (
        f"SELECT {columns_sql(Annotator, 'n')}, {columns_sql(Study, 's')} FROM {quote(Annotator._meta.db_table)} n "
        f"JOIN {quote(Study._meta.db_table)} s ON s.id = n.study_id WHERE n.id = %s AND s.slug = %s"
    )


def prompts_frame(*, study: Study) -> pd.DataFrame:
    """One row per prompt, indexed by prompt pk: external_id, text, harm_level, then feature columns."""
    rows = list(
        Prompt.objects.filter(study=study)
        .order_by("order", "id")
        .values_list("id", "external_id", "text", "harm_level", "features")
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
        values = np.array([[(r[4] or {}).get(c, np.nan) for c in feature_columns] for r in rows], dtype=float).reshape(
            len(rows), len(feature_columns)
        )
        frame = pd.concat([frame, pd.DataFrame(values, index=frame.index, columns=feature_columns)], axis=1)
    return frame


def _has_factor_inputs(traits: dict | None, inputs: Sequence[str]) -> bool:
    return bool(traits) and all(isinstance(traits.get(name), (int, float)) for name in inputs)


def _factor_scores(people: Sequence[tuple[int, dict]], inputs: Sequence[str]) -> pd.DataFrame:
    """Factor_1..3 of (pk, traits) pairs that all have the inputs; no rows if they cannot be computed."""
    index = pd.Index([pk for pk, _ in people], name="annotator_id")
    frame = pd.DataFrame([[traits[n] for n in inputs] for _, traits in people], index=index, columns=list(inputs))
    if len(people) >= 2:
        try:
            return surveys.factor_scores(frame)
        except ValueError:  # zero spread on some subscale (e.g. two identical respondents)
            pass
    return pd.DataFrame(np.empty((0, len(surveys.FACTOR_COLUMNS))), index=index[:0], columns=surveys.FACTOR_COLUMNS)


def study_factor_scores(*, study: Study) -> pd.DataFrame:
    """Factor_1..3 of every annotator of the study who has all 21 subscale means, indexed by pk.

    Computed when read, from the subscale means the questionnaires stored in `Annotator.traits`: the
    release z-scored each mean within its own sample before applying the loadings, and this does the same
    within the study's sample (everyone with all 21 means, whatever their status), so scores move a
    little as people join. Nothing is written, so finishing a questionnaire touches no one else's row.
    With fewer than two such annotators, or a subscale nobody varies on, there are no rows.
    """
    inputs = surveys.factor_inputs()
    queryset = Annotator.objects.filter(study=study, traits__has_keys=list(inputs)).order_by("id")
    people = [(pk, t) for pk, t in queryset.values_list("id", "traits") if _has_factor_inputs(t, inputs)]
    return _factor_scores(people, inputs)


def annotators_frame(*, study: Study, annotator_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per annotator, indexed by pk: pseudonym, source_id, status, demographics, traits.

    Traits are the stored ones (subscale means, or an imported release's factor scores) with, for each
    annotator who answered the questionnaires, Factor_1..3 from `study_factor_scores` (always over the
    whole study, also when `annotator_ids` picks a few).
    """
    queryset = Annotator.objects.filter(study=study).order_by("id")
    if annotator_ids is not None:
        queryset = queryset.filter(id__in=list(annotator_ids))
    rows = list(
        queryset.values_list("id", "pseudonym", "source_id", "status", "exclusion_reason", "demographics", "traits")
    )
    demo_columns = list(study.meta.get("demographic_columns") or [])
    trait_columns = list(study.meta.get("factor_columns") or [])
    inputs = surveys.factor_inputs()
    answered = [_has_factor_inputs(r[6], inputs) for r in rows]
    if any(answered):
        if annotator_ids is None:
            factors = _factor_scores([(r[0], r[6]) for r, ok in zip(rows, answered) if ok], inputs)
        else:
            factors = study_factor_scores(study=study)
        by_id = factors.to_dict("index")
        for i, ok in enumerate(answered):
            if ok:  # scores are derived: any stored by an earlier version are replaced
                row = rows[i]
                kept = {k: v for k, v in row[6].items() if k not in surveys.FACTOR_COLUMNS}
                rows[i] = (*row[:6], {**kept, **by_id.get(row[0], {})})
        if len(factors):
            trait_columns += [c for c in surveys.FACTOR_COLUMNS if c not in trait_columns]
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


RATING_ROW_COLUMNS = ["annotator_id", "prompt_id", "rating", "unsure", "trial", "rt_ms", "server_rt_ms", "revised"]


def _rating_rows_sql(study: Study, annotator_ids: Sequence[int] | None) -> tuple[str, list]:
    rating = Rating._meta.db_table
    assignment = Assignment._meta.db_table
    annotator = Annotator._meta.db_table
    revision = RatingRevision._meta.db_table
    sql = (
        f"SELECT r.annotator_id, r.prompt_id, r.value, r.unsure, a.position, r.rt_ms, r.server_rt_ms, "
        f"EXISTS (SELECT 1 FROM {revision} v WHERE v.rating_id = r.id) "
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
    return sql, params


def _rating_rows_postgresql(sql: str, params: list, db) -> pd.DataFrame:
    """The query through COPY … TO STDOUT, parsed by pyarrow: no Python object per cell. Logged as Django logs
    its own queries (DEBUG, or a test capturing them), which a raw cursor's COPY is not."""

    sink = io.BytesIO()
    start = time.monotonic()
    with db.cursor() as cursor:
        raw = cursor.cursor
        # PostgreSQL 12+ prints floats exactly (shortest round-trip) unless this was turned down.
        raw.execute("SELECT current_setting('extra_float_digits')::int")
        digits = raw.fetchone()[0]
        if digits < 1:
            raw.execute("SET extra_float_digits = 1")
        try:
            with raw.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
                for block in copy:
                    sink.write(block)
        finally:
            if digits < 1:
                raw.execute(f"SET extra_float_digits = {int(digits)}")
    if db.queries_logged:
        db.queries_log.append(
            {"sql": f"COPY ({sql}) TO STDOUT -- {params!r}", "time": f"{time.monotonic() - start:.3f}"}
        )
    types = [pa.int64(), pa.int64(), pa.float64(), pa.bool_(), pa.int64(), pa.int64(), pa.int64(), pa.bool_()]
    if sink.tell() == 0:  # pyarrow refuses an empty file
        table = pa.table({name: pa.array([], type=t) for name, t in zip(RATING_ROW_COLUMNS, types)})
    else:
        table = pa_csv.read_csv(
            pa.py_buffer(sink.getbuffer()),
            read_options=pa_csv.ReadOptions(column_names=RATING_ROW_COLUMNS),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict(zip(RATING_ROW_COLUMNS, types)),
                true_values=["t"],
                false_values=["f"],
                null_values=[""],
                strings_can_be_null=True,
            ),
        )

    def column(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    def nullable_int(name: str):
        chunked = table.column(name)
        values = chunked.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        mask = chunked.is_null().to_numpy(zero_copy_only=False)
        return pd.arrays.IntegerArray(values, mask)

    return pd.DataFrame(
        {
            "annotator_id": column("annotator_id").astype(np.int64, copy=False),
            "prompt_id": column("prompt_id").astype(np.int64, copy=False),
            "rating": column("rating").astype(float, copy=False),  # nulls become NaN
            "unsure": column("unsure").astype(bool, copy=False),
            "trial": column("trial").astype(np.int64, copy=False),
            "rt_ms": nullable_int("rt_ms"),
            "server_rt_ms": nullable_int("server_rt_ms"),
            "revised": column("revised").astype(bool, copy=False),
        }
    )


def rating_rows(*, study: Study, annotator_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Raw prompt ratings as ids: annotator_id, prompt_id, rating, unsure, trial, rt_ms, server_rt_ms, revised
    (the annotator changed this answer once from the next card; `rating` is the final answer)."""
    sql, params = _rating_rows_sql(study, annotator_ids)
    # Raw SQL is not routed: ask the router, so that an export or analysis job reads these from the replica
    # (config/db_router.py).
    db = connections[router.db_for_read(Rating)]
    if db.vendor == "postgresql":
        return _rating_rows_postgresql(sql, params, db)
    chunks = []
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(100_000):
            chunks.append(np.array(batch, dtype=object))
    columns = RATING_ROW_COLUMNS
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
            "revised": block[:, 7].astype(bool),
        }
    )


@dataclass
class RatingsParts:
    """`ratings_frame` before its joins, for writers that render each annotator and prompt once.

    `base` holds the eight per-rating columns; `annotator_rows` and `prompt_rows` give, for each
    rating, its row position in `people` and `items` (-1 if absent).
    """

    rows: pd.DataFrame
    people: pd.DataFrame
    items: pd.DataFrame
    base: pd.DataFrame
    trait_columns: list[str]
    feature_columns: list[str]

    @property
    def annotator_rows(self) -> np.ndarray:
        return self.people.index.get_indexer(self.rows["annotator_id"])

    @property
    def prompt_rows(self) -> np.ndarray:
        return self.items.index.get_indexer(self.rows["prompt_id"])

    def frame(
        self,
        *,
        traits: bool | Sequence[str] = True,
        features: bool | Sequence[str] = True,
        categories: Sequence[str] = (),
    ) -> pd.DataFrame:
        """The long frame: the per-rating columns, then the annotator columns (`trait_columns`) and the prompt
        columns (`feature_columns`), all of them (True), none (False) or those of them named (a list).
        A reader that needs few of the 62 prompt features asks for those alone: at 1.5 million ratings each
        float column joined is 12 MB. Annotator columns named in `categories` are joined as pandas
        categoricals: a one-byte code per rating instead of a 28 MB column of text."""
        frame = self.base
        wanted_traits = _chosen(self.trait_columns, traits)
        if wanted_traits:
            people = self.people[wanted_traits]
            coded = [c for c in wanted_traits if c in set(categories)]
            if coded:
                people = people.astype(dict.fromkeys(coded, "category"))
            joined = people.reindex(self.rows["annotator_id"]).reset_index(drop=True)
            frame = pd.concat([frame, joined], axis=1)
        wanted_features = _chosen(self.feature_columns, features)
        if wanted_features:
            joined = self.items[wanted_features].reindex(self.rows["prompt_id"]).reset_index(drop=True)
            frame = pd.concat([frame, joined], axis=1)
        return frame


def _chosen(columns: list[str], asked: bool | Sequence[str]) -> list[str]:
    if isinstance(asked, bool):
        return list(columns) if asked else []
    named = set(asked)
    return [c for c in columns if c in named]


def ratings_parts(
    *, study: Study, annotator_ids: Sequence[int] | None = None, prompts: pd.DataFrame | None = None
) -> RatingsParts:
    rows = rating_rows(study=study, annotator_ids=annotator_ids)
    people = annotators_frame(study=study, annotator_ids=annotator_ids)
    items = prompts if prompts is not None else prompts_frame(study=study)
    return ratings_parts_of(rows, people, items)


def ratings_parts_of(rows: pd.DataFrame, people: pd.DataFrame, items: pd.DataFrame) -> RatingsParts:
    """`ratings_parts` of rows read already: `rating_rows`, `annotators_frame` and `prompts_frame` (or frames of
    the same shape, such as a benchmark's synthetic study)."""
    base = pd.DataFrame(
        {
            "annotator": people["pseudonym"].reindex(rows["annotator_id"]).to_numpy(),
            "prompt": items["external_id"].reindex(rows["prompt_id"]).to_numpy(),
            "rating": rows["rating"].to_numpy(),
            "unsure": rows["unsure"].to_numpy(),
            "trial": rows["trial"].to_numpy(),
            "rt_ms": rows["rt_ms"].array,
            "server_rt_ms": rows["server_rt_ms"].array,
            "revised": rows["revised"].to_numpy(),
        }
    )
    return RatingsParts(
        rows=rows,
        people=people,
        items=items,
        base=base,
        trait_columns=["annotator_status", *people.attrs["demographic_columns"], *people.attrs["trait_columns"]],
        feature_columns=[c for c in items.columns if c not in ("external_id", "text")],
    )


def ratings_frame(
    *,
    study: Study,
    annotator_ids: Sequence[int] | None = None,
    traits: bool | Sequence[str] = True,
    features: bool | Sequence[str] = True,
    prompts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The long table: one row per (annotator, prompt) rating.

    Columns: `annotator` (pseudonym), `prompt` (external id), `rating` (0–100, NaN when unsure),
    `unsure`, `trial` (display position), `rt_ms` (browser active time), `server_rt_ms`, `revised` (the
    annotator changed the answer once, from the next card: `rating` is the final one); then,
    if asked, annotator status, demographics and trait scores, then `harm_level` and prompt features (`traits`
    and `features`: all, none, or a list of the columns wanted; see `RatingsParts.frame`).
    """
    parts = ratings_parts(study=study, annotator_ids=annotator_ids, prompts=prompts)
    return parts.frame(traits=traits, features=features)


def annotator_id_chunks(*, study: Study, size: int) -> Iterator[list[int]]:
    ids = list(Annotator.objects.filter(study=study).order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


# ----------------------------------------------------------------------------- rating tallies
#
# The counters and the timeline of the study page and the collection dashboard add up one tally per
# prompt, each cached under the version of that prompt's ratings (annotation.study_cache): a new rating
# makes one prompt's tally stale, and the next request recounts that prompt's ratings alone (its index)
# instead of the study's 1.5 million. A tally keeps the prompt's ratings per minute, hour and day, as far
# as its own time span allows the study's timeline to use them (TIMELINE_BINS).

BIN_SECONDS = {"minute": 60, "hour": 3_600, "day": 86_400}


def _tallies_count(prompt_ids: list[int]) -> dict[int, dict]:
    """Tallies of these prompts' ratings, one query whatever their number: {prompt id: {"n", "unsure",
    "first", "last" (POSIX seconds, None without ratings), "minute", "hour", "day" ({bin start: ratings},
    None where the prompt's span is too long for the study to bin that finely)}}."""
    tallies = {
        pid: {"n": 0, "unsure": 0, "first": None, "last": None, "minute": {}, "hour": {}, "day": {}}
        for pid in prompt_ids
    }
    per_minute = list(
        Rating.objects.filter(prompt_id__in=prompt_ids)
        .annotate(start=TruncMinute("created_at"))
        .values_list("prompt_id", "start")
        .annotate(
            n=Count("id"), unsure=Count("id", filter=Q(unsure=True)), first=Min("created_at"), last=Max("created_at")
        )
        .order_by()
    )
    for pid, _, n, unsure, first, last in per_minute:
        tally = tallies[pid]
        tally["n"] += n
        tally["unsure"] += unsure
        tally["first"] = min(first.timestamp(), tally["first"] or math.inf)
        tally["last"] = max(last.timestamp(), tally["last"] or -math.inf)
    for tally in tallies.values():
        if tally["n"]:
            span = timedelta(seconds=tally["last"] - tally["first"])
            for limit, name, _ in TIMELINE_BINS:
                if limit is not None and span > limit:
                    tally[name] = None  # the study spans at least as long: it never bins this finely
    for pid, start, n, *_ in per_minute:
        minute = int(start.timestamp())
        tally = tallies[pid]
        for name, seconds in BIN_SECONDS.items():
            if tally[name] is not None:
                start_of_bin = minute - minute % seconds  # UTC: whole hours and days since the epoch
                tally[name][start_of_bin] = tally[name].get(start_of_bin, 0) + n
    return tallies


def rating_tallies(*, study: Study) -> list[tuple[str, dict]]:
    """(external id, tally) of each of the study's prompts, in the prompts' order: from the cache, the
    stale ones recounted (see above). Three round trips to the cache, one or two queries."""
    prompts = list(Prompt.objects.filter(study=study).values_list("id", "external_id"))
    ids = [pid for pid, _ in prompts]
    try:
        ratings_version, versions = prompt_versions(study.pk, ids)
        keys = {pid: f"tally:{study.pk}:{ratings_version}:{pid}:{v}" for pid, v in zip(ids, versions)}
        cached = shared_cache.get_many(list(keys.values()))
    except Exception:
        logger.warning("cache unavailable: study %s counted uncached", study.pk, exc_info=True)
        keys, cached = {}, {}
    tallies = {pid: cached[keys[pid]] for pid in ids if keys.get(pid) in cached}
    stale = [pid for pid in ids if pid not in tallies]
    if stale:
        counted = _tallies_count(stale)
        tallies.update(counted)
        if keys:
            try:
                shared_cache.set_many({keys[pid]: counted[pid] for pid in stale}, ENTRY_SECONDS)
            except Exception:
                logger.warning("cache unavailable: study %s tallies not stored", study.pk, exc_info=True)
    return [(external_id, tallies[pid]) for pid, external_id in prompts]


def _by_status(study: Study) -> dict[str, int]:
    return dict(
        Annotator.objects.filter(study=study).values("status").annotate(n=Count("id")).values_list("status", "n")
    )


def study_counts(*, study: Study, tallies: list[tuple[str, dict]] | None = None) -> dict:
    """Ratings given (Unsure included), how many were Unsure, and annotators by status (the ratings from
    the prompts' cached tallies)."""
    tallies = rating_tallies(study=study) if tallies is None else tallies
    return {
        "n_ratings": sum(t["n"] for _, t in tallies),
        "n_unsure": sum(t["unsure"] for _, t in tallies),
        "by_status": _by_status(study),
    }


# The collection timeline's bins: the finest that keeps a long study to a few hundred points.
TIMELINE_BINS = (
    (timedelta(hours=6), "minute", TruncMinute),
    (timedelta(days=14), "hour", TruncHour),
    (None, "day", TruncDay),
)


def timeline_bin(span: timedelta) -> tuple[str, type]:
    """The bin (name, truncation) for ratings spread over `span`: minutes up to 6 hours, hours up to
    two weeks, days beyond (a study rated in six minutes is not one point at the hour's start)."""
    for limit, name, trunc in TIMELINE_BINS:
        if limit is None or span <= limit:
            return name, trunc
    raise AssertionError("unreachable")


def ratings_over_time(*, study: Study, tallies: list[tuple[str, dict]] | None = None) -> dict:
    """Ratings per time bin and their running total: {"bin": "minute" | "hour" | "day", "rows": [{"start":
    ISO 8601 UTC of the bin's start, "ratings", "cumulative"}]}, oldest first (from the prompts' tallies)."""
    tallies = [t for _, t in (rating_tallies(study=study) if tallies is None else tallies) if t["n"]]
    if not tallies:
        return {"bin": "minute", "rows": []}
    span = max(t["last"] for t in tallies) - min(t["first"] for t in tallies)
    name, _ = timeline_bin(timedelta(seconds=span))
    counts: dict[int, int] = {}
    for tally in tallies:
        for start, n in tally[name].items():
            counts[start] = counts.get(start, 0) + n
    rows, total = [], 0
    for start in sorted(counts):
        total += counts[start]
        stamp = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append({"start": stamp, "ratings": counts[start], "cumulative": total})
    return {"bin": name, "rows": rows}


def study_overview(*, study: Study) -> dict:
    """Live collection figures: progress over time, ratings per prompt, annotators by status, added up
    from the prompts' cached tallies (cheap enough to poll, and a new rating recounts one prompt)."""
    tallies = rating_tallies(study=study)
    timeline = ratings_over_time(study=study, tallies=tallies)
    per_prompt = {external_id: tally["n"] for external_id, tally in tallies}
    target = None
    if study.target_ratings_per_prompt:
        target = study.target_ratings_per_prompt * len(per_prompt)
    elif study.max_annotators:
        target = study.max_annotators * len(per_prompt)
    return {
        **study_counts(study=study, tallies=tallies),
        "target_ratings": target,
        "over_time": timeline["rows"],
        "time_bin": timeline["bin"],
        "per_prompt": per_prompt,
    }
