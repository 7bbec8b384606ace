"""Plotly figures as plain dicts ({"data": [...], "layout": {...}}), drawn in the browser by plots.js.

Built by hand rather than through plotly.graph_objects: the dicts are small, fast to build on every
poll, and easy to test.
"""

from __future__ import annotations

import html
import json
import math
import textwrap
from datetime import datetime, timedelta

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


# Tick labels for a date axis at each zoom level: never fractions of a second, the date shown once
# per tick when the range spans days (Plotly picks the entry whose dtick range holds the tick step).
DATE_TICKS = [
    {"dtickrange": [None, 60_000], "value": "%H:%M:%S"},
    {"dtickrange": [60_000, 86_400_000], "value": "%H:%M<br>%b %-d"},
    {"dtickrange": [86_400_000, None], "value": "%b %-d<br>%Y"},
]
BIN_SECONDS = {"minute": 60, "hour": 3_600, "day": 86_400}


def _integer_axis(title: str, largest: int) -> dict:
    """A count axis: whole-number ticks (Plotly would put 0.5 between 0 and 1 annotators)."""
    axis = {"title": {"text": title}, "rangemode": "tozero", "tickformat": ",d"}
    if largest <= 10:
        axis["dtick"] = 1
    return axis


def _parse_utc(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def progress_figure(over_time: list[dict], time_bin: str = "hour") -> dict:
    """Cumulative ratings at the start of each time bin (ISO 8601 UTC strings), on a date axis whose range
    pads the first and last bins, so that a study rated within minutes has a readable axis."""
    x = [row["start"] for row in over_time]
    xaxis = {"title": {"text": "time (UTC)"}, "type": "date", "tickformatstops": DATE_TICKS}
    if x:
        first, last = _parse_utc(x[0]), _parse_utc(x[-1])
        pad = max(timedelta(seconds=BIN_SECONDS.get(time_bin, 3_600) * 5), (last - first) * 0.05)
        xaxis["range"] = [(first - pad).strftime("%Y-%m-%d %H:%M:%S"), (last + pad).strftime("%Y-%m-%d %H:%M:%S")]
    largest = over_time[-1]["cumulative"] if over_time else 0
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "line": {"shape": "hv"},
                "name": "ratings",
                "x": x,
                "y": [row["cumulative"] for row in over_time],
                "hovertemplate": f"%{{x|%Y-%m-%d %H:%M}} UTC (per {time_bin}): %{{y:,d}} ratings<extra></extra>",
            }
        ],
        "layout": _layout("Ratings collected", xaxis=xaxis, yaxis=_integer_axis("ratings", largest)),
    }


def per_prompt_figure(per_prompt: dict[str, int], target: int | None = None) -> dict:
    """One bar per prompt, fewest ratings first. The axis is categorical: prompt ids such as "17" would
    otherwise be read as numbers and the bars drawn in id order, not in the sorted order."""
    ordered = sorted(per_prompt.items(), key=lambda kv: (kv[1], kv[0]))
    layout = _layout(
        "Ratings per prompt",
        xaxis={
            "title": {"text": "prompts (sorted by ratings)"},
            "type": "category",
            "categoryorder": "array",
            "categoryarray": [k for k, _ in ordered],
            "showticklabels": False,
        },
        yaxis=_integer_axis("ratings", max([v for _, v in ordered] + [target or 0])),
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
        "data": [
            {
                "type": "bar",
                "x": keys,
                "y": [by_status[k] for k in keys],
                "hovertemplate": "%{x}: %{y} annotators<extra></extra>",
            }
        ],
        "layout": _layout(
            "Annotators by status",
            xaxis={"type": "category"},
            yaxis=_integer_axis("annotators", max(by_status.values(), default=0)),
        ),
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
            legend={"orientation": "h", "y": -0.2},  # below the plane: on a phone it would squeeze it
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


MISSING_GROUP = "—"  # benchmark.views.dashboards: an annotator without a value in the chosen column
HISTOGRAM_EDGES = list(range(0, 101, 10))


def wrap_label(text: str, width: int = 22) -> str:
    """A label on several lines (Plotly's <br>) of at most `width` characters; the text itself escaped
    (Plotly reads a little HTML in labels and decodes these entities)."""
    lines = textwrap.wrap(str(text), width, break_long_words=True) or [""]
    return "<br>".join(html.escape(line, quote=False) for line in lines)


def group_order(groups) -> list[str]:
    """Groups in a stable order: by name (case-insensitively, then exactly), the missing-value group last."""
    return sorted(groups, key=lambda g: (g == MISSING_GROUP, str(g).casefold(), str(g)))


def histogram_counts(values: list[float]) -> list[int]:
    """Counts in the bins 0–10, 10–20, …, 90–100 (each bin holds its lower edge; the last also holds 100)."""
    counts = [0] * (len(HISTOGRAM_EDGES) - 1)
    for value in values:
        index = min(max(int(value // 10), 0), len(counts) - 1)
        counts[index] += 1
    return counts


def histogram_figure(values_by_group: dict[str, list[float]], title: str) -> dict:
    """Ratings in ten bins, one bar trace per group, binned here (Plotly's histogram trace is not in the
    partial bundle the site serves). With several groups, bars are percentages of their group, and each
    group is named with its size (n=…) in a stable order."""
    return histogram_counts_figure({group: histogram_counts(v) for group, v in values_by_group.items()}, title)


def histogram_counts_figure(counts_by_group: dict[str, list[int]], title: str) -> dict:
    """`histogram_figure` from the counts in its bins (histogram_counts) of each group."""
    several = len(counts_by_group) > 1
    names = [f"{low}–{high}" for low, high in zip(HISTOGRAM_EDGES, HISTOGRAM_EDGES[1:], strict=False)]
    traces = []
    for group in group_order(counts_by_group):
        counts = list(counts_by_group[group])
        n = sum(counts)
        y = [round(100 * c / n, 2) if n else 0 for c in counts] if several else counts
        traces.append(
            {
                "type": "bar",
                "name": wrap_label(f"{group} (n={n})"),
                "x": [(low + high) / 2 for low, high in zip(HISTOGRAM_EDGES, HISTOGRAM_EDGES[1:], strict=False)],
                "y": y,
                "customdata": names,
                "hovertemplate": "%{customdata}: %{y}"
                + ("%" if several else " ratings")
                + "<extra>%{fullData.name}</extra>",
                "opacity": 0.8 if several else 1,
            }
        )
    largest = max((max(t["y"]) for t in traces if t["y"]), default=0)
    return {
        "data": traces,
        "layout": _layout(
            title,
            barmode="group",
            bargap=0.08,
            xaxis={"title": {"text": "rating"}, "range": [0, 100], "tick0": 0, "dtick": 10},
            yaxis={"title": {"text": "% of group"}, "rangemode": "tozero"}
            if several
            else _integer_axis("ratings", largest),
            legend={"orientation": "h", "y": -0.2},
            showlegend=several,
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
            {
                "type": "bar",
                "orientation": "h",
                "name": name,
                "y": [wrap_label(label, 28) for label in labels],
                "x": [_clean(v) for v in values],
            }
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
