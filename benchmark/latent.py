"""Latent-state estimation for a study: each annotator's p(disengaged) per trial from the shipped networks.

The input is the study's own prompt ratings in display order, their response times as recorded
(`rt_ms`, the browser's active time, else `server_rt_ms`, the server's shown-to-saved time), and the
leave-one-out consensus (the mean rating of the prompt by the other non-excluded annotators). A study
with response times uses the network trained with them; one without (an imported release) the `no-rt`
variant. The result flags annotators for review; it never excludes anyone (a researcher decides).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from annotation.models import Annotator, Prompt, Study
from annotation.selectors import rating_rows
from jobs.registry import Progress

from .science.latent import (
    CHECKPOINT_DIR,
    checkpoint_load,
    checkpoint_summary,
    default_checkpoint,
    infer_frame,
    leave_one_out_consensus,
)

TRIALS_FILE = "latent_trials.csv"
ANNOTATORS_FILE = "latent_annotators.csv"
RT_CHOICES = ("auto", "use", "ignore")


def latent_input_frame(*, study: Study) -> pd.DataFrame:
    """One row per prompt rating: pseudonym, trial, prompt_id and prompt (its external id), rating (NaN =
    Unsure), rt_ms and server_rt_ms exactly as stored, rt (the one the network sees), consensus and its
    number of raters."""
    rows = rating_rows(study=study)
    people = dict(Annotator.objects.filter(study=study).values_list("id", "pseudonym"))
    prompts = dict(Prompt.objects.filter(study=study).values_list("id", "external_id"))
    excluded = set(Annotator.objects.filter(study=study, status=Annotator.Status.EXCLUDED).values_list("id", flat=True))
    who = rows["annotator_id"].to_numpy(dtype=np.int64)
    rating = rows["rating"].to_numpy(dtype=float)
    consensus, others = leave_one_out_consensus(
        rows["prompt_id"].to_numpy(), rating, counts=~np.isin(who, list(excluded))
    )
    rt_ms = rows["rt_ms"].array
    server_rt_ms = rows["server_rt_ms"].array
    rt = np.where(
        rt_ms.isna(), server_rt_ms.to_numpy(dtype=float, na_value=np.nan), rt_ms.to_numpy(dtype=float, na_value=np.nan)
    )
    frame = pd.DataFrame(
        {
            "annotator": [people[i] for i in who],
            "trial": rows["trial"].to_numpy(dtype=np.int64),
            "prompt_id": rows["prompt_id"].to_numpy(dtype=np.int64),
            "prompt": [prompts.get(i, "") for i in rows["prompt_id"].to_numpy(dtype=np.int64)],
            "rating": rating,
            "rt_ms": rt_ms,
            "server_rt_ms": server_rt_ms,
            "rt": rt,
            "consensus": consensus,
            "consensus_raters": others,
        }
    )
    return frame.sort_values(["annotator", "trial"], kind="stable").reset_index(drop=True)


def study_latent(
    *,
    study: Study,
    model: str = "engagement",
    response_times: str = "auto",
    flag_share: float = 0.2,
    out_dir: Path,
    progress: Progress | None = None,
) -> dict:
    """Run the shipped network of `model` over the study; write the per-trial and per-annotator CSVs
    into `out_dir` and return the job's result (per-annotator summary and the checkpoint's report)."""
    progress = progress or (lambda fraction, message: None)
    progress(0.05, "reading ratings")
    frame = latent_input_frame(study=study)
    if frame.empty:
        return {"model": model, "annotators": [], "message": "no prompt ratings yet"}
    has_rt = bool(np.isfinite(frame["rt"]).mean() >= 0.5)
    use_rt = {"auto": has_rt, "use": True, "ignore": False}[response_times]
    path = default_checkpoint(model, use_rt=use_rt)
    if not path.is_file():
        flag = "" if use_rt else " --no-rt"
        raise ValueError(
            f"no shipped {model} network {'with' if use_rt else 'without'} response times ({path.name}); "
            f"train it with: manage.py latent train --model {model}{flag} --out {path.name}"
        )
    checkpoint = checkpoint_load(path, model=model)
    # Without consensus (a prompt nobody else rated) the study's mean rating stands in for it.
    no_consensus = int(np.isnan(frame["consensus"]).sum())
    fill = float(np.nanmean(frame["rating"])) if np.isfinite(frame["rating"]).any() else 50.0
    table = pd.DataFrame(
        {
            "annotator": frame["annotator"],
            "trial": frame["trial"],
            "rating": frame["rating"],
            "rt_ms": frame["rt"] if use_rt else np.nan,
            "consensus": frame["consensus"].fillna(fill),
        }
    )
    progress(0.3, f"inferring {frame['annotator'].nunique()} annotators")
    rows, summary = infer_frame(table, checkpoint, flag_share=flag_share)
    # The file names prompts by their external id, as exports do (not by database id).
    trials = frame.drop(columns=["rt", "prompt_id"]).assign(p_disengaged=rows["p_disengaged"].to_numpy())
    if "theta" in rows:
        trials["theta"] = rows["theta"].to_numpy()
    trials = trials.rename(columns={"annotator": "pseudonym"})
    out_dir.mkdir(parents=True, exist_ok=True)
    trials.to_csv(out_dir / TRIALS_FILE, index=False)
    summary = summary.rename(columns={"annotator": "pseudonym"})
    summary.to_csv(out_dir / ANNOTATORS_FILE, index=False)
    progress(0.9, "writing results")
    expected = summary["expected_disengaged"].to_numpy()
    report = checkpoint.report
    return {
        "model": model,
        "checkpoint": path.name,
        "use_rt": use_rt,
        "flag_share": flag_share,
        "trials": len(trials),
        "trials_without_consensus": no_consensus,
        "annotators": [
            {
                "pseudonym": r.pseudonym,
                "trials": int(r.trials),
                "expected_disengaged": round(float(r.expected_disengaged), 3),
                "disengaged_share": round(float(r.disengaged_share), 4),
                "flag_review": bool(r.flag_review),
            }
            for r in summary.itertuples()
        ],
        "flagged": int(summary["flag_review"].sum()),
        "expected_disengaged_quantiles": {str(q): float(np.quantile(expected, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        "validation": {
            name: {"log_loss": m["log_loss"], "auroc": m["auroc"]} for name, m in report.get("methods", {}).items()
        },
    }


def checkpoint_names() -> list[str]:
    """The checkpoints shipped with the product (file stems: engagement, engagement-no-rt, …)."""
    return sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))


def checkpoint_report(name: str) -> dict:
    """A shipped checkpoint's validation report with its configuration and training record.

    Read from the `.json` copy written next to the checkpoint at training time (no torch import on a
    page view); the checkpoint itself is read when that copy is missing."""
    sidecar = CHECKPOINT_DIR / f"{name}.json"
    if sidecar.is_file():
        return json.loads(sidecar.read_text())
    ckpt = checkpoint_load(CHECKPOINT_DIR / f"{name}.pt")
    return checkpoint_summary(ckpt)
