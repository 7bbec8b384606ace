"""The embedded default: no Redis, SQLite, kombu's filesystem transport, a separate worker process.

Everything here runs through `manage.py` subprocesses on a fresh var directory, as `make demo` does,
so it shows the job ran in the worker and not inline in the process that created it.
"""

import os
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
    status_cmd = f"from jobs.models import Job; print(Job.objects.get(pk={job_id}).status)"
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
        status = wait_for(
            lambda: (s := _manage(env, "shell", "-v0", "-c", status_cmd)) in {"succeeded", "failed"} and s,
            timeout=90,
            interval=1,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        log.close()
    assert status == "succeeded", (tmp_path / "worker.log").read_text()[-2000:]
    assert (tmp_path / "var" / "media" / "jobs" / job_id / "ratings.jsonl").stat().st_size > 0
