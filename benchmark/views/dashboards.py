"""Dashboards: live collection, the agreement report, and one prompt."""

import csv
import functools
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.access import study_view
from annotation.exports import spreadsheet_csv, spreadsheet_safe
from annotation.models import Annotator
from annotation.participant_figures import positions_in
from annotation.selectors import study_overview as study_overview_data
from annotation.study_cache import ENTRY_SECONDS, people_cached, study_cached
from config.errors import ApplicationError, error_response
from jobs.models import Job
from jobs.services import job_create

from .. import figures
from ..science.harm_benefit import TreeError, tree_by_action
from ..selectors import job_in_progress, job_latest_succeeded, job_result_without


def csv_response(filename: str, rows) -> HttpResponse:
    r"""Rows (the first one the header) as a CSV download for a spreadsheet: text cells that start like
    a formula are neutralised (annotation.exports.spreadsheet_safe); the csv module's `\r\n` line
    ends make it quote any cell holding a line break, bare `\r` included."""
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerows([spreadsheet_safe(cell) for cell in row] for row in rows)
    return response


@require_GET
@study_view("view")
def study_overview(request, study):
    """Live collection dashboard; the panels poll themselves through htmx."""
    overview = study_overview_data(study=study)
    context = {
        "study": study,
        "overview": overview,
        "figures": {
            "progress": figures.to_json(figures.progress_figure(overview["over_time"], overview["time_bin"])),
            "per_prompt": figures.to_json(
                figures.per_prompt_figure(overview["per_prompt"], study.target_ratings_per_prompt)
            ),
            "status": figures.to_json(figures.status_figure(overview["by_status"])),
        },
    }
    template = "benchmark/_overview_panels.html" if request.htmx else "benchmark/overview.html"
    return render(request, template, context)


OVERVIEW_TABLES = {
    "progress": lambda o: (
        [(f"{o['time_bin']}_start_utc", "ratings", "cumulative")],
        [(r["start"], r["ratings"], r["cumulative"]) for r in o["over_time"]],
    ),
    "per_prompt": lambda o: ([("prompt", "ratings")], list(o["per_prompt"].items())),
    "status": lambda o: ([("status", "annotators")], list(o["by_status"].items())),
}


@require_GET
@study_view("view")
def study_overview_csv(request, study, name: str):
    if name not in OVERVIEW_TABLES:
        raise Http404("No such table")
    header, rows = OVERVIEW_TABLES[name](study_overview_data(study=study))
    return csv_response(f"{study.slug}-{name}.csv", header + rows)


@functools.cache
def _value_topic_names() -> dict[str, str]:
    path = Path(settings.BASE_DIR) / "benchmark" / "datasets" / "pluriharms" / "value_topic_names.json"
    return json.loads(path.read_text()) if path.exists() else {}


def feature_label(column: str) -> str:
    """Readable names for feature columns: value topics by their published names."""
    if column.startswith("value_topic_"):
        name = _value_topic_names().get(column.removeprefix("value_topic_"))
        return f"value: {name}" if name else column
    return column.replace("action_", "action: ").replace("effect_", "effect: ").replace("_", " ")


def latest_report(study) -> tuple[Job | None, dict | None]:
    job = job_latest_succeeded(study=study, kind="analysis")
    return job, (job.result if job else None)


def _report_cached(job: Job, name: str, compute):
    """A page's reading of a finished report, cached under the job (its result no longer changes): the
    report of a 10,000-annotator study is megabytes of JSON, read once rather than on every request."""
    key = f"report-page:{job.pk}:{job.finished_at.timestamp() if job.finished_at else 0}:{name}"
    try:
        value = cache.get(key)
    except Exception:
        return compute()
    if value is None:
        value = compute()
        try:
            cache.set(key, value, ENTRY_SECONDS)
        except Exception:
            pass
    return value


def _report_summary(job: Job) -> dict:
    """The report without its per-annotator table (which no dashboard draws)."""
    return job_result_without(job=job, keys=("annotators",)) or {}


def _agreement_figures(study, report: dict) -> dict:
    thresholds = report.get("quadrant_thresholds") or {}
    out = {}
    placed = [row for row in report["prompts"] if row.get("quadrant") in figures.QUADRANT_COLOURS]
    if placed:  # no prompt rated twice: no point to draw, and the page says why instead of an empty plot
        out["plane"] = figures.harm_agreement_figure(
            placed,
            harm_threshold=thresholds.get("harm", 50.0),
            agreement_threshold=thresholds.get("agreement_sd") or 0.0,
        )
    rq2 = (report.get("mixed_effects") or {}).get("rq2")
    if rq2 and rq2.get("coefficients"):
        out["traits"] = figures.forest_figure(rq2["coefficients"], "Trait effects on ratings (RQ2, 95% CI)")
    group_rows = [
        (f"{column}: {str(row.get('group')).strip()}", row)
        for column, block in (report.get("groups") or {}).items()
        for row in block.get("groups", [])
        if row.get("tested", True)
    ]
    if group_rows:
        out["groups"] = figures.grouped_bar_figure(
            [label for label, _ in group_rows],
            {
                "within the group (α)": [row.get("in_group_alpha") for _, row in group_rows],
                "with other groups (κ)": [row.get("cross_group_kappa") for _, row in group_rows],
            },
            "Agreement within and across demographic groups",
            axis="agreement",
        )
    return {name: figures.to_json(fig) for name, fig in out.items()}


# What each agreement figure needs, said on its card when a small study's report leaves it undefined
# (benchmark.science.report writes a reason for each; these are the same conditions in a researcher's words).
AGREEMENT_NEEDS = {
    "alpha": "needs at least 2 annotators per prompt",
    "spearman": "needs at least 3 prompts with a harm level, ratings and some variation",
    "split_half": "needs at least 2 annotators",
    "icc": "needs at least 2 prompts rated twice and 2 annotators with 2 ratings each",
    "pairwise": "needs at least 2 annotators who rated the same prompts",
    "quadrant": "needs at least 2 ratings of a prompt (an SD)",
}


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def agreement_cards(report: dict) -> list[dict]:
    """The report's headline figures as cards: {key, label, value (None when undefined), digits, detail,
    needs}. An undefined figure's card says what it needs instead of showing an empty number."""
    alpha_ci = report.get("krippendorff_alpha_ci") or {}
    cards = [
        {
            "key": "alpha",
            "label": "Krippendorff's α (interval)",
            "value": report.get("krippendorff_alpha_interval"),
            "detail": "95% CI {:.3f}–{:.3f}".format(alpha_ci["ci_low"], alpha_ci["ci_high"])
            if _finite(alpha_ci.get("ci_low")) and _finite(alpha_ci.get("ci_high"))
            else "",
        },
    ]
    if "spearman_harm_level_vs_mean" in report:
        cards.append(
            {
                "key": "spearman",
                "label": "Spearman ρ, harm level vs mean",
                "value": report["spearman_harm_level_vs_mean"],
            }
        )
    cards += [
        {
            "key": "ratings",
            "label": f"ratings ({report.get('n_unsure', 0)} Unsure)",
            "value": report.get("n_ratings"),
            "digits": 0,
        },
        {
            "key": "split_half",
            "label": "split-half reliability of prompt means",
            "value": (report.get("split_half") or {}).get("mean"),
        },
        {"key": "icc", "label": "ICC (single rating)", "value": (report.get("icc") or {}).get("icc_single")},
        {
            "key": "pairwise",
            "label": "mean pairwise annotator r",
            "value": (report.get("mean_pairwise_correlation") or {}).get("mean"),
        },
    ]
    for card in cards:
        card.setdefault("digits", 3)
        card.setdefault("detail", "")
        if not _finite(card["value"]):
            card["value"] = None
        card["needs"] = (
            AGREEMENT_NEEDS.get(card["key"], "not defined for this study yet") if card["value"] is None else ""
        )
    counts: dict[str, int] = {}
    for row in report.get("prompts") or []:
        counts[row.get("quadrant") or ""] = counts.get(row.get("quadrant") or "", 0) + 1
    for quadrant in figures.QUADRANT_COLOURS:
        if counts.get(quadrant):
            cards.append(
                {"key": quadrant, "label": quadrant.replace("-", " / "), "value": counts[quadrant], "digits": 0}
            )
    if counts.get(""):
        cards.append(
            {
                "key": "unplaced",
                "label": "prompts not placed on the plane",
                "value": counts[""],
                "digits": 0,
                "needs": AGREEMENT_NEEDS["quadrant"],
            }
        )
    for card in cards:
        card.setdefault("detail", "")
        card.setdefault("needs", "")
    return cards


@require_GET
@study_view("view")
def agreement_dashboard(request, study):
    """The harm × agreement plane and reliability, from the latest finished report job."""
    job = job_latest_succeeded(study=study, kind="analysis", result=False)
    running = job_in_progress(study=study, kind="analysis")
    panels = _report_cached(job, "agreement", lambda: _agreement_panels(study, _report_summary(job))) if job else {}
    context = {
        "study": study,
        "job": job,
        "report": bool(panels),
        "running": running,
        "cards": [],
        "plane_needs": AGREEMENT_NEEDS["quadrant"],
        "figures": {},
        "bic_ladder": None,
        "rq3": {},
        **panels,
    }
    template = "benchmark/_agreement_panels.html" if request.htmx else "benchmark/agreement.html"
    return render(request, template, context)


def _agreement_panels(study, report: dict) -> dict:
    """What the agreement panels show of a report; empty for an empty report."""
    if not report:
        return {}
    mixed = report.get("mixed_effects") or {}
    return {
        "cards": agreement_cards(report),
        "figures": _agreement_figures(study, report),
        "bic_ladder": mixed.get("bic_ladder"),
        "rq3": mixed.get("rq3") or {},
    }


@require_POST
@study_view("edit")
def analysis_start(request, study):
    try:
        job = job_create(kind="analysis", study=study, params={}, user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "jobs/_job_card.html", {"job": job, "refresh_target": "agreement-panels"})
    return redirect("benchmark:agreement", slug=study.slug)


AGREEMENT_TABLES = ("prompts", "annotators", "groups", "coefficients")


def _report_rows(job: Job, report: dict, name: str) -> list[dict]:
    """A report table as the job wrote it: report.json keeps the column order (a JSONB result does not)."""
    artifact = job.artifacts.filter(name="report.json").first()
    if artifact is not None:
        with artifact.file.open("rb") as handle:
            return json.load(handle).get(name) or []
    return report.get(name) or []


@require_GET
@study_view("view")
def agreement_csv(request, study, name: str):
    """A report table as CSV for a spreadsheet: text cells that start like a formula are neutralised
    (annotation.exports.spreadsheet_csv), so the table is built from the report, not the job's raw CSV."""
    if name not in AGREEMENT_TABLES:
        raise Http404("No such table")
    job, report = latest_report(study)
    if report is None:
        raise Http404("No report yet")
    if name in ("prompts", "annotators"):
        if not job.artifacts.filter(name=f"{name}.csv").exists():
            raise Http404("No such table")
        body = spreadsheet_csv(pd.DataFrame(_report_rows(job, report, name))).encode("utf-8")
        return FileResponse(
            io.BytesIO(body), as_attachment=True, filename=f"{study.slug}-{name}.csv", content_type="text/csv"
        )
    if name == "groups":
        frame = pd.DataFrame(
            [
                {"column": column, **row}
                for column, block in (report.get("groups") or {}).items()
                for row in block.get("groups", [])
            ]
        )
        first = [
            "column",
            "group",
            "n_annotators",
            "n_ratings",
            "tested",
            "in_group_alpha",
            "cross_group_kappa",
            "gai",
            "difference",
            "p_value",
        ]
    else:
        frame = pd.DataFrame(
            [
                {"model": model, **row}
                for model, block in (report.get("mixed_effects") or {}).items()
                if isinstance(block, dict)
                for row in block.get("coefficients", [])
            ]
        )
        first = ["model", "term", "estimate", "se", "ci_low", "ci_high", "p"]
    frame = frame[[c for c in first if c in frame] + sorted(c for c in frame if c not in first)]
    response = HttpResponse(spreadsheet_csv(frame), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-{name}.csv"'
    return response


def _tree_context(tree) -> dict:
    """The prompt's harm-benefit tree for the page: grouped by action (`tree_actions`), or, for a stored tree
    that does not follow the schema, its JSON (`tree_raw`) and the reason (`tree_error`)."""
    if not tree:
        return {"tree_actions": None}
    try:
        return {"tree_actions": tree_by_action(tree)}
    except (TreeError, RecursionError) as exc:
        return {"tree_actions": None, "tree_raw": json.dumps(tree, indent=2), "tree_error": str(exc)}


def _annotator_groups(study_id: int, *, also: np.ndarray | None = None) -> dict:
    """The study's annotators as the prompt page groups them: {"ids" (sorted), "excluded" (one flag per id),
    "columns": {demographic key: {"groups" (sorted labels), "codes" (each annotator's group), "has" (whether
    the annotator's demographics hold the key)}}}. A label is the answer as text, stripped, or
    figures.MISSING_GROUP. It depends on the annotators alone: cached under `people_version`, which new
    ratings leave alone (annotation.study_cache). `also`: annotators to read whatever their study."""
    people = Annotator.objects.filter(Q(study_id=study_id) | Q(id__in=[] if also is None else also.tolist()))
    rows = list(people.order_by("id").values_list("id", "status", Cast("demographics", TextField())))
    # The JSON as text, decoded in one call: 10,000 calls of the JSONField's decoder cost three times as much.
    answers = [demo or {} for demo in json.loads("[" + ",".join(text or "null" for *_, text in rows) + "]")]
    columns = {}
    for column in sorted({k for demo in answers for k in demo}):
        labels = [str(demo.get(column, figures.MISSING_GROUP)).strip() for demo in answers]
        # Hashed first, then the few distinct labels sorted as numpy sorts them (np.unique of all is 5× slower).
        first, distinct = pd.factorize(np.array(labels, dtype=object))
        groups, order = np.unique(np.array(list(distinct), dtype=str), return_inverse=True)
        codes = order[first]
        has = np.fromiter((column in demo for demo in answers), dtype=bool, count=len(answers))
        columns[column] = {"groups": [str(g) for g in groups], "codes": codes.astype(np.int32), "has": has}
    return {
        "ids": np.array([pk for pk, *_ in rows], dtype=np.int64),
        "excluded": np.array([status == Annotator.Status.EXCLUDED for _, status, _ in rows], dtype=bool),
        "columns": columns,
    }


def _prompt_histograms(prompt) -> dict:
    """The prompt's ratings (excluded annotators left out) in the histogram's bins, overall (column "")
    and by every demographic column its raters have: {"by_column": {column: {group: counts}},
    "n_unsure"} (Unsure answers of every annotator). One query for the prompt's ratings, three columns of
    them; the annotators' groups and exclusions from `_annotator_groups`, cached apart from the ratings;
    numpy over the ratings, not a loop per rating and column."""
    rows = list(prompt.ratings.values_list("annotator_id", "value", "unsure"))
    rated = np.array([a for a, _, _ in rows], dtype=np.int64)
    values = np.array([v for _, v, _ in rows], dtype=float)
    unsure = np.array([u for *_, u in rows], dtype=bool)
    people = people_cached(prompt.study_id, "prompt-page-groups", lambda: _annotator_groups(prompt.study_id))
    at, found = positions_in(people["ids"], rated)
    if not found.all():  # a rater the cached annotators do not hold (written by a path that did not say so)
        people = _annotator_groups(prompt.study_id, also=rated)
        at, _ = positions_in(people["ids"], rated)
    counted = ~unsure & ~people["excluded"][at]
    kept = at[counted]
    n_bins = len(figures.HISTOGRAM_EDGES) - 1
    bins = np.clip((values[counted] // 10).astype(int), 0, n_bins - 1)
    by_column: dict[str, dict[str, list[int]]] = {"": {"all annotators": np.bincount(bins, minlength=n_bins).tolist()}}
    for column, group in people["columns"].items():
        if not group["has"][kept].any():
            continue  # none of this prompt's counted raters answered it
        counts = np.zeros((len(group["groups"]), n_bins), dtype=int)
        np.add.at(counts, (group["codes"][kept], bins), 1)
        by_column[column] = {group["groups"][i]: counts[i].tolist() for i in np.flatnonzero(counts.sum(axis=1))}
    return {"by_column": by_column, "n_unsure": int(unsure.sum())}


@require_GET
@study_view("view")
def prompt_detail(request, study, external_id: str):
    """One prompt: its rating histogram overall and by a demographic group, its features and tree."""
    prompt = get_object_or_404(study.prompts, external_id=external_id)
    histograms = study_cached(study, f"prompt:{prompt.pk}", lambda: _prompt_histograms(prompt))
    group = request.GET.get("group", "")
    columns = [column for column in histograms["by_column"] if column]
    if group and group not in columns:
        return error_response(request, f"unknown group column {group!r}; choose one of {', '.join(columns)}")
    features = sorted(
        ((feature_label(k), v) for k, v in (prompt.features or {}).items() if v), key=lambda kv: -abs(kv[1])
    )[:20]
    job = job_latest_succeeded(study=study, kind="analysis", result=False)
    stats = None
    if job is not None:
        rows = _report_cached(
            job, "prompts", lambda: {r.get("prompt"): r for r in _report_summary(job).get("prompts", [])}
        )
        stats = rows.get(prompt.external_id)
    by_group = histograms["by_column"][group]
    context = {
        "study": study,
        "prompt": prompt,
        "stats": stats,
        "group": group,
        "group_columns": columns,
        "n_unsure": histograms["n_unsure"],
        "figures": {
            "histogram": figures.to_json(
                figures.histogram_counts_figure(by_group, f"Ratings of prompt {prompt.external_id}")
            ),
            "features": figures.to_json(
                figures.bar_figure(
                    [k for k, _ in features], [v for _, v in features], "Largest prompt features", axis="value"
                )
            ),
        },
        **_tree_context(prompt.harm_benefit_tree),
    }
    template = "benchmark/_prompt_histogram.html" if request.htmx else "benchmark/prompt_detail.html"
    return render(request, template, context)
