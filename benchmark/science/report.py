"""The disagreement report of a study: every descriptive statistic in one JSON-ready dict.

`descriptive_report(df)` needs the long ratings frame (`annotator`, `prompt`, `rating`, `unsure`;
`harm_level` and the demographic columns when present). `full_report(df)` adds the mixed models
(`mixed_effects.fit_all`), which also need the prompt feature columns.

Every value is JSON-serializable: NaN and infinities become null, numpy scalars become Python ones.
A statistic that cannot be computed (a study with one or two annotators, no harm levels, an absent
group column) is null, and `reasons` says why, keyed like the report.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from . import agreement
from .mixed_effects import fit_all
from .release import DEMOGRAPHIC_COLUMNS


def to_jsonable(value):
    """Recursively turn numpy/pandas values into JSON types; NaN, ±inf and pd.NA become None."""
    kind = type(value)
    if kind is float:  # the plain Python scalars first: a report holds hundreds of thousands of them
        return value if math.isfinite(value) else None
    if kind is str or kind is int or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return to_jsonable(value.to_dict(orient="records"))
    if isinstance(value, pd.Series):
        return to_jsonable(value.to_dict())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _records(frame: pd.DataFrame, key: str) -> list[dict]:
    out = frame.reset_index().rename(columns={frame.index.name or "index": key})
    out[key] = out[key].astype(str)
    return out.to_dict(orient="records")


DESCRIPTIVE_INPUTS = ("annotator", "prompt", "rating", "unsure", "harm_level")


def descriptive_columns(columns, *, group_columns=DEMOGRAPHIC_COLUMNS) -> list[str]:
    """The columns of a long frame that `descriptive_report(…, group_columns=group_columns)` reads, in the
    frame's order: the report of the frame cut to these is the report of the whole frame. A study's frame
    also carries 62 prompt features, trait scores and timings, which at 1.5 million ratings are 0.8 GB."""
    wanted = {*DESCRIPTIVE_INPUTS, *group_columns}
    return [c for c in columns if c in wanted]


def descriptive_report(
    df: pd.DataFrame,
    *,
    n_boot: int = 1000,
    alpha_boot: int = 200,
    n_perm: int = 1000,
    n_splits: int = 100,
    max_annotators: int = 2000,
    group_columns: list[str] | tuple[str, ...] = DEMOGRAPHIC_COLUMNS,
    min_group_size: int = 5,
    harm_threshold: float = 50.0,
    seed: int = 0,
) -> dict:
    """Everything but the mixed models; see the module docstring for the columns.

    Keys: n_ratings (non-Unsure), n_unsure, n_annotators, n_prompts, krippendorff_alpha_interval,
    krippendorff_alpha_ci ({alpha, ci_low, ci_high, …}), icc, split_half, mean_pairwise_correlation,
    spearman_harm_level_vs_mean (only when the frame has `harm_level`), prompts (one dict per prompt:
    `prompt_stats` columns, `prompt`, `harm_level` if present), annotators (`annotator_consensus` rows),
    groups ({column: {"groups": [...], "overall": {...}}} for each group column present), settings,
    seconds, reasons. Bootstraps and permutations are seeded with `seed`.
    """
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        # Multi-threaded BLAS is slower than one thread on these shapes (docs/analysis.md, timings).
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return to_jsonable(
            _descriptive(
                df,
                n_boot=n_boot,
                alpha_boot=alpha_boot,
                n_perm=n_perm,
                n_splits=n_splits,
                max_annotators=max_annotators,
                group_columns=group_columns,
                min_group_size=min_group_size,
                harm_threshold=harm_threshold,
                seed=seed,
            )
        )


def _descriptive(
    df, *, n_boot, alpha_boot, n_perm, n_splits, max_annotators, group_columns, min_group_size, harm_threshold, seed
) -> dict:
    started = time.perf_counter()
    present_groups = [c for c in group_columns if c in df.columns]
    matrix = agreement.RatingsMatrix.from_frame(df, annotator_columns=present_groups)
    reasons: dict = {}
    report: dict = {
        "n_ratings": matrix.n_ratings,
        "n_unsure": matrix.n_unsure,
        "n_annotators": len(matrix.annotators),
        "n_prompts": len(matrix.prompts),
    }

    alpha_ci = agreement.krippendorff_alpha_ci(matrix, n_boot=alpha_boot, seed=seed)
    report["krippendorff_alpha_interval"] = alpha_ci["alpha"]
    report["krippendorff_alpha_ci"] = alpha_ci
    if not np.isfinite(alpha_ci["alpha"]):
        reasons["krippendorff_alpha_interval"] = "undefined: no prompt has two ratings"

    report["icc"] = agreement.icc(matrix)
    report["split_half"] = agreement.split_half_reliability(matrix, n_splits=n_splits, seed=seed)
    report["mean_pairwise_correlation"] = agreement.mean_pairwise_correlation(
        matrix, max_annotators=max_annotators, seed=seed
    )
    for key in ("icc", "split_half", "mean_pairwise_correlation"):
        if report[key].get("reason"):
            reasons[key] = report[key]["reason"]

    if "harm_level" in matrix.prompt_table.columns and matrix.prompt_table["harm_level"].notna().any():
        rho = agreement.spearman_harm_level_vs_mean(matrix)
        report["spearman_harm_level_vs_mean"] = rho
        if not np.isfinite(rho):
            reasons["spearman_harm_level_vs_mean"] = "fewer than three prompts with a harm level, ratings and variation"
    else:
        reasons["spearman_harm_level_vs_mean"] = "no harm_level in the data: omitted"

    stats = agreement.prompt_stats(matrix, harm_threshold=harm_threshold, n_boot=n_boot, seed=seed)
    if "harm_level" in matrix.prompt_table.columns:
        stats.insert(0, "harm_level", matrix.prompt_table["harm_level"].to_numpy())
    report["prompts"] = _records(stats, "prompt")
    report["quadrant_thresholds"] = {"harm": harm_threshold, "agreement_sd": stats.attrs["agreement_threshold"]}
    report["annotators"] = _records(agreement.annotator_consensus(matrix), "annotator")

    groups: dict = {}
    tables = agreement.group_agreements(
        matrix, columns=present_groups, n_perm=n_perm, seed=seed, min_group_size=min_group_size
    )
    for column in group_columns:
        if column not in present_groups:
            reasons.setdefault("groups", {})[column] = "column absent from the data"
            continue
        table = tables[column]
        groups[column] = {
            "groups": table.drop(columns="column").to_dict(orient="records"),
            "overall": table.attrs["overall"],
        }
        if table.attrs["overall"].get("reason"):
            reasons.setdefault("groups", {})[column] = table.attrs["overall"]["reason"]
    report["groups"] = groups
    report["settings"] = {
        "n_boot": n_boot,
        "alpha_boot": alpha_boot,
        "n_perm": n_perm,
        "n_splits": n_splits,
        "max_annotators": max_annotators,
        "min_group_size": min_group_size,
        "harm_threshold": harm_threshold,
        "seed": seed,
        "entropy_unit": "bits",
    }
    report["reasons"] = reasons
    report["seconds"] = time.perf_counter() - started
    return report


def full_report(df: pd.DataFrame, *, seed: int = 0, mixed_effects: dict | None = None, **descriptive_kwargs) -> dict:
    """`descriptive_report` plus "mixed_effects": `mixed_effects.fit_all(df, seed=seed, **mixed_effects)`."""

    report = descriptive_report(df, seed=seed, **descriptive_kwargs)
    try:
        report["mixed_effects"] = to_jsonable(fit_all(df, seed=seed, **(mixed_effects or {})))
    except (KeyError, ValueError) as exc:  # e.g. no feature or trait columns at all
        report["mixed_effects"] = None
        report["reasons"]["mixed_effects"] = f"not fitted: {exc}"
    return report


# --------------------------------------------------------------------------- the mixed models as Markdown

DOCS_BEGIN, DOCS_END = "<!-- analyze:mixed_effects -->", "<!-- /analyze:mixed_effects -->"


def _p(value) -> str:
    if value is None or value != value:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def mixed_effects_markdown(result: dict) -> str:
    """RQ1–RQ3 of `mixed_effects.fit_all` (or a report's "mixed_effects") as the Markdown block that
    docs/analysis.md carries between `DOCS_BEGIN` and `DOCS_END`; `manage.py analyze --docs` writes it,
    so the documentation shows what the command computes."""
    rq1, rq2, rq3 = result["rq1"], result["rq2"], result["rq3"]
    settings = result.get("settings", {})
    lines = [
        DOCS_BEGIN,
        f"Generated by `manage.py analyze <study> --docs docs/analysis.md` (seed {settings.get('seed')}).",
        "",
    ]
    if "skipped" in rq1:
        return "\n".join([*lines, f"Not fitted: {rq1['skipped']}", DOCS_END])
    lines += [
        f"- RQ1 (features): marginal R² **{rq1['r2_marginal']:.3f}**, conditional {rq1['r2_conditional']:.3f} "
        f"({len(rq1['terms'])} features, {rq1['n']:,} ratings).",
        f"- RQ2 (traits): marginal R² **{rq2['r2_marginal']:.3f}**, conditional {rq2['r2_conditional']:.3f} "
        f"({len(rq2['terms'])} traits).",
        "",
        f"RQ2 trait effects with raw p < 0.1 (points per SD; {rq2.get('multiple_comparisons', '')}):",
        "",
        "| trait | estimate | 95% CI | p | p (Holm) | p (BH) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rq2["coefficients"]:
        if row["term"] != "Intercept" and row["p"] is not None and row["p"] < 0.1:
            lines.append(
                f"| {row['term']} | {row['estimate']:+.2f} | {row['ci_low']:+.2f} to {row['ci_high']:+.2f} | "
                f"{_p(row['p'])} | {_p(row.get('p_holm'))} | {_p(row.get('p_bh'))} |"
            )
    if "skipped" in rq3:
        return "\n".join([*lines, "", f"RQ3 not fitted: {rq3['skipped']}", DOCS_END])
    lasso, tests = rq3["lasso"], rq3.get("interaction_tests", {})
    left_out = lasso.get("traits_left_out", {})
    frequency = list(lasso.get("selection_frequency", {}).items())[:6]
    lines += [
        "",
        f"RQ3: {lasso['n_candidates']:,} candidate trait × feature products"
        + (
            f" ({len(left_out)} traits left out, a level with fewer than {lasso['min_group_size']} annotators: "
            + ", ".join(sorted(left_out))
            + ")"
            if left_out
            else ""
        )
        + f"; stability selection over {lasso['n_resamples']} halves of the annotators, lasso cross-validated "
        f"over {lasso['cv']} annotator folds (rule `{lasso['rule']}`), kept when chosen in ≥ {lasso['threshold']:.0%}.",
        "",
        "- selected: " + (", ".join(f"`{t}`" for t in lasso["selected"]) or "**none**"),
        "- most often chosen: "
        + (", ".join(f"`{t}` {f:.0%}" for t, f in frequency) if frequency else "none in any resample"),
    ]
    if lasso.get("heldout_loglik_gain") is not None:
        lines.append(
            f"- held-out annotators' log-likelihood gain of the selected terms: {lasso['heldout_loglik_gain']:+.1f} "
            f"(mean over resamples; positive in {lasso['heldout_gain_positive_share']:.0%} of them)"
        )
    if tests.get("terms"):
        holm = ", ".join(f"`{t}`" for t in tests["significant_holm"]) or "none"
        max_t = ", ".join(f"`{t}`" for t in tests["significant_maxT"]) or "none"
        lines += [
            f"- slopes test (annotators as the unit, {tests['n_annotators']} annotators, {tests['n_perm']:,} trait "
            f"permutations): significant after Holm: {holm}; by the max-|t| permutation null: {max_t}",
            "",
            "| term | selected | estimate (points per SD²) | p | p (Holm) | p (BH) | p (max-T permutation) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in tests["terms"][:8]:
            lines.append(
                f"| {row['term']} | {'yes' if row['selected'] else ''} | {row['estimate']:+.2f} ± {row['se']:.2f} | "
                f"{_p(row['p'])} | {_p(row['p_holm'])} | {_p(row['p_bh'])} | {_p(row['p_maxT'])} |"
            )
    lines += [
        "",
        f"RQ3 model (features + traits + selected interactions): marginal R² {rq3['r2_marginal']:.3f}, "
        f"conditional {rq3['r2_conditional']:.3f}.",
        "",
        "BIC ladder (ML, crossed intercepts; the interaction step is scored on the data that chose the terms, "
        "so it is descriptive, not evidence; the held-out gain and the slopes test above are):",
        "",
        "| step | terms added | ΔBIC |",
        "| --- | --- | ---: |",
    ]
    for step in result.get("bic_ladder", []):
        delta = "—" if step["delta_bic"] is None else f"{step['delta_bic']:+.1f}"
        lines.append(f"| {step['model']} | {step['terms_added']} | {delta} |")
    lines.append(DOCS_END)
    return "\n".join(lines)


def replace_docs_block(text: str, block: str) -> str:
    """`text` with its `DOCS_BEGIN` … `DOCS_END` block replaced by `block` (which carries the markers)."""
    start, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if start < 0 or end < start:
        raise ValueError(f"no {DOCS_BEGIN} … {DOCS_END} block to replace")
    return text[:start] + block + text[end + len(DOCS_END) :]
