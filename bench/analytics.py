"""Disagreement analytics benchmark (issue 4).

Cases, each in a fresh process so that its peak memory (ru_maxrss) is its own:
  * descriptive report (everything but the mixed models) on the release, 15,000 ratings: ≤ 2 s;
  * descriptive report on a generated 10,000 × 150 study, 1.5 million ratings: ≤ 60 s, ≤ 4 GB;
  * RQ1–RQ3 mixed-effects models (and the BIC ladder) on the release: ≤ 60 s.
Timed from a ready DataFrame (the science core's own work); reading the frame from the database is
measured separately by the import/export benchmark.

Run: `python -m bench analytics [--quick]`.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from bench.common import REPO, machine_info, write_section

RELEASE = REPO / "benchmark" / "datasets" / "pluriharms"
RESULT = "BENCH_ANALYTICS "


def _step(kind: str, n_annotators: int) -> None:
    """Run in the child process: build the frame, time the step, print one JSON line."""
    sys.path.insert(0, str(REPO))
    from bench.analytics_data import synthetic_long
    from benchmark.science.release import release_read

    frame = release_read(RELEASE).long() if n_annotators == 0 else synthetic_long(n_annotators, seed=1)
    start = time.perf_counter()
    if kind == "descriptive":
        from benchmark.science.report import descriptive_report

        report = descriptive_report(frame)
        extra = {"alpha": report["krippendorff_alpha_interval"]}
    else:
        from benchmark.science.mixed_effects import fit_all

        fitted = fit_all(frame)
        extra = {"r2_features": fitted["rq1"]["r2_marginal"], "r2_traits": fitted["rq2"]["r2_marginal"]}
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this process only
    print(RESULT + json.dumps({"seconds": seconds, "rows": len(frame), "peak_mb": peak_mb, **extra}))


def _run(kind: str, n_annotators: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.analytics", kind, str(n_annotators)], cwd=REPO, capture_output=True, text=True
    )
    line = next((row for row in done.stdout.splitlines() if row.startswith(RESULT)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len(RESULT) :])


def run(quick: bool = False) -> bool:
    big = 500 if quick else 10_000
    cases = [
        ("descriptive report, release", "descriptive", 0, 2.0, None),
        (f"descriptive report, synthetic {big:,} × 150", "descriptive", big, 60.0, 4096.0),
        ("RQ1–RQ3 mixed models + BIC ladder, release", "mixed", 0, 60.0, None),
    ]
    rows, passed = [], True
    for name, kind, n, target_s, target_mb in cases:
        print(f"  {name} …", flush=True)
        result = _run(kind, n)
        ok = result["seconds"] <= target_s and (target_mb is None or result["peak_mb"] <= target_mb)
        passed &= ok
        target = f"≤ {target_s:g} s" + (f", ≤ {target_mb / 1024:g} GB" if target_mb else "")
        note = ", ".join(f"{k} {v:.3f}" for k, v in result.items() if k not in ("seconds", "rows", "peak_mb"))
        rows.append(
            f"| {name} | {result['rows']:,} | {result['seconds']:.2f} | {result['peak_mb']:,.0f} | {target} | "
            f"{'PASS' if ok else 'FAIL'} | {note} |"
        )
    machine = machine_info()
    text = "\n".join(
        [
            "<!-- bench:analytics -->",
            "## Disagreement analytics (issue 4)",
            "",
            f"Run {machine['date']} with `.venv/bin/python -m bench analytics`.",
            "",
            f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, "
            f"Python {machine['python']}.",
            "",
            "| Case | Ratings | Seconds | Peak MB | Target | Result | Figures |",
            "|---|---:|---:|---:|---|---|---|",
            *rows,
            "",
            "Each case runs in its own process; *Seconds* times the report from a ready long DataFrame (the release "
            "files, or a seeded synthetic study from `bench/analytics_data.py`), *Peak MB* is that process's peak "
            "resident memory including building the frame. The descriptive report includes Krippendorff's α with a "
            "200-sample bootstrap CI, ICC, split-half reliability (100 splits), mean pairwise correlation, per-prompt "
            "statistics with 1,000-sample bootstrap CIs, annotator consensus and permutation tests (1,000) for all ten "
            "demographic columns.",
            "<!-- /bench:analytics -->",
        ]
    )
    print(text)
    if not quick:
        write_section("analytics", text)
    return passed


if __name__ == "__main__":
    _step(sys.argv[1], int(sys.argv[2]))
