"""A generated pool shaped like PluriHarms' candidates, for benchmarks and tests: `n_seeds` seed prompts,
each with a variant at every harm level 0.0 … 1.0 (group = the seed), action and effect shares drawn
around the seed's own profile (variants of one seed share a topic), and a few signed value topics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.science.release.columns import FEATURE_PREFIXES

from .objective import HARM_LEVELS
from .pool import Pool

N_ACTIONS, N_EFFECTS, N_VALUES = 16, 7, 39


def pool_generate(n_seeds: int, *, seed: int = 0) -> Pool:
    rng = np.random.default_rng(seed)
    n_levels = len(HARM_LEVELS)
    n = n_seeds * n_levels
    action_profile = rng.dirichlet(np.full(N_ACTIONS, 0.3), size=n_seeds)
    effect_profile = rng.dirichlet(np.full(N_EFFECTS, 0.5), size=n_seeds)
    actions = rng.dirichlet(np.ones(N_ACTIONS), size=n) * 0.2 + 0.8 * np.repeat(action_profile, n_levels, axis=0)
    effects = rng.dirichlet(np.ones(N_EFFECTS), size=n) * 0.2 + 0.8 * np.repeat(effect_profile, n_levels, axis=0)
    topics = np.zeros((n_seeds, N_VALUES))
    for i in range(n_seeds):
        chosen = rng.choice(N_VALUES, size=rng.integers(1, 5), replace=False)
        topics[i, chosen] = rng.uniform(-1, 1, size=len(chosen))
    values = np.repeat(topics, n_levels, axis=0) * rng.uniform(0.5, 1.0, size=(n, 1))
    seeds = np.repeat(np.arange(n_seeds), n_levels)
    levels = np.tile(np.asarray(HARM_LEVELS), n_seeds)
    frame = pd.DataFrame(
        {
            "external_id": [f"s{s}-h{round(h * 10)}" for s, h in zip(seeds, levels, strict=True)],
            "text": [f"seed {s} at harm level {h:.1f}" for s, h in zip(seeds, levels, strict=True)],
            "harm_level": levels,
            "group": [f"s{s}" for s in seeds],
        }
    )
    action, effect, value = FEATURE_PREFIXES
    blocks = [
        pd.DataFrame(actions, columns=[f"{action}{i}" for i in range(N_ACTIONS)]),
        pd.DataFrame(effects, columns=[f"{effect}{i}" for i in range(N_EFFECTS)]),
        pd.DataFrame(values, columns=[f"{value}{i}" for i in range(N_VALUES)]),
    ]
    frame = pd.concat([frame, *blocks], axis=1)
    return Pool(frame, [c for block in blocks for c in block.columns])
