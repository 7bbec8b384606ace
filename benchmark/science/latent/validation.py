"""The validation report of a checkpoint: held-out simulations scored against the true latents.

For each method that infers p(z_t = disengaged): log-loss, AUROC, the Brier score and calibration
(reliability in ten equal-width bins and the expected calibration error). The methods:

- engagement model: the network, forward–backward with the true parameters (the best possible with
  parameters known), forward–backward with per-annotator MAP parameters (what a careful analyst would do);
- drift model: the network, the particle smoother with the true parameters (the reference) and the
  misspecified baseline (model 1's MAP + forward–backward, which ignores the drift); and for θ_t, the
  mean squared error and R² of the network's and the particle smoother's estimates.

All on the same simulated annotators (a seed the training never used), with the inputs the network is
given (no response times for a `--no-rt` checkpoint: the references then see none either). Probabilities
are clipped to [1e-4, 1 − 1e-4] for the log-loss of every method alike (a particle estimate can be
exactly 0 or 1).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import roc_auc_score

from .exact import engagement_posterior
from .fit import map_fit
from .models import Sequences, simulate
from .particles import particle_smoother

EPS = 1e-4
VALIDATION_SEED_OFFSET = 7_000_001


def classification_metrics(z: np.ndarray, p: np.ndarray, *, bins: int = 10) -> dict:
    z = np.asarray(z, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    log_loss = float(-np.mean(z * np.log(p) + (1 - z) * np.log1p(-p)))
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        mean_p, freq = float(p[sel].mean()), float(z[sel].mean())
        table.append(
            {"bin": [float(edges[b]), float(edges[b + 1])], "mean_p": mean_p, "observed": freq, "n": int(sel.sum())}
        )
        ece += sel.mean() * abs(mean_p - freq)
    return {
        "log_loss": log_loss,
        "auroc": float(roc_auc_score(z, p)) if 0 < z.mean() < 1 else None,
        "brier": float(np.mean((p - z) ** 2)),
        "ece": float(ece),
        "calibration": table,
    }


def theta_metrics(theta: np.ndarray, estimate: np.ndarray) -> dict:
    mse = float(np.mean((estimate - theta) ** 2))
    return {"mse": mse, "r2": float(1 - mse / np.var(theta))}


def validation_report(
    predict,
    *,
    model: str,
    use_rt: bool,
    pool: np.ndarray,
    n: int = 1000,
    n_trials: int = 150,
    seed: int = 0,
    map_steps: int = 300,
    n_particles: int = 200,
    progress=None,
) -> dict:
    """Score `predict(seqs) -> (p_disengaged, theta)` and the references on n held-out simulations."""
    rng = np.random.default_rng(seed + VALIDATION_SEED_OFFSET)
    seqs: Sequences = simulate(model, n, pool=pool, rng=rng, n_trials=n_trials)
    if not use_rt:
        seqs = seqs.without_rt()
    mask = seqs.mask
    z = seqs.z[mask]
    methods, seconds = {}, {}

    def note(name):
        if progress:
            progress(name)

    started = time.perf_counter()
    p_net, theta_net = predict(seqs)
    seconds["network"] = time.perf_counter() - started
    methods["network"] = classification_metrics(z, p_net[mask])
    note("network")

    started = time.perf_counter()
    fitted = map_fit(seqs, steps=map_steps)
    p_map, _ = engagement_posterior(seqs, fitted)
    seconds["map_forward_backward"] = time.perf_counter() - started
    note("map")

    report = {
        "model": model,
        "use_rt": use_rt,
        "n_annotators": n,
        "n_trials": n_trials,
        "seed": seed + VALIDATION_SEED_OFFSET,
        "disengaged_share": float(z.mean()),
    }
    if model == "engagement":
        p_true, _ = engagement_posterior(seqs, seqs.params)
        methods["forward_backward_true"] = classification_metrics(z, p_true[mask])
        methods["forward_backward_map"] = classification_metrics(z, p_map[mask])
        reference = methods["forward_backward_map"]["log_loss"]
        report["network_vs_map_log_loss"] = methods["network"]["log_loss"] / reference - 1
    else:
        started = time.perf_counter()
        p_pf, theta_pf = particle_smoother(seqs, seqs.params, n_particles=n_particles, seed=seed)
        seconds["particle_smoother"] = time.perf_counter() - started
        note("particles")
        methods["particle_smoother_true"] = classification_metrics(z, p_pf[mask])
        methods["misspecified_baseline"] = classification_metrics(z, p_map[mask])
        baseline = methods["misspecified_baseline"]["log_loss"]
        report["network_vs_baseline_log_loss"] = methods["network"]["log_loss"] / baseline - 1
        report["theta"] = {
            "network": theta_metrics(seqs.theta[mask], theta_net[mask]),
            "particle_smoother_true": theta_metrics(seqs.theta[mask], theta_pf[mask]),
        }
        report["n_particles"] = n_particles
    report["methods"] = methods
    report["seconds"] = seconds
    return report
