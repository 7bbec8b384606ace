"""One selection from a pool, as the command and the job run it: the chosen rows and a plain-data report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .optimize import select
from .pool import Pool


def curate(
    pool: Pool,
    k: int,
    *,
    targets="paper",
    targets_name: str = "paper",
    max_per_group: int | None = 2,
    optimizer: str = "best",
    seed: int = 0,
    score: np.ndarray | None = None,
    score_weight: float = 0.0,
    **params,
) -> tuple[pd.DataFrame, dict]:
    """(the chosen rows of the pool in pool order, the report).

    The report holds the JS distance per dimension, the objective (weighted mean distance, less the
    disagreement term when there is one) per iteration, the optimizer and its parameters, the seconds,
    and each dimension's chosen distribution next to its target.  Raises `TargetsError` or
    `InfeasibleSelection` for targets or a K that cannot be used.
    """
    problem = pool.problem(targets, score=score, score_weight=score_weight)
    chosen = select(problem, k, optimizer=optimizer, max_per_group=max_per_group, seed=seed, **params)
    dimensions = problem.report(chosen.members)
    selected = pool.frame.iloc[chosen.members].reset_index(drop=True)
    groups = selected["group"].value_counts()
    report = {
        "k": k,
        "pool_size": len(pool),
        "pool_groups": int(pool.frame["group"].nunique()),
        "max_per_group": max_per_group,
        "targets": targets_name,
        "optimizer": optimizer,
        "optimizer_params": chosen.params,
        "seed": seed,
        "seconds": round(chosen.seconds, 4),
        "evaluations": chosen.evaluations,
        "objective": chosen.objective,
        "js_distance": {name: block["js_distance"] for name, block in dimensions.items()},
        "objective_per_iteration": chosen.history,
        "distributions": dimensions,
        "largest_group_count": int(groups.max()),
        "selected": selected["external_id"].tolist(),
    }
    if score is not None:
        report["score_weight"] = score_weight
        report["mean_score"] = {
            "selected": float(np.mean(score[chosen.members])),
            "pool": float(np.mean(score)),
        }
    return selected, report
