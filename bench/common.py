"""What every benchmark shares: the PostgreSQL database, Django set-up, machine facts, BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS_FILE = REPO / "BENCHMARKS.md"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/pluriharms_bench"


def database_url() -> tuple[str, bool]:
    """(url, owned): owned means the default bench database, which may be dropped and recreated."""
    url = os.environ.get("DATABASE_URL", "").strip()
    return (url, False) if url else (DEFAULT_DATABASE_URL, True)


def prepare_database(url: str, owned: bool) -> None:
    """Create the database if missing; drop it first if it is the bench's own."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"the import/export benchmark needs PostgreSQL; DATABASE_URL is {parts.scheme}://…")
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if owned:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def django_setup(url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("PLURIHARMS_DEV", "1")  # a local run: throwaway keys are fine
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def proc_status_mb(key: str) -> float | None:
    """A memory line of /proc/self/status in MB (VmRSS resident now, VmHWM its peak), or None off Linux."""
    found = re.search(rf"^{key}:\s*(\d+) kB", _read("/proc/self/status"), re.M)
    return int(found.group(1)) / 1024 if found else None


def load_average() -> list[str]:
    """The 1, 5 and 15-minute load averages as printed, or "?" each off Linux."""
    try:
        return [f"{x:.2f}" for x in os.getloadavg()]
    except OSError:
        return ["?"] * 3


def machine_info() -> dict[str, str]:
    try:
        from django.db import connection
    except Exception:  # pragma: no cover
        connection = None

    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            pg = cursor.fetchone()[0]
    except Exception:  # a benchmark without Django or PostgreSQL
        pg = "n/a"
    try:
        date = subprocess.run(["date", "-u"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        date = datetime.now(UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
    return {
        "date": date,
        "cpus": str(os.cpu_count() or "?"),
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?",
        "cpu": cpu.group(1).strip() if cpu else platform.processor() or "?",
        "python": platform.python_version(),
        "postgresql": pg.split()[0],
    }


def write_section(name: str, text: str) -> None:
    """Replace (or append) the section between `<!-- bench:NAME -->` markers; `text` includes them."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if BENCHMARKS_FILE.exists():
        current = BENCHMARKS_FILE.read_text()
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if pattern.search(current):
            updated = pattern.sub(lambda _: text, current, count=1)
        else:
            updated = current.rstrip("\n") + "\n\n" + text + "\n"
    else:
        updated = "# Benchmarks\n\nResults of `make bench` (`.venv/bin/python -m bench`).\n\n" + text + "\n"
    BENCHMARKS_FILE.write_text(updated)
