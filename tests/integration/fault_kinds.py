"""A job kind for tests/integration/test_job_faults.py: sleeps in small steps, reporting progress, and
writes a log of its runs outside its artifact folder (which a re-run empties), so a test can count them."""

import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from rest_framework import serializers

from jobs.params import StrictBooleanField, StrictParams
from jobs.registry import JobKind
from jobs.services import artifact_dir, artifact_save


class SlowParams(StrictParams):
    steps = serializers.IntegerField(min_value=1, max_value=1000)
    step_seconds = serializers.FloatField(min_value=0, max_value=10)
    ignore_soft_limit = StrictBooleanField(default=False)


def run_log(job_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "fault-runs" / f"{job_id}.log"


def _note(job_id: int, line: str) -> None:
    path = run_log(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(line + "\n")


def slow_run(job, progress) -> dict:
    params = job.params
    _note(job.pk, f"start {job.attempts}")
    step = 0
    while step < params["steps"]:
        try:
            time.sleep(params["step_seconds"])
        except SoftTimeLimitExceeded:
            if not params["ignore_soft_limit"]:
                raise
            _note(job.pk, "soft limit ignored")
            continue  # a handler that never stops: only the hard limit ends it
        step += 1
        progress(step / params["steps"], f"step {step} of {params['steps']}")
    folder = artifact_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "steps.txt").write_text(f"{step} steps by run {job.attempts}\n")
    artifact_save(job=job, path=folder / "steps.txt")
    _note(job.pk, f"done {job.attempts}")
    return {"steps": step, "run": job.attempts}


SLOW = JobKind(name="fault-slow", label="Fault test: slow steps", params=SlowParams, handler=slow_run)
