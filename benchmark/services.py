"""Job lifecycle: create (and queue on commit), run (claim once, call the kind's handler, save)."""
from __future__ import annotations

import json
import logging
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.exports import FORMATS, export_study
from annotation.models import Study
from config.errors import ApplicationError

from .models import Job, JobArtifact

logger = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".parquet": "application/vnd.apache.parquet",
    ".png": "image/png",
}


def _validate_export(params: dict) -> dict:
    fmt = params.get("format", "pluriharms")
    if fmt not in FORMATS:
        raise ApplicationError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}", extra={"field": "format"})
    return {"format": fmt}


def _validate_analysis(params: dict) -> dict:
    clean = {
        "mixed_effects": params.get("mixed_effects", True),
        "include_excluded": params.get("include_excluded", False),
        "n_boot": params.get("n_boot", 1000),
        "seed": params.get("seed", 0),
    }
    for key in ("mixed_effects", "include_excluded"):
        if not isinstance(clean[key], bool):
            raise ApplicationError(f"{key} must be true or false", extra={"field": key})
    for key, low, high in (("n_boot", 0, 100_000), ("seed", 0, 2**31 - 1)):
        if not isinstance(clean[key], int) or isinstance(clean[key], bool) or not low <= clean[key] <= high:
            raise ApplicationError(f"{key} must be a whole number from {low} to {high}", extra={"field": key})
    return clean


def _validate_benchmark(params: dict) -> dict:
    from .evaluation import predictor_names
    from .science.protocol import CONDITIONS

    predictors = params.get("predictors") or []
    conditions = params.get("conditions") or list(CONDITIONS)
    clean = {"predictors": predictors, "conditions": conditions, "splits": params.get("splits", 10),
             "seed": params.get("seed", 0), "uploaded_path": params.get("uploaded_path") or None}
    if not isinstance(predictors, list) or not all(isinstance(p, str) for p in predictors):
        raise ApplicationError("predictors must be a list of names", extra={"field": "predictors"})
    unknown = sorted(set(predictors) - set(predictor_names()))
    if unknown:
        raise ApplicationError(f"unknown predictor(s): {', '.join(unknown)}", extra={"field": "predictors"})
    if not isinstance(conditions, list) or not set(conditions) <= set(CONDITIONS) or not conditions:
        raise ApplicationError(f"conditions must be a non-empty list from {', '.join(CONDITIONS)}",
                               extra={"field": "conditions"})
    for key, low, high in (("splits", 1, 100), ("seed", 0, 2**31 - 1)):
        if not isinstance(clean[key], int) or isinstance(clean[key], bool) or not low <= clean[key] <= high:
            raise ApplicationError(f"{key} must be a whole number from {low} to {high}", extra={"field": key})
    if "uploaded" in predictors and not clean["uploaded_path"]:
        raise ApplicationError("the 'uploaded' predictor needs an uploaded file", extra={"field": "uploaded_path"})
    return clean


# kind -> params validator; the handlers are below
PARAM_VALIDATORS: dict[str, Callable[[dict], dict]] = {
    Job.Kind.EXPORT: _validate_export,
    Job.Kind.ANALYSIS: _validate_analysis,
    Job.Kind.BENCHMARK: _validate_benchmark,
}


def job_create(*, kind: str, study: Study | None, params: dict | None = None, user=None) -> Job:
    """Create a job and queue it once the surrounding transaction commits."""
    if not isinstance(params or {}, dict):
        raise ApplicationError("params must be an object", extra={"field": "params"})
    clean = job_params_clean(kind=kind, params=params or {})
    job = Job.objects.create(kind=kind, study=study, params=clean, created_by=user if user and user.is_authenticated else None)
    job_enqueue(job=job)
    return job


def job_params_clean(*, kind: str, params: dict) -> dict:
    if kind not in PARAM_VALIDATORS:
        raise ApplicationError(f"unknown job kind {kind!r}", extra={"field": "kind"})
    return PARAM_VALIDATORS[kind](params)


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
    pd.DataFrame(report["prompts"]).to_csv(out / "prompts.csv", index=False)
    pd.DataFrame(report["annotators"]).to_csv(out / "annotators.csv", index=False)
    for name in ("report.json", "prompts.csv", "annotators.csv"):
        _save_artifact(job, out / name)
    return report


def _run_benchmark(job: Job, progress: Callable[[float, str], None]) -> dict:
    from .evaluation import study_benchmark
    from .science.report import to_jsonable

    p = job.params
    summary, result = study_benchmark(
        study=job.study, predictors=p["predictors"] or None, n_splits=p["splits"], seed=p["seed"],
        conditions=p["conditions"], uploaded_path=p.get("uploaded_path"), progress=progress,
    )
    out = _artifact_dir(job)
    out.mkdir(parents=True, exist_ok=True)
    summary = to_jsonable(summary)  # NaN (e.g. Spearman of constant predictions) becomes null
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1))
    result.per_split.to_csv(out / "per_split.csv", index=False)
    result.per_annotator.to_csv(out / "per_annotator.csv", index=False)
    result.per_prompt.to_csv(out / "per_prompt.csv", index=False)
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
        message = exc.message if isinstance(exc, ApplicationError) else f"{type(exc).__name__}: {exc}"
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.FAILED,
            error=message + ("" if isinstance(exc, ApplicationError) else "\n\n" + traceback.format_exc()[-4000:]),
            finished_at=timezone.now(),
            message="failed",
        )
    else:
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.SUCCEEDED, result=result, progress=1.0, finished_at=timezone.now(), message="done"
        )
    job.refresh_from_db()
    return job
