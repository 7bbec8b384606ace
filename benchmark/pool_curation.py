"""A candidate pool in the curation pipeline: its value topics (MiniLM embeddings → k-means → named topics,
renamable), the science `Pool` a selection runs on, and the topics job.

The `values` dimension of a pool's selection is its clustered topics (one-hot per candidate) once topics
exist; before that, the `value_topic_*` features the candidates were uploaded with (e.g. the release's).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from django.db import transaction
from rest_framework import serializers

from config.errors import ApplicationError
from jobs.models import Job
from jobs.params import StrictParams, seed_field
from jobs.registry import JobKind, Progress

from .models import Candidate, CandidatePool, ValueTopic

MAX_TOPIC_NAME = ValueTopic._meta.get_field("name").max_length
MAX_TOPICS = 200
EMBED_BATCH = 512
VALUES_PREFIX = "value_topic_"


def pool_for_study(*, study, pool_id) -> CandidatePool:
    """The study's pool with that id, or a 404 (another study's pool is not found, never shown)."""
    if isinstance(pool_id, bool) or not isinstance(pool_id, int):
        raise ApplicationError("a pool is named by its number", extra={"field": "pool"})
    pool = CandidatePool.objects.filter(pk=pool_id, study=study).first()
    if pool is None:
        raise ApplicationError(f"no candidate pool #{pool_id} in this study", status_code=404, extra={"field": "pool"})
    return pool


def pool_for_params(*, study, pool_id) -> CandidatePool:
    """`pool_for_study` for a job's parameter check: its refusal is the serializer's error on `pool`."""
    try:
        return pool_for_study(study=study, pool_id=pool_id)
    except ApplicationError as exc:
        raise serializers.ValidationError({"pool": exc.message}) from None


# --- value topics ----------------------------------------------------------------------------------


def _embeddings(pool: CandidatePool, progress: Progress | None) -> tuple[list[int], list[str], np.ndarray]:
    """(ids, texts, unit MiniLM embeddings) of the pool's candidates; embeds and stores the missing ones."""
    from .science.predictors.common import embed_texts  # noqa: PLC0415  (torch: only when topics are computed)

    rows = list(pool.candidates.order_by("order", "id").values_list("id", "text", "embedding"))
    missing = [i for i, (_, _, e) in enumerate(rows) if e is None]
    vectors: dict[int, np.ndarray] = {}
    for start in range(0, len(missing), EMBED_BATCH):
        chunk = missing[start : start + EMBED_BATCH]
        if progress:
            progress(0.05 + 0.75 * start / max(len(missing), 1), f"embedding {start:,} of {len(missing):,} texts")
        encoded = embed_texts([rows[i][1] for i in chunk]).astype(np.float32)
        Candidate.objects.bulk_update(
            [Candidate(pk=rows[i][0], embedding=encoded[j].tobytes()) for j, i in enumerate(chunk)],
            ["embedding"],
            batch_size=1000,
        )
        vectors.update({i: encoded[j] for j, i in enumerate(chunk)})
    matrix = np.vstack(
        [vectors[i] if i in vectors else np.frombuffer(bytes(rows[i][2]), dtype=np.float32) for i in range(len(rows))]
    )
    return [r[0] for r in rows], [r[1] for r in rows], matrix


def pool_topics_compute(*, pool: CandidatePool, k: int, seed: int = 0, progress: Progress | None = None) -> dict:
    """Cluster the pool's candidates into `k` value topics (replacing any earlier ones); the summary."""
    from .science.curation.topics import topics_cluster  # noqa: PLC0415

    n = pool.candidates.count()
    if not 2 <= k <= min(MAX_TOPICS, max(n, 2)):
        raise ApplicationError(
            f"K = {k} topics: choose 2 to {min(MAX_TOPICS, n)} for this pool of {n} candidates"
            if n >= 2
            else "the pool needs at least 2 candidates to find topics",
            extra={"field": "k"},
        )
    ids, texts, embeddings = _embeddings(pool, progress)
    if progress:
        progress(0.85, f"clustering {len(ids):,} candidates into {k} topics")
    labels, topics = topics_cluster(embeddings, texts, k, seed=seed)
    with transaction.atomic():
        CandidatePool.objects.select_for_update().filter(pk=pool.pk).first()
        pool.topics.all().delete()
        made = ValueTopic.objects.bulk_create(
            [
                ValueTopic(pool=pool, number=t.number, name=t.name[:MAX_TOPIC_NAME], words=t.words, size=t.size)
                for t in topics
            ]
        )
        by_number = {t.number: t for t in made}
        Candidate.objects.bulk_update(
            [Candidate(pk=pk, topic=by_number[int(label)]) for pk, label in zip(ids, labels)],
            ["topic"],
            batch_size=2000,
        )
        pool.meta = {**(pool.meta or {}), "topics": {"k": k, "seed": seed, "candidates": len(ids)}}
        pool.save(update_fields=["meta", "updated_at"])
    return {"pool": pool.pk, "k": k, "seed": seed, "candidates": len(ids), "topics": [t.name for t in topics]}


def topic_rename(*, topic: ValueTopic, name: str) -> ValueTopic:
    """Rename a topic: 1 to MAX_TOPIC_NAME printable characters, unique within its pool."""
    name = " ".join((name or "").split())
    if not name:
        raise ApplicationError("A topic needs a name.", extra={"field": "name"})
    if len(name) > MAX_TOPIC_NAME:
        raise ApplicationError(f"A topic name has at most {MAX_TOPIC_NAME} characters.", extra={"field": "name"})
    if not name.isprintable():
        raise ApplicationError("A topic name cannot hold control characters.", extra={"field": "name"})
    if ValueTopic.objects.filter(pool_id=topic.pool_id, name=name).exclude(pk=topic.pk).exists():
        raise ApplicationError(f"Another topic of this pool is called {name!r}.", extra={"field": "name"})
    topic.name = name
    topic.save(update_fields=["name"])
    return topic


# --- the pool a selection runs on ------------------------------------------------------------------


def pool_selection_pool(*, pool: CandidatePool):
    """The candidates as a science `Pool` (candidates without a harm level cannot be placed: 400)."""
    from .science.curation import Pool  # noqa: PLC0415
    from .science.curation.pool import FEATURE_DIMENSIONS  # noqa: PLC0415

    rows = list(
        pool.candidates.order_by("order", "id").values_list(
            "external_id", "text", "harm_level", "group", "features", "topic__number"
        )
    )
    if not rows:
        raise ApplicationError("The pool has no candidates to choose from; upload some first.")
    unplaced = [r[0] for r in rows if r[2] is None]
    if unplaced:
        shown = ", ".join(unplaced[:5]) + (" …" if len(unplaced) > 5 else "")
        raise ApplicationError(
            f"{len(unplaced)} candidate(s) have no harm level ({shown}); selection needs one each "
            "(generate graded variants or import harm levels)."
        )
    frame = pd.DataFrame(
        {
            "external_id": [r[0] for r in rows],
            "text": [r[1] for r in rows],
            "harm_level": np.array([r[2] for r in rows], dtype=np.float64),
            "group": [r[3] or r[0] for r in rows],
        }
    )
    n_topics = pool.topics.count()
    prefixes = [p for name, p in FEATURE_DIMENSIONS.items() if not (name == "values" and n_topics)]
    columns = sorted({k for r in rows for k in (r[4] or {}) if k.startswith(tuple(prefixes))})
    ordered = [c for prefix in prefixes for c in columns if c.startswith(prefix)]
    blocks = {c: np.array([float((r[4] or {}).get(c) or 0.0) for r in rows]) for c in ordered}
    if n_topics:
        topic = np.array([-1 if r[5] is None else r[5] for r in rows])
        blocks.update({f"{VALUES_PREFIX}{t}": (topic == t).astype(np.float64) for t in range(n_topics)})
        ordered += [f"{VALUES_PREFIX}{t}" for t in range(n_topics)]
    frame = pd.concat([frame, pd.DataFrame(blocks, index=frame.index)], axis=1)
    return Pool(frame[["external_id", "text", "harm_level", "group", *ordered]], ordered)


def pool_report_named(*, pool: CandidatePool, report: dict) -> dict:
    """The selection report with the pool's topic names as the `values` labels, and the pool named."""
    names = dict(pool.topics.values_list("number", "name"))
    block = report.get("distributions", {}).get("values")
    if names and block:
        block["labels"] = [names.get(int(label), label) if str(label).isdigit() else label for label in block["labels"]]
    report["pool"] = {"id": pool.pk, "name": pool.name}
    return report


def pool_prompts(*, pool: CandidatePool, chosen: list[str]) -> list[Candidate]:
    """The chosen candidates in pool order, ready to copy as a study's prompts: each one's seed group goes
    into its features (`group`, which a study's own selection reads) and, once the pool has topics, its
    topic replaces the uploaded `value_topic_*` features (one-hot), as the selection saw it."""
    has_topics = pool.topics.exists()
    candidates = list(pool.candidates.filter(external_id__in=chosen).select_related("topic").order_by("order", "id"))
    for c in candidates:
        features = dict(c.features or {})
        if has_topics:
            features = {k: v for k, v in features.items() if not k.startswith(VALUES_PREFIX)}
            if c.topic is not None:
                features[f"{VALUES_PREFIX}{c.topic.number}"] = 1.0
        features["group"] = c.group or c.external_id
        c.features = features
    return candidates


# --- the topics job --------------------------------------------------------------------------------


class PoolTopicsParams(StrictParams):
    pool = serializers.IntegerField(min_value=1)
    k = serializers.IntegerField(min_value=2, max_value=MAX_TOPICS, default=10)
    seed = seed_field()

    def validate(self, attrs):
        study = self.context.get("study")
        if study is not None:
            pool = pool_for_params(study=study, pool_id=attrs["pool"])
            n = pool.candidates.count()
            if attrs["k"] > n:
                raise serializers.ValidationError({"k": f"K = {attrs['k']} is more than the pool's {n} candidates"})
        return attrs


def pool_topics_run(job: Job, progress: Progress) -> dict:
    pool = pool_for_study(study=job.study, pool_id=job.params["pool"])
    return pool_topics_compute(pool=pool, k=job.params["k"], seed=job.params["seed"], progress=progress)


POOL_TOPICS = JobKind(
    name="pool_topics", label="Value topics of a pool", params=PoolTopicsParams, handler=pool_topics_run
)
