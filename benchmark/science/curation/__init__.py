"""Prompt-bank curation (issue 12): choose K prompts from a pool so that the subset's distributions of harm
level, harm actions, harm effects and value topics match targets (Jensen–Shannon distance), at most a few
variants of one seed prompt, optionally leaning toward predicted disagreement.  Pure: numpy and pandas.

    pool = pool_read(path.read_bytes(), name=path.name)
    problem = pool.problem("paper")                   # or "uniform", or a parsed targets file
    chosen = select(problem, 50, optimizer="best", max_per_group=2, seed=0)
    problem.report(chosen.members)                    # JS distance and distribution per dimension
"""

from .objective import DIMENSION_NAMES, HARM_LEVELS, PAPER_HARM_TARGET, Dimension, Problem, js_distance
from .optimize import OPTIMIZERS, InfeasibleSelection, Selection, feasible_size, select
from .pool import Pool, PoolFormatError, pool_read
from .run import curate
from .targets import TARGET_PRESETS, TargetsError, targets_resolve

__all__ = [
    "DIMENSION_NAMES",
    "HARM_LEVELS",
    "OPTIMIZERS",
    "PAPER_HARM_TARGET",
    "TARGET_PRESETS",
    "Dimension",
    "InfeasibleSelection",
    "Pool",
    "PoolFormatError",
    "Problem",
    "Selection",
    "TargetsError",
    "curate",
    "feasible_size",
    "js_distance",
    "pool_read",
    "select",
    "targets_resolve",
]
