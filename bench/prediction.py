"""Prediction benchmark (issue 5): every built-in predictor on the PluriHarms release, 10 seeded splits.

All predictors that need no configuration (`benchmark.science.predictors.builtin_names()`: baselines,
prompt-feature, MiniLM embedding, personalized, traits, collaborative and SafetyAnalyst models; not the
LLM adapters nor uploaded files) run in every condition they support, on 10 splits of 100 alignment /
50 test prompts (seed 0).  The wall time covers everything from reading the release to the last score,
the MiniLM model load and the embedding of the 150 prompts included.  Target: ≤ 5 minutes on the
2-core benchmark machine.  Beside our figures stand the paper's published ones.

Run: `python -m bench prediction [--quick]` (quick: 2 splits, BENCHMARKS.md left alone), or
`python -c "import bench.prediction as b; b.run()"`.
"""

from __future__ import annotations

import sys
import time

from bench.common import REPO, machine_info, write_section

N_SPLITS = 10
QUICK_SPLITS = 2
SEED = 0
TARGET_SECONDS = 300.0
CONDITION_ORDER = ("individual", "aggregated", "new_annotator", "warm")

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


def run(quick: bool = False) -> bool:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    from benchmark.science.predictors import builtin_names
    from benchmark.science.protocol import run_benchmark
    from benchmark.science.release import RELEASE_DIR, release_read

    df = release_read(RELEASE_DIR).long(include_text=True)
    names = builtin_names()
    n_splits = QUICK_SPLITS if quick else N_SPLITS
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.05 or fraction >= 1.0:
            last[0] = fraction
            print(
                f"  {100 * fraction:5.1f}%  {time.perf_counter() - start:6.1f} s  {message}",
                file=sys.stderr,
                flush=True,
            )

    result = run_benchmark(df, names, n_splits=n_splits, seed=SEED, progress=progress)
    total = time.perf_counter() - start
    rows = sorted(result.summary(), key=lambda r: (CONDITION_ORDER.index(r["condition"]), r["mae"]))
    by_key = {(r["predictor"], r["condition"]): r for r in rows}

    def best(condition: str, exclude=()) -> dict:
        candidates = [r for r in rows if r["condition"] == condition and r["predictor"] not in exclude]
        return min(candidates, key=lambda r: r["mae"])

    best_individual, best_aggregated = best("individual"), best("aggregated")
    annotator_mean = by_key[("annotator_mean", "individual")]["mae"]
    uniform = by_key[("uniform_random", "individual")]["mae"]
    personal_ind = by_key[(PERSONALIZED, "individual")]["mae"]
    personal_agg = by_key[(PERSONALIZED, "aggregated")]["mae"]
    checks = [
        (f"total time ≤ {TARGET_SECONDS:.0f} s", total <= TARGET_SECONDS, f"{total:.1f} s"),
        ("annotator_mean individual ≈ 0.306 (±0.01)", abs(annotator_mean - 0.306) <= 0.01, _fmt(annotator_mean)),
        ("uniform_random individual ≈ 0.39 (±0.01)", abs(uniform - 0.39) <= 0.01, _fmt(uniform)),
        (
            f"{PERSONALIZED} individual < SafetyAnalyst-8B 0.311 and WildGuard-7B 0.364",
            personal_ind < 0.311,
            _fmt(personal_ind),
        ),
        (
            f"{PERSONALIZED} aggregated < SafetyAnalyst-8B 0.361 and WildGuard-7B 0.364",
            personal_agg < 0.361,
            _fmt(personal_agg),
        ),
    ]
    stretch = [
        (
            "best individual ≤ 0.195 (GPT-5 k-shot)",
            best_individual["mae"] <= 0.195,
            f"{best_individual['predictor']} {_fmt(best_individual['mae'])}",
        ),
        (
            "best aggregated ≤ 0.250 (Claude Sonnet-3.7 k-shot)",
            best_aggregated["mae"] <= 0.250,
            f"{best_aggregated['predictor']} {_fmt(best_aggregated['mae'])}",
        ),
    ]
    passed = all(ok for _, ok, _ in checks)
    machine = machine_info()
    lines = [
        "<!-- bench:prediction -->",
        "## Prediction (issue 5)",
        "",
        f"Run {machine['date']} with `.venv/bin/python -m bench prediction`.",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, Python {machine['python']}.",
        "",
        f"{len(names)} built-in predictors × the conditions each supports, {n_splits} seeded splits "
        f"(seed {SEED}; 100 alignment / 50 test prompts; new_annotator holds out 20 annotators; warm "
        f"deals annotators into 5 folds).  Total wall time **{total:.1f} s** (target ≤ {TARGET_SECONDS:.0f} s: "
        f"{'PASS' if total <= TARGET_SECONDS else 'FAIL'}), reading the release, loading MiniLM and embedding "
        "the prompts included.",
        "",
        "MAE on 0–1: per annotator, then the mean over annotators; 95% CI: t-interval over annotators of one "
        "split, bounds averaged over splits.  Spearman: predicted vs true prompt means over test prompts.  "
        "Wasserstein: predicted vs true rating distribution per test prompt on 0–100, averaged.  Seconds: "
        "fit + predict summed over splits.",
        "",
        "| Condition | Predictor | MAE | 95% CI | Spearman | Wasserstein | Seconds |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['condition']} | {r['predictor']} | {_fmt(r['mae'])} | {_fmt(r['ci_low'])}–{_fmt(r['ci_high'])} | "
            f"{_fmt(r['spearman'])} | {_fmt(r['wasserstein'], 1)} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        "Published (PluriHarms paper, same MAE):",
        "",
        "| Model | Condition | MAE |",
        "|---|---|---:|",
    ]
    lines += [f"| {model} | {condition} | {mae:.3f} |" for model, condition, mae in PUBLISHED]
    lines += ["", "| Check | Result | Value |", "|---|---|---|"]
    lines += [f"| {label} | {'PASS' if ok else 'FAIL'} | {value} |" for label, ok, value in checks]
    lines += [f"| stretch: {label} | {'met' if ok else 'not met'} | {value} |" for label, ok, value in stretch]
    lines.append("<!-- /bench:prediction -->")
    text = "\n".join(lines)
    print(text)
    if not quick:
        write_section("prediction", text)
    return passed


if __name__ == "__main__":
    sys.exit(0 if run(quick="--quick" in sys.argv) else 1)
