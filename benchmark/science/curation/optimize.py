"""Choose K candidates minimising the objective, at most `max_per_group` from a group; deterministic per seed.

- `ga`: a plain genetic algorithm as PluriHarms used: a population of feasible subsets, tournament
  selection, crossover that keeps the parents' common members and fills from the rest of both, mutation
  by swapping members for random non-members, elitism; a fixed number of generations.
- `best`: swap local search.  It starts from a subset drawn to the harm-level target, then repeatedly
  makes the best improving swap (one member out, one non-member in).  On a small pool every swap is
  evaluated exactly; on a large one the gradient of the objective with respect to the subset's sums
  ranks members and non-members and the exact objective is evaluated for the shortlisted pairs (the
  shortlist grows when it finds nothing, up to a bound).  A local optimum is then kicked (a few random
  swaps) and searched again, keeping the best: iterated local search, with a fixed number of kicks.

Both take a `numpy` seed and no clock, so a seed gives the same subset on any machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .objective import Problem

OPTIMIZERS = ("ga", "best")
# Below this many (member, candidate) pairs every swap is evaluated exactly each step.
EXACT_PAIRS = 200_000
_IMPROVEMENT = 1e-12


class InfeasibleSelection(ValueError):
    """K cannot be reached under the group limit (or the pool is smaller than K)."""


@dataclass
class Selection:
    members: np.ndarray  # candidate indices, ascending
    objective: float
    history: list[float]  # the objective per iteration (a generation, or an accepted swap)
    optimizer: str
    seconds: float
    evaluations: int
    params: dict = field(default_factory=dict)


def feasible_size(groups: np.ndarray, max_per_group: int | None) -> int:
    if max_per_group is None:
        return len(groups)
    return int(np.minimum(np.bincount(groups), max_per_group).sum())


def _check(problem: Problem, k: int, max_per_group: int | None) -> None:
    if k < 1:
        raise InfeasibleSelection("K must be at least 1")
    if max_per_group is not None and max_per_group < 1:
        raise InfeasibleSelection("the group limit must be at least 1")
    if k > problem.n:
        raise InfeasibleSelection(f"K = {k} is larger than the pool ({problem.n} candidates)")
    reachable = feasible_size(problem.groups, max_per_group)
    if k > reachable:
        n_groups = int(problem.groups.max()) + 1
        raise InfeasibleSelection(
            f"K = {k} is larger than what the group limit allows: at most {reachable} candidates with at most "
            f"{max_per_group} per group ({n_groups} groups)"
        )


def select(
    problem: Problem,
    k: int,
    *,
    optimizer: str = "best",
    max_per_group: int | None = 2,
    seed: int = 0,
    **params,
) -> Selection:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use {' or '.join(OPTIMIZERS)}")
    _check(problem, k, max_per_group)
    start = time.perf_counter()
    run = _genetic if optimizer == "ga" else _local_search
    members, history, evaluations, used = run(problem, k, max_per_group, np.random.default_rng(seed), **params)
    members = np.sort(members)
    value = problem.evaluate(members)
    return Selection(members, value, history, optimizer, time.perf_counter() - start, evaluations, used)


def _limit(max_per_group: int | None, k: int) -> int:
    return k if max_per_group is None else max_per_group


def _random_fill(problem: Problem, chosen: list[int], k: int, cap: int, rng, pool: np.ndarray | None = None):
    """Add random candidates (from `pool`, else anywhere) to `chosen` until it has k, under the group cap."""
    counts = np.bincount(problem.groups[chosen], minlength=int(problem.groups.max()) + 1) if chosen else None
    if counts is None:
        counts = np.zeros(int(problem.groups.max()) + 1, dtype=np.int64)
    taken = np.zeros(problem.n, dtype=bool)
    taken[chosen] = True
    order = rng.permutation(problem.n) if pool is None else rng.permutation(pool)
    for j in order:
        if len(chosen) >= k:
            break
        g = problem.groups[j]
        if not taken[j] and counts[g] < cap:
            chosen.append(int(j))
            taken[j] = True
            counts[g] += 1
    return chosen


def _initial(problem: Problem, k: int, cap: int, rng) -> np.ndarray:
    """A feasible subset drawn level by level to the harm target (largest remainders), then filled at random."""
    chosen: list[int] = []
    harm = next((d for d in problem.dimensions if d.name == "harm_level"), None)
    if harm is not None:
        levels = problem.features[:, harm.start : harm.stop].argmax(axis=1)
        raw = harm.target * k
        quota = np.floor(raw).astype(int)
        quota[np.argsort(-(raw - quota), kind="stable")[: k - quota.sum()]] += 1
        for level, count in enumerate(quota):
            if count:
                before = len(chosen)
                _random_fill(problem, chosen, before + count, cap, rng, np.flatnonzero(levels == level))
    _random_fill(problem, chosen, k, cap, rng)
    return np.asarray(chosen)


# ---------------------------------------------------------------- local search


@dataclass
class _State:
    members: np.ndarray  # (k,) candidate indices
    sums: np.ndarray  # (D,)
    score_sum: float
    counts: np.ndarray  # per group
    inside: np.ndarray  # (n,) bool


def _state(problem: Problem, members: np.ndarray) -> _State:
    inside = np.zeros(problem.n, dtype=bool)
    inside[members] = True
    counts = np.bincount(problem.groups[members], minlength=int(problem.groups.max()) + 1)
    score_sum = float(problem.score[members].sum()) if problem.score is not None else 0.0
    return _State(members.copy(), problem.features[members].sum(axis=0), score_sum, counts, inside)


def _pair_values(problem: Problem, state: _State, out_pos: np.ndarray, cand: np.ndarray, k: int) -> np.ndarray:
    """Exact objective after swapping member position out_pos[a] for candidate cand[b] → (A, B)."""
    X = problem.features
    sums = state.sums - X[state.members[out_pos]][:, None, :] + X[cand][None, :, :]
    score = 0.0
    if problem.score is not None:
        score = state.score_sum - problem.score[state.members[out_pos]][:, None] + problem.score[cand][None, :]
    return problem.objective(sums, score, k)


def _feasible_pairs(problem: Problem, state: _State, out_pos: np.ndarray, cand: np.ndarray, cap: int) -> np.ndarray:
    g_out = problem.groups[state.members[out_pos]][:, None]
    g_in = problem.groups[cand][None, :]
    return (state.counts[g_in] < cap) | (g_in == g_out)


# Screening levels for a large pool: (members, non-members) ranked by the gradient, and how many of their
# pairs (best by the linear estimate) get the exact objective.  A step tries the next level only when the
# one before found no improving swap; the last level is tried only in the final descent.
SCREEN_LEVELS = ((8, 64, 256), (32, 512, 1024), (None, 4096, 8192))


def _best_swap(problem, state, k, cap, level, exact):
    """The best improving swap (position, candidate, value) among those examined, or None; and the count."""
    current = float(problem.objective(state.sums, state.score_sum, k))
    outside = np.flatnonzero(~state.inside)
    if exact:
        positions = np.arange(k)
        chunk = max(1, EXACT_PAIRS // max(k, 1))
        best = (None, None, current - _IMPROVEMENT)
        evaluations = 0
        for lo in range(0, len(outside), chunk):
            cand = outside[lo : lo + chunk]
            values = _pair_values(problem, state, positions, cand, k)
            values[~_feasible_pairs(problem, state, positions, cand, cap)] = np.inf
            evaluations += values.size
            a, b = np.unravel_index(np.argmin(values), values.shape)
            if values[a, b] < best[2]:
                best = (int(a), int(cand[b]), float(values[a, b]))
        return (best if best[0] is not None else None), evaluations
    n_out, n_in, n_pairs = SCREEN_LEVELS[level]
    gain = problem.features @ problem.gradient(state.sums)  # one product: gathering rows would copy them
    if problem.score is not None and problem.score_weight:
        gain -= problem.score_weight * problem.score / k
    gain_in, gain_out = gain[outside], gain[state.members]
    n_out, n_in = min(k, n_out or k), min(len(outside), n_in)
    positions = np.argsort(-gain_out, kind="stable")[:n_out]
    shortlist = np.argpartition(gain_in, n_in - 1)[:n_in] if n_in < len(outside) else np.arange(len(outside))
    shortlist = shortlist[np.argsort(gain_in[shortlist], kind="stable")]
    cand = outside[shortlist]
    estimate = gain_in[shortlist][None, :] - gain_out[positions][:, None]
    estimate[~_feasible_pairs(problem, state, positions, cand, cap)] = np.inf
    flat = np.argsort(estimate, axis=None, kind="stable")[: min(n_pairs, estimate.size)]
    flat = flat[np.isfinite(estimate.ravel()[flat])]
    if not len(flat):
        return None, 0
    rows, cols = np.unravel_index(flat, estimate.shape)
    X = problem.features
    sums = state.sums - X[state.members[positions[rows]]] + X[cand[cols]]
    score = 0.0
    if problem.score is not None:
        score = state.score_sum - problem.score[state.members[positions[rows]]] + problem.score[cand[cols]]
    values = problem.objective(sums, score, k)
    best = int(np.argmin(values))
    if values[best] < current - _IMPROVEMENT:
        return (int(positions[rows[best]]), int(cand[cols[best]]), float(values[best])), len(values)
    return None, len(values)


def _apply(problem: Problem, state: _State, position: int, candidate: int) -> None:
    old = state.members[position]
    state.sums += problem.features[candidate] - problem.features[old]
    if problem.score is not None:
        state.score_sum += problem.score[candidate] - problem.score[old]
    state.counts[problem.groups[old]] -= 1
    state.counts[problem.groups[candidate]] += 1
    state.inside[old] = False
    state.inside[candidate] = True
    state.members[position] = candidate


def _descend(problem, state, k, cap, history, max_steps, final):
    """Best-improvement swaps until none improves (or max_steps); returns the evaluations made."""
    exact = k * (problem.n - k) <= EXACT_PAIRS
    top = len(SCREEN_LEVELS) - (1 if final else 2)
    evaluations = 0
    level = 0
    for _ in range(max_steps):
        found, count = _best_swap(problem, state, k, cap, level, exact)
        evaluations += count
        if found is None:
            if exact or level >= top:
                break
            level += 1  # look wider before calling it a local optimum
            continue
        _apply(problem, state, found[0], found[1])
        history.append(found[2])
        level = 0
    return evaluations


def _kick(problem: Problem, state: _State, k: int, cap: int, size: int, rng) -> None:
    """Swap `size` random members for random feasible non-members."""
    outside = np.flatnonzero(~state.inside)
    for position in rng.choice(k, size=min(size, k), replace=False):
        for candidate in outside[rng.integers(0, len(outside), size=64)]:
            g = problem.groups[candidate]
            if not state.inside[candidate] and (state.counts[g] < cap or g == problem.groups[state.members[position]]):
                _apply(problem, state, int(position), int(candidate))
                break


def _local_search(
    problem, k, max_per_group, rng, *, kicks: int = 30, kick_size: int | None = None, max_steps: int = 10_000
):
    cap = _limit(max_per_group, k)
    kick_size = kick_size or max(2, k // 10)
    state = _state(problem, _initial(problem, k, cap, rng))
    history = [float(problem.objective(state.sums, state.score_sum, k))]
    evaluations = _descend(problem, state, k, cap, history, max_steps, final=kicks == 0)
    best_members, best_value = state.members.copy(), history[-1]
    for _ in range(kicks):
        state = _state(problem, best_members)
        _kick(problem, state, k, cap, kick_size, rng)
        trail: list[float] = []
        evaluations += _descend(problem, state, k, cap, trail, max_steps, final=False)
        value = float(problem.objective(state.sums, state.score_sum, k))
        if value < best_value - _IMPROVEMENT:
            best_members, best_value = state.members.copy(), value
            history.extend(trail)
        history.append(best_value)
    if kicks:
        state = _state(problem, best_members)
        evaluations += _descend(problem, state, k, cap, history, max_steps, final=True)
        best_members = state.members.copy()
    used = {"kicks": kicks, "kick_size": kick_size}
    return best_members, history, evaluations, used


# ---------------------------------------------------------------- genetic algorithm


def _fitness(problem: Problem, population: np.ndarray) -> np.ndarray:
    sums = problem.features[population].sum(axis=1)
    score = problem.score[population].sum(axis=1) if problem.score is not None else 0.0
    return problem.objective(sums, score, population.shape[1])


def _repair(problem: Problem, genes: np.ndarray, k: int, cap: int, rng) -> np.ndarray:
    """Distinct members, at most `cap` per group, exactly k (filled at random)."""
    chosen: list[int] = []
    seen: set[int] = set()
    counts: dict[int, int] = {}
    for j in genes.tolist():
        g = int(problem.groups[j])
        if counts.get(g, 0) < cap and j not in seen:
            chosen.append(j)
            seen.add(j)
            counts[g] = counts.get(g, 0) + 1
        if len(chosen) == k:
            break
    if len(chosen) < k:
        _random_fill(problem, chosen, k, cap, rng)
    return np.asarray(chosen)


def _genetic(
    problem,
    k,
    max_per_group,
    rng,
    *,
    population: int = 100,
    generations: int = 300,
    tournament: int = 3,
    mutation: float | None = None,
    elite: int = 2,
):
    cap = _limit(max_per_group, k)
    mutation = 1.0 / k if mutation is None else mutation
    pop = np.stack([_random_fill(problem, [], k, cap, rng) for _ in range(population)]).astype(np.int64)
    fitness = _fitness(problem, pop)
    history = [float(fitness.min())]
    evaluations = population
    for _ in range(generations):
        order = np.argsort(fitness, kind="stable")
        children = [pop[i].copy() for i in order[:elite]]
        while len(children) < population:
            a, b = (
                min(rng.choice(population, size=tournament, replace=False), key=lambda i: fitness[i]) for _ in range(2)
            )
            common = np.intersect1d(pop[a], pop[b])
            rest = rng.permutation(np.setxor1d(pop[a], pop[b]))
            genes = np.concatenate([common, rest])
            mutate = rng.random(len(genes[:k])) < mutation
            genes = genes[:k].copy()
            genes[mutate] = rng.integers(0, problem.n, size=int(mutate.sum()))
            children.append(_repair(problem, rng.permutation(genes), k, cap, rng))
        pop = np.stack(children)
        fitness = _fitness(problem, pop)
        evaluations += population
        history.append(float(fitness.min()))
    used = {
        "population": population,
        "generations": generations,
        "tournament": tournament,
        "mutation": mutation,
        "elite": elite,
    }
    return pop[int(np.argmin(fitness))], history, evaluations, used
