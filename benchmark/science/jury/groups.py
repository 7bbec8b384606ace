"""Error by group: is a predictor wrong for some groups of annotators more than for others?

Input: one MAE per annotator (`per_annotator`: columns `annotator`, `mae`; several rows per annotator,
e.g. one per split and seed, are averaged first) and the annotators' traits (`people`: one row per
annotator, indexed by annotator).  For every trait column:
  - text columns (demographics) are grouped by their level as the export writes it; numeric columns
    (factor scores, survey scales) by tertiles of the annotators scored (`low`, `mid`, `high`, each
    label carrying its range);
  - per level: n, the mean of the annotators' MAEs and its 95% t-interval over annotators;
  - the gap: the MAE of the worst-served level minus that of the best-served one, among levels with at
    least `min_group` annotators (a level of two people has a gap by chance alone);
  - a permutation test of the gap: the level labels are shuffled over the same annotators `n_perm`
    times (group sizes kept), the gap recomputed, and p = (1 + #{permuted gap ≥ observed}) / (1 +
    n_perm).  Under no difference between groups p is uniform on {1, …, n_perm + 1} / (n_perm + 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.science.protocol import _t_interval

__all__ = ["error_by_group", "group_labels"]


def group_labels(values: pd.Series) -> pd.Series:
    """Level per annotator: the text as it is, or a tertile of a numeric column (NaN stays NaN)."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.where(values.isna(), values.astype(str).str.strip())
    known = values.dropna().astype(float)
    if known.nunique() < 3:
        return values.where(values.isna(), values.astype(str))
    low, high = np.quantile(known, [1 / 3, 2 / 3])
    labels = pd.Series(np.nan, index=values.index, dtype=object)
    labels[values <= low] = f"low (≤ {low:.2f})"
    labels[(values > low) & (values <= high)] = f"mid ({low:.2f} to {high:.2f}]"
    labels[values > high] = f"high (> {high:.2f})"
    return labels


def _gaps(codes: np.ndarray, mae: np.ndarray, n_levels: int, eligible: np.ndarray) -> np.ndarray:
    """Gap (max − min of level means over eligible levels) per row of `codes` (R × A)."""
    rows = codes.shape[0]
    flat = (codes + n_levels * np.arange(rows)[:, None]).ravel()
    sums = np.bincount(flat, weights=np.tile(mae, rows), minlength=rows * n_levels).reshape(rows, n_levels)
    counts = np.bincount(flat, minlength=rows * n_levels).reshape(rows, n_levels)
    means = sums[:, eligible] / counts[:, eligible]
    return means.max(axis=1) - means.min(axis=1)


def error_by_group(
    per_annotator: pd.DataFrame,
    people: pd.DataFrame,
    *,
    columns=None,
    n_perm: int = 999,
    min_group: int = 5,
    seed: int = 0,
) -> list[dict]:
    """Per trait column: {column, kind, levels: [{level, n, mae, ci_low, ci_high}] (sorted by MAE),
    best, worst, gap, p_value, n_perm, min_group}.  `gap`/`p_value` are None when fewer than two
    levels have `min_group` annotators."""
    mae = per_annotator.groupby(per_annotator["annotator"].astype(str), sort=True)["mae"].mean()
    people = people.copy()
    people.index = people.index.astype(str)
    columns = list(people.columns if columns is None else columns)
    rng = np.random.default_rng(seed)
    out = []
    for column in columns:
        labels = group_labels(people[column]).reindex(mae.index)
        known = labels.notna().to_numpy()
        values = mae.to_numpy(dtype=float)[known]
        levels, codes = np.unique(labels[known].astype(str).to_numpy(), return_inverse=True)
        if len(levels) < 2:
            continue
        counts = np.bincount(codes, minlength=len(levels))
        rows = []
        for i, level in enumerate(levels):
            members = values[codes == i]
            low, high = _t_interval(members)
            rows.append(
                {"level": str(level), "n": int(counts[i]), "mae": float(members.mean()), "ci_low": low, "ci_high": high}
            )
        rows.sort(key=lambda r: r["mae"])
        eligible = counts >= min_group
        entry = {
            "column": column,
            "kind": "tertiles" if pd.api.types.is_numeric_dtype(people[column]) else "levels",
            "levels": rows,
            "best": None,
            "worst": None,
            "gap": None,
            "p_value": None,
            "n_perm": int(n_perm),
            "min_group": int(min_group),
        }
        if eligible.sum() >= 2:
            observed = float(_gaps(codes[None, :], values, len(levels), eligible)[0])
            permuted = rng.permuted(np.tile(codes, (n_perm, 1)), axis=1)
            null = _gaps(permuted, values, len(levels), eligible)
            ranked = [r for r in rows if r["n"] >= min_group]
            entry.update(
                best=ranked[0]["level"],
                worst=ranked[-1]["level"],
                gap=observed,
                # a tiny tolerance: the same partition summed in another order must count as "≥"
                p_value=float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_perm)),
            )
        out.append(entry)
    return out


def seeds_error_by_group(frame: pd.DataFrame, result, *, n_perm: int = 999, seed: int = 0) -> list[dict]:
    """Error by group for every predictor × condition of a protocol result kept with its per-seed
    results (`run_seeds(..., keep_results=True)`): one dict per predictor × condition × trait column.
    Hundreds of gaps are tested at once, so each tested gap also gets its Benjamini–Hochberg q-value
    over the block (None where no test ran)."""
    from scipy import stats  # noqa: PLC0415

    from .panel import people_table  # noqa: PLC0415  (panel needs the predictors; groups does not)

    people = people_table(frame)
    frames = [r.per_annotator for r in result.results if not r.per_annotator.empty]
    if people.empty or people.shape[1] == 0 or not frames:
        return []
    per_annotator = pd.concat(frames, ignore_index=True)
    out = []
    for (name, condition), group in per_annotator.groupby(["predictor", "condition"], sort=False):
        for entry in error_by_group(group, people, n_perm=n_perm, seed=seed):
            out.append({"predictor": name, "condition": condition, **entry})
    tested = [g for g in out if g["p_value"] is not None]
    if tested:
        q = stats.false_discovery_control([g["p_value"] for g in tested], method="bh")
        for g, value in zip(tested, q):
            g["q_value"] = float(value)
    for g in out:
        g.setdefault("q_value", None)
    return out
