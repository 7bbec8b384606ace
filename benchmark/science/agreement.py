"""How much annotators agree: per-prompt distributions, reliability coefficients, group-wise agreement.

Input everywhere is the long ratings frame (one row per rating), or a `RatingsMatrix` built once from it
(`RatingsMatrix.from_frame(df)`), which every function here also accepts so a report builds the
annotator × prompt matrix only once. Columns used:

- `annotator` (id), `prompt` (id), `rating` (0–100 float, NaN when Unsure), `unsure` (bool, optional:
  without it a NaN rating counts as missing, not as Unsure);
- `harm_level` for `spearman_harm_level_vs_mean`; a demographic column for `group_agreement`.

"Unsure" and absent cells are missing data for every statistic (they are counted, never imputed).
Nothing here imports Django. Randomness is drawn from `numpy.random.default_rng(seed)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import krippendorff
import numpy as np
import pandas as pd
from scipy import stats

from .release import DEMOGRAPHIC_COLUMNS, FACTOR_COLUMNS

N_BINS = 10
QUADRANTS = ("benign-agreement", "benign-disagreement", "harmful-agreement", "harmful-disagreement")


# --------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class RatingsMatrix:
    """Ratings as a dense annotators × prompts array (NaN where missing or Unsure).

    `annotators` and `prompts` label the rows and columns (order of first appearance in the frame);
    `unsure` marks cells answered "Unsure"; `annotator_table` holds one row per annotator of the
    annotator-level columns found in the frame (demographics, `Factor_*`), `prompt_table` one row per
    prompt of `harm_level` when present.
    """

    annotators: pd.Index
    prompts: pd.Index
    values: np.ndarray
    unsure: np.ndarray
    annotator_table: pd.DataFrame = field(repr=False)
    prompt_table: pd.DataFrame = field(repr=False)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, annotator_columns: list[str] | None = None) -> RatingsMatrix:
        """Pivot a long frame; raises ValueError if an (annotator, prompt) pair occurs twice."""
        for name in ("annotator", "prompt", "rating"):
            if name not in df.columns:
                raise KeyError(f"the ratings frame needs a {name!r} column")
        if df["annotator"].isna().any() or df["prompt"].isna().any():
            df = df[df["annotator"].notna() & df["prompt"].notna()]  # a rating of nobody, or of nothing
        a_codes, annotators = pd.factorize(df["annotator"], sort=False)
        p_codes, prompts = pd.factorize(df["prompt"], sort=False)
        n_a, n_p = len(annotators), len(prompts)
        cell = a_codes.astype(np.int64) * n_p + p_codes
        if len(cell) and np.bincount(cell, minlength=n_a * n_p).max() > 1:
            raise ValueError("an annotator rated the same prompt twice; one row per (annotator, prompt) is expected")
        rating = pd.to_numeric(df["rating"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if "unsure" in df.columns:
            unsure_rows = df["unsure"].fillna(False).to_numpy(dtype=bool)
        else:
            unsure_rows = np.zeros(len(df), dtype=bool)
        values = np.full(n_a * n_p, np.nan)
        values[cell] = np.where(unsure_rows, np.nan, rating)
        unsure = np.zeros(n_a * n_p, dtype=bool)
        unsure[cell] = unsure_rows
        if annotator_columns is None:
            annotator_columns = [c for c in (*DEMOGRAPHIC_COLUMNS, *FACTOR_COLUMNS) if c in df.columns]
        first_a = _first_index(a_codes, n_a)
        annotator_table = (
            df[annotator_columns].iloc[first_a].set_axis(annotators)
            if annotator_columns
            else pd.DataFrame(index=annotators)
        )
        for column in annotator_table.columns:  # a frame may carry a column as a categorical: read its values
            dtype = annotator_table[column].dtype
            if isinstance(dtype, pd.CategoricalDtype):
                annotator_table[column] = annotator_table[column].astype(dtype.categories.dtype)
        prompt_table = pd.DataFrame(index=prompts)
        if "harm_level" in df.columns:
            first_p = _first_index(p_codes, n_p)
            harm = pd.to_numeric(df["harm_level"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            prompt_table["harm_level"] = harm[first_p]
        return cls(
            annotators=pd.Index(annotators),
            prompts=pd.Index(prompts),
            values=values.reshape(n_a, n_p),
            unsure=unsure.reshape(n_a, n_p),
            annotator_table=annotator_table,
            prompt_table=prompt_table,
        )

    @property
    def mask(self) -> np.ndarray:
        return ~np.isnan(self.values)

    @property
    def n_ratings(self) -> int:
        return int(self.mask.sum())

    @property
    def n_unsure(self) -> int:
        return int(self.unsure.sum())

    def centered(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(values − grand mean with 0 where missing, mask as float, grand mean): sums stay well conditioned."""
        mask = self.mask
        centre = float(np.nanmean(self.values)) if mask.any() else 0.0
        return np.where(mask, self.values - centre, 0.0), mask.astype(float), centre


def _first_index(codes: np.ndarray, n: int) -> np.ndarray:
    first = np.full(n, len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    return first


def as_matrix(data: pd.DataFrame | RatingsMatrix) -> RatingsMatrix:
    return data if isinstance(data, RatingsMatrix) else RatingsMatrix.from_frame(data)


# --------------------------------------------------------------------------- per prompt


def bimodality_coefficient(skewness: np.ndarray, excess_kurtosis: np.ndarray, n: np.ndarray) -> np.ndarray:
    """BC = (G1² + 1) / (G2 + 3(n−1)² / ((n−2)(n−3))), with G1, G2 the bias-adjusted sample skewness and
    excess kurtosis (SAS Institute 1990; Pfister et al. 2013, Front. Psychol. 4:700). BC > 5/9 hints at
    bimodality. NaN for n < 4."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        correction = 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3))
        bc = (np.asarray(skewness) ** 2 + 1.0) / (np.asarray(excess_kurtosis) + correction)
    return np.where(n >= 4, bc, np.nan)


def _bootstrap_means(matrix: RatingsMatrix, n: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, P) bootstrap means, resampling each prompt's own ratings with replacement.

    Small prompts resample indices; large ones draw multinomial counts over the distinct rating values,
    which has exactly the same distribution and costs O(values) instead of O(ratings) per draw.
    """
    values = matrix.values
    n_p = values.shape[1]
    out = np.full((n_boot, n_p), np.nan)
    ok = n > 0
    if not ok.any() or n_boot <= 0:
        return out
    domain, counts = _value_counts(matrix)
    n_max = int(n.max())
    if n_max <= 6 * max(len(domain), 1) or len(domain) > 2000:
        ordered = np.sort(values, axis=0).T[ok, :n_max]  # NaN sorts last: each prompt's ratings come first
        ordered = np.nan_to_num(ordered, nan=0.0)
        flat = ordered.reshape(-1)
        n_ok = n[ok]
        offsets = (np.arange(ordered.shape[0]) * n_max)[None, :, None]
        inside = np.arange(n_max)[None, None, :] < n_ok[None, :, None]
        chunk = max(1, int(2e6 // max(1, ordered.size)))
        for start in range(0, n_boot, chunk):
            stop = min(n_boot, start + chunk)
            u = rng.random((stop - start, ordered.shape[0], n_max), dtype=np.float32)
            idx = np.minimum(
                (u * n_ok[None, :, None].astype(np.float32)).astype(np.int64), n_ok[None, :, None].astype(np.int64) - 1
            )
            take = flat[idx + offsets]
            out[start:stop, ok] = np.where(inside, take, 0.0).sum(axis=2) / n_ok
    else:
        pvals = counts[ok] / n[ok, None]
        chunk = max(1, int(2e6 // max(1, pvals.size)))
        for start in range(0, n_boot, chunk):
            stop = min(n_boot, start + chunk)
            draws = rng.multinomial(n[ok].astype(np.int64), pvals, size=(stop - start, pvals.shape[0]))
            out[start:stop, ok] = draws @ domain / n[ok]
    return out


def prompt_stats(
    data: pd.DataFrame | RatingsMatrix,
    *,
    harm_threshold: float = 50.0,
    agreement_threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-prompt distribution of ratings and its place on the harm × agreement plane.

    Needs `annotator`, `prompt`, `rating` (`unsure` optional). One row per prompt, indexed by prompt:

    - `n` ratings (Unsure excluded), `n_unsure`, `share_unsure` = n_unsure / (n + n_unsure);
    - `mean`, `median`, `sd` (ddof=1);
    - `entropy_bits`: Shannon entropy in bits (log base 2, maximum log2 10 ≈ 3.32) of the histogram over
      10 equal bins [0,10), [10,20), …, [90,100]; 100 goes into the last bin, values outside 0–100 into
      the nearest end bin;
    - `share_ge_50`: share of ratings ≥ 50;
    - `skewness`, `excess_kurtosis` (bias-adjusted G1, G2) and `bimodality` (see
      `bimodality_coefficient`);
    - `mean_ci_low`, `mean_ci_high`: percentile 95% bootstrap interval of the mean (`n_boot`
      resamples of the prompt's ratings, seeded);
    - `harm` = mean (the harm axis), `agreement` = sd (the agreement axis: larger = more disagreement);
    - `quadrant`: harmful if mean ≥ `harm_threshold`, else benign; disagreement if sd > the agreement
      threshold, else agreement. The threshold defaults to the median SD across prompts (a median split).
    """
    m = as_matrix(data)
    values, mask = m.values, m.mask
    n = mask.sum(axis=0).astype(float)
    n_unsure = m.unsure.sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(mask, values, 0.0).sum(axis=0) / n, np.nan)
        dev = np.where(mask, values - mean, 0.0)
        m2 = (dev**2).sum(axis=0)
        m3 = (dev**3).sum(axis=0)
        m4 = (dev**4).sum(axis=0)
        sd = np.where(n > 1, np.sqrt(m2 / (n - 1)), np.nan)
        # population moments, then the usual small-sample adjustments (scipy's bias=False)
        pm2, pm3, pm4 = m2 / n, m3 / n, m4 / n
        g1 = pm3 / pm2**1.5
        g2 = pm4 / pm2**2 - 3.0
        skew = np.where(n > 2, np.sqrt(n * (n - 1)) / (n - 2) * g1, np.nan)
        kurt = np.where(n > 3, ((n + 1) * g2 + 6.0) * (n - 1) / ((n - 2) * (n - 3)), np.nan)
        skew = np.where(pm2 > 0, skew, np.nan)
        kurt = np.where(pm2 > 0, kurt, np.nan)
    median = np.full(len(n), np.nan)
    if (n > 0).any():
        median[n > 0] = np.nanmedian(values[:, n > 0], axis=0)
    bins = np.clip(np.floor(np.nan_to_num(values, nan=0.0) / 10.0), 0, N_BINS - 1).astype(np.int64)
    hist = np.stack([((bins == b) & mask).sum(axis=0) for b in range(N_BINS)], axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = hist / n[:, None]
        entropy = 0.0 - np.where(prob > 0, prob * np.log2(np.where(prob > 0, prob, 1.0)), 0.0).sum(axis=1)
        entropy = np.where(n > 0, entropy, np.nan)
        share_ge_50 = np.where(n > 0, ((values >= 50.0) & mask).sum(axis=0) / n, np.nan)
        share_unsure = np.where(n + n_unsure > 0, n_unsure / (n + n_unsure), np.nan)
    boots = _bootstrap_means(m, n, n_boot, np.random.default_rng(seed))
    ci_low, ci_high = np.full(len(n), np.nan), np.full(len(n), np.nan)
    if n_boot > 0 and (n > 0).any():
        ci_low[n > 0], ci_high[n > 0] = np.percentile(boots[:, n > 0], [2.5, 97.5], axis=0)
    if agreement_threshold is None:
        agreement_threshold = float(np.nanmedian(sd)) if np.isfinite(sd).any() else np.nan
    harmful = mean >= harm_threshold
    disagree = sd > agreement_threshold
    quadrant = np.where(
        np.isfinite(mean) & np.isfinite(sd),
        np.where(
            harmful, np.where(disagree, QUADRANTS[3], QUADRANTS[2]), np.where(disagree, QUADRANTS[1], QUADRANTS[0])
        ),
        None,
    )
    out = pd.DataFrame(
        {
            "n": n.astype(np.int64),
            "n_unsure": n_unsure.astype(np.int64),
            "share_unsure": share_unsure,
            "mean": mean,
            "median": median,
            "sd": sd,
            "entropy_bits": entropy,
            "share_ge_50": share_ge_50,
            "skewness": skew,
            "excess_kurtosis": kurt,
            "bimodality": bimodality_coefficient(skew, kurt, n),
            "mean_ci_low": ci_low,
            "mean_ci_high": ci_high,
            "harm": mean,
            "agreement": sd,
            "quadrant": pd.array(quadrant, dtype=object),
        },
        index=pd.Index(m.prompts, name="prompt"),
    )
    out.attrs.update(harm_threshold=harm_threshold, agreement_threshold=agreement_threshold, n_boot=n_boot, seed=seed)
    return out


# --------------------------------------------------------------------------- Krippendorff's alpha


def _value_counts(matrix: RatingsMatrix) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct rating values V, counts units × V): the coincidence input of Krippendorff's α."""
    mask = matrix.mask
    rows, cols = np.nonzero(mask.T)  # unit (prompt) major
    vals = matrix.values.T[rows, cols]
    domain, inverse = np.unique(vals, return_inverse=True)
    n_units = matrix.values.shape[1]
    counts = np.bincount(rows * len(domain) + inverse, minlength=n_units * len(domain)) if len(domain) else np.zeros(0)
    return domain.astype(float), counts.reshape(n_units, len(domain)).astype(float)


def _alpha_interval_from_sums(m: np.ndarray, s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Interval α from per-unit count, sum and sum of squares (last axis = units).

    Krippendorff's coincidence formulas with δ² = (a − b)² reduce to
    α = 1 − (n − 1) Σ_u (m_u Q_u − S_u²)/(m_u − 1) / (n Q − S²), over units with m_u ≥ 2, n = Σ m_u.
    Returns NaN where no unit has two ratings, 1 where there is no within-unit disagreement at all.
    """
    pair = m >= 2
    m_, s_, q_ = np.where(pair, m, 0.0), np.where(pair, s, 0.0), np.where(pair, q, 0.0)
    n = m_.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.where(pair, (m_ * q_ - s_**2) / np.where(pair, m_ - 1.0, 1.0), 0.0).sum(axis=-1)
        within = np.maximum(within, 0.0)
        total = n * q_.sum(axis=-1) - s_.sum(axis=-1) ** 2
        alpha = 1.0 - (n - 1.0) * within / total
    scale = np.maximum(np.abs(total), 1.0)
    alpha = np.where(within <= 1e-12 * scale, 1.0, alpha)
    return np.where(n >= 2, alpha, np.nan)


def _unit_sums(domain: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centre = float((counts.sum(axis=0) @ domain) / max(counts.sum(), 1.0)) if counts.size else 0.0
    v = domain - centre
    return counts.sum(axis=1), counts @ v, counts @ (v * v)


def _alpha_from_counts(domain: np.ndarray, counts: np.ndarray, level: str) -> float:
    if counts.size == 0:
        return math.nan
    m = counts.sum(axis=1)
    pairable = m >= 2
    if not pairable.any():
        return math.nan
    # No disagreement inside any unit: α is 1 by definition (the package would divide 0 by 0 or refuse
    # a one-value domain).
    if ((counts[pairable] > 0).sum(axis=1) <= 1).all():
        return 1.0
    if level == "interval" and counts.shape[0] * len(domain) ** 2 > 2e7:
        return float(_alpha_interval_from_sums(*_unit_sums(domain, counts)))  # same number, no V×V×N array
    return float(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level))


def krippendorff_alpha(data: pd.DataFrame | RatingsMatrix, *, level: str = "interval") -> float:
    """Krippendorff's α with prompts as units, computed by the `krippendorff` package from value counts.

    Needs `annotator`, `prompt`, `rating`. Unsure and absent cells are missing. The units × values count
    matrix makes this independent of the number of annotators (10,000 × 150 is as fast as 100 × 150).
    Degenerate cases: 1.0 when no prompt shows any disagreement (also when every rating is the same
    value, where the package's formula is 0/0); NaN when undefined (no prompt has two ratings).
    For `interval` with very many distinct values the identical closed form is used instead of the package.
    """
    domain, counts = _value_counts(as_matrix(data))
    return _alpha_from_counts(domain, counts, level)


def krippendorff_alpha_ci(
    data: pd.DataFrame | RatingsMatrix, *, level: str = "interval", n_boot: int = 200, seed: int = 0
) -> dict:
    """α with a percentile 95% bootstrap interval over units (prompts resampled with replacement).

    Reuses the value-count matrix: a resample is a choice of its rows. For `interval` the bootstrap
    values come from the closed form (per-unit count, sum and sum of squares, vectorized); other levels
    call the package once per resample. Returns {"alpha", "ci_low", "ci_high", "n_boot", "level", "seed"}.
    """
    domain, counts = _value_counts(as_matrix(data))
    point = _alpha_from_counts(domain, counts, level)
    out = {"alpha": point, "ci_low": math.nan, "ci_high": math.nan, "n_boot": n_boot, "level": level, "seed": seed}
    if not np.isfinite(point) or n_boot <= 0 or counts.shape[0] < 2:
        return out
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, counts.shape[0], size=(n_boot, counts.shape[0]))
    if level == "interval":
        m, s, q = _unit_sums(domain, counts)
        boots = _alpha_interval_from_sums(m[idx], s[idx], q[idx])
    else:
        boots = np.array([_alpha_from_counts(domain, counts[row], level) for row in idx])
    boots = boots[np.isfinite(boots)]
    if len(boots):
        out["ci_low"], out["ci_high"] = (float(x) for x in np.percentile(boots, [2.5, 97.5]))
    return out


# --------------------------------------------------------------------------- ICC


def icc(data: pd.DataFrame | RatingsMatrix) -> dict:
    """Intraclass correlation of prompts from a two-way crossed random-effects model with missing cells.

    Model: rating_ij = μ + p_i + a_j + e_ij with prompt effects p (σ²_prompt), annotator effects a
    (σ²_annotator), residual e (σ²_residual), all independent. The variance components are the unbiased
    method-of-moments (U-statistic) estimates of Gao & Owen (2017, Electron. J. Statist. 11:1235): the
    sums of squared differences between two ratings of the same prompt, of the same annotator, and of
    any two ratings have expectations linear in the three components, and the 3×3 system is solved.
    They use every rating, need no balance, cost O(ratings), and equal the classical two-way ANOVA
    estimates when the design is complete (so the ICCs below equal Shrout & Fleiss's ICC(2,1), ICC(2,k)
    and ICC(3,1) then). Negative component estimates are truncated at 0 (`truncated` lists them).

    Returns {"icc_single": σ²_p / (σ²_p + σ²_a + σ²_e) (absolute agreement of one rating, ICC(A,1)),
    "icc_mean_k": σ²_p / (σ²_p + (σ²_a + σ²_e)/k) (reliability of a prompt's mean of k ratings),
    "k": harmonic mean of ratings per prompt, "icc_consistency": σ²_p / (σ²_p + σ²_e) (ICC(C,1)),
    "variance_prompt", "variance_annotator", "variance_residual", "method", "truncated", "reason"}.
    """
    m = as_matrix(data)
    out = {
        "icc_single": math.nan,
        "icc_mean_k": math.nan,
        "k": math.nan,
        "icc_consistency": math.nan,
        "variance_prompt": math.nan,
        "variance_annotator": math.nan,
        "variance_residual": math.nan,
        "method": "method of moments (Gao & Owen 2017), two-way crossed random effects",
        "truncated": [],
        "reason": None,
    }
    values, mask = m.values, m.mask
    n_i = mask.sum(axis=0).astype(float)  # per prompt
    n_j = mask.sum(axis=1).astype(float)  # per annotator
    big_n = float(n_i.sum())
    if (n_i >= 2).sum() < 2 or (n_j >= 2).sum() < 2:
        out["reason"] = "needs at least two prompts with two ratings and two annotators with two ratings"
        return out
    filled = np.where(mask, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_i = filled.sum(axis=0) / n_i
        mean_j = filled.sum(axis=1) / n_j
    grand = filled.sum() / big_n
    u_prompt = float((n_i * np.where(mask, (values - mean_i) ** 2, 0.0).sum(axis=0)).sum())
    u_annot = float((n_j * np.where(mask, (values - mean_j[:, None]) ** 2, 0.0).sum(axis=1)).sum())
    u_all = float(big_n * np.where(mask, (values - grand) ** 2, 0.0).sum())
    c_i, c_j = float((n_i * (n_i - 1)).sum()), float((n_j * (n_j - 1)).sum())
    system = np.array(
        [
            [0.0, c_i, c_i],  # same prompt: annotator + residual
            [c_j, 0.0, c_j],  # same annotator: prompt + residual
            [big_n**2 - (n_i**2).sum(), big_n**2 - (n_j**2).sum(), big_n * (big_n - 1.0)],
        ]
    )
    try:
        comp = np.linalg.solve(system, [u_prompt, u_annot, u_all])
    except np.linalg.LinAlgError:
        out["reason"] = "the design does not separate prompt, annotator and residual variance"
        return out
    names = ("variance_prompt", "variance_annotator", "variance_residual")
    truncated = [name for name, v in zip(names, comp) if v < 0]
    comp = np.maximum(comp, 0.0)
    var_p, var_a, var_e = (float(v) for v in comp)
    rated = n_i[n_i > 0]
    k = float(len(rated) / (1.0 / rated).sum())
    total = var_p + var_a + var_e
    out.update(dict(zip(names, (var_p, var_a, var_e))))
    out["truncated"] = truncated
    out["k"] = k
    if total > 0:
        out["icc_single"] = var_p / total
        out["icc_mean_k"] = var_p / (var_p + (var_a + var_e) / k) if var_p + var_a + var_e > 0 else math.nan
        out["icc_consistency"] = var_p / (var_p + var_e) if var_p + var_e > 0 else math.nan
    else:
        out["reason"] = "all ratings are equal"
    return out


# --------------------------------------------------------------------------- split halves, pairs


def _rowwise_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r of x and y along the last axis over cells where w is True."""
    w = w.astype(float)
    n = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (x * w).sum(axis=-1) / n
        my = (y * w).sum(axis=-1) / n
        dx = np.where(w > 0, x - mx[..., None], 0.0)
        dy = np.where(w > 0, y - my[..., None], 0.0)
        sxy = (dx * dy).sum(axis=-1)
        sxx = (dx * dx).sum(axis=-1)
        syy = (dy * dy).sum(axis=-1)
        r = sxy / np.sqrt(sxx * syy)
    scale = np.maximum(np.abs(np.where(w > 0, x, 0)).max(axis=-1, initial=0.0), 1.0) ** 2
    bad = (n < 3) | (sxx <= 1e-12 * scale * np.maximum(n, 1)) | (syy <= 1e-12 * scale * np.maximum(n, 1))
    return np.where(bad, np.nan, np.clip(r, -1.0, 1.0))


def split_half_reliability(data: pd.DataFrame | RatingsMatrix, *, n_splits: int = 100, seed: int = 0) -> dict:
    """Split-half reliability of the prompt means.

    Needs `annotator`, `prompt`, `rating`. For each of `n_splits` seeded random splits of the annotators
    into halves (sizes ⌊A/2⌋ and ⌈A/2⌉), the prompt means of the two halves are correlated (Pearson,
    over prompts rated in both halves) and stepped up with Spearman–Brown, 2r / (1 + r), to the
    reliability of the full panel's means. Returns {"mean": mean corrected value, "ci_low", "ci_high":
    2.5th and 97.5th percentiles over splits (the spread due to the split, not a sampling interval),
    "mean_r_half": mean uncorrected r, "n_splits", "n_annotators", "seed", "reason"}.
    """
    m = as_matrix(data)
    n_a = len(m.annotators)
    out = {
        "mean": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "mean_r_half": math.nan,
        "n_splits": n_splits,
        "n_annotators": n_a,
        "seed": seed,
        "reason": None,
    }
    if n_a < 2:
        out["reason"] = "needs at least two annotators"
        return out
    x0, mf, _ = m.centered()
    rng = np.random.default_rng(seed)
    halves = np.zeros((n_splits, n_a))
    for s in range(n_splits):
        halves[s, rng.permutation(n_a)[: n_a // 2]] = 1.0
    s1, c1 = halves @ x0, halves @ mf
    s2, c2 = x0.sum(axis=0) - s1, mf.sum(axis=0) - c1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean1, mean2 = s1 / c1, s2 / c2
    both = (c1 > 0) & (c2 > 0)
    r = _rowwise_pearson(np.nan_to_num(mean1), np.nan_to_num(mean2), both)
    with np.errstate(invalid="ignore", divide="ignore"):
        sb = 2.0 * r / (1.0 + r)
    sb = sb[np.isfinite(sb)]
    if not len(sb):
        out["reason"] = "the halves' prompt means have no variance or fewer than three common prompts"
        return out
    out.update(
        mean=float(sb.mean()),
        ci_low=float(np.percentile(sb, 2.5)),
        ci_high=float(np.percentile(sb, 97.5)),
        mean_r_half=float(np.nanmean(r)),
    )
    return out


def mean_pairwise_correlation(
    data: pd.DataFrame | RatingsMatrix, *, max_annotators: int = 2000, min_common: int = 3, seed: int = 0
) -> dict:
    """Mean Pearson correlation over annotator pairs, each pair on the prompts both rated.

    Needs `annotator`, `prompt`, `rating`. Pairs with fewer than `min_common` common prompts, or with no
    variance on them, are left out. Exact over all pairs when there are at most `max_annotators`
    annotators; otherwise computed on a seeded random subset of `max_annotators` annotators, and the
    result says so (`subset`: True, `n_annotators_used`). Returns {"mean", "median", "n_pairs",
    "n_annotators", "n_annotators_used", "subset", "seed", "reason"}.
    """
    m = as_matrix(data)
    n_a = len(m.annotators)
    x0, mf, _ = m.centered()
    subset = n_a > max_annotators
    if subset:
        keep = np.sort(np.random.default_rng(seed).choice(n_a, size=max_annotators, replace=False))
        x0, mf = x0[keep], mf[keep]
    out = {
        "mean": math.nan,
        "median": math.nan,
        "n_pairs": 0,
        "n_annotators": n_a,
        "n_annotators_used": int(x0.shape[0]),
        "subset": bool(subset),
        "seed": seed,
        "reason": None,
    }
    if x0.shape[0] < 2:
        out["reason"] = "needs at least two annotators"
        return out
    n = mf @ mf.T
    sa = x0 @ mf.T  # sa[a, b]: sum of a's ratings on prompts b also rated
    qa = (x0 * x0) @ mf.T
    sab = x0 @ x0.T
    # In place where the arithmetic allows: at 2,000 annotators each of these is a 32 MB array.
    with np.errstate(invalid="ignore", divide="ignore"):
        part = sa * sa.T
        part /= n
        cov = np.subtract(sab, part, out=sab)
        np.square(sa, out=part)
        part /= n
        var_a = np.subtract(qa, part, out=qa)
        del sa, part
        var_b = var_a.T
        r = var_a * var_b
        np.sqrt(r, out=r)
        np.divide(cov, r, out=r)
    eps = 1e-9 * max(float(np.abs(x0).max(initial=0.0)) ** 2, 1.0)
    upper = np.triu(np.ones_like(n, dtype=bool), k=1)
    ok = upper & (n >= min_common) & (var_a > eps * n) & (var_b > eps * n)
    values = np.clip(r[ok], -1.0, 1.0)
    out["n_pairs"] = int(ok.sum())
    if not len(values):
        out["reason"] = f"no pair of annotators shares {min_common} prompts with variance on them"
        return out
    out["mean"], out["median"] = float(values.mean()), float(np.median(values))
    return out


def annotator_consensus(data: pd.DataFrame | RatingsMatrix) -> pd.DataFrame:
    """Per annotator, how they sit relative to everyone else.

    Needs `annotator`, `prompt`, `rating`. Indexed by annotator: `n` ratings, `n_unsure`,
    `mean_rating`, `mean_offset` (mean over the annotator's rated prompts of rating − that prompt's mean
    over all its raters), and `loo_r`: Pearson correlation, over the annotator's rated prompts, between
    their ratings and the leave-one-out consensus (the prompt mean without them; prompts with no other
    rater are skipped; NaN with fewer than three prompts or no variance).
    """
    m = as_matrix(data)
    values, mask = m.values, m.mask
    filled = np.where(mask, values, 0.0)
    n_p = mask.sum(axis=0).astype(float)
    s_p = filled.sum(axis=0)
    n_a = mask.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        prompt_mean = s_p / n_p
        mean_rating = filled.sum(axis=1) / n_a
        offset = np.where(mask, values - prompt_mean, 0.0).sum(axis=1) / n_a
        loo = np.where(mask & (n_p > 1), (s_p - filled) / (n_p - 1.0), 0.0)
    r = _rowwise_pearson(filled, loo, mask & (n_p > 1))
    return pd.DataFrame(
        {
            "n": n_a.astype(np.int64),
            "n_unsure": m.unsure.sum(axis=1).astype(np.int64),
            "mean_rating": mean_rating,
            "mean_offset": offset,
            "loo_r": r,
        },
        index=pd.Index(m.annotators, name="annotator"),
    )


# --------------------------------------------------------------------------- groups


def _cross_kappa(mg, sg, qg, mh, sh, qh):
    """Cross-replication reliability κx (Wong, Paritosh & Aroyo 2021) of two rater groups, interval δ².

    d_o averages, over units rated by both groups, the mean squared difference between a rating of one
    group and a rating of the other; d_e is the same mean over all cross-group pairs of those units'
    ratings regardless of unit; κx = 1 − d_o / d_e. Last axis = units.
    """
    both = (mg > 0) & (mh > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_unit = np.where(both, (mh * qg + mg * qh - 2.0 * sg * sh) / np.where(both, mg * mh, 1.0), 0.0)
        units = both.sum(axis=-1)
        d_o = per_unit.sum(axis=-1) / units
        mg_, mh_ = np.where(both, mg, 0).sum(axis=-1), np.where(both, mh, 0).sum(axis=-1)
        sg_, sh_ = np.where(both, sg, 0).sum(axis=-1), np.where(both, sh, 0).sum(axis=-1)
        qg_, qh_ = np.where(both, qg, 0).sum(axis=-1), np.where(both, qh, 0).sum(axis=-1)
        d_e = (mh_ * qg_ + mg_ * qh_ - 2.0 * sg_ * sh_) / (mg_ * mh_)
        kappa = 1.0 - d_o / d_e
    kappa = np.where(d_o <= 1e-12 * np.maximum(np.abs(d_e), 1.0), 1.0, kappa)
    return np.where(units > 0, kappa, np.nan)


class _GroupSums:
    """Per group and prompt: the count, sum and sum of squares of the ratings, for many labellings at once.

    A labelling is a 0/1 matrix (groups × annotators), so the sums are one matrix product with the
    annotators × [mask, x, x²] block. Integer ratings (the product's 0–100 scale) are shifted by an
    integer near their mean and multiplied in single precision, a block of annotators at a time small
    enough that every partial sum stays below 2^24: integers that size are exact in float32, so the
    sums are exactly those of float64 arithmetic at half the cost. Other ratings use float64 throughout.
    """

    def __init__(self, values: np.ndarray, mask: np.ndarray):
        rated = values[mask]
        integral = bool(rated.size) and bool(np.all(rated == np.rint(rated)))
        centre = float(np.rint(rated.mean())) if integral else (float(rated.mean()) if rated.size else 0.0)
        x = np.where(mask, values - centre, 0.0)
        self.n_units = values.shape[1]
        blocks = np.concatenate([mask.astype(float), x, x * x], axis=1)
        self.totals = blocks.sum(axis=0)
        largest = float(np.abs(blocks).max(initial=1.0))
        self.rows = int(2**24 // max(largest, 1.0)) if integral else 0
        if self.rows >= 256:
            self.blocks, self.dtype = blocks.astype(np.float32), np.float32
        else:  # not integers, or too large for exact single-precision sums
            self.blocks, self.dtype, self.rows = blocks, np.float64, max(1, len(blocks))

    def of(self, onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(m, s, q), each (labelling rows, prompts), for a 0/1 matrix of `self.dtype` (rows × annotators)."""
        sums = np.zeros((onehot.shape[0], self.blocks.shape[1]))
        for start in range(0, self.blocks.shape[0], self.rows):
            stop = start + self.rows
            sums += onehot[:, start:stop] @ self.blocks[start:stop]
        n = self.n_units
        return sums[:, :n], sums[:, n : 2 * n], sums[:, 2 * n :]


def _group_statistics(mg: np.ndarray, sg: np.ndarray, qg: np.ndarray, totals: np.ndarray):
    """In-group α and cross-group κx (group vs everyone else labelled) from each group's sums."""
    n_units = mg.shape[1]
    mt, st, qt = totals[:n_units], totals[n_units : 2 * n_units], totals[2 * n_units :]
    irr = _alpha_interval_from_sums(mg, sg, qg)
    xrr = _cross_kappa(mg, sg, qg, mt - mg, st - sg, qt - qg)
    return irr, xrr


def _labelling_sums(sums: _GroupSums, perms: np.ndarray, test_idx: np.ndarray, every_one_tested: bool):
    """(m, s, q) of the tested groups under each labelling (rows of `perms`), stacked labelling-major.

    When every labelled annotator belongs to a tested group, the last group's sums are the totals minus
    the others' (exact: the sums are integers or computed as before), which saves one group's product.
    """
    size, n_lab = perms.shape
    n_t = len(test_idx)
    n_direct = n_t - 1 if every_one_tested and n_t > 1 else n_t
    onehot = (perms[:, None, :] == test_idx[None, :n_direct, None]).astype(sums.dtype)
    mg, sg, qg = (v.reshape(size, n_direct, -1) for v in sums.of(onehot.reshape(size * n_direct, n_lab)))
    if n_direct < n_t:
        n = sums.n_units
        t = sums.totals
        mg = np.concatenate([mg, (t[:n] - mg.sum(axis=1))[:, None]], axis=1)
        sg = np.concatenate([sg, (t[n : 2 * n] - sg.sum(axis=1))[:, None]], axis=1)
        qg = np.concatenate([qg, (t[2 * n :] - qg.sum(axis=1))[:, None]], axis=1)
    return mg.reshape(size * n_t, -1), sg.reshape(size * n_t, -1), qg.reshape(size * n_t, -1)


def normalize_labels(values: pd.Series) -> pd.Series:
    """Group labels: strings with surrounding spaces stripped; empty and missing become NaN."""
    missing = values.isna().to_numpy()
    cleaned = [None if gone else (str(v).strip() or None) for v, gone in zip(values.to_numpy(dtype=object), missing)]
    return pd.Series(cleaned, index=values.index, dtype=object)


class _GroupTest:
    """One column's groups: the observed statistics, then the permutation null a chunk at a time."""

    def __init__(self, m: RatingsMatrix, column: str, *, n_perm: int, seed: int, min_group_size: int, sums_of):
        labels = normalize_labels(m.annotator_table[column].reset_index(drop=True))
        labelled = labels.notna().to_numpy()
        names, sizes = np.unique(labels[labelled].to_numpy(dtype=str), return_counts=True)
        order = np.argsort(-sizes, kind="stable")
        names, sizes = names[order], sizes[order]
        tested = sizes >= min_group_size
        mask = m.mask[labelled]
        self.codes = pd.Categorical(labels[labelled].to_numpy(dtype=str), categories=names).codes.astype(np.int64)
        n_ratings = np.bincount(self.codes, weights=mask.sum(axis=1), minlength=len(names)).astype(np.int64)
        self.rows = pd.DataFrame(
            {
                "column": column,
                "group": names,
                "n_annotators": sizes.astype(np.int64),
                "n_ratings": n_ratings,
                "tested": tested,
                "in_group_alpha": np.nan,
                "cross_group_kappa": np.nan,
                "gai": np.nan,
                "difference": np.nan,
                "p_value": np.nan,
            }
        )
        self.overall = {
            "statistic": math.nan,
            "p_value": math.nan,
            "n_perm": n_perm,
            "seed": seed,
            "n_labelled": int(labelled.sum()),
            "groups_tested": int(tested.sum()),
            "reason": None,
        }
        self.rows.attrs["overall"] = self.overall
        self.n_perm = n_perm
        self.test_idx = np.flatnonzero(tested)
        if len(self.test_idx) == 0 or tested.sum() == len(names) == 1:
            self.overall["reason"] = (
                f"no group has {min_group_size} annotators"
                if len(self.test_idx) == 0
                else "only one group: nothing to compare with"
            )
            self.active = False
            return
        self.active = True
        self.every_one_tested = bool(tested.all())
        self.sums = sums_of(labelled)
        self.irr, self.xrr = self._statistics(self.codes[None, :])
        self.diff = self.irr - self.xrr
        self.weights = sizes[self.test_idx] / sizes[self.test_idx].sum()
        self.stat = float(np.nansum(self.weights * self.diff)) if np.isfinite(self.diff).any() else math.nan
        self.exceed = np.zeros(len(self.test_idx))
        self.exceed_all = 0

    def _statistics(self, labellings: np.ndarray):
        return _group_statistics(
            *_labelling_sums(self.sums, labellings, self.test_idx, self.every_one_tested), self.sums.totals
        )

    def add(self, shuffles: np.ndarray) -> None:
        """Count the permutations (rows of annotator positions) whose statistics reach the observed ones."""
        p_irr, p_xrr = self._statistics(self.codes[shuffles])
        p_diff = (p_irr - p_xrr).reshape(len(shuffles), len(self.test_idx))
        self.exceed += (p_diff >= self.diff[None, :] - 1e-12).sum(axis=0)
        p_stat = np.nansum(self.weights[None, :] * p_diff, axis=1)
        self.exceed_all += int((p_stat >= self.stat - 1e-12).sum())

    def table(self) -> pd.DataFrame:
        if not self.active:
            return self.rows
        rows, test_idx = self.rows, self.test_idx
        rows.loc[test_idx, "in_group_alpha"] = self.irr
        rows.loc[test_idx, "cross_group_kappa"] = self.xrr
        with np.errstate(invalid="ignore", divide="ignore"):
            rows.loc[test_idx, "gai"] = self.irr / self.xrr
        rows.loc[test_idx, "difference"] = self.diff
        if self.n_perm > 0:
            rows.loc[test_idx, "p_value"] = np.where(
                np.isfinite(self.diff), (1.0 + self.exceed) / (1.0 + self.n_perm), np.nan
            )
            if np.isfinite(self.stat):
                self.overall["p_value"] = (1.0 + self.exceed_all) / (1.0 + self.n_perm)
        self.overall["statistic"] = self.stat
        return rows


def group_agreement(
    data: pd.DataFrame | RatingsMatrix,
    *,
    column: str,
    n_perm: int = 1000,
    seed: int = 0,
    min_group_size: int = 5,
) -> pd.DataFrame:
    """Do annotators agree more with their own demographic group than across groups? (GRASP-style.)

    Needs `annotator`, `prompt`, `rating` and the annotator-level `column` (its stripped string values are
    the groups; annotators with no value are left out of this analysis). Following Prabhakaran et al.
    (2024, "GRASP", NAACL), for every group with at least `min_group_size` annotators:

    - `in_group_alpha`: Krippendorff's interval α among the group's own ratings (IRR);
    - `cross_group_kappa`: cross-replication reliability κx (Wong, Paritosh & Aroyo 2021) between the
      group and all other labelled annotators (XRR): 1 − (mean squared difference between a member's and
      a non-member's rating of the same prompt) / (the same over any two prompts);
    - `gai` = in_group_alpha / cross_group_kappa (GRASP's group association index), and
      `difference` = in_group_alpha − cross_group_kappa, the tested statistic (defined even when κx ≤ 0);
    - `p_value`: one-sided permutation p-value, (1 + #{perm ≥ observed}) / (1 + n_perm), where each of
      `n_perm` seeded permutations shuffles the group labels across the labelled annotators (group sizes
      kept) and recomputes the difference.

    Smaller groups are listed with `tested` False and no statistics (their members still count as
    "other" for the tested groups). `attrs["overall"]` holds the column-level test: the size-weighted
    mean difference over tested groups and its permutation p-value.
    """
    m = as_matrix(data)
    if column not in m.annotator_table.columns:
        if isinstance(data, pd.DataFrame) and column in data.columns:
            m = RatingsMatrix.from_frame(data, annotator_columns=[column])
        else:
            raise KeyError(f"no annotator column {column!r}")
    return group_agreements(m, columns=[column], n_perm=n_perm, seed=seed, min_group_size=min_group_size)[column]


def group_agreements(
    matrix: RatingsMatrix, *, columns: list[str], n_perm: int = 1000, seed: int = 0, min_group_size: int = 5
) -> dict[str, pd.DataFrame]:
    """`group_agreement` for several annotator columns of `matrix` at once: {column: table}, the same tables.

    A seeded shuffle moves positions whatever the labels are, so the `seed`'s permutations of n labelled
    annotators are the same for every column with n labelled annotators: they are drawn once and applied
    to each column's labels (exactly what one call per column draws).
    """
    made: dict[bytes, _GroupSums] = {}

    def sums_of(labelled: np.ndarray) -> _GroupSums:
        """Columns that label the same annotators share their sums (10 columns × 1.5M ratings: 10 copies)."""
        key = np.packbits(labelled).tobytes() + len(labelled).to_bytes(8, "little")
        if key not in made:
            made[key] = _GroupSums(matrix.values[labelled], matrix.mask[labelled])
        return made[key]

    tests = {
        c: _GroupTest(matrix, c, n_perm=n_perm, seed=seed, min_group_size=min_group_size, sums_of=sums_of)
        for c in columns
    }
    by_size: dict[int, list[_GroupTest]] = {}
    for test in tests.values():
        if test.active:
            by_size.setdefault(len(test.codes), []).append(test)
    for n, group in by_size.items():
        rng = np.random.default_rng(seed)
        widest = max(len(test.test_idx) for test in group)
        chunk = max(1, int(4e7 // max(1, widest * n * 8)))
        positions = np.arange(n, dtype=np.int64)
        done = 0
        while done < n_perm:
            size = min(chunk, n_perm - done)
            shuffles = rng.permuted(np.tile(positions, (size, 1)), axis=1)
            for test in group:
                test.add(shuffles)
            done += size
    return {c: test.table() for c, test in tests.items()}


# --------------------------------------------------------------------------- harm level


def spearman_harm_level_vs_mean(data: pd.DataFrame | RatingsMatrix) -> float:
    """Spearman ρ between each prompt's `harm_level` and its mean rating (Unsure excluded).

    Needs `annotator`, `prompt`, `rating`, `harm_level`. Prompts without a harm level or without ratings
    are left out; NaN with fewer than three prompts left. Raises KeyError without `harm_level`.
    """
    m = as_matrix(data)
    if "harm_level" not in m.prompt_table.columns:
        raise KeyError("no harm_level column")
    harm = m.prompt_table["harm_level"].to_numpy(dtype=float)
    counts = m.mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(m.mask, m.values, 0.0).sum(axis=0) / counts
    ok = np.isfinite(harm) & np.isfinite(means)
    if ok.sum() < 3 or np.ptp(harm[ok]) == 0 or np.ptp(means[ok]) == 0:
        return math.nan
    return float(stats.spearmanr(harm[ok], means[ok]).statistic)
