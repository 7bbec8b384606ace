"""Prediction benchmark (issues 5 and 16): every built-in predictor on the PluriHarms release, the
10-split protocol repeated over the locked seeds.

All predictors that need no configuration (`benchmark.science.predictors.builtin_names()`: baselines,
prompt-feature, MiniLM embedding, personalized, traits, collaborative and SafetyAnalyst models; not the
LLM adapters nor uploaded files) run in every condition they support, on 10 splits of 100 alignment /
50 test prompts, once per seed of `protocol.LOCKED_SEEDS` (the seeds for claims, never used while
developing; see docs/analysis.md).  Reported per predictor and condition: the mean over seeds of the
10-split MAE, its SD over seeds, the two-way bootstrap 95% CI of the seed average (annotators and
prompts resampled together, the same resamples for every predictor) and paired differences against
`annotator_mean`.  The per-seed table is written to docs/benchmark_per_seed.csv.  Target: one seed's
10 splits ≤ 5 minutes on the 2-core benchmark machine (mean over seeds, MiniLM load included once).

Run: `python -m bench prediction [--quick]` (quick: 2 development seeds × 2 splits, fast predictors,
BENCHMARKS.md left alone), or `python -c "import bench.prediction as b; b.run()"`.
"""

from __future__ import annotations

import os
import sys
import time

from bench.common import REPO, machine_info, write_section

N_SPLITS = 10
QUICK_SPLITS = 2
TARGET_SECONDS = 300.0
CONDITION_ORDER = ("individual", "aggregated", "new_annotator", "warm")
REFERENCE = "annotator_mean"
PER_SEED_CSV = "docs/benchmark_per_seed.csv"
# Left out of the 10-seed run for time: safetyanalyst_fit alone took 78 of the 132 s of one seed's
# 10 splits (49 s in warm), so 10 seeds would not fit the session on a shared 2-core machine.  Its
# single-seed figures are in git history (BENCHMARKS.md before issue 16).  Set to () for every predictor.
SLOW_PREDICTORS = ("safetyanalyst_fit",)
QUICK_PREDICTORS = ("annotator_mean", "global_median", "uniform_random", "feature_ramp", "pooled_ramp", "traits_ramp")

# The paper's figures (MAE on 0–1, individual / aggregated conditions).
PUBLISHED = [
    ("GPT-5, k-shot", "individual", 0.195),
    ("Claude Sonnet-3.7, k-shot", "aggregated", 0.250),
    ("SafetyAnalyst-8B", "individual", 0.311),
    ("SafetyAnalyst-8B", "aggregated", 0.361),
    ("WildGuard-7B", "as published", 0.364),
    ("random", "as published", 0.386),
]
PERSONALIZED = "ensemble_ramp"


def _fmt(value: float, digits: int = 3) -> str:
    return "—" if value != value else f"{value:.{digits}f}"  # NaN → dash


def _signed(value: float, digits: int = 3) -> str:
    return "—" if value != value else f"{value:+.{digits}f}"


def compare_with_paper(label: str, row: dict, paper: float, who: str) -> str:
    """One sentence comparing our seed-averaged figure with a published one, in words the interval allows."""
    low, high, mae = row["ci_low"], row["ci_high"], row["mae"]
    ours = f"{label} {mae:.3f} (95% CI {low:.3f}–{high:.3f}, seed SD {row['sd_seeds']:.4f})"
    if low <= paper <= high:
        verdict = (
            f"the paper's {paper:.3f} ({who}) lies inside that interval: the two are not distinguishable "
            "here, and we do not claim to match or beat it"
        )
    elif paper < low:
        verdict = (
            f"the paper's {paper:.3f} ({who}) lies below the interval: ours is worse, although the paper's "
            "figure comes from other splits and is not a paired comparison"
        )
    else:
        verdict = (
            f"the paper's {paper:.3f} ({who}) lies above the interval: ours is better on this protocol, "
            "although the paper's figure comes from other splits and is not a paired comparison"
        )
    return f"{ours}; {verdict}."


def run(quick: bool = False) -> bool:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    from benchmark.science.predictors import builtin_names
    from benchmark.science.protocol import DEVELOPMENT_SEEDS, LOCKED_SEEDS, run_seeds
    from benchmark.science.release import RELEASE_DIR, release_read

    df = release_read(RELEASE_DIR).long(include_text=True)
    names = list(QUICK_PREDICTORS) if quick else [n for n in builtin_names() if n not in SLOW_PREDICTORS]
    n_splits = QUICK_SPLITS if quick else N_SPLITS
    seeds = DEVELOPMENT_SEEDS[:2] if quick else LOCKED_SEEDS
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.01 or fraction >= 1.0:
            last[0] = fraction
            print(
                f"  {100 * fraction:5.1f}%  {time.perf_counter() - start:7.1f} s  {message}",
                file=sys.stderr,
                flush=True,
            )

    result = run_seeds(df, names, seeds=seeds, n_splits=n_splits, progress=progress)
    total = time.perf_counter() - start
    load = os.getloadavg()[2]  # 15-minute load average: was the machine shared during the run?
    per_seed_seconds = total / len(seeds)
    rows = sorted(result.summary(), key=lambda r: (CONDITION_ORDER.index(r["condition"]), r["mae"]))
    by_key = {(r["predictor"], r["condition"]): r for r in rows}
    paired = {(d["predictor"], d["condition"]): d for d in result.paired(REFERENCE)}
    traits_vs_pooled = {(d["predictor"], d["condition"]): d for d in result.paired("pooled_ramp")}

    def best(condition: str) -> dict:
        return min((r for r in rows if r["condition"] == condition), key=lambda r: r["mae"])

    annotator_mean = by_key[(REFERENCE, "individual")]["mae"]
    uniform = by_key[("uniform_random", "individual")]["mae"]
    personal = PERSONALIZED if (PERSONALIZED, "individual") in by_key else "feature_ramp"
    personal_ind, personal_agg = by_key[(personal, "individual")], by_key[(personal, "aggregated")]
    checks = [
        (
            f"one seed's {n_splits} splits ≤ {TARGET_SECONDS:.0f} s (mean over seeds)",
            per_seed_seconds <= TARGET_SECONDS,
            f"{per_seed_seconds:.1f} s",
        ),
        ("annotator_mean individual ≈ 0.306 (±0.01)", abs(annotator_mean - 0.306) <= 0.01, _fmt(annotator_mean)),
        ("uniform_random individual ≈ 0.39 (±0.01)", abs(uniform - 0.39) <= 0.01, _fmt(uniform)),
        (
            f"{personal} individual: CI upper bound < SafetyAnalyst-8B 0.311",
            personal_ind["ci_high"] < 0.311,
            f"{_fmt(personal_ind['mae'])} ({_fmt(personal_ind['ci_low'])}–{_fmt(personal_ind['ci_high'])})",
        ),
        (
            f"{personal} aggregated: CI upper bound < SafetyAnalyst-8B 0.361",
            personal_agg["ci_high"] < 0.361,
            f"{_fmt(personal_agg['mae'])} ({_fmt(personal_agg['ci_low'])}–{_fmt(personal_agg['ci_high'])})",
        ),
    ]
    passed = all(ok for _, ok, _ in checks)
    machine = machine_info()
    seeds_text = f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    lines = [
        "<!-- bench:prediction -->",
        "## Prediction (issues 5 and 16)",
        "",
        f"Run {machine['date']} with `.venv/bin/python -m bench prediction`.",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, Python {machine['python']}.",
        "",
        f"{len(names)} built-in predictors × the conditions each supports"
        + (f" (left out for time: {', '.join(f'`{n}`' for n in SLOW_PREDICTORS)})" if SLOW_PREDICTORS else "")
        + f"; the {n_splits}-split protocol (100 "
        "alignment / 50 test prompts; new_annotator holds out 20 annotators; warm deals annotators into 5 folds) "
        f"repeated over the **{len(seeds)} locked seeds {seeds_text}** (`protocol.LOCKED_SEEDS`, stated in "
        "docs/analysis.md and not used while developing; the architectures themselves were chosen on this same "
        "release with development seeds, so the locked seeds guard against picking a lucky seed, not against "
        f"choosing a method on these annotators).  Total wall time **{total:.1f} s**, {per_seed_seconds:.1f} s per "
        "seed (reading the release, loading MiniLM and embedding the prompts included once); 15-minute load "
        f"average at the end {load:.1f} on {os.cpu_count()} CPUs"
        + (" (the machine was shared: times are not a quiet measurement)." if load > 1.5 else "."),
        "",
        "MAE on 0–1 (per annotator, then the mean over annotators) averaged over splits and seeds.  Seed SD: the SD "
        "over seeds of the 10-split MAE (how much the choice of seed moves a single run's figure).  95% CI: two-way "
        "bootstrap of the seed-averaged MAE, annotators and prompts resampled together (1,000 resamples shared by "
        "every split, seed and predictor; predictions held fixed).  Δ vs annotator_mean: the paired difference on "
        "identical splits and resamples, with its 95% CI (negative = better).  Spearman: predicted vs true prompt "
        "means over test prompts.  Wasserstein (0–100) and CRPS (0–1): in aggregated, of the predicted rating "
        "distribution against each prompt's observed ratings; `point` marks a point predictor scored as a point "
        "mass (its CRPS is its MAE).  Elsewhere Wasserstein compares the predicted and true ratings of the scored "
        "annotators per prompt.  Seconds: fit + predict summed over splits and seeds.",
        "",
        "| Condition | Predictor | MAE | Seed SD | 95% CI | Δ vs annotator_mean (95% CI) | Spearman | Wasserstein "
        "| CRPS | Seconds |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        d = paired.get((r["predictor"], r["condition"]))
        delta = f"{_signed(d['difference'])} ({_signed(d['ci_low'])} to {_signed(d['ci_high'])})" if d else "—"
        crps = "—"
        if "crps" in r:
            crps = _fmt(r["crps"]) + (" point" if r.get("distribution") == "point mass" else "")
        lines.append(
            f"| {r['condition']} | {r['predictor']} | {_fmt(r['mae'])} | {_fmt(r['sd_seeds'], 4)} | "
            f"{_fmt(r['ci_low'])}–{_fmt(r['ci_high'])} | {delta} | {_fmt(r['spearman'])} | "
            f"{_fmt(r['wasserstein'], 1)} | {crps} | {r['seconds']:.1f} |"
        )

    notes = []
    if (personal, "individual") in by_key:
        notes.append(compare_with_paper(f"`{personal}` individual", personal_ind, 0.195, "GPT-5 k-shot"))
        notes.append(compare_with_paper(f"`{personal}` aggregated", personal_agg, 0.250, "Claude Sonnet-3.7 k-shot"))
    tp = traits_vs_pooled.get(("traits_ramp", "new_annotator"))
    if tp:
        inside = tp["ci_low"] <= 0 <= tp["ci_high"]
        identical = max(abs(tp["ci_low"]), abs(tp["ci_high"]), abs(tp["difference"])) < 1e-12
        verdict = "."
        if identical:
            verdict = (
                ": the two give the same predictions on every split and seed (the leave-one-annotator-out "
                "choice of trait-kernel width picks 'no width', i.e. the pooled ramp): traits add nothing here."
            )
        elif inside:
            verdict = ": traits add nothing measurable to the pooled ramp."
        notes.append(
            f"New annotators: `traits_ramp` − `pooled_ramp` = {_signed(tp['difference'], 4)} (paired 95% CI "
            f"{_signed(tp['ci_low'], 4)} to {_signed(tp['ci_high'], 4)}){verdict}"
        )
    for name in ("safetyanalyst_reference", "safetyanalyst_fit"):
        if (name, "individual") in by_key:
            notes.append(
                f"`{name}` sees only the 16 released action-category probabilities of a prompt (no effects, extent, "
                "likelihood, immediacy or benefits): it is not SafetyAnalyst-8B and its figure is not a rerun of the "
                "paper's 0.311 / 0.361."
            )
            break
    b_ind, b_agg = best("individual"), best("aggregated")
    notes.append(
        f"Best individual: `{b_ind['predictor']}` {_fmt(b_ind['mae'])} ({_fmt(b_ind['ci_low'])}–"
        f"{_fmt(b_ind['ci_high'])}); best aggregated: `{b_agg['predictor']}` {_fmt(b_agg['mae'])} "
        f"({_fmt(b_agg['ci_low'])}–{_fmt(b_agg['ci_high'])})."
    )
    lines += ["", "What the figures allow us to say:", ""] + [f"- {n}" for n in notes]

    lines += [
        "",
        "Published (PluriHarms paper, same MAE; other splits, so not a paired comparison):",
        "",
        "| Model | Condition | MAE |",
        "|---|---|---:|",
    ]
    lines += [f"| {model} | {condition} | {mae:.3f} |" for model, condition, mae in PUBLISHED]

    per_seed = result.per_seed
    lines += ["", f"Per seed (10-split MAE; every predictor and score in `{PER_SEED_CSV}`):", ""]
    head = [n for n in dict.fromkeys((personal, "feature_ramp", REFERENCE)) if (n, "individual") in by_key]
    lines.append("| Seed | " + " | ".join(f"{n} ind. | {n} agg." for n in head) + " |")
    lines.append("|---|" + "---:|" * (2 * len(head)))
    for seed in seeds:
        cells = []
        for n in head:
            for condition in ("individual", "aggregated"):
                hit = per_seed[
                    (per_seed["seed"] == seed) & (per_seed["predictor"] == n) & (per_seed["condition"] == condition)
                ]
                cells.append(_fmt(float(hit["mae"].iloc[0]), 4) if len(hit) else "—")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")

    lines += ["", "| Check | Result | Value |", "|---|---|---|"]
    lines += [f"| {label} | {'PASS' if ok else 'FAIL'} | {value} |" for label, ok, value in checks]
    lines.append("<!-- /bench:prediction -->")
    text = "\n".join(lines)
    print(text)
    if not quick:
        write_section("prediction", text)
        per_seed.to_csv(REPO / PER_SEED_CSV, index=False, float_format="%.6g")
    return passed


if __name__ == "__main__":
    sys.exit(0 if run(quick="--quick" in sys.argv) else 1)
