"""The embedded default: no Redis, SQLite, kombu's filesystem transport, a separate worker process.

Everything here runs through `manage.py` subprocesses on a fresh var directory, as `make demo` does,
so it shows the job ran in the worker and not inline in the process that created it.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, wait_for


def _env(var: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["PLURIHARMS_VAR_DIR"] = str(var)
    return env


def _manage(env, *args) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def demo_worker_queues() -> str:
    """The queues `make demo`'s single embedded worker consumes (its -Q argument in the Makefile)."""
    makefile = (ROOT / "Makefile").read_text()
    demo = makefile[makefile.index("\ndemo:") :]
    match = re.search(r"celery -A config worker -Q (\S+)", demo)
    assert match, "make demo starts a worker with -Q"
    return match.group(1)


def test_job_runs_in_separate_worker_without_redis(tmp_path, small_release):
    env = _env(tmp_path / "var")
    _manage(env, "migrate", "--noinput", "-v0")
    _manage(env, "import_pluriharms", str(small_release), "--study", "embedded")
    job_id = _manage(
        env,
        "shell",
        "-v0",
        "-c",
        "from annotation.models import Study; from jobs.services import job_create; "
        "print(job_create(kind='export', study=Study.objects.get(slug='embedded'), params={'format': 'jsonl'}).pk)",
    )
    # A job of the long queue too: the demo's one worker consumes both queues and runs everything.
    benchmark_id = _manage(
        env,
        "shell",
        "-v0",
        "-c",
        "from annotation.models import Study; from jobs.services import job_create; "
        "print(job_create(kind='benchmark', study=Study.objects.get(slug='embedded'), "
        "params={'predictors': ['global_mean'], 'splits': 2, 'seeds': 1}).pk)",
    )
    status_cmd = f"from jobs.models import Job; print(Job.objects.get(pk={job_id}).status)"
    both_cmd = (
        "from jobs.models import Job; "
        f"print(*Job.objects.filter(pk__in=[{job_id}, {benchmark_id}]).order_by('pk').values_list('status', flat=True))"
    )
    assert _manage(env, "shell", "-v0", "-c", status_cmd) == "queued"  # nothing ran inline
    queue = tmp_path / "var" / "celery" / "queue"
    assert any(queue.iterdir()), "the message should wait in the filesystem queue"

    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            demo_worker_queues(),
            "--pool=solo",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"embedded-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        done = {"succeeded", "failed"}
        statuses = wait_for(
            lambda: set((s := _manage(env, "shell", "-v0", "-c", both_cmd)).split()) <= done and s,
            timeout=180,
            interval=1,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        log.close()
    assert statuses == "succeeded succeeded", (tmp_path / "worker.log").read_text()[-2000:]
    assert (tmp_path / "var" / "media" / "jobs" / job_id / "ratings.jsonl").stat().st_size > 0
