"""The selection objective: Jensen–Shannon distance between a subset's distributions and targets.

A pool of n candidates is a matrix `features` (n × D) of the non-negative mass each candidate adds to
each dimension's categories, side by side: the harm level as a one-hot over the 11 levels 0.0 … 1.0,
the 16 action and 7 effect category probabilities (each row sums to 1 in the release), and the value
topics (their absolute values: the release's value features are signed differences, and a topic's
weight in a subset is how strongly its prompts engage it, whichever way).  A subset's distribution on
a dimension is its members' summed mass, normalised; its distance to the target is the
Jensen–Shannon distance in bits (the square root of the divergence, between 0 and 1).  The objective
is the weighted mean of the per-dimension distances, minus `score_weight` times the mean of an
optional per-candidate score (predicted disagreement), so that the optimisers below can work on sums
alone: swapping a member changes the sums by two rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import rel_entr

HARM_LEVELS = tuple(round(0.1 * i, 1) for i in range(11))
# PluriHarms over-sampled the middle of the harm axis, where people disagree most.
PAPER_HARM_TARGET = (0.01, 0.02, 0.05, 0.10, 0.20, 0.24, 0.20, 0.10, 0.05, 0.02, 0.01)
DIMENSION_NAMES = ("harm_level", "actions", "effects", "values")
LN2 = float(np.log(2.0))
# p·log(p/m) has an infinite slope at p = 0; the screening gradient only needs an ordering.
_GRADIENT_FLOOR = 1e-9


@dataclass(frozen=True)
class Dimension:
    name: str
    labels: tuple[str, ...]
    start: int  # columns start:stop of the feature matrix
    stop: int
    target: np.ndarray  # sums to 1
    weight: float = 1.0


@dataclass
class Problem:
    """What the optimisers need: the candidates' masses, the dimensions, the groups and the score."""

    features: np.ndarray  # (n, D) float64, non-negative
    dimensions: list[Dimension]
    groups: np.ndarray  # (n,) int group codes 0..G-1
    score: np.ndarray | None = None  # (n,) e.g. predicted rating SD, on any scale
    score_weight: float = 0.0
    _weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.features = np.ascontiguousarray(self.features, dtype=np.float64)
        self.groups = np.asarray(self.groups, dtype=np.int64)
        if self.features.ndim != 2 or len(self.features) != len(self.groups):
            raise ValueError("features must be n × D and groups n long")
        if (self.features < 0).any() or not np.isfinite(self.features).all():
            raise ValueError("features must be finite and non-negative")
        if self.score is not None:
            self.score = np.asarray(self.score, dtype=np.float64)
            if self.score.shape != (len(self.features),) or not np.isfinite(self.score).all():
                raise ValueError("score must be a finite value per candidate")
        self._weights = np.array([d.weight for d in self.dimensions], dtype=np.float64)
        if not len(self.dimensions) or self._weights.sum() <= 0:
            raise ValueError("the objective needs at least one dimension with a positive weight")

    @property
    def n(self) -> int:
        return len(self.features)

    def distances(self, sums: np.ndarray) -> np.ndarray:
        """Per-dimension JS distances for sums of shape (..., D) → (..., n_dimensions)."""
        return np.stack([js_distance(sums[..., d.start : d.stop], d.target) for d in self.dimensions], axis=-1)

    def objective(self, sums: np.ndarray, score_sum: np.ndarray | float = 0.0, k: int = 1) -> np.ndarray:
        """The objective for sums (..., D) of k members whose scores add up to `score_sum`."""
        value = self.distances(sums) @ self._weights / self._weights.sum()
        if self.score is not None and self.score_weight:
            value = value - self.score_weight * np.asarray(score_sum) / k
        return value

    def evaluate(self, members: np.ndarray) -> float:
        members = np.asarray(members)
        score_sum = float(self.score[members].sum()) if self.score is not None else 0.0
        return float(self.objective(self.features[members].sum(axis=0), score_sum, len(members)))

    def gradient(self, sums: np.ndarray) -> np.ndarray:
        """d objective / d sums at `sums` (D,): ranks the candidates for the swap search (only its order
        matters: a candidate's effect on the sums is small next to K members'). A dimension already on
        its target has no gradient (the distance is a square root, flat there in no direction)."""
        grad = np.zeros_like(sums)
        total_weight = self._weights.sum()
        for dim in self.dimensions:
            block = sums[dim.start : dim.stop]
            total = block.sum()
            if total <= 0:
                continue
            p = np.maximum(block / total, _GRADIENT_FLOOR)
            m = 0.5 * (p + dim.target)
            dp = 0.5 * np.log(p / m)  # d JSD (nats) / d p_k
            ds = (dp - dp @ (block / total)) / total
            jsd = float(rel_entr(block / total, 0.5 * (block / total + dim.target)).sum() * 0.5)
            jsd += float(rel_entr(dim.target, 0.5 * (block / total + dim.target)).sum() * 0.5)
            if jsd <= 1e-15:
                continue
            grad[dim.start : dim.stop] = dim.weight / total_weight * ds / (2.0 * np.sqrt(jsd / LN2) * LN2)
        return grad

    def report(self, members: np.ndarray) -> dict:
        """Per-dimension distance and the subset's distribution next to the target (plain data)."""
        sums = self.features[np.asarray(members)].sum(axis=0)
        distances = self.distances(sums)
        out = {}
        for dim, distance in zip(self.dimensions, distances, strict=True):
            block = sums[dim.start : dim.stop]
            total = block.sum()
            shares = block / total if total > 0 else np.zeros_like(block)
            out[dim.name] = {
                "js_distance": float(distance),
                "labels": list(dim.labels),
                "selected": [float(x) for x in shares],
                "target": [float(x) for x in dim.target],
                "weight": dim.weight,
            }
        return out


def js_distance(blocks: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2) between the normalised rows of `blocks` (..., d) and `target`
    (d,); a row without any mass is as far as can be (1)."""
    totals = blocks.sum(axis=-1, keepdims=True)
    empty = totals[..., 0] <= 0
    p = np.divide(blocks, totals, out=np.zeros_like(blocks, dtype=np.float64), where=totals > 0)
    m = 0.5 * (p + target)
    jsd = 0.5 * (rel_entr(p, m).sum(axis=-1) + rel_entr(target, m).sum(axis=-1)) / LN2
    distance = np.sqrt(np.clip(jsd, 0.0, 1.0))
    return np.where(empty, 1.0, distance)


def harm_one_hot(levels: np.ndarray) -> np.ndarray:
    """(n,) harm levels in 0–1 → (n, 11) one-hot on the nearest of 0.0, 0.1, …, 1.0."""
    bins = np.clip(np.rint(np.asarray(levels, dtype=np.float64) * 10), 0, 10).astype(int)
    out = np.zeros((len(bins), len(HARM_LEVELS)))
    out[np.arange(len(bins)), bins] = 1.0
    return out
