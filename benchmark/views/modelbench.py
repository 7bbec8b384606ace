"""The model benchmark: the leaderboard, starting runs (with uploaded predictions), and steering."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.access import get_study_for_user
from config.errors import ApplicationError, error_response

from .. import figures
from ..evaluation import PUBLISHED, builtin_predictors, predictor_names
from jobs.models import Job

from ..selectors import job_in_progress, job_latest_succeeded
from ..science.harm_benefit import ACTION_CATEGORIES
from ..steering import group_fit, group_values, score_table, steering_data, study_fit, weights_from_form
from ..uploads import benchmark_job_start


def _leaderboard_figure(results: list[dict], published: list[dict]) -> dict:
    traces = []
    for condition in ("individual", "aggregated", "new_annotator", "warm"):
        rows = sorted((r for r in results if r["condition"] == condition), key=lambda r: -r["mae"])
        if not rows:
            continue
        traces.append({
            "type": "scatter", "mode": "markers", "name": condition,
            "x": [r["mae"] for r in rows], "y": [f"{r['predictor']} · {condition}" for r in rows],
            "error_x": {"type": "data", "symmetric": False,
                        "array": [(r["ci_high"] or r["mae"]) - r["mae"] for r in rows],
                        "arrayminus": [r["mae"] - (r["ci_low"] or r["mae"]) for r in rows]},
        })
    if published:
        traces.append({
            "type": "scatter", "mode": "markers", "name": "published (not rerun)",
            "marker": {"symbol": "diamond-open", "size": 11, "color": "#555"},
            "x": [p["mae"] for p in published], "y": [f"{p['predictor']} · {p['condition']} (published)" for p in published],
        })
    n_rows = sum(len(t["y"]) for t in traces)
    return {"data": traces, "layout": {
        **figures.LAYOUT, "title": {"text": "MAE on the 0–1 scale (95% CI over annotators); lower is better"},
        "height": max(360, 18 * n_rows + 120), "margin": {"l": 300, "r": 20, "t": 40, "b": 50},
        "xaxis": {"title": {"text": "MAE"}, "rangemode": "tozero"}, "yaxis": {"automargin": True},
    }}


def latest_benchmark(study) -> Job | None:
    return job_latest_succeeded(study=study, kind="benchmark")


@require_GET
@login_required
def leaderboard(request, slug: str):

    study = get_study_for_user(request.user, slug)
    job = latest_benchmark(study)
    results = (job.result or {}).get("results", []) if job else []
    running = job_in_progress(study=study, kind="benchmark")
    context = {
        "study": study, "job": job, "results": results, "published": PUBLISHED, "running": running,
        "builtin": builtin_predictors(), "all_predictors": predictor_names(),
        "figure": figures.to_json(_leaderboard_figure(results, PUBLISHED)),
    }
    template = "benchmark/_leaderboard_panels.html" if request.htmx else "benchmark/leaderboard.html"
    return render(request, template, context)


@require_POST
@login_required
def benchmark_start(request, slug: str):
    """Start a benchmark job; an uploaded predictions CSV is validated first and scored as 'uploaded'."""

    study = get_study_for_user(request.user, slug)
    params = {"predictors": request.POST.getlist("predictors"), "splits": request.POST.get("splits", "10"),
              "seed": request.POST.get("seed", "0")}
    try:
        job = benchmark_job_start(study=study, user=request.user, params=params,
                                    predictions_file=request.FILES.get("predictions"))
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "jobs/_job_card.html", {"job": job})
    return redirect("benchmark:leaderboard", slug=study.slug)


def _steering_context(study, data, weights, baseline, *, group=None, fitted=None):

    table = score_table(data, weights=weights, baseline=baseline)

    return {
        "study": study, "weights": list(zip(range(len(ACTION_CATEGORIES)), ACTION_CATEGORIES, weights.action)),
        "rows": table.to_dict("records"), "n_changed": int(table["changed"].sum()),
        "n_harmful": int(table["harmful"].sum()), "group": group, "fitted": fitted,
    }


def _steering_data_or_error(request, study):

    try:
        return steering_data(study=study), None
    except ApplicationError as exc:
        if request.htmx:
            return None, error_response(request, exc.message, status=exc.status_code)
        return None, render(request, "benchmark/steering.html", {"study": study, "error": exc.message},
                            status=exc.status_code)


@require_GET
@login_required
def steering(request, slug: str):

    study = get_study_for_user(request.user, slug)
    data, error = _steering_data_or_error(request, study)
    if error:
        return error
    baseline = study_fit(data)
    context = _steering_context(study, data, baseline, baseline)
    context["groups"] = group_values(data)
    return render(request, "benchmark/steering.html", context)


@require_POST
@login_required
def steering_score(request, slug: str):
    """Re-score every prompt with the slider weights (htmx, on each slider change)."""

    study = get_study_for_user(request.user, slug)
    data, error = _steering_data_or_error(request, study)
    if error:
        return error
    baseline = study_fit(data)
    try:
        weights = weights_from_form(request.POST, baseline)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return render(request, "benchmark/_steering_results.html", _steering_context(study, data, weights, baseline))


@require_POST
@login_required
def steering_fit(request, slug: str):
    """Fit the weights to one demographic group's ratings; show which prompts change side."""

    study = get_study_for_user(request.user, slug)
    data, error = _steering_data_or_error(request, study)
    if error:
        return error
    column, value = request.POST.get("column", ""), request.POST.get("value", "")
    if ":" in value and not column:
        column, value = value.split(":", 1)
    baseline = study_fit(data)
    try:
        result = group_fit(data, start=baseline, column=column, value=value)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    context = _steering_context(study, data, result.weights, baseline, group=f"{column} = {value}", fitted=True)
    context["groups"] = group_values(data)
    context["group_key"] = f"{column}:{value}"
    template = "benchmark/_steering_panel.html" if request.htmx else "benchmark/steering.html"
    return render(request, template, context)
