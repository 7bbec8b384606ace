"""The jury: what would a panel of N people drawn from a chosen population say about each prompt?

1. Fit (`jury_fit`).  Every real annotator's rating of every prompt is predicted by a new-annotator
   predictor (default `traits_ramp`) from their traits alone, *cross-fitted*: annotators are dealt into
   `folds` folds and each fold is predicted by a predictor fitted on the other folds, so no member's
   prediction has seen their own ratings.  This is repeated `n_fits` times with other folds and a
   bootstrap resample of the training annotators each time: the spread over these fits is the
   uncertainty of the predictor's fit.  With `ratings=True` the members' own ratings of the *other*
   prompts are used too (a warm-condition predictor, default `observed_ramp`): prompts are dealt into
   folds as well, so a member's rating of a prompt is still never seen when it is predicted.
2. A member's rating is their prediction plus a residual of that prompt: the residuals (rating −
   out-of-fold prediction) of the annotators who rated the prompt, in the same fit.  So the member's
   predicted rating distribution on prompt p is ŷ(member, p) + {residuals of p}, and the chance that
   they rate at or above the threshold t is the share of those residuals ≥ t − ŷ(member, p).  With a
   predictor that ignores traits (everyone's ŷ the same) this gives back the collected annotators'
   observed share exactly; traits move it only as far as the predictor says they matter.
3. Draw (`jury_draw`).  Each of `n_juries` juries draws `size` members from the real annotators with
   the raking weights (multinomial), takes one of the fits in turn, and draws each member's verdict
   (rating ≥ t or not) from their chance.  Per prompt: the mean share harmful over juries and its
   2.5–97.5 percentile interval (juries and fits), the predicted rating distribution (10 bins of 10
   points), and the same jury drawn from the collected population (equal weights) with the same fits,
   so the shift (mix − collected) has a paired interval.

Scores are on 0–1 inside (rating / 100); the threshold is given on the rating scale (0–100).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from benchmark.science.predictors.base import REGISTRY, get_predictor
from benchmark.science.predictors.common import NOT_TRAITS, prompt_table, trait_columns

from .raking import marginals

__all__ = [
    "DEFAULT_PREDICTOR",
    "DEFAULT_RATINGS_PREDICTOR",
    "DISTRIBUTION_EDGES",
    "JuryFit",
    "jury_draw",
    "jury_fit",
    "jury_predictors",
    "people_table",
    "person_columns",
]

DEFAULT_PREDICTOR = "traits_ramp"
# With the members' own ratings: the best warm-condition predictor on the release (BENCHMARKS.md).
DEFAULT_RATINGS_PREDICTOR = "observed_ramp"
# Bins of the predicted rating distribution shown per prompt: [0, 10), [10, 20), …, [90, 100].
DISTRIBUTION_EDGES = np.linspace(0.0, 1.0, 11)

Progress = Callable[[float, str], None]


def jury_predictors(*, ratings: bool = False) -> list[str]:
    """Registered predictors that need no configuration and can predict an annotator from traits alone
    (the new_annotator condition) or, with `ratings`, also from their own ratings of other prompts (the
    warm condition)."""
    condition = "warm" if ratings else "new_annotator"
    return sorted(
        name
        for name, cls in REGISTRY.items()
        if condition in cls.conditions and not getattr(cls, "needs_config", False)
    )


def person_columns(frame: pd.DataFrame) -> list[str]:
    """The annotator trait columns of a long frame: demographics and trait scores."""
    return trait_columns(frame)


def people_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per annotator (index: annotator id as str) with their trait columns."""
    people = frame.drop_duplicates("annotator").copy()
    people["annotator"] = people["annotator"].astype(str)
    return people.set_index("annotator")[person_columns(frame)]


@dataclass
class JuryFit:
    predictor: str
    annotators: list[str]
    prompts: list[str]
    people: pd.DataFrame  # index = annotators
    observed: np.ndarray  # (A, P) scores, NaN where not rated (or Unsure)
    predictions: np.ndarray  # (R, A, P) cross-fitted predictions, 0–1
    texts: dict

    @property
    def n_fits(self) -> int:
        return self.predictions.shape[0]

    def residuals(self) -> np.ndarray:
        """(R, A, P) rating − prediction where rated, NaN elsewhere."""
        return self.observed[None, :, :] - self.predictions

    def chance(self, threshold: float) -> np.ndarray:
        """(R, A, P): each annotator's chance of rating prompt p at or above `threshold` (0–1)."""
        return self._at_least(np.full(1, threshold))[..., 0]

    def distribution(self) -> np.ndarray:
        """(R, A, P, G): each annotator's predicted rating distribution over the G bins of
        DISTRIBUTION_EDGES."""
        edges = DISTRIBUTION_EDGES.copy()
        above = self._at_least(edges[:-1])  # P(rating ≥ lower edge of each bin)
        above[..., 0] = 1.0  # everything is ≥ 0 (a clipped residual below 0 is a 0 rating)
        upper = np.concatenate([above[..., 1:], np.zeros(above.shape[:-1] + (1,))], axis=-1)
        return above - upper

    def _at_least(self, thresholds: np.ndarray) -> np.ndarray:
        residuals = self.residuals()
        R, A, P = self.predictions.shape
        out = np.empty((R, A, P, len(thresholds)))
        for r in range(R):
            for p in range(P):
                e = residuals[r, :, p]
                e = np.sort(e[np.isfinite(e)])
                if len(e) == 0:
                    # no rating of this prompt: the prediction itself, as a point mass
                    out[r, :, p, :] = (self.predictions[r, :, p, None] >= thresholds[None, :] - 1e-12).astype(float)
                    continue
                need = thresholds[None, :] - self.predictions[r, :, p, None]  # (A, T): residual needed
                # a rating above 1 is a 1: ≥ t is reached when ŷ + e ≥ t, t ≤ 1 (tiny tolerance for t = edges)
                below = np.searchsorted(e, need.ravel() - 1e-12, side="left").reshape(need.shape)
                out[r, :, p, :] = 1.0 - below / len(e)
        return out


def _test_rows(people: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Every annotator of `people` × every prompt of `table`, with traits and prompt columns."""
    a = np.repeat(people.index.to_numpy(), len(table))
    p = np.tile(table.index.to_numpy(), len(people))
    rows = pd.DataFrame({"annotator": a, "prompt": p})
    rows = rows.join(people, on="annotator").join(table, on="prompt")
    return rows


def jury_fit(
    frame: pd.DataFrame,
    *,
    predictor: str = DEFAULT_PREDICTOR,
    n_fits: int = 5,
    folds: int = 5,
    seed: int = 0,
    ratings: bool = False,
    prompt_folds: int = 3,
    progress: Progress | None = None,
) -> JuryFit:
    """Cross-fitted predictions of every annotator × prompt, `n_fits` times (see the module docstring).

    `frame` is the long frame (`annotator`, `prompt`, `rating`, traits, prompt features).

    `ratings=True` (the members' own ratings: a predictor of the warm condition, e.g. `observed_ramp`):
    prompts are also dealt into `prompt_folds` folds, and the members of an annotator fold are predicted
    on a prompt fold by a predictor that saw their ratings of the *other* prompts and every other
    annotator's ratings (bootstrap-resampled), never their rating of the prompt predicted."""
    if predictor not in jury_predictors(ratings=ratings):
        kind = "a predictor that learns from an annotator's own ratings" if ratings else "a predictor of new annotators"
        raise ValueError(
            f"the jury needs {kind}; {predictor!r} is not one "
            f"(choose from {', '.join(jury_predictors(ratings=ratings))})"
        )
    frame = frame.drop(columns=[c for c in NOT_TRAITS if c in frame.columns])
    data = frame[frame["rating"].notna()].copy()
    data["annotator"] = data["annotator"].astype(str)
    data["prompt"] = data["prompt"].astype(str)
    data["score"] = data["rating"].astype(float) / 100.0
    # Text columns as categories: the 25+ training frames below are row subsets of this one, and taking
    # rows of a categorical costs a fraction of taking Arrow strings (the predictors read them as text).
    for column in data.columns:
        if column not in ("annotator", "prompt") and (
            pd.api.types.is_object_dtype(data[column]) or pd.api.types.is_string_dtype(data[column])
        ):
            data[column] = data[column].astype("category")
    people = people_table(frame)
    annotators = list(people.index)
    if len(annotators) < max(3, folds):
        raise ValueError(f"the jury needs at least {max(3, folds)} annotators with ratings")
    table = prompt_table(frame.assign(prompt=frame["prompt"].astype(str)))
    prompts = list(table.index)
    a_index = {a: i for i, a in enumerate(annotators)}
    p_index = {p: j for j, p in enumerate(prompts)}
    observed = np.full((len(annotators), len(prompts)), np.nan)
    observed[data["annotator"].map(a_index).to_numpy(), data["prompt"].map(p_index).to_numpy()] = data["score"]
    rows_of = {str(a): rows for a, rows in data.groupby("annotator", sort=False).indices.items()}
    texts = dict(zip(table.index, table["text"])) if "text" in table.columns else {}
    predictions = np.full((n_fits, len(annotators), len(prompts)), np.nan)
    blocks = prompt_folds if ratings else 1
    total = n_fits * folds * blocks
    with threadpool_limits(limits=1, user_api="blas"):  # ~100 × 150 matrices: threads cost more than they save
        for r in range(n_fits):
            rng = np.random.default_rng([seed, r, 7_013])
            dealt = rng.permutation(len(annotators))
            for f in range(folds):
                in_fold = set(dealt[f::folds].tolist())
                members = [annotators[i] for i in sorted(in_fold)]
                others = [annotators[i] for i in range(len(annotators)) if i not in in_fold]
                drawn = rng.choice(len(others), size=len(others), replace=True)
                parts = [rows_of.get(others[i], np.empty(0, dtype=int)) for i in drawn]
                train = data.iloc[np.concatenate(parts)].copy()
                # each draw is its own annotator (a person drawn twice counts twice)
                train["annotator"] = np.repeat(
                    [f"{others[i]}#{k}" for k, i in enumerate(drawn)], [len(x) for x in parts]
                )
                dealt_prompts = rng.permutation(len(prompts))
                for b in range(blocks):
                    block = [prompts[j] for j in sorted(dealt_prompts[b::blocks])] if ratings else prompts
                    fitted = train
                    if ratings:  # the members' own ratings of the prompts outside this block
                        mine = data["annotator"].isin(members).to_numpy() & ~data["prompt"].isin(block).to_numpy()
                        fitted = pd.concat([train, data[mine]], ignore_index=True)
                    model = get_predictor(predictor).fit(fitted)
                    test = _test_rows(people.loc[members], table.loc[block])
                    values = np.clip(np.asarray(model.predict(test), dtype=float), 0.0, 1.0)
                    rows = test["annotator"].map(a_index).to_numpy()
                    cols = test["prompt"].map(p_index).to_numpy()
                    predictions[r, rows, cols] = values
                    if progress is not None:
                        done = (r * folds + f) * blocks + b + 1
                        progress(done / total, f"fit {r + 1}/{n_fits}, fold {f + 1}/{folds}")
    return JuryFit(predictor, annotators, prompts, people, observed, predictions, texts)


def _percentiles(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return np.percentile(values, 2.5, axis=axis), np.percentile(values, 97.5, axis=axis)


def jury_draw(
    fit: JuryFit,
    weights: pd.Series,
    *,
    size: int = 1000,
    n_juries: int = 200,
    threshold: float = 50.0,
    seed: int = 0,
    columns=None,
) -> dict:
    """Draw `n_juries` juries of `size` members with `weights` (per annotator) and summarise per prompt.

    Returns {"prompts": [{prompt, text, share_harmful, ci_low, ci_high, collected_share,
    collected_ci_low, collected_ci_high, shift, shift_ci_low, shift_ci_high, observed_share,
    mean_rating, distribution, verdict}], "jury_marginals": …, "threshold", "size", "n_juries",
    "n_fits"}.  `verdict`: "harmful" when the whole interval of the share is above ½, "not harmful"
    when it is below, else "split"."""
    if size < 1 or n_juries < 2:
        raise ValueError("a jury needs size ≥ 1 and at least 2 juries for an interval")
    if not 0.0 <= threshold <= 100.0:
        raise ValueError("the harm threshold is a rating between 0 and 100")
    w = weights.reindex(fit.annotators).fillna(0.0).to_numpy(dtype=float)
    if w.sum() <= 0:
        raise ValueError("the weights leave no annotator to draw")
    w = w / w.sum()
    uniform = np.full(len(w), 1.0 / len(w))
    chance = fit.chance(threshold / 100.0)  # (R, A, P)
    distribution = fit.distribution()  # (R, A, P, G)
    rng = np.random.default_rng([seed, 31_337])
    which = np.arange(n_juries) % fit.n_fits
    counts = rng.multinomial(size, w, size=n_juries)  # (B, A)
    counts_ref = rng.multinomial(size, uniform, size=n_juries)
    share = np.empty((n_juries, len(fit.prompts)))
    share_ref = np.empty_like(share)
    dist = np.zeros((len(fit.prompts), distribution.shape[-1]))
    for r in range(fit.n_fits):
        juries = np.flatnonzero(which == r)
        if not len(juries):
            continue
        # Each member's verdict is a draw.  The count of harmful verdicts is drawn as Binomial(size, the
        # jury's mean chance): its variance is at least that of the exact sum of the members' draws
        # (a Poisson-binomial), so the interval errs wide, and it costs B × P draws instead of B × A × P.
        mean_chance = np.clip(counts[juries] @ chance[r] / size, 0.0, 1.0)
        mean_chance_ref = np.clip(counts_ref[juries] @ chance[r] / size, 0.0, 1.0)
        share[juries] = rng.binomial(size, mean_chance) / size
        share_ref[juries] = rng.binomial(size, mean_chance_ref) / size
        dist += np.einsum("ba,apg->pg", counts[juries] / size, distribution[r])
    dist /= n_juries
    shift = share - share_ref
    low, high = _percentiles(share)
    ref_low, ref_high = _percentiles(share_ref)
    shift_low, shift_high = _percentiles(shift)
    with np.errstate(invalid="ignore"):
        observed_share = np.nanmean(
            np.where(np.isnan(fit.observed), np.nan, fit.observed >= threshold / 100.0 - 1e-12), axis=0
        )
    mean_prediction = np.einsum("a,rap->p", w, fit.predictions) / fit.n_fits
    rows = []
    for j, prompt in enumerate(fit.prompts):
        verdict = "harmful" if low[j] > 0.5 else "not harmful" if high[j] < 0.5 else "split"
        rows.append(
            {
                "prompt": prompt,
                "text": str(fit.texts.get(prompt, "")),
                "share_harmful": float(share[:, j].mean()),
                "ci_low": float(low[j]),
                "ci_high": float(high[j]),
                "collected_share": float(share_ref[:, j].mean()),
                "collected_ci_low": float(ref_low[j]),
                "collected_ci_high": float(ref_high[j]),
                "shift": float(shift[:, j].mean()),
                "shift_ci_low": float(shift_low[j]),
                "shift_ci_high": float(shift_high[j]),
                "observed_share": None if np.isnan(observed_share[j]) else float(observed_share[j]),
                "mean_rating": float(100.0 * mean_prediction[j]),
                "distribution": [float(x) for x in dist[j]],
                "verdict": verdict,
            }
        )
    columns = [c for c in (columns or []) if c in fit.people.columns]
    drawn = counts.sum(axis=0) / counts.sum()
    return {
        "prompts": rows,
        "jury_marginals": marginals(fit.people, drawn, columns) if columns else {},
        "threshold": float(threshold),
        "size": int(size),
        "n_juries": int(n_juries),
        "n_fits": int(fit.n_fits),
        "distribution_edges": [float(100 * e) for e in DISTRIBUTION_EDGES],
    }
