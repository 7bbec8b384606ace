"""The jury view of a study: choose a population mix, draw juries, see what they would say."""

from __future__ import annotations

from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.access import study_view
from config.errors import ApplicationError, error_response
from jobs.services import job_create

from .. import figures
from ..jury import MODES, jury_columns
from ..selectors import job_in_progress, job_latest_succeeded


def _jury_figure(prompts: list[dict]) -> dict:
    """Share harmful per prompt: the chosen population's jury against the collected population's."""
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "no change",
                "x": [0, 1],
                "y": [0, 1],
                "line": {"color": "#bbb", "dash": "dot"},
                "hoverinfo": "skip",
            },
            {
                "type": "scatter",
                "mode": "markers",
                "name": "prompts",
                "x": [p["collected_share"] for p in prompts],
                "y": [p["share_harmful"] for p in prompts],
                "customdata": [p["prompt"] for p in prompts],
                "text": [f"prompt {p['prompt']}: shift {p['shift']:+.2f}" for p in prompts],
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [p["ci_high"] - p["share_harmful"] for p in prompts],
                    "arrayminus": [p["share_harmful"] - p["ci_low"] for p in prompts],
                    "thickness": 1,
                },
                "marker": {"size": 6},
            },
        ],
        "layout": {
            **figures.LAYOUT,
            "title": {"text": "Share rating at or above the threshold: this population's jury vs the collected one"},
            "xaxis": {"title": {"text": "collected population's jury"}, "range": [0, 1]},
            "yaxis": {"title": {"text": "this population's jury (95% interval)"}, "range": [0, 1]},
            "height": 420,
        },
    }


def _bars(distribution: list[float]) -> list[int]:
    """Bar heights in pixels (at most 24) for the small distribution strip of a prompt."""
    top = max(distribution) if distribution else 0
    return [int(round(24 * d / top)) if top > 0 else 0 for d in distribution]


def _context(study) -> dict:
    job = job_latest_succeeded(study=study, kind="jury")
    result = (job.result or {}) if job else {}
    prompts = result.get("prompts", [])
    rows = sorted(prompts, key=lambda p: -abs(p["shift"]))
    edges = result.get("distribution_edges") or []
    for row in rows:
        row["bars"] = _bars(row.get("distribution", []))
        row["bars_text"] = ", ".join(
            f"{edges[i]:.0f}–{edges[i + 1]:.0f}: {100 * d:.0f}%"
            for i, d in enumerate(row.get("distribution", []))
            if i + 1 < len(edges)
        )
    marginal_rows = []
    for column, levels in (result.get("achieved_marginals") or {}).items():
        requested = (result.get("requested_marginals") or {}).get(column, {})
        collected = (result.get("collected_marginals") or {}).get(column, {})
        jury = (result.get("jury_marginals") or {}).get(column, {})
        for level in sorted(set(levels) | set(requested)):
            marginal_rows.append(
                {
                    "column": column,
                    "level": level,
                    "requested": requested.get(level) if requested else None,
                    "achieved": levels.get(level),
                    "jury": jury.get(level),
                    "collected": collected.get(level),
                }
            )
    return {
        "study": study,
        "job": job,
        "result": result,
        "rows": rows,
        "marginal_rows": marginal_rows,
        "validation": result.get("validation"),
        "figure": figures.to_json(_jury_figure(prompts)) if prompts else None,
        "running": job_in_progress(study=study, kind="jury"),
    }


@require_GET
@study_view("view")
def jury(request, study):
    from ..science.jury import census_names, jury_predictors  # noqa: PLC0415  (heavy imports, once)

    context = _context(study)
    if request.htmx:
        return render(request, "benchmark/_jury_panels.html", context)
    context.update(
        columns=jury_columns(study=study),
        censuses=census_names(),
        predictors=jury_predictors(),
        ratings_predictors=jury_predictors(ratings=True),
    )
    return render(request, "benchmark/jury.html", context)


def _number(request, name: str, default: str, kind=float):
    raw = request.POST.get(name, "").strip() or default
    try:
        return kind(raw)
    except ValueError:
        raise ApplicationError(f"{name} must be a number (got {raw!r})") from None


def _mix_from_form(request) -> dict:
    """{column: {level: share}} from the form's per-level percentages; a column left blank is not raked."""
    mix = {}
    i = 0
    while f"column__{i}" in request.POST:
        column = request.POST[f"column__{i}"]
        shares, j = {}, 0
        while f"level__{i}__{j}" in request.POST:
            raw = request.POST.get(f"share__{i}__{j}", "").strip()
            if raw:
                try:
                    value = float(raw)
                except ValueError:
                    raise ApplicationError(f"{column}: {raw!r} is not a percentage") from None
                if not 0 <= value <= 100:
                    raise ApplicationError(f"{column}: a share is a percentage from 0 to 100 (got {raw})")
                shares[request.POST[f"level__{i}__{j}"]] = value
            j += 1
        if shares:
            total = sum(shares.values())
            if abs(total - 100.0) > 0.5:
                raise ApplicationError(f"{column}: the shares add up to {total:g}%, not 100%")
            mix[column] = {level: value / total for level, value in shares.items()}
        i += 1
    return mix


@require_POST
@study_view("edit")
def jury_start(request, study):
    """Start a jury job with the form's population mix, size, juries, threshold and predictor."""
    try:
        mode = request.POST.get("mode", "collected")
        if mode not in MODES:
            raise ApplicationError(f"unknown population {mode!r}; choose from {', '.join(MODES)}")
        params = {
            "mode": mode,
            "size": _number(request, "size", "1000", int),
            "juries": _number(request, "juries", "200", int),
            "threshold": _number(request, "threshold", "50"),
            "fits": _number(request, "fits", "5", int),
            "seed": _number(request, "seed", "0", int),
            "predictor": request.POST.get("predictor", ""),
            "ratings": request.POST.get("ratings") == "on",
            "validation": request.POST.get("validation") == "on",
        }
        if mode == "census":
            params["census"] = request.POST.get("census", "")
        if mode == "custom":
            params["mix"] = _mix_from_form(request)
        job = job_create(kind="jury", study=study, params=params, user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    if request.htmx:
        return render(request, "jobs/_job_card.html", {"job": job})
    return redirect("benchmark:jury", slug=study.slug)
