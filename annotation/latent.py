"""What the participants pages show of the latest latent-state job of a study (kind "latent").

The job itself (benchmark.latent) writes one summary row per annotator into its result and the
per-trial estimates into its `latent_trials.csv` artifact; this module reads them back for the
participants table (expected disengaged trials, the review flag) and for one annotator's page (the
p(disengaged) curve with the ratings and response times). A flag suggests review; nobody is excluded
by it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.db.models import F

from jobs.models import Job

from .models import Study

KIND = "latent"
TRIALS_FILE = "latent_trials.csv"


def latent_latest(*, study: Study) -> Job | None:
    return (
        Job.objects.filter(study=study, kind=KIND, status=Job.Status.SUCCEEDED).order_by("-finished_at", "-id").first()
    )


def latent_state(*, study: Study) -> tuple[Job | None, Job | None]:
    """(latest succeeded job, a job queued or running) in one query: unfinished jobs sort first."""
    S = Job.Status
    jobs = list(
        Job.objects.filter(study=study, kind=KIND, status__in=[S.SUCCEEDED, S.QUEUED, S.RUNNING]).order_by(
            F("finished_at").desc(nulls_first=True), "-id"
        )[:20]
    )
    running = next((j for j in jobs if j.status in (S.QUEUED, S.RUNNING)), None)
    done = next((j for j in jobs if j.status == S.SUCCEEDED), None)
    if done is None and len(jobs) == 20:  # twenty unfinished jobs and more: look the latest result up
        done = latent_latest(study=study)
    return done, running


def latent_by_pseudonym(job: Job | None) -> dict[str, dict]:
    if job is None or not isinstance(job.result, dict):
        return {}
    return {row["pseudonym"]: row for row in job.result.get("annotators", [])}


def latent_trials(*, job: Job, pseudonym: str) -> pd.DataFrame | None:
    """One annotator's trials from the job's per-trial file (None if the file is gone)."""
    artifact = job.artifacts.filter(name=TRIALS_FILE).first()
    if artifact is None:
        return None
    path = Path(settings.MEDIA_ROOT) / artifact.file.name
    if not path.is_file():
        return None
    frame = pd.read_csv(path, dtype={"pseudonym": str})
    return frame[frame["pseudonym"] == pseudonym].sort_values("trial")


def _values(series: pd.Series) -> list:
    return [None if not np.isfinite(v) else round(float(v), 4) for v in series.to_numpy(dtype=float)]


def latent_figure(trials: pd.DataFrame, *, pseudonym: str) -> str:
    """A Plotly figure (JSON for plots.js): p(disengaged) per trial over the ratings and response times."""
    x = trials["trial"].astype(int).tolist()
    rt = trials["rt_ms"].where(trials["rt_ms"].notna(), trials["server_rt_ms"]).astype(float) / 1000.0
    unsure = trials["rating"].isna()
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "p(disengaged)",
            "x": x,
            "y": _values(trials["p_disengaged"]),
            "yaxis": "y",
            "line": {"color": "#c62828", "width": 2},
            "fill": "tozeroy",
            "fillcolor": "rgba(198,40,40,0.12)",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "rating",
            "x": x,
            "y": _values(trials["rating"]),
            "yaxis": "y2",
            "marker": {"color": "#1565c0", "size": 6},
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "consensus (others)",
            "x": x,
            "y": _values(trials["consensus"]),
            "yaxis": "y2",
            "line": {"color": "#90a4ae", "dash": "dot"},
        },
    ]
    if unsure.any():
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Unsure",
                "x": trials.loc[unsure, "trial"].astype(int).tolist(),
                "y": [50] * int(unsure.sum()),
                "yaxis": "y2",
                "marker": {"symbol": "x", "color": "#6a1b9a", "size": 8},
            }
        )
    if rt.notna().any():
        data.append(
            {
                "type": "bar",
                "name": "response time (s)",
                "x": x,
                "y": _values(rt),
                "yaxis": "y3",
                "marker": {"color": "rgba(46,125,50,0.45)"},
            }
        )
    if "theta" in trials:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "drift θ",
                "x": x,
                "y": _values(trials["theta"] + 50),
                "yaxis": "y2",
                "line": {"color": "#f9a825"},
            }
        )
    layout = {
        "template": "plotly_white",
        "height": 520,
        "margin": {"l": 60, "r": 60, "t": 40, "b": 50},
        "title": {"text": f"{pseudonym}: p(disengaged) by trial", "font": {"size": 15}},
        "legend": {"orientation": "h", "y": -0.15},
        "xaxis": {"title": {"text": "trial (display position)"}},
        "yaxis": {"title": {"text": "p(disengaged)"}, "range": [0, 1], "domain": [0.68, 1]},
        "yaxis2": {"title": {"text": "rating"}, "range": [-2, 102], "domain": [0.3, 0.64]},
        "yaxis3": {"title": {"text": "RT (s)"}, "domain": [0, 0.26], "rangemode": "tozero"},
    }
    return json.dumps({"data": data, "layout": layout}, allow_nan=False)
