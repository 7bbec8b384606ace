"""Plotly figures as plain dicts ({"data": [...], "layout": {...}}), drawn in the browser by plots.js.

Built by hand rather than through plotly.graph_objects: the dicts are small, fast to build on every
poll, and easy to test.
"""

from __future__ import annotations

import json
import math

LAYOUT = {"margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "height": 340, "template": "plotly_white"}
QUADRANT_COLOURS = {
    "benign-agreement": "#2e7d32",
    "benign-disagreement": "#f9a825",
    "harmful-agreement": "#c62828",
    "harmful-disagreement": "#6a1b9a",
}


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(figure: dict) -> str:
    return json.dumps(figure, default=str, allow_nan=False)


def _layout(title: str, **extra) -> dict:
    return {**LAYOUT, "title": {"text": title, "font": {"size": 15}}, **extra}


def progress_figure(over_time: list[dict]) -> dict:
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "ratings",
                "x": [row["hour"] for row in over_time],
                "y": [row["cumulative"] for row in over_time],
            }
        ],
        "layout": _layout(
            "Ratings collected",
            xaxis={"title": {"text": "time (UTC)"}},
            yaxis={"title": {"text": "ratings"}, "rangemode": "tozero"},
        ),
    }


def per_prompt_figure(per_prompt: dict[str, int], target: int | None = None) -> dict:
    ordered = sorted(per_prompt.items(), key=lambda kv: kv[1])
    layout = _layout(
        "Ratings per prompt",
        xaxis={"title": {"text": "prompts (sorted)"}, "showticklabels": False},
        yaxis={"title": {"text": "ratings"}, "rangemode": "tozero"},
    )
    if target:
        layout["shapes"] = [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": target,
                "y1": target,
                "line": {"dash": "dot", "color": "#888"},
            }
        ]
    return {
        "data": [
            {
                "type": "bar",
                "x": [k for k, _ in ordered],
                "y": [v for _, v in ordered],
                "hovertemplate": "prompt %{x}: %{y} ratings<extra></extra>",
            }
        ],
        "layout": layout,
    }


def status_figure(by_status: dict[str, int]) -> dict:
    order = ["new", "consented", "surveying", "rating", "completed", "declined", "returned", "excluded"]
    keys = [k for k in order if k in by_status] + [k for k in by_status if k not in order]
    return {
        "data": [{"type": "bar", "x": keys, "y": [by_status[k] for k in keys]}],
        "layout": _layout("Annotators by status", yaxis={"title": {"text": "annotators"}, "rangemode": "tozero"}),
    }


def harm_agreement_figure(
    prompts: list[dict], *, harm_threshold: float, agreement_threshold: float, x: str = "mean", y: str = "sd"
) -> dict:
    """The harm × agreement plane: one point per prompt, coloured by quadrant, click-through ids."""
    traces = []
    for quadrant, colour in QUADRANT_COLOURS.items():
        rows = [p for p in prompts if p.get("quadrant") == quadrant]
        if not rows:
            continue
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": quadrant.replace("-", " / "),
                "x": [_clean(r.get(x)) for r in rows],
                "y": [_clean(r.get(y)) for r in rows],
                "customdata": [r["prompt"] for r in rows],
                "text": [f"#{r['prompt']}: {(r.get('text') or '')[:120]}" for r in rows],
                "hovertemplate": "%{text}<br>mean %{x:.1f}, SD %{y:.1f}<extra></extra>",
                "marker": {"color": colour, "size": 8, "opacity": 0.8},
            }
        )
    lines = [
        {
            "type": "line",
            "x0": harm_threshold,
            "x1": harm_threshold,
            "yref": "paper",
            "y0": 0,
            "y1": 1,
            "line": {"dash": "dot", "color": "#999"},
        },
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": agreement_threshold,
            "y1": agreement_threshold,
            "line": {"dash": "dot", "color": "#999"},
        },
    ]
    return {
        "data": traces,
        "layout": _layout(
            "Harm × agreement",
            height=460,
            shapes=lines,
            xaxis={"title": {"text": "mean rating (harm)"}, "range": [-2, 102]},
            yaxis={"title": {"text": "SD of ratings (disagreement)"}, "rangemode": "tozero"},
        ),
    }


def forest_figure(coefficients: list[dict], title: str) -> dict:
    """Estimates with 95% intervals, one row per term (intercept left out)."""
    rows = [c for c in coefficients if c.get("term") not in ("Intercept", "const", "(Intercept)")]
    rows = sorted(rows, key=lambda c: c.get("estimate") or 0)
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "x": [_clean(c.get("estimate")) for c in rows],
                "y": [c["term"] for c in rows],
                "error_x": {
                    "type": "data",
                    "symmetric": False,
                    "array": [_clean((c.get("ci_high") or 0) - (c.get("estimate") or 0)) for c in rows],
                    "arrayminus": [_clean((c.get("estimate") or 0) - (c.get("ci_low") or 0)) for c in rows],
                },
                "hovertemplate": "%{y}: %{x:.2f}<extra></extra>",
            }
        ],
        "layout": _layout(
            title,
            height=max(300, 22 * len(rows) + 80),
            margin={"l": 220, "r": 20, "t": 40, "b": 50},
            xaxis={"title": {"text": "effect on rating (points per SD)"}, "zeroline": True},
        ),
    }


def histogram_figure(values_by_group: dict[str, list[float]], title: str) -> dict:
    traces = [
        {
            "type": "histogram",
            "name": group,
            "x": values,
            "xbins": {"start": 0, "end": 100.001, "size": 10},
            "histnorm": "percent" if len(values_by_group) > 1 else "",
            "opacity": 0.75,
        }
        for group, values in values_by_group.items()
    ]
    return {
        "data": traces,
        "layout": _layout(
            title,
            barmode="group",
            xaxis={"title": {"text": "rating"}, "range": [0, 100]},
            yaxis={"title": {"text": "% of group" if len(traces) > 1 else "ratings"}},
        ),
    }


def bar_figure(
    labels: list[str], values: list[float], title: str, *, error: list[float] | None = None, axis: str = ""
) -> dict:
    trace = {"type": "bar", "x": labels, "y": [_clean(v) for v in values]}
    if error is not None:
        trace["error_y"] = {"type": "data", "array": [_clean(e) for e in error]}
    return {"data": [trace], "layout": _layout(title, yaxis={"title": {"text": axis}})}


def grouped_bar_figure(labels: list[str], series: dict[str, list[float]], title: str, *, axis: str = "") -> dict:
    """Horizontal grouped bars: long group names stay readable."""
    return {
        "data": [
            {"type": "bar", "orientation": "h", "name": name, "y": labels, "x": [_clean(v) for v in values]}
            for name, values in series.items()
        ],
        "layout": _layout(
            title,
            barmode="group",
            xaxis={"title": {"text": axis}},
            yaxis={"autorange": "reversed", "automargin": True},
            height=max(320, 26 * len(labels) + 100),
            legend={"orientation": "h", "y": -0.08},
            margin={"l": 20, "r": 20, "t": 40, "b": 60},
        ),
    }
