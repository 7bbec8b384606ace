"""Latent annotator states: behaviour models, exact inference and a neural estimator (no Django).

    seqs = simulate("engagement", 100, pool=release_pool(), rng=np.random.default_rng(0))
    p, loglik = engagement_posterior(seqs, seqs.params)        # exact, model 1 with known parameters
    ckpt = checkpoint_load(default_checkpoint("engagement", use_rt=False))
    rows, summary = infer_frame(frame, ckpt)                    # frame: annotator, trial, rating, rt_ms, consensus

The models and their equations are in `models` (and docs/latent.md); `exact` is forward–backward,
`fit` per-annotator MAP parameters, `particles` the particle smoother for the drift model, `network`
the bidirectional GRU, `validation` the held-out report stored in each checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .exact import engagement_posterior, forward_backward, log_emissions
from .fit import map_fit
from .frames import (
    FLAG_SHARE,
    INPUT_COLUMNS,
    LatentInputError,
    annotator_summary,
    leave_one_out_consensus,
    per_row,
    sequences_from_frame,
)
from .models import MODELS, PRIORS, Sequences, params_sample, simulate
from .network import Checkpoint, CheckpointError, TrainConfig, checkpoint_load, checkpoint_save, train
from .particles import particle_smoother
from .validation import validation_report

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


def default_checkpoint(model: str, *, use_rt: bool) -> Path:
    """The checkpoint shipped with the product for a model, with or without response times."""
    return CHECKPOINT_DIR / f"{model}{'' if use_rt else '-no-rt'}.pt"


def release_pool() -> np.ndarray:
    """The consensus pool by default: the vendored PluriHarms release's prompt means."""
    from ..release import RELEASE_DIR, release_read  # noqa: PLC0415  (reading the release takes a moment)

    frame = release_read(RELEASE_DIR).long()
    return frame.groupby("prompt")["rating"].mean().to_numpy(dtype=float)


def release_frame() -> pd.DataFrame:
    """The vendored release as the latent-state input: each annotator's ratings in display order, no
    response times, and the leave-one-out consensus (the mean of the other 99 annotators)."""
    from ..release import RELEASE_DIR, release_read  # noqa: PLC0415

    long = release_read(RELEASE_DIR).long()
    consensus, _ = leave_one_out_consensus(long["prompt"].to_numpy(), long["rating"].to_numpy(dtype=float))
    return pd.DataFrame(
        {
            "annotator": long["annotator"].to_numpy(dtype=object),
            "trial": long["trial"].to_numpy(),
            "rating": long["rating"].to_numpy(dtype=float),
            "rt_ms": np.nan,
            "consensus": consensus,
        }
    )


def checkpoint_train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    pool: np.ndarray | None = None,
    report_n: int = 1000,
    map_steps: int = 300,
    progress=None,
) -> dict:
    """Train, score on held-out simulations and write the checkpoint; returns the validation report."""
    pool = release_pool() if pool is None else np.asarray(pool, dtype=float)
    net, training = train(cfg, pool=pool, progress=progress)
    report = validation_report(
        lambda seqs: network_predict(net, seqs, cfg.use_rt),
        model=cfg.model,
        use_rt=cfg.use_rt,
        pool=pool,
        n=report_n,
        seed=cfg.seed,
        map_steps=map_steps,
    )
    report["training"] = {k: v for k, v in training.items() if k != "history"}
    checkpoint_save(out, net, cfg, training, report)
    # A readable copy next to the checkpoint, for pages that should not import torch to show it.
    Path(out).with_suffix(".json").write_text(json.dumps(checkpoint_summary(checkpoint_load(out)), indent=1))
    return report


def checkpoint_summary(ckpt: Checkpoint) -> dict:
    """What a checkpoint says about itself: model, inputs, configuration, training record, validation."""
    return {
        "model": ckpt.model,
        "use_rt": ckpt.use_rt,
        "config": ckpt.config,
        "parameters": sum(p.numel() for p in ckpt.net.parameters()),
        "training": ckpt.training,
        **{k: v for k, v in ckpt.report.items() if k not in ("model", "use_rt", "training")},
    }


def network_predict(net, seqs: Sequences, use_rt: bool):
    from .network import predict  # noqa: PLC0415

    return predict(net, seqs, use_rt=use_rt)


def infer_frame(
    frame: pd.DataFrame, checkpoint: Checkpoint, *, flag_share: float = FLAG_SHARE, row_label=None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-trial estimates for a long table (see `frames`): the input rows with `p_disengaged` (and
    `theta` for the drift model) added, and one summary row per annotator."""
    seqs, layout = sequences_from_frame(frame, row_label=row_label)
    p, theta = checkpoint.predict(seqs)
    rows = frame.reset_index(drop=True).copy()
    rows["p_disengaged"] = per_row(p, layout)
    if checkpoint.model == "drift":
        rows["theta"] = per_row(theta, layout)
    summary = annotator_summary(p, seqs.mask, layout.annotators, flag_share=flag_share)
    return rows, summary


__all__ = [
    "CHECKPOINT_DIR",
    "FLAG_SHARE",
    "INPUT_COLUMNS",
    "MODELS",
    "PRIORS",
    "Checkpoint",
    "CheckpointError",
    "LatentInputError",
    "Sequences",
    "TrainConfig",
    "annotator_summary",
    "checkpoint_load",
    "checkpoint_save",
    "checkpoint_summary",
    "checkpoint_train",
    "default_checkpoint",
    "engagement_posterior",
    "forward_backward",
    "infer_frame",
    "leave_one_out_consensus",
    "log_emissions",
    "map_fit",
    "params_sample",
    "particle_smoother",
    "release_frame",
    "release_pool",
    "sequences_from_frame",
    "simulate",
    "train",
    "validation_report",
]
