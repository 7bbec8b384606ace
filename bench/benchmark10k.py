"""The model benchmark at 10,000 annotators (issue 14): the fast predictor set × the 10-split protocol
on the synthetic 10,000 × 150 study (1.5 million ratings).  Target: ≤ 10 minutes, peak memory recorded.

The fast set is what the benchmark form preselects (`benchmark.evaluation.predictor_families()`, the
predictors measured at ≤ 1 s per split and seed on the release).  The study is
`bench.analytics_data.synthetic_long(10_000, seed=1)` (the analytics benchmark's study) with the
release's prompt texts for the text models.  One seed (0) of `protocol.run_benchmark` as the product
runs it (BLAS on one thread, 1,000 bootstrap resamples), every condition each predictor supports.

Timed: the protocol call (reading nothing: the frame is built first and its generation is timed
apart), MiniLM's load and the embedding of the 150 prompts included.  Memory: *run peak* is the
process's peak resident memory during the protocol (the kernel's high-water mark is reset once the
frame is built, so it includes the frame itself), *process peak* also covers building the frame.
Per predictor: fit + predict seconds over every split and condition (the protocol's `seconds`); the
rest of the run is the protocol's own work (tasks, scores, bootstrap).

Run: `python -m bench benchmark10k [--quick]` (quick: 1,000 annotators × 2 splits, BENCHMARKS.md left
alone).
"""

from __future__ import annotations

import os
import resource
import sys
import time

from bench.analytics import _reset_high_water
from bench.common import REPO, load_average, machine_info, proc_status_mb, write_section

N_ANNOTATORS = 10_000
N_SPLITS = 10
SEED = 1  # the synthetic study's seed (the analytics benchmark's study)
TARGET_SECONDS = 600.0


def fast_predictors() -> list[str]:
    """The predictors the benchmark form preselects."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("PLURIHARMS_DEV", "1")
    import django

    django.setup()
    from benchmark.evaluation import predictor_families

    return [p["name"] for family in predictor_families() for p in family["predictors"] if p["default"]]


def study_frame(n_annotators: int):
    """The synthetic study with the release's prompt texts (the text models embed them)."""
    from bench.analytics_data import synthetic_long
    from benchmark.science.release import RELEASE_DIR, release_read

    frame = synthetic_long(n_annotators, seed=SEED)
    prompts = release_read(RELEASE_DIR).prompts
    texts = dict(zip(prompts["external_id"].astype(str), prompts["text"].astype(str)))
    frame.insert(2, "text", frame["prompt"].map(texts))
    return frame


def run(quick: bool = False) -> bool:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    n_annotators = 1_000 if quick else N_ANNOTATORS
    n_splits = 2 if quick else N_SPLITS
    names = fast_predictors()
    from benchmark.science.protocol import run_benchmark

    load_before = " ".join(load_average())
    busy_before = os.getloadavg()[0] > (os.cpu_count() or 1)
    start = time.perf_counter()
    frame = study_frame(n_annotators)
    generate_seconds = time.perf_counter() - start
    print(f"  {len(frame):,} rows generated in {generate_seconds:.1f} s", file=sys.stderr, flush=True)
    _reset_high_water()
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.02 or fraction >= 1.0:
            last[0] = fraction
            elapsed = time.perf_counter() - start
            print(f"  {100 * fraction:5.1f}%  {elapsed:7.1f} s  {message}", file=sys.stderr, flush=True)

    cpu = time.process_time()
    start = time.perf_counter()
    result = run_benchmark(frame, names, n_splits=n_splits, seed=0, progress=progress)
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu
    load_after = " ".join(load_average())
    process_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    run_mb = proc_status_mb("VmHWM") or process_mb

    per_split = result.per_split
    seconds = per_split.groupby("predictor", sort=False)["seconds"].sum()
    summary = {(r["predictor"], r["condition"]): r for r in result.summary()}
    conditions = ("individual", "aggregated", "new_annotator", "warm")
    predictor_total = float(seconds.sum())
    passed = total <= TARGET_SECONDS
    machine = machine_info()
    lines = [
        "<!-- bench:benchmark10k -->",
        "## Model benchmark at 10,000 annotators (issue 14)",
        "",
        f"Run {machine['date']} with `.venv/bin/python -m bench benchmark10k`.  Machine: {machine['cpus']} CPUs "
        f"({machine['cpu']}), {machine['memory']} memory, Python {machine['python']}.  Load average (1, 5, 15 "
        f"min) before the run {load_before}, after it {load_after}"
        + (" (the machine was shared: not a quiet measurement)." if busy_before else "."),
        "",
        f"The fast predictor set (the {len(names)} the benchmark form preselects) × the {n_splits}-split protocol "
        f"(seed 0, every condition each predictor supports, 1,000 two-way bootstrap resamples, BLAS on one thread "
        f"as the product runs it) on the synthetic {n_annotators:,} × 150 study (`synthetic_long({n_annotators}, "
        f"seed={SEED})`, {len(frame):,} rows, generated in {generate_seconds:.1f} s, not counted).",
        "",
        f"**Total {total:.1f} s** (target ≤ {TARGET_SECONDS:.0f} s: {'PASS' if passed else 'FAIL'}), CPU {cpu:.1f} s; "
        f"MiniLM's load and the prompt embeddings included.  Peak resident memory during the run "
        f"**{run_mb:,.0f} MB** (the frame included), {process_mb:,.0f} MB for the whole process.  Fit + predict of "
        f"the predictors {predictor_total:.1f} s; the protocol's own work (task frames, scores, bootstrap) the "
        f"other {total - predictor_total:.1f} s.",
        "",
        "| Predictor | Seconds (fit + predict, all splits) | " + " | ".join(f"MAE {c}" for c in conditions) + " |",
        "|---|---:|" + "---:|" * len(conditions),
    ]
    for name in names:
        maes = [summary.get((name, c)) for c in conditions]
        cells = " | ".join("—" if m is None else f"{m['mae']:.3f}" for m in maes)
        lines.append(f"| {name} | {seconds.get(name, 0.0):.1f} | {cells} |")
    lines.append("<!-- /bench:benchmark10k -->")
    text = "\n".join(lines)
    print(text)
    if not quick:
        write_section("benchmark10k", text)
    return passed


if __name__ == "__main__":
    sys.exit(0 if run(quick="--quick" in sys.argv) else 1)
