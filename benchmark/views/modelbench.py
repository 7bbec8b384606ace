"""The model benchmark: the leaderboard, starting runs (with uploaded predictions), and steering."""

from urllib.parse import quote

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation.access import study_view
from config.errors import ApplicationError, error_response
from jobs.models import Job

from .. import figures
from ..evaluation import (
    DEFAULT_MAX_SECONDS,
    default_run_estimate,
    predictor_families,
    predictor_names,
    published_for,
)
from ..science.harm_benefit import ACTION_CATEGORIES
from ..selectors import job_in_progress, job_latest_succeeded
from ..steering import group_fit, score_table, steering_model, steering_model_at, weights_from_form
from ..uploads import SCALE_NOTES, benchmark_job_start


def _leaderboard_figure(results: list[dict], published: list[dict]) -> dict:
    traces = []
    for condition in ("individual", "aggregated", "new_annotator", "warm"):
        rows = sorted((r for r in results if r["condition"] == condition), key=lambda r: -r["mae"])
        if not rows:
            continue
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": condition,
                "x": [r["mae"] for r in rows],
                "y": [f"{r['predictor']} · {condition}" for r in rows],
                "error_x": {
                    "type": "data",
                    "symmetric": False,
                    "array": [(r["ci_high"] or r["mae"]) - r["mae"] for r in rows],
                    "arrayminus": [r["mae"] - (r["ci_low"] or r["mae"]) for r in rows],
                },
            }
        )
    if published:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "published (not rerun)",
                "marker": {"symbol": "diamond-open", "size": 11, "color": "#555"},
                "x": [p["mae"] for p in published],
                "y": [f"{p['predictor']} · {p['condition']} (published)" for p in published],
            }
        )
    n_rows = sum(len(t["y"]) for t in traces)
    return {
        "data": traces,
        "layout": {
            **figures.LAYOUT,
            "title": {"text": "MAE on the 0–1 scale (95% two-way bootstrap CI); lower is better"},
            "height": max(360, 18 * n_rows + 120),
            "margin": {"l": 300, "r": 20, "t": 40, "b": 50},
            "xaxis": {"title": {"text": "MAE"}, "rangemode": "tozero"},
            "yaxis": {"automargin": True},
        },
    }


CONDITION_COLOURS = {"individual": "#1f77b4", "aggregated": "#ff7f0e", "new_annotator": "#2ca02c", "warm": "#9467bd"}


def _groups_figure(predictor: str, groups: list[dict]) -> dict:
    """Small multiples for one predictor: a panel per trait column, its levels sorted by MAE (mean over
    the conditions shown), a point with its t-interval per condition; the panel title gives the gap."""
    columns = list(dict.fromkeys(g["column"] for g in groups))
    conditions = list(dict.fromkeys(g["condition"] for g in groups))
    n_cols = 2
    n_rows = (len(columns) + n_cols - 1) // n_cols
    traces, annotations, layout = [], [], {}
    for i, column in enumerate(columns):
        axis = "" if i == 0 else str(i + 1)
        entries = [g for g in groups if g["column"] == column]
        maes: dict[str, list[float]] = {}
        for g in entries:
            for level in g["levels"]:
                maes.setdefault(level["level"], []).append(level["mae"])
        order = sorted(maes, key=lambda level: sum(maes[level]) / len(maes[level]))
        for condition in conditions:
            entry = next((g for g in entries if g["condition"] == condition), None)
            if entry is None:
                continue
            by_level = {level["level"]: level for level in entry["levels"]}
            shown = [level for level in order if level in by_level]
            rows = [by_level[level] for level in shown]
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": condition,
                    "legendgroup": condition,
                    "showlegend": i == 0,
                    "marker": {"color": CONDITION_COLOURS.get(condition, "#555"), "size": 7},
                    "x": [r["mae"] for r in rows],
                    "y": [
                        f"{level} (n={by_level[level]['n']})" if len(level) < 40 else level[:38] + "…"
                        for level in shown
                    ],
                    "error_x": {
                        "type": "data",
                        "symmetric": False,
                        "array": [(r["ci_high"] - r["mae"]) if r["ci_high"] is not None else 0 for r in rows],
                        "arrayminus": [(r["mae"] - r["ci_low"]) if r["ci_low"] is not None else 0 for r in rows],
                    },
                    "xaxis": f"x{axis}",
                    "yaxis": f"y{axis}",
                }
            )
        gaps = [f"{g['condition']}: gap {g['gap']:.3f}, p {g['p_value']:.3f}" for g in entries if g["gap"] is not None]
        annotations.append(
            {
                "text": f"<b>{column}</b>"
                + (f"<br><span style='font-size:10px'>{'; '.join(gaps)}</span>" if gaps else ""),
                "xref": f"x{axis} domain",
                "yref": f"y{axis} domain",
                "x": 0,
                "y": 1.0,
                "yanchor": "bottom",
                "xanchor": "left",
                "showarrow": False,
                "align": "left",
            }
        )
        layout[f"xaxis{axis}"] = {"title": {"text": "MAE"}, "rangemode": "tozero"}
        layout[f"yaxis{axis}"] = {"automargin": True, "type": "category", "tickfont": {"size": 10}}
    return {
        "data": traces,
        "layout": {
            **figures.LAYOUT,
            **layout,
            "title": {"text": f"{predictor}: MAE by group (95% t-interval over annotators)"},
            "grid": {"rows": n_rows, "columns": n_cols, "pattern": "independent", "ygap": 0.45, "xgap": 0.45},
            "annotations": annotations,
            "height": max(360, 210 * n_rows + 80),
            "margin": {"l": 200, "r": 20, "t": 70, "b": 40},
        },
    }


def _groups_context(result: dict) -> dict:
    groups = result.get("groups") or []
    figures_by_predictor = []
    for predictor in dict.fromkeys(g["predictor"] for g in groups):
        mine = [g for g in groups if g["predictor"] == predictor]
        figures_by_predictor.append(
            {"predictor": predictor, "figure": figures.to_json(_groups_figure(predictor, mine))}
        )
    tested = sorted((g for g in groups if g["gap"] is not None), key=lambda g: -g["gap"])
    return {
        "group_figures": figures_by_predictor,
        "group_gaps": tested[:25],
        "group_tests": len(tested),
        "groups_method": result.get("groups_method", ""),
    }


def latest_benchmark(study) -> Job | None:
    return job_latest_succeeded(study=study, kind="benchmark")


@require_GET
@study_view("view")
def leaderboard(request, study):

    job = latest_benchmark(study)
    results = (job.result or {}).get("results", []) if job else []
    running = job_in_progress(study=study, kind="benchmark")
    published = published_for(study=study)
    families = predictor_families()
    context = {
        "study": study,
        "job": job,
        "results": results,
        "published": published,
        "paired": (job.result or {}).get("paired", []) if job else [],
        "running": running,
        "families": families,
        "default_max_seconds": DEFAULT_MAX_SECONDS,
        "default_estimate": default_run_estimate(families),
        "all_predictors": predictor_names(),
        "figure": figures.to_json(_leaderboard_figure(results, published)),
        **_groups_context((job.result or {}) if job else {}),
    }
    template = "benchmark/_leaderboard_panels.html" if request.htmx else "benchmark/leaderboard.html"
    return render(request, template, context)


@require_POST
@study_view("edit")
def benchmark_start(request, study):
    """Start a benchmark job; an uploaded predictions CSV is validated first and scored as 'uploaded'."""

    params = {
        "predictors": request.POST.getlist("predictors"),
        "splits": request.POST.get("splits", "10"),
        "seed": request.POST.get("seed", "0"),
        "seeds": request.POST.get("seeds", "10"),
    }
    try:
        job = benchmark_job_start(
            study=study, user=request.user, params=params, predictions_file=request.FILES.get("predictions")
        )
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    scale_note = SCALE_NOTES.get(getattr(job, "predictions_scale", None) or "")
    if request.htmx:
        return render(request, "benchmark/_benchmark_started.html", {"job": job, "scale_note": scale_note})
    if scale_note:
        messages.info(request, scale_note)
    return redirect("benchmark:leaderboard", slug=study.slug)


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _steering_rows(study, table) -> list[dict]:
    """The results table's rows with their text already formatted: the table is re-rendered on every
    slider move, and formatting 150 × 5 cells in template filters costs more than the scoring itself."""
    marker = "PROMPT-ID"
    base = reverse("benchmark:prompt_detail", args=[study.slug, marker])
    return [
        {
            "prompt": prompt,
            "url": base.replace(marker, quote(prompt, safe="")),
            "text": text,
            "short": _short(text),
            "H": f"{h:.2f}",
            "p_harmful": f"{p:.2f}",
            "mean_rating": "" if mean != mean else f"{mean:.1f}",
            "harmful": harmful,
            "changed": changed,
        }
        for prompt, text, h, p, mean, harmful, changed in zip(
            table["prompt"],
            table["text"],
            table["H"],
            table["p_harmful"],
            table["mean_rating"],
            table["harmful"],
            table["changed"],
        )
    ]


def _steering_context(study, model, weights, *, group=None, fitted=None):
    table = score_table(model, weights=weights)
    return {
        "study": study,
        "weights": list(zip(range(len(ACTION_CATEGORIES)), ACTION_CATEGORIES, weights.action)),
        "rows": _steering_rows(study, table),
        "n_changed": int(table["changed"].sum()),
        "n_harmful": int(table["harmful"].sum()),
        "group": group,
        "fitted": fitted,
    }


def _steering_model_or_error(request, study, *, version: str | None = None):
    try:
        if version is not None:
            return steering_model_at(study=study, version=version), None
        return steering_model(study=study), None
    except ApplicationError as exc:
        if request.htmx:
            return None, error_response(request, exc.message, status=exc.status_code)
        return None, render(
            request, "benchmark/steering.html", {"study": study, "error": exc.message}, status=exc.status_code
        )


@require_GET
@study_view("view")
def steering(request, study):
    found, error = _steering_model_or_error(request, study)
    if error:
        return error
    version, model = found
    context = _steering_context(study, model, model.baseline)
    context.update(groups=model.group_values(), model_version=version)
    return render(request, "benchmark/steering.html", context)


@require_POST
@study_view("view")
def steering_score(request, study):
    """Re-score every prompt with the slider weights (htmx, on each slider change): a cached model, one product."""
    found, error = _steering_model_or_error(request, study, version=request.POST.get("model", ""))
    if error:
        return error
    _version, model = found
    try:
        weights = weights_from_form(request.POST, model.baseline)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return render(request, "benchmark/_steering_results.html", _steering_context(study, model, weights))


@require_POST
@study_view("edit")
def steering_fit(request, study):
    """Fit the weights to one demographic group's ratings; show which prompts change side."""
    found, error = _steering_model_or_error(request, study)
    if error:
        return error
    version, model = found
    column, value = request.POST.get("column", ""), request.POST.get("value", "")
    if ":" in value and not column:
        column, value = value.split(":", 1)
    try:
        result = group_fit(model, column=column, value=value)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    context = _steering_context(study, model, result.weights, group=f"{column} = {value}", fitted=True)
    context.update(groups=model.group_values(), group_key=f"{column}:{value}", model_version=version)
    template = "benchmark/_steering_panel.html" if request.htmx else "benchmark/steering.html"
    return render(request, template, context)
