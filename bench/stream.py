"""Streaming benchmark (issue 9): the ratings CSV of a 1.5-million-rating study through the API.

Builds a PostgreSQL study of 10,000 annotators × 150 prompts in SQL (generate_series, INSERT … SELECT:
no Python per row), starts gunicorn on loopback with the repository's gunicorn.conf.py, and downloads
`GET /api/studies/<slug>/ratings.csv` with a token, counting rows as they arrive. Measures the seconds
from request to last byte (target ≤ 15 s) and the peak resident memory of the gunicorn workers
(VmHWM in /proc/<pid>/status; target < 300 MB), and checks the row count and a sample of rows against
the database. The machine is shared: the load average before and after is written with the result.

Run: `python -m bench stream [--quick]` (--quick: 1,000 annotators, BENCHMARKS.md left alone).
"""

from __future__ import annotations

import csv
import http.client
import io
import os
import time
from pathlib import Path

from bench.common import database_url, django_setup, machine_info, prepare_database, write_section

SECONDS_TARGET = 15.0
RSS_TARGET_MB = 300.0
N_PROMPTS = 150
SLUG = "stream-bench"


def _status_kb(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmHWM: peak resident set; VmRSS: current)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _insert_select(model, overrides: dict, tail: str, params: list) -> tuple[str, list]:
    """`INSERT INTO table (every column) SELECT …`: SQL for the overridden columns (an expression, or an
    (expression, parameters) pair), the model's defaults (as parameters) for the rest, so that a column
    added later with a default needs no change here."""
    from django.db import connection  # noqa: PLC0415

    columns, values, args = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in overrides:
            value = overrides[field.column]
            expression, extra = value if isinstance(value, tuple) else (value, [])
            values.append(expression)
            args.extend(extra)
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            values.append("now()")
        else:
            values.append("%s")
            args.append(field.get_db_prep_save(field.get_default(), connection))
    sql = f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(values)} {tail}"
    return sql, args + params


def build_study(n_annotators: int):
    """The study, its prompts, annotators, assignments and ratings, written by PostgreSQL itself."""
    from django.db import connection, transaction  # noqa: PLC0415

    from annotation.models import Annotator, Assignment, Prompt, Rating, Study  # noqa: PLC0415

    existing = Study.objects.filter(slug=SLUG).first()
    if existing is not None:
        n = Rating.objects.filter(annotator__study=existing).count()
        if n == n_annotators * N_PROMPTS:
            return existing, 0.0
        with connection.cursor() as cursor:  # the ORM's cascade would load 1.5M rows
            for model in (Rating, Assignment):
                cursor.execute(
                    f"DELETE FROM {model._meta.db_table} WHERE annotator_id IN "
                    f"(SELECT id FROM {Annotator._meta.db_table} WHERE study_id = %s)",
                    [existing.pk],
                )
        existing.delete()

    started = time.perf_counter()
    with transaction.atomic():
        study = Study.objects.create(slug=SLUG, title="Streaming benchmark", status=Study.Status.CLOSED)
        Prompt.objects.bulk_create(
            Prompt(study=study, external_id=f"q{i:03d}", text=f"Prompt {i}", order=i, harm_level=i % 5)
            for i in range(N_PROMPTS)
        )
        with connection.cursor() as cursor:
            sql, args = _insert_select(
                Annotator,
                {
                    "study_id": ("%s", [study.pk]),
                    "pseudonym": "'P' || lpad(g::text, 5, '0')",
                    "status": "'completed'",
                    "order_seed": "g",
                },
                "FROM generate_series(1, %s) AS g",
                [n_annotators],
            )
            cursor.execute(sql, args)
            sql, args = _insert_select(
                Assignment,
                {
                    "annotator_id": "n.id",
                    "prompt_id": "p.id",
                    "kind": "'prompt'",
                    "check_spec": "NULL",
                    "position": f'(p."order" + n.id) %% {N_PROMPTS} + 1',
                    "shown_at": "now()",
                    "answered_at": "now()",
                    "check_passed": "NULL",
                },
                f"FROM {Annotator._meta.db_table} n CROSS JOIN {Prompt._meta.db_table} p "
                "WHERE n.study_id = %s AND p.study_id = %s",
                [study.pk, study.pk],
            )
            cursor.execute(sql, args)
            sql, args = _insert_select(
                Rating,
                {
                    "assignment_id": "a.id",
                    "annotator_id": "a.annotator_id",
                    "prompt_id": "a.prompt_id",
                    "value": "CASE WHEN a.r < 0.02 THEN NULL ELSE floor(a.r2 * 101) END",
                    "unsure": "a.r < 0.02",
                    "rt_ms": "1000 + floor(a.r2 * 9000)::int",
                    "server_rt_ms": "1100 + floor(a.r2 * 9000)::int",
                    "idempotency_key": "NULL",
                },
                f"FROM (SELECT x.id, x.annotator_id, x.prompt_id, random() AS r, random() AS r2 "
                f"FROM {Assignment._meta.db_table} x JOIN {Annotator._meta.db_table} n ON n.id = x.annotator_id "
                "WHERE n.study_id = %s) AS a",
                [study.pk],
            )
            cursor.execute(sql, args)
    with connection.cursor() as cursor:
        for model in (Annotator, Assignment, Rating, Prompt):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    return study, time.perf_counter() - started


def stream(port: int, token: str, path: str) -> dict:
    """GET the CSV; seconds to the first and the last byte, bytes, rows, and the first few rows."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    connection.request("GET", path, headers={"Authorization": f"Token {token}", "Accept": "text/csv"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {response.read(500)!r}")
    first = None
    n_bytes = newlines = 0
    head = b""
    while block := response.read(1 << 20):
        if first is None:
            first = time.perf_counter() - started
        n_bytes += len(block)
        newlines += block.count(b"\n")
        if len(head) < 4096:
            head += block[:4096]
    seconds = time.perf_counter() - started
    connection.close()
    rows = list(csv.reader(io.StringIO(head.decode("utf-8", "replace"))))[:6]
    return {"seconds": seconds, "first_byte": first or seconds, "bytes": n_bytes, "rows": newlines - 1, "head": rows}


def _check_sample(study, head: list[list[str]]) -> bool:
    """The first rows as streamed equal the database's (pseudonym, prompt id, value, unsure)."""
    from annotation.models import Rating  # noqa: PLC0415

    header, *rows = head
    expect = list(
        Rating.objects.filter(annotator__study=study, prompt__isnull=False)
        .order_by("id")
        .values_list("id", "annotator__pseudonym", "prompt__external_id", "value", "unsure")[: len(rows)]
    )
    got = [
        (int(r[0]), r[1], r[3], float(r[4]) if r[4] else None, r[5] == "True") for r in rows if len(r) == len(header)
    ]
    return got == [(i, a, p, v, u) for i, a, p, v, u in expect]


def run(quick: bool = False) -> bool:
    url, owned = database_url()
    if owned:
        url = url.rsplit("/", 1)[0] + "/pluriharms_bench_stream"
    prepare_database(url, owned)
    django_setup(url)
    from django.contrib.auth import get_user_model  # noqa: PLC0415
    from django.core.management import call_command  # noqa: PLC0415
    from rest_framework.authtoken.models import Token  # noqa: PLC0415

    from bench.load import REPO, _free_port, _gunicorn_pids, start_server, stop_server  # noqa: PLC0415

    call_command("migrate", verbosity=0)
    n_annotators = 1_000 if quick else 10_000
    study, build_seconds = build_study(n_annotators)
    expected = n_annotators * N_PROMPTS
    print(f"study {SLUG}: {expected:,} ratings" + (f", built in {build_seconds:.1f} s" if build_seconds else ""))

    user, _ = get_user_model().objects.get_or_create(username="stream-bench")
    study.owner = user
    study.save(update_fields=["owner"])
    token, _ = Token.objects.get_or_create(user=user)

    env = {**os.environ, "DATABASE_URL": url, "PLURIHARMS_DEV": "1", "PYTHONPATH": str(REPO)}
    port = _free_port()
    log_path = Path(os.environ.get("PLURIHARMS_ARTIFACTS", "/tmp")) / "bench-stream-gunicorn.log"
    load_before = os.getloadavg()
    server = start_server(env, port, log_path)
    try:
        workers = [pid for pid in _gunicorn_pids(server.pid) if pid != server.pid]
        # Every worker answers one small API request first, so the baseline includes Django and DRF loaded.
        for _ in range(4 * len(workers)):
            stream(port, token.key, f"/api/studies/{SLUG}/ratings.csv?prompt=none")
        baseline = {pid: _status_kb(pid, "VmRSS") or 0 for pid in workers}
        result = stream(port, token.key, f"/api/studies/{SLUG}/ratings.csv")
        peaks = {pid: _status_kb(pid, "VmHWM") or 0 for pid in workers}
    finally:
        stop_server(server)
    load_after = os.getloadavg()
    peak_mb = max(peaks.values()) / 1024
    baseline_mb = max(baseline.values()) / 1024
    rows_ok = result["rows"] == expected
    sample_ok = _check_sample(study, result["head"])
    seconds_ok = result["seconds"] <= SECONDS_TARGET
    rss_ok = peak_mb < RSS_TARGET_MB
    passed = rows_ok and sample_ok and seconds_ok and rss_ok
    rate = result["rows"] / result["seconds"]
    print(
        f"streamed {result['rows']:,} rows ({result['bytes'] / 1e6:.0f} MB) in {result['seconds']:.1f} s "
        f"({rate:,.0f} rows/s, first byte {result['first_byte'] * 1000:.0f} ms); worker peak RSS {peak_mb:.0f} MB "
        f"(after warm-up {baseline_mb:.0f} MB); load average {load_before[0]:.2f} → {load_after[0]:.2f}",
        flush=True,
    )
    machine = machine_info()
    workers_setting = os.environ.get("WEB_CONCURRENCY", "(gunicorn.conf.py default)")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    lines = [
        "<!-- bench:stream -->",
        "## Streaming the ratings CSV through the API (issue 9)",
        "",
        f"Run {machine['date']} with `.venv/bin/python -m bench stream`"
        + (" --quick" if quick else "")
        + f"; gunicorn workers: {workers_setting} (gthread).",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, Python "
        f"{machine['python']}, PostgreSQL {machine['postgresql']}. The machine is shared: load average "
        f"(1 min) {load_before[0]:.2f} before the run and {load_after[0]:.2f} after; the client, gunicorn and "
        "PostgreSQL share the CPUs.",
        "",
        "| Measure | Value | Target | Result |",
        "|---|---:|---|---|",
        f"| Rows streamed | {result['rows']:,} | {expected:,} | {verdict(rows_ok)} |",
        f"| Seconds, request to last byte | {result['seconds']:.1f} | ≤ {SECONDS_TARGET:g} | {verdict(seconds_ok)} |",
        f"| Worker peak RSS (VmHWM), MB | {peak_mb:.0f} | < {RSS_TARGET_MB:g} | {verdict(rss_ok)} |",
        f"| First rows equal the database's | {'yes' if sample_ok else 'no'} | yes | {verdict(sample_ok)} |",
        "",
        f"{result['bytes'] / 1e6:,.0f} MB of CSV at {rate:,.0f} rows/s; first byte after "
        f"{result['first_byte'] * 1000:.0f} ms. The worker's resident memory was {baseline_mb:.0f} MB after "
        "warm-up (Django, DRF and a small CSV request; most of it is the app's imports at start: pandas, "
        "pyarrow, scipy, scikit-learn); the peak is the highest VmHWM of the workers after the download, so "
        "it includes everything the worker ever held.",
        "",
        f"The study ({n_annotators:,} annotators × {N_PROMPTS} prompts, 2% Unsure) is written by PostgreSQL "
        "itself (generate_series and INSERT … SELECT). The client is `http.client` with a DRF token, reading "
        "1 MB blocks and counting lines. On PostgreSQL the server has the database write the CSV "
        "(`COPY (SELECT …) TO STDOUT`: ratings joined to their annotator, prompt and trial, sorted by id, "
        "then formatted; JIT off and work_mem 128MB for that one transaction) and passes it on in blocks "
        "of 256 kB through a `StreamingHttpResponse`; no Python object per cell, so the worker's memory "
        "stays where it was.",
        "<!-- /bench:stream -->",
    ]
    text = "\n".join(lines)
    print(text)
    if not quick:
        write_section("stream", text)
    return passed
