"""Does the jury know what a population it has not seen would say?  Held-out validation.

Each repeat holds out `n_held` (30) annotators drawn at random (seeded), builds their population mix
from their own demographics (their marginals over `columns`), fits and rakes the jury on the other
annotators only, and compares per prompt:
  - the jury's predicted share harmful (rating ≥ threshold) for that mix,
  - the naive answer: the share among the collected (training) annotators, as they are,
  - the raked observed answer: the training annotators' own ratings, reweighted by the same raking
    weights (what the mix alone does, without a predictor),
with the held-out annotators' observed share (prompts with at least `min_ratings` held-out ratings).
Scores: MAE of the share per repeat (mean over prompts), the paired difference jury − naive over
repeats with its t-interval, and the calibration of the jury's share against the observed share
(least-squares intercept and slope over every repeat × prompt, and a 10-bin table).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from benchmark.science.protocol import _t_interval

from .panel import DEFAULT_PREDICTOR, jury_draw, jury_fit, people_table
from .raking import marginals, rake

__all__ = ["VALIDATION_COLUMNS", "jury_validate"]

# The demographic columns whose marginals the held-out mix reproduces: the ones with few levels (the
# release's race and sexual-orientation columns have many single-person levels, which 70 training
# annotators often lack).
VALIDATION_COLUMNS = ("Age", "Gender", "Political_Affiliation", "Religion_Importance", "Education")

Progress = Callable[[float, str], None]


def _shares(scores: np.ndarray, weights: np.ndarray, threshold: float) -> np.ndarray:
    """Per prompt: weighted share of the ratings ≥ threshold among the annotators who rated it."""
    rated = np.isfinite(scores)
    hit = np.where(rated, scores >= threshold - 1e-12, False)
    w = weights[:, None] * rated
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * hit).sum(axis=0) / w.sum(axis=0)


def jury_validate(
    frame: pd.DataFrame,
    *,
    n_held: int = 30,
    repeats: int = 10,
    columns=VALIDATION_COLUMNS,
    threshold: float = 50.0,
    size: int = 1000,
    n_juries: int = 200,
    predictor: str = DEFAULT_PREDICTOR,
    n_fits: int = 5,
    min_ratings: int = 10,
    seed: int = 0,
    ratings: bool = False,
    progress: Progress | None = None,
) -> dict:
    people = people_table(frame)
    columns = [c for c in columns if c in people.columns]
    if not columns:
        raise ValueError("the validation needs demographic columns to build the held-out mix from")
    if len(people) < n_held + 10:
        raise ValueError(f"the validation holds out {n_held} annotators and needs at least 10 more")
    t = threshold / 100.0
    per_repeat, pairs = [], []
    for k in range(repeats):
        rng = np.random.default_rng([seed, k, 30_030])
        held = set(rng.choice(people.index.to_numpy(), size=n_held, replace=False))
        in_held = frame["annotator"].astype(str).isin(held)
        train = frame[~in_held]

        def step(fraction: float, message: str, k=k) -> None:
            if progress is not None:
                progress((k + 0.9 * fraction) / repeats, f"repeat {k + 1}/{repeats}: {message}")

        fit = jury_fit(train, predictor=predictor, n_fits=n_fits, seed=seed + k, ratings=ratings, progress=step)
        held_people = people.loc[sorted(held)]
        mix = marginals(held_people, np.ones(len(held_people)), columns)
        raked = rake(fit.people, mix)
        result = jury_draw(fit, raked.weights, size=size, n_juries=n_juries, threshold=threshold, seed=seed + k)
        jury = np.array([row["share_harmful"] for row in result["prompts"]])
        # held-out annotators' observed share, on the jury's prompts
        held_rows = frame[in_held & frame["rating"].notna()]
        scores = held_rows.assign(score=held_rows["rating"].astype(float) / 100.0).pivot_table(
            index="annotator", columns="prompt", values="score", aggfunc="mean"
        )
        scores.columns = scores.columns.astype(str)
        scores = scores.reindex(columns=fit.prompts)
        observed = _shares(scores.to_numpy(dtype=float), np.ones(len(scores)), t)
        n_obs = np.isfinite(scores.to_numpy(dtype=float)).sum(axis=0)
        naive = _shares(fit.observed, np.ones(len(fit.annotators)), t)
        raked_obs = _shares(fit.observed, raked.weights.reindex(fit.annotators).to_numpy(dtype=float), t)
        keep = (n_obs >= min_ratings) & np.isfinite(naive) & np.isfinite(raked_obs)
        per_repeat.append(
            {
                "repeat": k,
                "n_prompts": int(keep.sum()),
                "mae_jury": float(np.abs(jury - observed)[keep].mean()),
                "mae_naive": float(np.abs(naive - observed)[keep].mean()),
                "mae_raked_observed": float(np.abs(raked_obs - observed)[keep].mean()),
                "raking_feasible": raked.feasible,
                "raking_problems": raked.problems,
                "raking_max_error": raked.max_error,
                "effective_n": raked.effective_n,
            }
        )
        pairs.append(np.column_stack([jury[keep], observed[keep], naive[keep]]))
    table = pd.DataFrame(per_repeat)
    diff = (table["mae_jury"] - table["mae_naive"]).to_numpy()
    diff_raked = (table["mae_raked_observed"] - table["mae_naive"]).to_numpy()
    low, high = _t_interval(diff)
    raked_low, raked_high = _t_interval(diff_raked)
    everything = np.vstack(pairs)
    slope, intercept = np.polyfit(everything[:, 0], everything[:, 1], 1)
    naive_slope, naive_intercept = np.polyfit(everything[:, 2], everything[:, 1], 1)
    edges = np.linspace(0, 1, 11)
    bins = np.clip(np.digitize(everything[:, 0], edges[1:-1]), 0, 9)
    calibration = [
        {
            "bin": f"{edges[b]:.1f}–{edges[b + 1]:.1f}",
            "n": int((bins == b).sum()),
            "predicted": float(everything[bins == b, 0].mean()),
            "observed": float(everything[bins == b, 1].mean()),
        }
        for b in range(10)
        if (bins == b).any()
    ]
    beats = bool(high < 0)
    return {
        "predictor": predictor,
        "ratings": ratings,
        "n_held": n_held,
        "repeats": repeats,
        "columns": list(columns),
        "threshold": float(threshold),
        "size": size,
        "n_juries": n_juries,
        "n_fits": n_fits,
        "min_ratings": min_ratings,
        "mae_jury": float(table["mae_jury"].mean()),
        "mae_naive": float(table["mae_naive"].mean()),
        "mae_raked_observed": float(table["mae_raked_observed"].mean()),
        "difference": float(diff.mean()),
        "difference_ci_low": low,
        "difference_ci_high": high,
        "raked_difference": float(diff_raked.mean()),
        "raked_difference_ci_low": raked_low,
        "raked_difference_ci_high": raked_high,
        "jury_wins": int((diff < 0).sum()),
        "calibration_slope": float(slope),
        "calibration_intercept": float(intercept),
        "naive_calibration_slope": float(naive_slope),
        "naive_calibration_intercept": float(naive_intercept),
        "calibration": calibration,
        "beats_naive": beats,
        "verdict": (
            f"The jury's share error beats the naive answer's: {table['mae_jury'].mean():.3f} against "
            f"{table['mae_naive'].mean():.3f} (difference {diff.mean():+.3f}, 95% CI {low:+.3f} to {high:+.3f} "
            f"over {repeats} held-out draws)."
            if beats
            else f"The jury does NOT beat the naive answer (the collected population's share): share MAE "
            f"{table['mae_jury'].mean():.3f} against {table['mae_naive'].mean():.3f} (difference "
            f"{diff.mean():+.3f}, 95% CI {low:+.3f} to {high:+.3f} over {repeats} held-out draws of {n_held} "
            "annotators)."
        ),
        "per_repeat": per_repeat,
    }
