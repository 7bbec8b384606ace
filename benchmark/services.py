"""Job lifecycle: create (and queue on commit), run (claim once, call the kind's handler, save)."""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.exports import export_study, spreadsheet_csv
from annotation.models import Study
from config.errors import ApplicationError

from .job_params import AnalysisParams, BenchmarkParams, ExportParams, StrictParams, params_clean
from .models import Job, JobArtifact

logger = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".parquet": "application/vnd.apache.parquet",
    ".png": "image/png",
}


# kind -> its parameter schema (benchmark/job_params.py); the handlers are below
PARAM_SCHEMAS: dict[str, type[StrictParams]] = {
    Job.Kind.EXPORT: ExportParams,
    Job.Kind.ANALYSIS: AnalysisParams,
    Job.Kind.BENCHMARK: BenchmarkParams,
}

# What a user sees when a job fails for a reason that is not theirs to fix: never the exception's text
# (it may quote files, settings or data), which goes to the worker's log with the traceback.
INTERNAL_ERROR = "The job stopped because of an internal error (details are in the worker's log under job #{id})."
ERROR_MAX_CHARS = 1000


def job_create(*, kind: str, study: Study | None, params: dict | None = None, user=None) -> Job:
    """Create a job and queue it once the surrounding transaction commits."""
    clean = job_params_clean(kind=kind, params=params, study=study)
    job = Job.objects.create(kind=kind, study=study, params=clean, created_by=user if user and user.is_authenticated else None)
    job_enqueue(job=job)
    return job


def job_params_clean(*, kind: str, params, study: Study | None) -> dict:
    """The kind's parameters, checked against its schema (unknown keys refused, an upload id resolved
    within `study`)."""
    if kind not in PARAM_SCHEMAS:
        raise ApplicationError(f"unknown job kind {kind!r}", extra={"field": "kind"})
    return params_clean(PARAM_SCHEMAS[kind], params, study=study)


def job_enqueue(*, job: Job) -> None:
    """Send the job to the worker after the current transaction commits (never run it inline)."""
    from .tasks import run_job

    job_id = job.pk
    transaction.on_commit(lambda: run_job.delay(job_id))


def job_progress(*, job: Job, fraction: float, message: str = "") -> None:
    """Record progress from inside a running job (its own small write, visible to pollers at once)."""
    fraction = min(1.0, max(0.0, float(fraction)))
    Job.objects.filter(pk=job.pk).update(progress=fraction, message=message[:300])


def _artifact_dir(job: Job) -> Path:
    return Path(settings.MEDIA_ROOT) / "jobs" / str(job.pk)


def _run_export(job: Job, progress: Callable[[float, str], None]) -> dict:
    out = _artifact_dir(job)
    paths = export_study(study=job.study, fmt=job.params["format"], out_dir=out, progress=progress)
    for path in paths:
        _save_artifact(job, path)
    return {"format": job.params["format"], "files": [p.name for p in paths]}


def _save_artifact(job: Job, path: Path) -> None:
    JobArtifact.objects.update_or_create(
        job=job,
        name=path.name,
        defaults={
            "file": str(path.relative_to(settings.MEDIA_ROOT)),
            "content_type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
            "size": path.stat().st_size,
        },
    )


def _run_analysis(job: Job, progress: Callable[[float, str], None]) -> dict:
    from .analysis import study_report

    report = study_report(study=job.study, progress=progress, **job.params)
    out = _artifact_dir(job)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    # Spreadsheet-facing tables: formula-like text is neutralised (annotation.exports.spreadsheet_csv).
    (out / "prompts.csv").write_text(spreadsheet_csv(pd.DataFrame(report["prompts"])), encoding="utf-8")
    (out / "annotators.csv").write_text(spreadsheet_csv(pd.DataFrame(report["annotators"])), encoding="utf-8")
    for name in ("report.json", "prompts.csv", "annotators.csv"):
        _save_artifact(job, out / name)
    return report


def _run_benchmark(job: Job, progress: Callable[[float, str], None]) -> dict:
    from .evaluation import study_benchmark
    from .science.report import to_jsonable

    p = job.params
    summary, result = study_benchmark(
        study=job.study, predictors=p["predictors"] or None, n_splits=p["splits"], seed=p["seed"],
        conditions=p["conditions"], upload_id=p.get("upload"), progress=progress,
    )
    out = _artifact_dir(job)
    out.mkdir(parents=True, exist_ok=True)
    summary = to_jsonable(summary)  # NaN (e.g. Spearman of constant predictions) becomes null
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1))
    for name, table in (("per_split", result.per_split), ("per_annotator", result.per_annotator),
                        ("per_prompt", result.per_prompt)):
        (out / f"{name}.csv").write_text(spreadsheet_csv(table), encoding="utf-8")
    for name in ("benchmark.json", "per_split.csv", "per_annotator.csv", "per_prompt.csv"):
        _save_artifact(job, out / name)
    return summary


HANDLERS: dict[str, Callable[[Job, Callable[[float, str], None]], dict]] = {
    Job.Kind.EXPORT: _run_export,
    Job.Kind.ANALYSIS: _run_analysis,
    Job.Kind.BENCHMARK: _run_benchmark,
}


def job_claim(*, job_id: int) -> Job | None:
    """Move a queued job to running exactly once; a redelivered message finds nothing to claim."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, progress=0.0, message="started", attempts=F("attempts") + 1
    )
    return Job.objects.get(pk=job_id) if claimed else None


def job_run(*, job_id: int) -> Job | None:
    """Run a queued job to the end, recording its result or its error. Returns None if not claimable."""
    job = job_claim(job_id=job_id)
    if job is None:
        logger.info("job %s is not queued; skipping (redelivery or duplicate)", job_id)
        return None

    def progress(fraction: float, message: str = "") -> None:
        job_progress(job=job, fraction=fraction, message=message)

    try:
        shutil.rmtree(_artifact_dir(job), ignore_errors=True)
        result = HANDLERS[job.kind](job, progress)
    except Exception as exc:  # the job records any failure; the worker must go on
        logger.exception("job %s failed", job_id)
        if isinstance(exc, ApplicationError):
            message = exc.message[:ERROR_MAX_CHARS]
        else:
            message = INTERNAL_ERROR.format(id=job_id)
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.FAILED,
            error=message,
            finished_at=timezone.now(),
            message="failed",
        )
    else:
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.SUCCEEDED, result=result, progress=1.0, finished_at=timezone.now(), message="done"
        )
    job.refresh_from_db()
    return job
