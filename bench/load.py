"""Load benchmark (issue 8): a crowd of annotators over real HTTP against gunicorn on PostgreSQL.

Starts gunicorn on loopback with the production settings of gunicorn.conf.py, on a fresh PostgreSQL
database with a recruiting study over the 150 release prompts (2 attention checks each), then runs
`manage.py simulate_crowd` in its own process, twice:
- saturation: 200 annotators × 152 trials, all at once, no think time (target ≥ 400 ratings/s,
  0 errors, 0 lost, 0 duplicated);
- paced: 200 annotators with 1 s mean think time (target p95 ≤ 100 ms per rating).
It reads the CPU time of the gunicorn processes (master and workers) and of PostgreSQL's processes
before and after each run, and compares with a bare loop of single-row inserts (one transaction each)
into a copy of the ratings table on the same database.

Run: `python -m bench load [--quick]` (Redis at REDIS_URL, default 127.0.0.1:6379/14, for cache and sessions).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO, database_url, django_setup, machine_info, prepare_database, write_section

THROUGHPUT_TARGET = 400.0
P95_TARGET_MS = 100.0
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup_study(slug: str):
    from annotation.importers import prompts_create
    from annotation.models import Study
    from benchmark.science.release import RELEASE_DIR, release_read

    Study.objects.filter(slug=slug).delete()
    study = Study.objects.create(
        slug=slug,
        title="Load benchmark",
        status=Study.Status.RECRUITING,
        attention_checks=2,
        attention_max_failures=0,
        instruments=[],
        completion_code="LOADBENCH",
    )
    release = release_read(RELEASE_DIR)
    prompts_create(study=study, prompts=release.prompts, feature_columns=release.feature_columns)
    return study


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (Linux), or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process (fields utime and stime of /proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for pid in pids:
        fields = _proc_stat(pid)
        if fields is not None:
            times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return times


def _cpu_seconds(pids: list[int]) -> float:
    return sum(_cpu_by_pid(pids).values())


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two readings by the processes alive at the second (new ones count from zero).
    A process that ended in between is not counted: persistent connections keep PostgreSQL's backends."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _gunicorn_pids(master: int) -> list[int]:
    """The master and its descendants."""
    parents = {}
    for pid in _all_pids():
        fields = _proc_stat(pid)
        if fields is not None:
            parents[pid] = int(fields[1])
    family, changed = {master}, True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                changed = True
    return sorted(family)


def _postgres_pids() -> list[int]:
    pids = []
    for pid in _all_pids():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name.startswith("postgres"):
            pids.append(pid)
    return pids


def _wait_listening(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start listening")


def start_server(env: dict, port: int, log_path: Path) -> subprocess.Popen:
    """gunicorn with the repository's production configuration (gunicorn.conf.py), on loopback."""
    log = open(log_path, "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--config",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_listening(port, process)
    # The first request of each worker pays for imports and connections: warm every worker up.
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /s/load-saturation/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            s.recv(1024)
    return process


def stop_server(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def crowd(env: dict, port: int, slug: str, annotators: int, think_ms: float) -> dict:
    """simulate_crowd in its own process; its JSON report."""
    command = [
        sys.executable,
        "manage.py",
        "simulate_crowd",
        "--url",
        f"http://127.0.0.1:{port}",
        "--study",
        slug,
        "--annotators",
        str(annotators),
        "--concurrency",
        str(annotators),
        "--think-ms",
        str(think_ms),
        "--json",
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0 and not done.stdout.strip().startswith("{"):
        raise RuntimeError(f"simulate_crowd failed: {done.stderr[-2000:]}")
    text = done.stdout
    return json.loads(text[text.index("{") :])


def bare_inserts(url: str, n: int) -> dict:
    """A loop of single-row inserts (one transaction each) into a copy of the ratings table."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_bare_rating")
        conn.execute("CREATE TABLE bench_bare_rating (LIKE annotation_rating INCLUDING ALL)")
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'bench_bare_rating' "
                "AND column_name IN ('assignment_id', 'annotator_id', 'prompt_id', 'value', 'unsure', "
                "'rt_ms', 'created_at', 'idempotency_key')"
            )
        ]
        values = {
            "annotator_id": 1,
            "prompt_id": 1,
            "value": 50.0,
            "unsure": False,
            "rt_ms": 2000,
        }
        insert = f"INSERT INTO bench_bare_rating ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
        pg = _postgres_pids()
        pg_before = _cpu_seconds(pg)
        cpu_before = time.process_time()
        started = time.perf_counter()
        for i in range(n):
            row = []
            for column in columns:
                if column == "assignment_id":
                    row.append(i + 1)
                elif column == "created_at":
                    row.append(time.strftime("%Y-%m-%d %H:%M:%S+00"))
                elif column in ("annotator_id", "prompt_id"):  # unique together, as in a study
                    row.append(i // 150 + 1 if column == "annotator_id" else i % 150 + 1)
                elif column == "idempotency_key":
                    row.append(f"k{i}")
                else:
                    row.append(values[column])
            conn.execute(insert, row)
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - cpu_before
        pg_cpu = _cpu_seconds(pg) - pg_before
        conn.execute("DROP TABLE bench_bare_rating")
    return {
        "rows": n,
        "per_second": n / seconds,
        "ms_per_row": 1000 * seconds / n,
        "cpu_ms_per_row": 1000 * (client_cpu + pg_cpu) / n,
    }


def floor_run(port: int, master: int, clients: int = 50, seconds: float = 15.0) -> dict:
    """The stack's floor: the same keep-alive client asking for /healthz/live (the full middleware stack,
    no session, no database) as fast as it can, from `clients` threads in this process.  What a request
    costs the server when it does nothing, and how many such requests the machine answers per second
    with the generator on it: the ceiling no rating (which reads and writes PostgreSQL) can pass."""
    import threading  # noqa: PLC0415

    from annotation.crowd import _Browser  # noqa: PLC0415

    stop = time.monotonic() + seconds
    counts = [0] * clients
    failures = [0] * clients

    def hammer(i: int) -> None:
        browser = _Browser("127.0.0.1", port, 30.0)
        while time.monotonic() < stop:
            try:
                status, _, _ = browser.request("GET", "/healthz/live")
            except OSError:
                failures[i] += 1
                continue
            counts[i] += 1 if status == 200 else 0
            failures[i] += 0 if status == 200 else 1
        browser.close()

    server_before = _cpu_by_pid(_gunicorn_pids(master))
    own_before = os.times()
    started = time.monotonic()
    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    own_after = os.times()
    server_cpu = _cpu_delta(server_before, _cpu_by_pid(_gunicorn_pids(master)))
    n = max(1, sum(counts))
    report = {
        "clients": clients,
        "requests": sum(counts),
        "failures": sum(failures),
        "per_second": sum(counts) / elapsed,
        "server_cpu_ms": 1000 * server_cpu / n,
        "generator_cpu_ms": 1000 * ((own_after.user + own_after.system) - (own_before.user + own_before.system)) / n,
    }
    print(
        f"floor: {report['per_second']:.0f} requests/s of /healthz/live; CPU ms per request: server "
        f"{report['server_cpu_ms']:.2f}, generator {report['generator_cpu_ms']:.2f}",
        flush=True,
    )
    return report


def measured_run(env, port, master, slug, annotators, think_ms) -> dict:
    server_before = _cpu_by_pid(_gunicorn_pids(master))
    pg_before = _cpu_by_pid(_postgres_pids())
    busy_before, total_before = _machine_busy()
    generator_before = os.times()
    report = crowd(env, port, slug, annotators, think_ms)
    generator_after = os.times()
    busy_after, total_after = _machine_busy()
    report["machine_busy"] = (busy_after - busy_before) / max(1e-9, total_after - total_before)
    generator_cpu = (generator_after.children_user + generator_after.children_system) - (
        generator_before.children_user + generator_before.children_system
    )
    server_cpu = _cpu_delta(server_before, _cpu_by_pid(_gunicorn_pids(master)))
    pg_cpu = _cpu_delta(pg_before, _cpu_by_pid(_postgres_pids()))
    acknowledged = max(1, report["ratings_acknowledged"])
    report["server_cpu_ms_per_rating"] = 1000 * server_cpu / acknowledged
    report["postgres_cpu_ms_per_rating"] = 1000 * pg_cpu / acknowledged
    report["generator_cpu_ms_per_rating"] = 1000 * generator_cpu / acknowledged
    print(
        f"{slug}: {report['ratings_per_second']} ratings/s; CPU ms per rating: server "
        f"{report['server_cpu_ms_per_rating']:.2f}, PostgreSQL {report['postgres_cpu_ms_per_rating']:.2f}, "
        f"load generator {report['generator_cpu_ms_per_rating']:.2f}; machine busy {report['machine_busy']:.0%}",
        flush=True,
    )
    return report


def _rating_step(report: dict) -> dict:
    return next((row for row in report["steps"] if row["step"] == "rating"), {})


def run(quick: bool = False) -> bool:
    url, owned = database_url()
    if owned:
        url = url.rsplit("/", 1)[0] + "/pluriharms_bench_load"
    prepare_database(url, owned)
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    os.environ["REDIS_URL"] = redis_url
    django_setup(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.core.cache import cache

    cache.clear()
    slug_fast, slug_paced = "load-saturation", "load-paced"
    _setup_study(slug_fast)
    _setup_study(slug_paced)
    n = 20 if quick else 200

    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "PLURIHARMS_DEV": "1", "PYTHONPATH": str(REPO)}
    env.setdefault("RECRUITMENT_RATE_LIMIT", "100000/1m")  # every simulated annotator comes from 127.0.0.1
    env.setdefault("RATING_RATE_LIMIT", "100000/1m")  # no think time: far faster than a person
    port = _free_port()
    log_path = Path(os.environ.get("PLURIHARMS_ARTIFACTS", "/tmp")) / "bench-load-gunicorn.log"
    server = start_server(env, port, log_path)
    try:
        floor = floor_run(port, server.pid, clients=n // 4, seconds=5.0 if quick else 15.0)
        saturation = measured_run(env, port, server.pid, slug_fast, n, 0.0)
        paced = measured_run(env, port, server.pid, slug_paced, n, 1000.0)
    finally:
        stop_server(server)
    bare = bare_inserts(url, 2000 if quick else 20000)

    rating = _rating_step(saturation)
    paced_rating = _rating_step(paced)
    rec_fast, rec_paced = saturation["reconciliation"] or {}, paced["reconciliation"] or {}
    clean = (
        all(
            r.get("lost") == 0 and r.get("duplicated") == 0 and r.get("value_mismatch") == 0
            for r in (rec_fast, rec_paced)
        )
        and saturation["errors"] == 0
        and paced["errors"] == 0
    )
    fast_ok = saturation["ratings_per_second"] >= THROUGHPUT_TARGET
    paced_ok = paced_rating.get("p95_ms", 1e9) <= P95_TARGET_MS
    passed = clean and fast_ok and paced_ok
    workers = os.environ.get("WEB_CONCURRENCY", "(gunicorn.conf.py default)")
    machine = machine_info()
    full_cpu = saturation["server_cpu_ms_per_rating"] + saturation["postgres_cpu_ms_per_rating"]

    def row(name, report, step, target, ok):
        r = report["reconciliation"] or {}
        return (
            f"| {name} | {report['annotators']} | {report['ratings_acknowledged']:,} | "
            f"{report['ratings_per_second']:.0f} | {step.get('p50_ms', 0):.1f} | {step.get('p95_ms', 0):.1f} | "
            f"{step.get('p99_ms', 0):.1f} | {report['errors']} | {r.get('lost')} | {r.get('duplicated')} | "
            f"{report['server_cpu_ms_per_rating']:.2f} | {report['postgres_cpu_ms_per_rating']:.2f} | {target} | "
            f"{'PASS' if ok else 'FAIL'} |"
        )

    lines = [
        "<!-- bench:load -->",
        "## A crowd over HTTP (issue 8)",
        "",
        f"Run {machine['date']} with `.venv/bin/python -m bench load`"
        + (" --quick" if quick else "")
        + f"; gunicorn workers: {workers}.",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, "
        f"Python {machine['python']}, PostgreSQL {machine['postgresql']}. The load generator, gunicorn, "
        "PostgreSQL and Redis share these CPUs.",
        "",
        "| Run | Annotators | Ratings acknowledged | Ratings/s | p50 ms | p95 ms | p99 ms | Errors | Lost | "
        "Duplicated | Server CPU ms/rating | PostgreSQL CPU ms/rating | Target | Result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        row("No think time", saturation, rating, f"≥ {THROUGHPUT_TARGET:g} ratings/s", fast_ok and clean),
        row("1 s think time", paced, paced_rating, f"p95 ≤ {P95_TARGET_MS:g} ms", paced_ok and clean),
        "",
        f"Bare loop of single-row inserts (one transaction each, one connection) into a copy of the ratings "
        f"table: {bare['per_second']:,.0f} rows/s ({bare['ms_per_row']:.3f} ms each, "
        f"{bare['cpu_ms_per_row']:.3f} ms CPU of client and PostgreSQL). The full path's throughput is "
        f"{saturation['ratings_per_second'] / bare['per_second']:.2f}× that loop's; its CPU per rating (server "
        f"and PostgreSQL) is {full_cpu / bare['cpu_ms_per_row']:.1f}× "
        "a bare insert's.",
        "",
        f"The stack's floor, for scale: {floor['clients']} keep-alive clients asking for `/healthz/live` (every "
        f"middleware, no session, no database) get {floor['per_second']:,.0f} answers/s, at "
        f"{floor['server_cpu_ms']:.2f} ms of server CPU and {floor['generator_cpu_ms']:.2f} ms of client CPU "
        f"each ({floor['failures']} failures). A rating costs the server "
        f"{saturation['server_cpu_ms_per_rating'] / max(1e-9, floor['server_cpu_ms']):.1f}× such a request; "
        f"the load generator spent {saturation['generator_cpu_ms_per_rating']:.2f} ms of CPU per rating "
        "on the same cores.",
        "",
        "Each simulated annotator is a thread with its own keep-alive connection: link → consent → "
        "instructions → every card (htmx POST with CSRF token and idempotency key) → completion page. Ratings "
        "per second count acknowledged ratings over the rating phase. The latencies are those of the rating "
        "submissions (each answers with the next card). Lost and duplicated come from reconciling every "
        "acknowledged rating with the database.",
        "",
        "Steps of the run without think time:",
        "",
        "| Step | n | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {r['step']} | {r['n']:,} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} |"
            for r in saturation["steps"]
        ],
        "<!-- /bench:load -->",
    ]
    text = "\n".join(lines)
    print(text)
    if not quick:
        write_section("load", text)
    return passed
