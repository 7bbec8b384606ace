"""Import / export benchmark (issue 2): the PluriHarms release format on PostgreSQL.

Cases:
  * the vendored release (100 annotators x 150 prompts): import (target <= 5 s), export as
    `pluriharms`, and check that the export is byte-identical to the source;
  * a generated study of 10,000 annotators x 150 prompts (1.5 million ratings) in the release
    format: import (issue 14: target <= 15 s and <= 1 GB, and <= 3x a bare COPY of the same ratings
    measured in the same run), export as `pluriharms` (target <= 30 s), `parquet` and `long-csv`
    (timed, no target);
  * the bare COPY: the same 1.5 million ratings in long form (annotator, prompt, rating, unsure,
    trial) copied into a fresh table with a primary key and a unique (annotator, prompt) index, from a
    buffer built beforehand (binary format, as the importer writes), committed; timed in this process;
  * the synthetic import on SQLite (a file database in the temporary directory), timed, no target.
Every step runs in a fresh process (the management command through `call_command`), so its peak
memory (ru_maxrss, target <= 2 GB) is its own; seconds are that process's wall time, start-up
included. PostgreSQL's own memory is not counted.

Database: DATABASE_URL if set (its bench studies are deleted first); otherwise
postgres://postgres@127.0.0.1:5432/pluriharms_bench, dropped and created afresh on every run.

Run: `python -m bench import_export [--quick]`, or `python -m bench.import_export [--quick] [--sqlite-annotators N]`.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import (
    BENCHMARKS_FILE,
    REPO,
    database_url,
    django_setup,
    load_average,
    machine_info,
    prepare_database,
    write_section,
)

RELEASE_DIR = REPO / "benchmark" / "datasets" / "pluriharms"
MARK_BEGIN = "<!-- bench:import_export -->"
MARK_END = "<!-- /bench:import_export -->"
RELEASE_SLUG = "bench-release"
SYNTH_SLUG = "bench-synth"
SYNTH_ANNOTATORS = 10_000
QUICK_ANNOTATORS = 500
SEED = 20_250_601
UNSURE_SHARE = 0.02
MEMORY_TARGET_MB = 2048.0
# Issue 14: the synthetic import at the database's pace.
IMPORT_TARGET_S = 15.0
IMPORT_MEMORY_TARGET_MB = 1024.0
COPY_RATIO_TARGET = 3.0
BARE_TABLE = "bench_bare_copy"
RESULT_PREFIX = "BENCH_STEP_RESULT "


@dataclass
class Case:
    name: str
    rows: int
    seconds: float
    peak_mb: float | None = None
    target_s: float | None = None
    target_mb: float | None = None
    inner_seconds: float | None = None
    ok: bool = True  # the step itself succeeded (and, for checks, the check held)
    note: str = ""
    ratio: float | None = None  # import / bare COPY
    target_ratio: float | None = None

    @property
    def passed(self) -> bool:
        if not self.ok:
            return False
        if self.target_s is not None and self.seconds > self.target_s:
            return False
        if self.target_mb is not None and self.peak_mb is not None and self.peak_mb > self.target_mb:
            return False
        if self.target_ratio is not None and (self.ratio is None or self.ratio > self.target_ratio):
            return False
        return True

    @property
    def target(self) -> str:
        parts = []
        if self.target_s is not None:
            parts.append(f"≤ {self.target_s:g} s")
        if self.target_mb is not None:
            parts.append(f"≤ {self.target_mb / 1024:g} GB")
        if self.target_ratio is not None:
            parts.append(f"≤ {self.target_ratio:g}× bare COPY")
        return ", ".join(parts) or "—"

    @property
    def result(self) -> str:
        no_target = self.target_s is None and self.target_mb is None and self.target_ratio is None
        if no_target and self.ok and not self.note.startswith("check"):
            return "—"
        return "PASS" if self.passed else "FAIL"


# --------------------------------------------------------------------------- database


def drop_bench_studies(slugs: list[str]) -> None:
    """Delete earlier bench studies: the big tables by SQL (fast), the rest through the ORM."""
    from django.db import connection, transaction

    from annotation.models import Annotator, Assignment, Rating, Study

    study_ids = list(Study.objects.filter(slug__in=slugs).values_list("id", flat=True))
    if not study_ids:
        return
    annotators = f"SELECT id FROM {Annotator._meta.db_table} WHERE study_id = ANY(%s)"
    with transaction.atomic(), connection.cursor() as cursor:
        for model in (Rating, Assignment):
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE annotator_id IN ({annotators})", [study_ids])
        Study.objects.filter(id__in=study_ids).delete()


# --------------------------------------------------------------------------- steps


def step_main(argv: list[str]) -> int:
    """Child process: run one management command, print its own timing and peak memory."""
    import resource

    django_setup(os.environ["DATABASE_URL"])
    from django.core.management import call_command

    kind, *rest = argv
    if kind == "migrate":  # an empty database for a step (the SQLite import), untimed
        call_command("migrate", verbosity=0)
        return 0
    start = time.perf_counter()
    if kind == "import":
        directory, slug = rest
        call_command("import_pluriharms", directory, study=slug, verbosity=0)
    elif kind == "export":
        slug, fmt, out = rest
        call_command("export_study", slug, fmt=fmt, out=out, verbosity=0)
    else:
        raise SystemExit(f"unknown step {kind!r}")
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(RESULT_PREFIX + json.dumps({"seconds": seconds, "peak_kb": peak_kb}), flush=True)
    return 0


def run_step(*args: str, url: str) -> tuple[float, float, float | None, bool, str]:
    """Run a step in a fresh process: (wall seconds, peak MB, seconds inside the command, ok, error)."""
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.import_export", "--step", *args], cwd=REPO, env=env, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    inner = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            inner = json.loads(line[len(RESULT_PREFIX) :])["seconds"]
    ok = proc.returncode == 0
    error = "" if ok else (stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    if not ok:
        print(stderr, file=sys.stderr)
    return wall, peak_mb, inner, ok, error


# --------------------------------------------------------------------------- data


def make_synthetic(directory: Path, n_annotators: int, seed: int = SEED) -> int:
    """Write a release-format study of `n_annotators` x the release's prompts; returns the rating count."""
    import pandas as pd

    from benchmark.science import release as rf

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RELEASE_DIR / rf.PROMPTS_FILE, directory / rf.PROMPTS_FILE)
    release = rf.release_read(RELEASE_DIR)
    prompt_ids = release.prompts["external_id"].tolist()
    n_prompts = len(prompt_ids)

    columns: dict[str, object] = {rf.PARTICIPANT_ID: np.arange(n_annotators)}
    for column in rf.DEMOGRAPHIC_COLUMNS:  # sampled with the release's own frequencies
        observed = release.demographics[column].to_numpy(dtype=object)
        columns[column] = observed[rng.integers(0, len(observed), n_annotators)]
    ratings = rng.integers(0, 101, size=(n_annotators, n_prompts)).astype(float)
    ratings[rng.random((n_annotators, n_prompts)) < UNSURE_SHARE] = np.nan  # empty cell = Unsure
    for j, pid in enumerate(prompt_ids):
        columns[rf.rating_column(pid)] = ratings[:, j]
    factors = rng.normal(0.0, 1.5, size=(n_annotators, len(rf.FACTOR_COLUMNS)))
    for j, column in enumerate(rf.FACTOR_COLUMNS):
        columns[column] = factors[:, j]
    trials = np.argsort(rng.random((n_annotators, n_prompts)), axis=1)  # a permutation per row
    for j, pid in enumerate(prompt_ids):
        columns[rf.trial_column(pid)] = trials[:, j]
    # The release's column order: id, demographics, ratings, factors, trial positions.
    pd.DataFrame(columns).to_csv(directory / rf.ANNOTATIONS_FILE, index=False)
    return n_annotators * n_prompts


def bare_copy(url: str, synth_dir: Path) -> tuple[Case, Case]:
    """The same ratings in long form, COPYed into a fresh table with a primary key and a unique
    (annotator, prompt) index: binary (as the importer writes) and CSV, each from a buffer built
    beforehand, in this process; seconds are the COPY and its commit."""
    import io

    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from annotation.bulk import binary_copy_blocks
    from benchmark.science import release as rf

    release = rf.release_read(synth_dir)
    n_annotators, n_prompts = release.ratings.shape
    n = n_annotators * n_prompts
    annotator = np.repeat(np.arange(1, n_annotators + 1, dtype=np.int64), n_prompts)
    prompt = np.tile(release.prompts["external_id"].to_numpy(dtype=np.int64), n_annotators)
    rating = release.ratings.ravel()
    unsure = np.isnan(rating)
    trial = release.trials.ravel().astype(np.int32)
    binary = list(
        binary_copy_blocks([(annotator, None), (prompt, None), (rating, unsure), (unsure, None), (trial, None)], n)
    )
    sink = io.BytesIO()
    pa_csv.write_csv(
        pa.table({"a": annotator, "p": prompt, "r": pa.array(rating, mask=unsure), "u": unsure, "t": trial}),
        sink,
        pa_csv.WriteOptions(include_header=False, quoting_style="none"),
    )
    text = sink.getvalue()
    csv_blocks = [text[i : i + (1 << 20)] for i in range(0, len(text), 1 << 20)]
    cases = []
    for label, fmt, blocks in (("binary", "binary", binary), ("CSV", "csv", csv_blocks)):
        with psycopg.connect(url) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {BARE_TABLE}")
            conn.execute(
                f"CREATE TABLE {BARE_TABLE} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                "annotator bigint NOT NULL, prompt bigint NOT NULL, rating double precision, "
                "unsure boolean NOT NULL, trial integer NOT NULL, UNIQUE (annotator, prompt))"
            )
            conn.commit()
            print(f"  synthetic: bare COPY ({label}) …", end="", flush=True)
            start = time.perf_counter()
            with conn.cursor().copy(
                f"COPY {BARE_TABLE} (annotator, prompt, rating, unsure, trial) FROM STDIN (FORMAT {fmt})"
            ) as copy:
                for block in blocks:
                    copy.write(block)
            conn.commit()
            seconds = time.perf_counter() - start
            print(f" {seconds:.2f} s", flush=True)
            conn.execute(f"DROP TABLE {BARE_TABLE}")
            conn.commit()
        cases.append(
            Case(f"synthetic: bare COPY, {label} (long form; primary key, unique (annotator, prompt))", n, seconds)
        )
    return cases[0], cases[1]


def sqlite_import(tmp_path: Path, synth_dir: Path | None, n_annotators: int) -> list[Case]:
    """The synthetic import on SQLite, into a file database migrated beforehand (untimed)."""
    if synth_dir is None:  # a smaller study than the PostgreSQL one, generated alike
        synth_dir = tmp_path / f"synthetic-{n_annotators}"
        make_synthetic(synth_dir, n_annotators)
    url = f"sqlite:///{tmp_path / 'import.sqlite3'}"
    print("  sqlite: migrate …", flush=True)
    *_, ok, error = run_step("migrate", url=url)
    name = f"SQLite: import ({n_annotators:,} annotators)"
    rows = n_annotators * 150
    if not ok:
        return [Case(name, rows, 0.0, ok=False, note=f"failed: migrate: {error}")]
    case = _step_case(name, rows, "import", str(synth_dir), SYNTH_SLUG, url=url, target_s=None)
    case.target_mb = None
    return [case]


def same_files(source: Path, exported: Path, names: list[str]) -> list[str]:
    """Names of the files that differ byte for byte."""
    return [n for n in names if not (exported / n).exists() or not filecmp.cmp(source / n, exported / n, shallow=False)]


# --------------------------------------------------------------------------- machine


# --------------------------------------------------------------------------- report


def table(cases: list[Case]) -> str:
    lines = [
        "| Case | Rows | Seconds | In command (s) | Peak MB | × bare COPY | Target | Result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for case in cases:
        peak = f"{case.peak_mb:,.0f}" if case.peak_mb is not None else "—"
        inner = f"{case.inner_seconds:.2f}" if case.inner_seconds is not None else "—"
        seconds = f"{case.seconds:.2f}" if case.seconds else "—"
        ratio = f"{case.ratio:.2f}" if case.ratio is not None else "—"
        name = case.name + (f" ({case.note})" if case.note else "")
        lines.append(
            f"| {name} | {case.rows:,} | {seconds} | {inner} | {peak} | {ratio} | {case.target} | {case.result} |"
        )
    return "\n".join(lines)


def section(cases: list[Case], machine: dict[str, str], n_annotators: int, load: list[str]) -> str:
    return "\n".join(
        [
            MARK_BEGIN,
            "## Import / export (issues 2 and 14)",
            "",
            f"Run {machine['date']} with `.venv/bin/python -m bench import_export` "
            "(`make bench` runs every benchmark).",
            "",
            f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, "
            f"Python {machine['python']}, PostgreSQL {machine['postgresql']}; load average before the run "
            f"{' '.join(load)}.",
            "",
            table(cases),
            "",
            "Each import or export runs in a fresh process (the management command through `call_command`); "
            "*Seconds* is that process's wall time, Python and Django start-up included (the target applies to "
            "it), *In command* the time inside the command, and *Peak MB* the process's "
            "peak resident memory (ru_maxrss; PostgreSQL's own memory is not counted). The release is "
            f"`benchmark/datasets/pluriharms` (100 annotators x 150 prompts); the synthetic study is "
            f"{n_annotators:,} annotators x 150 prompts generated in the release format (seed {SEED}, "
            f"{UNSURE_SHARE:.0%} Unsure cells). Exports of the release and of the synthetic study are compared "
            "byte for byte with their source files. The bare COPY writes the synthetic study's ratings in long "
            "form (annotator, prompt, rating, unsure, trial) into a fresh table with a primary key and a unique "
            "(annotator, prompt) index, from a buffer built beforehand, and commits; *× bare COPY* divides by the "
            "faster of its two formats. The import writes more than that: 10,000 annotators, and an assignment "
            "and a rating per cell (two tables, ten indexes). The SQLite import writes to a file database in "
            "short transactions (see `annotation/importers.py`).",
            MARK_END,
        ]
    )


# --------------------------------------------------------------------------- run


def _step_case(name: str, rows: int, *args: str, url: str, target_s: float | None) -> Case:
    print(f"  {name} …", end="", flush=True)
    wall, peak, inner, ok, error = run_step(*args, url=url)
    case = Case(name, rows, wall, peak, target_s, MEMORY_TARGET_MB, inner, ok, "" if ok else f"failed: {error}")
    print(f" {wall:.2f} s, {peak:,.0f} MB{'' if ok else ' FAILED'}", flush=True)
    return case


def run(quick: bool = False, sqlite_annotators: int | None = None) -> bool:
    url, owned = database_url()
    load = load_average()
    print(f"import/export benchmark on {url if owned else 'DATABASE_URL'}" + (" (quick)" if quick else ""))
    prepare_database(url, owned)
    django_setup(url)
    from django.core.management import call_command

    from benchmark.science import release as rf

    call_command("migrate", verbosity=0)
    if not owned:
        drop_bench_studies([RELEASE_SLUG, SYNTH_SLUG])
    machine = machine_info()
    release_rows = 15_000
    n_annotators = QUICK_ANNOTATORS if quick else SYNTH_ANNOTATORS
    if sqlite_annotators is None:
        sqlite_annotators = n_annotators
    files = [rf.PROMPTS_FILE, rf.ANNOTATIONS_FILE]
    cases: list[Case] = []

    with tempfile.TemporaryDirectory(prefix="pluriharms-bench-") as tmp:
        tmp_path = Path(tmp)
        cases.append(
            _step_case("release: import", release_rows, "import", str(RELEASE_DIR), RELEASE_SLUG, url=url, target_s=5)
        )
        out = tmp_path / "release-pluriharms"
        cases.append(
            _step_case(
                "release: export pluriharms",
                release_rows,
                "export",
                RELEASE_SLUG,
                "pluriharms",
                str(out),
                url=url,
                target_s=None,
            )
        )
        differ = same_files(RELEASE_DIR, out, files)
        cases.append(
            Case(
                "release: round trip byte-identical",
                release_rows,
                0.0,
                ok=not differ,
                note="check" + (f"; differs: {', '.join(differ)}" if differ else ""),
            )
        )

        synth_dir = tmp_path / "synthetic"
        print(f"  synthetic: generate {n_annotators:,} x 150 …", end="", flush=True)
        start = time.perf_counter()
        synth_rows = make_synthetic(synth_dir, n_annotators)
        generated = time.perf_counter() - start
        print(f" {generated:.2f} s", flush=True)
        cases.append(Case(f"synthetic: generate CSV ({n_annotators:,} annotators)", synth_rows, generated))
        imported = _step_case(
            "synthetic: import", synth_rows, "import", str(synth_dir), SYNTH_SLUG, url=url, target_s=IMPORT_TARGET_S
        )
        imported.target_mb = IMPORT_MEMORY_TARGET_MB
        cases.append(imported)
        copies = bare_copy(url, synth_dir)
        cases += copies
        fastest = min(c.seconds for c in copies)
        imported.ratio, imported.target_ratio = imported.seconds / fastest, COPY_RATIO_TARGET
        for case in copies:
            case.ratio = case.seconds / fastest
        for fmt, target in (("pluriharms", 30.0), ("parquet", None), ("long-csv", None)):
            out = tmp_path / f"synthetic-{fmt}"
            cases.append(
                _step_case(
                    f"synthetic: export {fmt}",
                    synth_rows,
                    "export",
                    SYNTH_SLUG,
                    fmt,
                    str(out),
                    url=url,
                    target_s=target,
                )
            )
            if fmt == "pluriharms":
                differ = same_files(synth_dir, out, files)
                cases.append(
                    Case(
                        "synthetic: round trip byte-identical",
                        synth_rows,
                        0.0,
                        ok=not differ,
                        note="check" + (f"; differs: {', '.join(differ)}" if differ else ""),
                    )
                )
            else:
                size = sum(p.stat().st_size for p in out.glob("ratings.*")) if out.exists() else 0
                cases[-1].note = f"{size / 1024 / 1024:,.0f} MB file"

        if sqlite_annotators:
            cases += sqlite_import(
                tmp_path, synth_dir if sqlite_annotators == n_annotators else None, sqlite_annotators
            )
            sqlite_case = cases[-1]
            if sqlite_case.ok and sqlite_case.rows == imported.rows:
                sqlite_case.ratio = sqlite_case.seconds / fastest
                sqlite_case.note = f"{sqlite_case.seconds / imported.seconds:.1f}× the PostgreSQL import"

    print()
    print(
        f"{machine['date']} · {machine['cpus']} CPUs ({machine['cpu']}) · {machine['memory']} · "
        f"Python {machine['python']} · PostgreSQL {machine['postgresql']}"
    )
    print(table(cases))
    passed = all(c.passed for c in cases)
    if quick:
        print("\n--quick: BENCHMARKS.md left unchanged.")
    else:
        write_section("import_export", section(cases, machine, n_annotators, load))
        print(f"\nwrote {BENCHMARKS_FILE.relative_to(REPO)}")
    print("import/export:", "all targets met" if passed else "SOME TARGETS MISSED")
    return passed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--step"]:
        return step_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.import_export")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--sqlite-annotators", type=int, default=None, help="annotators of the SQLite import (0: skip; default: all)"
    )
    args = parser.parse_args(argv)
    return 0 if run(quick=args.quick, sqlite_annotators=args.sqlite_annotators) else 1


if __name__ == "__main__":
    sys.exit(main())
