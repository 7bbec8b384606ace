"""Candidate pools (issue 12): the study's pools, one pool's candidates (level, features, tree; filtered by
level and group, paginated), uploads of candidates and of trees/features, value topics (computed by a job,
renamed in place) and a selection from the pool (a `selection` job whose result shows on the selection page).

A pool is the study's: the study's access decides (annotation.access; another study's pool is a 404).
"""

from __future__ import annotations

import math

from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.access import study_view
from annotation.services.prompt_bank import FORMATS, BankProblems
from annotation.services.uploads import MAX_UPLOAD_BYTES
from config.errors import ApplicationError, error_response
from jobs.models import Job
from jobs.services import job_create

from .. import figures
from ..models import Candidate, CandidatePool, ValueTopic
from ..pool_curation import topic_rename
from ..pools import MAX_POOL_CANDIDATES, CandidateProblems, pool_annotations_upload, pool_candidates_upload, pool_create
from .dashboards import _tree_context, feature_label
from .selection import selection_pilot_params

PAGE_SIZE = 50
# The feature plots read at most this many of the listed candidates (see _plot_sample).
PLOT_SAMPLE = 2000
LEVELS = [f"{i / 10:.1f}" for i in range(11)]


def _pool_for(study, pool_id: int) -> CandidatePool:
    return get_object_or_404(CandidatePool, pk=pool_id, study=study)


@require_POST
@study_view("edit")
def pool_create_view(request, study):
    """Create a pool and go to it."""
    try:
        pool = pool_create(
            study=study,
            name=request.POST.get("name", ""),
            description=request.POST.get("description", ""),
            user=request.user,
        )
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return redirect("benchmark:pool_detail", slug=study.slug, pool_id=pool.pk)


@require_GET
@study_view("view")
def pool_list(request, study):
    """The study's pools, and (for editors) the form to create one."""
    pools = list(study.candidate_pools.order_by("-created_at", "-id"))
    counts = {
        p["pool"]: p["n"]
        for p in Candidate.objects.filter(pool__study=study).values("pool").order_by().annotate(n=Count("id"))
    }
    for pool in pools:
        pool.n_candidates = counts.get(pool.pk, 0)
    return render(request, "benchmark/pools.html", {"study": study, "pools": pools})


def _filters(request, pool) -> tuple[dict, dict]:
    """(the queryset filter, the chosen values) from ?level=0.3&group=g; a bad value is a 400."""
    level = request.GET.get("level", "").strip()
    group = request.GET.get("group", "").strip()
    topic = request.GET.get("topic", "").strip()
    query: dict = {}
    if level == "none":
        query["harm_level__isnull"] = True
    elif level:
        try:
            value = float(level)
        except ValueError:
            value = math.nan
        if not 0 <= value <= 1:
            raise ApplicationError(f"level must be a harm level 0–1 or 'none' (got {level[:20]!r})")
        query["harm_level__gte"], query["harm_level__lt"] = value - 0.05, value + 0.05
    if group:
        query["group"] = group
    if topic:
        if not topic.isdigit():
            raise ApplicationError(f"topic must be a topic number (got {topic[:20]!r})")
        query["topic__number"] = int(topic)
    return query, {"level": level, "group": group, "topic": topic}


def _feature_totals(listed) -> dict[str, float]:
    """Sum of |value| per feature key over the listed candidates, added up by the database (a 60,000-candidate
    pool's features are not read into Python for the plots)."""
    ids_sql, params = listed.order_by().values("id").query.sql_with_params()
    table = Candidate._meta.db_table
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT e.key, SUM(ABS((e.value)::text::float)) FROM {table} c "
            f"CROSS JOIN LATERAL jsonb_each(c.features) e "
            f"WHERE c.id IN ({ids_sql}) AND jsonb_typeof(e.value) = 'number' GROUP BY e.key"
        )
    else:
        sql = (
            f"SELECT j.key, SUM(ABS(j.value)) FROM {table} c, json_each(c.features) j "
            f"WHERE c.id IN ({ids_sql}) AND j.type IN ('integer', 'real') GROUP BY j.key"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {key: float(total or 0.0) for key, total in cursor.fetchall()}


def _plot_sample(listed) -> tuple[object, int, int]:
    """(the candidates the feature plots read, how many, of how many listed): all of them up to PLOT_SAMPLE,
    else every n-th by id (deterministic), whose shares are means that a sample of PLOT_SAMPLE estimates
    to about a percentage point."""
    ids = list(listed.order_by("id").values_list("id", flat=True))
    if len(ids) <= PLOT_SAMPLE:
        return listed, len(ids), len(ids)
    step = len(ids) / PLOT_SAMPLE
    sample = [ids[int(i * step)] for i in range(PLOT_SAMPLE)]
    return Candidate.objects.filter(pk__in=sample), len(sample), len(ids)


def _distributions(listed, topics: list[ValueTopic]) -> dict:
    """Mean share per action / effect / value category over the listed candidates (absolute values, as the
    selection reads them; with topics, the share of candidates in each), for the features plots."""
    out = {}
    totals = _feature_totals(listed)
    for name, prefix in (("actions", "action_"), ("effects", "effect_"), ("values", "value_topic_")):
        if name == "values" and topics:
            counts = dict(listed.order_by().values_list("topic__number").annotate(n=Count("id")))
            n = max(sum(counts.values()), 1)
            out[name] = ([t.name for t in topics], [counts.get(t.number, 0) / n for t in topics])
            continue
        mine = {k: v for k, v in totals.items() if k.startswith(prefix) and v}
        whole = sum(mine.values())
        if whole > 0:
            keys = sorted(mine)
            out[name] = ([feature_label(k) for k in keys], [mine[k] / whole for k in keys])
    return out


def _candidate_rows(page, topics_by_number) -> list[dict]:
    rows = []
    for c in page:
        features = c["features"] or {}
        best = {}
        for prefix in ("action_", "effect_", "value_topic_"):
            shares = {k: v for k, v in features.items() if k.startswith(prefix) and v}
            if shares:
                key = max(shares, key=lambda k: abs(shares[k]))
                best[prefix] = f"{feature_label(key).split(': ', 1)[-1]} ({abs(shares[key]):.2f})"
        rows.append(
            {
                **c,
                "top_action": best.get("action_", ""),
                "top_effect": best.get("effect_", ""),
                # the clustered topic once there are topics, else the largest uploaded value-topic feature
                "topic_name": topics_by_number.get(c["topic__number"], "") or best.get("value_topic_", ""),
            }
        )
    return rows


def _pool_context(request, study, pool) -> dict:
    query, chosen = _filters(request, pool)
    topics = list(pool.topics.order_by("number"))
    listed = pool.candidates.filter(**query).order_by("order", "id")
    fields = ("id", "external_id", "text", "harm_level", "group", "source", "features", "topic__number")
    page = Paginator(listed.values(*fields), PAGE_SIZE).get_page(request.GET.get("page"))
    sampled, n_sampled, n_listed = _plot_sample(listed)
    distributions = _distributions(sampled, topics)
    plots = [
        {
            "id": f"pool-{name}",
            "figure": figures.to_json(
                figures.grouped_bar_figure(
                    labels,
                    {"share": shares},
                    f"{name.capitalize()} of the listed candidates"
                    + (f" (every {n_listed / n_sampled:.0f}th of {n_listed:,})" if n_sampled < n_listed else ""),
                    axis="share",
                )
            ),
        }
        for name, (labels, shares) in distributions.items()
    ]
    histogram = [0] * 11
    levels = (
        pool.candidates.exclude(harm_level__isnull=True).order_by().values_list("harm_level").annotate(n=Count("id"))
    )
    for value, n in levels:
        histogram[min(10, max(0, round(value * 10)))] += n
    return {
        "study": study,
        "pool": pool,
        "topics": topics,
        "page": page,
        "rows": _candidate_rows(page, {t.number: t.name for t in topics}),
        "filters": chosen,
        "query_string": "&".join(f"{k}={v}" for k, v in chosen.items() if v),
        "levels": LEVELS,
        "groups": list(
            pool.candidates.exclude(group="").values_list("group", flat=True).distinct().order_by("group")[:500]
        ),
        "n_candidates": pool.candidates.count(),
        "n_unleveled": pool.candidates.filter(harm_level__isnull=True).count(),
        "n_with_tree": pool.candidates.exclude(harm_benefit_tree__isnull=True).count(),
        "level_counts": list(zip(LEVELS, histogram)),
        "plots": plots,
        "formats": FORMATS,
        "max_mb": MAX_UPLOAD_BYTES // 2**20,
        "max_candidates": MAX_POOL_CANDIDATES,
        "topics_running": _pool_job_running(study, pool, "pool_topics"),
        "selection_running": _pool_job_running(study, pool, "selection"),
        "selections": Job.objects.filter(study=study, kind="selection", params__pool=pool.pk).order_by("-created_at")[
            :10
        ],
    }


def _pool_job_running(study, pool, kind: str) -> Job | None:
    running = [Job.Status.QUEUED, Job.Status.RUNNING]
    return Job.objects.filter(study=study, kind=kind, status__in=running, params__pool=pool.pk).first()


@require_GET
@study_view("view")
def pool_detail(request, study, pool_id: int):
    """One pool: its candidates (filter by level, group, topic; paginated), features, topics and forms."""
    pool = _pool_for(study, pool_id)
    try:
        context = _pool_context(request, study, pool)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx and request.headers.get("HX-Target") == "pool-candidates":
        return render(request, "benchmark/_pool_candidates.html", context)
    return render(request, "benchmark/pool.html", context)


@require_GET
@study_view("view")
def candidate_detail(request, study, pool_id: int, candidate_id: int):
    """One candidate: text, level, group, features and its harm-benefit tree."""
    pool = _pool_for(study, pool_id)
    candidate = get_object_or_404(pool.candidates.select_related("topic", "seed"), pk=candidate_id)
    features = sorted(
        ((feature_label(k), v) for k, v in (candidate.features or {}).items() if v), key=lambda kv: -abs(kv[1])
    )[:30]
    context = {
        "study": study,
        "pool": pool,
        "candidate": candidate,
        "features": features,
        **_tree_context(candidate.harm_benefit_tree),
    }
    return render(request, "benchmark/pool_candidate.html", context)


def _upload_result(request, study, pool, *, added: int | None = None, bank=None, problems=None, what: str, status=200):
    context = {"study": study, "pool": pool, "added": added, "bank": bank, "problems": problems, "what": what}
    if request.htmx:
        response = render(request, "benchmark/_pool_upload_result.html", context, status=status)
        if status >= 400:
            response["HX-Retarget"] = f"#pool-{what}-result"
            response["HX-Reswap"] = "innerHTML"
        return response
    if status < 400:
        return redirect("benchmark:pool_detail", slug=study.slug, pool_id=pool.pk)
    return render(request, "benchmark/pool_upload.html", context, status=status)


@require_POST
@study_view("edit")
def pool_upload(request, study, pool_id: int):
    """Add the candidates of an uploaded CSV / JSON-lines / release prompts.csv, all or nothing."""
    pool = _pool_for(study, pool_id)
    try:
        bank = pool_candidates_upload(
            pool=pool, upload=request.FILES.get("file"), fmt=request.POST.get("format", "auto")
        )
    except BankProblems as exc:
        return _upload_result(request, study, pool, bank=exc.bank, what="candidates", status=400)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return _upload_result(request, study, pool, added=len(bank.rows), bank=bank, what="candidates")


@require_POST
@study_view("edit")
def pool_annotations(request, study, pool_id: int):
    """Import harm-benefit trees, features and harm levels for the pool's candidates from a file."""
    pool = _pool_for(study, pool_id)
    try:
        changed = pool_annotations_upload(pool=pool, upload=request.FILES.get("file"))
    except CandidateProblems as exc:
        return _upload_result(request, study, pool, problems=exc.extra["problems"], what="annotations", status=400)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return _upload_result(request, study, pool, added=changed, what="annotations")


def _integer(request, name: str, default: str) -> int:
    raw = request.POST.get(name, "").strip() or default
    try:
        return int(raw)
    except ValueError:
        raise ApplicationError(f"{name.replace('_', ' ')} must be a whole number (got {raw[:20]!r})") from None


@require_POST
@study_view("edit")
def pool_topics_start(request, study, pool_id: int):
    """Start the job that embeds the candidates and clusters them into K value topics."""
    pool = _pool_for(study, pool_id)
    try:
        params = {"pool": pool.pk, "k": _integer(request, "k", "10"), "seed": _integer(request, "seed", "0")}
        job = job_create(kind="pool_topics", study=study, params=params, user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "jobs/_job_card.html", {"job": job})
    return redirect("benchmark:pool_detail", slug=study.slug, pool_id=pool.pk)


@require_POST
@study_view("edit")
def topic_rename_view(request, study, pool_id: int, number: int):
    """Rename a value topic (htmx: answers the topic's row)."""
    pool = _pool_for(study, pool_id)
    topic = get_object_or_404(pool.topics, number=number)
    try:
        topic = topic_rename(topic=topic, name=request.POST.get("name", ""))
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(
            request,
            "benchmark/_pool_topic.html",
            {"study": study, "pool": pool, "topic": topic, "saved": True, "can_edit": True},
        )
    return redirect("benchmark:pool_detail", slug=study.slug, pool_id=pool.pk)


@require_POST
@study_view("edit")
def pool_select(request, study, pool_id: int):
    """Start a selection job over the pool's candidates; its result shows on the study's selection page."""
    pool = _pool_for(study, pool_id)
    try:
        params = {
            "pool": pool.pk,
            "k": _integer(request, "k", "0"),
            "targets": request.POST.get("targets", "paper"),
            "max_per_group": _integer(request, "max_per_group", "2"),
            "optimizer": request.POST.get("optimizer", "best"),
            "seed": _integer(request, "seed", "0"),
            **selection_pilot_params(request),
        }
        job = job_create(kind="selection", study=study, params=params, user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "jobs/_job_card.html", {"job": job})
    return redirect("benchmark:pool_detail", slug=study.slug, pool_id=pool.pk)
