"""Disagreement analytics benchmark (issues 4 and 14).

Cases, each in a fresh process so that its peak memory is its own:
  * descriptive report (everything but the mixed models) on the release, 15,000 ratings: ≤ 2 s;
  * descriptive report on a generated 10,000 × 150 study, 1.5 million ratings: ≤ 10 s, ≤ 1.5 GiB;
  * RQ1–RQ3 mixed-effects models (and the BIC ladder) on the release: ≤ 60 s;
  * RQ1–RQ3 (and the BIC ladder) on the 10,000 × 150 study, all 1.5 million ratings: ≤ 60 s.
Timed from the frame the analysis job gives each step: the study in the shape the job reads it from the
database (rating rows of ids, annotators, prompts: `bench.analytics_data.parts_of_long`), joined by the job's
own code (`benchmark.analysis.descriptive_frame`: only the columns the descriptive report reads;
`mixed_frame`: the whole study frame, prompt features included). Reading the rows from the database is
measured separately by the import/export benchmark. Memory: *step peak* is the process's peak resident
memory while the step runs (the frame it reads included; the kernel's high-water mark is reset once the
frame is built), *process peak* also covers building the frame.

Run: `python -m bench analytics [--quick]`.
"""

from __future__ import annotations

import ctypes
import json
import resource
import subprocess
import sys
import time

from bench.common import REPO, django_setup, load_average, machine_info, proc_status_mb, write_section

RELEASE = REPO / "benchmark" / "datasets" / "pluriharms"
RESULT = "BENCH_ANALYTICS "


def _release_free_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed heap pages otherwise
    except (OSError, AttributeError):
        pass


def _reset_high_water() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current resident size (Linux)
    except OSError:
        pass


def _step(kind: str, n_annotators: int) -> None:
    """Run in the child process: build the frame, time the step, print one JSON line."""
    sys.path.insert(0, str(REPO))
    django_setup("sqlite:///:memory:")  # the product's selectors import its models; no database is read
    from bench.analytics_data import parts_of_long, synthetic_long
    from benchmark.analysis import descriptive_frame, mixed_frame
    from benchmark.science.release import release_read

    # The study as the analysis job reads it from the database (rows of ids, annotators, prompts), and the
    # frame the job gives the step, joined by the job's own code (benchmark.analysis.study_report).
    parts = parts_of_long(release_read(RELEASE).long() if n_annotators == 0 else synthetic_long(n_annotators, seed=1))
    if kind == "descriptive":
        frame = descriptive_frame(parts)  # the job keeps `parts` meanwhile, to join the mixed models' frame after
    else:
        frame = mixed_frame(parts)
        del parts
    _release_free_memory()  # what building the frame freed goes back to the system before the step
    base_mb = proc_status_mb("VmRSS")
    _reset_high_water()
    cpu = time.process_time()
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
    cpu = time.process_time() - cpu
    process_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this process only
    step_mb = proc_status_mb("VmHWM") or process_mb
    print(
        RESULT
        + json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "rows": len(frame),
                "base_mb": base_mb or 0.0,
                "peak_mb": step_mb,
                "process_mb": process_mb,
                **extra,
            }
        )
    )


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
        (f"descriptive report, synthetic {big:,} × 150", "descriptive", big, 10.0, 1536.0),
        ("RQ1–RQ3 mixed models + BIC ladder, release", "mixed", 0, 60.0, None),
        (f"RQ1–RQ3 mixed models + BIC ladder, synthetic {big:,} × 150", "mixed", big, 60.0, None),
    ]
    load = load_average()
    rows, passed = [], True
    for name, kind, n, target_s, target_mb in cases:
        print(f"  {name} …", flush=True)
        result = _run(kind, n)
        ok = result["seconds"] <= target_s and (target_mb is None or result["peak_mb"] <= target_mb)
        passed &= ok
        target = f"≤ {target_s:g} s" + (f", ≤ {target_mb / 1024:g} GiB" if target_mb else "")
        skip = ("seconds", "cpu", "rows", "base_mb", "peak_mb", "process_mb")
        note = ", ".join(f"{k} {v:.3f}" for k, v in result.items() if k not in skip)
        rows.append(
            f"| {name} | {result['rows']:,} | {result['seconds']:.2f} | {result['cpu']:.2f} | "
            f"{result['base_mb']:,.0f} | {result['peak_mb']:,.0f} | {result['process_mb']:,.0f} | {target} | "
            f"{'PASS' if ok else 'FAIL'} | {note} |"
        )
    machine = machine_info()
    text = "\n".join(
        [
            "<!-- bench:analytics -->",
            "## Disagreement analytics (issues 4 and 14)",
            "",
            f"Run {machine['date']} with `.venv/bin/python -m bench analytics`; load average before the run "
            f"{' '.join(load)}.",
            "",
            f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, "
            f"Python {machine['python']}.",
            "",
            "| Case | Ratings | Seconds | CPU s | Frame MB | Step peak MB | Process peak MB | Target | Result "
            "| Figures |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|---|",
            *rows,
            "",
            "Each case runs in its own process; *Seconds* (wall) and *CPU s* time the step from the frame the "
            "analysis job gives it (the release files, or a seeded synthetic study from `bench/analytics_data.py`, "
            "in the shape the job reads a study from the database, joined by the job's own code: "
            "`benchmark.analysis.descriptive_frame`, the columns the descriptive report reads, and "
            "`mixed_frame`, the whole study frame with its 62 float64 prompt features); *Frame MB* "
            "is the process's resident memory when the step starts (the frame, the libraries, Django, and for the "
            "descriptive report the study's rows the job keeps to join the mixed models' frame after it; memory "
            "freed while building the frame is "
            "returned to the system first); *Step peak MB* is the peak resident memory during the step, the frame "
            "included (the memory target applies to it), so the step's own need is the difference; *Process peak "
            "MB* also covers building the frame. The mixed models are fitted "
            "exactly on every rating (no subsample; RQ3's stability selection uses its documented subset of "
            "annotators when rows × candidates exceed 4·10⁷). The descriptive report includes Krippendorff's α with a "
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
