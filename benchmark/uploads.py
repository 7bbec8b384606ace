"""Uploaded prediction files: validated against the study, stored as an Upload row, scored by a job."""

from __future__ import annotations

import io

from django.db import transaction

from annotation.models import Study, Upload
from annotation.services.uploads import upload_create, upload_discard
from config.errors import ApplicationError
from jobs.models import Job
from jobs.services import job_create, job_params_clean

from .science.predictors.uploaded import read_predictions_csv

# What the page says about the scale a predictions file was read on (read_predictions_csv's "auto": 0–100
# if any value is above 1, else 0–1).
SCALE_NOTES = {
    "unit": "Your predictions were read on the 0–1 scale (no value above 1), and scored as they are.",
    "percent": "Your predictions were read on the 0–100 scale (a value above 1 was found), and scored as value ÷ 100.",
}


def predictions_validate(*, study: Study, raw: bytes) -> str:
    """Check a predictions CSV against the study (columns, ids, values); row-level messages. Returns the
    scale it was read on: "unit" (0–1) or "percent" (0–100)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApplicationError("the predictions file is not UTF-8 text") from None
    prompts = list(study.prompts.values_list("external_id", flat=True))
    annotators = list(study.annotators.values_list("pseudonym", flat=True))
    try:
        frame = read_predictions_csv(io.StringIO(text), prompts=prompts, annotators=annotators)
    except ValueError as exc:
        raise ApplicationError(f"predictions file: {exc}") from None
    return frame.attrs["scale"]


def predictions_upload_save(*, study: Study, upload, user=None) -> Upload:
    """Store a checked predictions CSV under the study; nothing is written for a bad file. The returned
    row carries the scale the file was read on as `predictions_scale` ("unit" or "percent")."""
    scales = []
    row = upload_create(
        study=study,
        kind=Upload.Kind.PREDICTIONS,
        upload=upload,
        user=user,
        validate=lambda raw: scales.append(predictions_validate(study=study, raw=raw)),
    )
    row.predictions_scale = scales[-1] if scales else None
    return row


def benchmark_job_start(*, study: Study, user, params: dict, predictions_file=None) -> Job:
    """Start a benchmark job, storing an uploaded predictions file first (scored as 'uploaded').

    The parameters are checked before the file is stored, and a job that cannot be created takes its
    upload with it: a refused request leaves no file behind. With a file, the job carries the scale it
    was read on as `predictions_scale` (for the page to say; None without a file).
    """
    params = dict(params)
    if predictions_file is not None:
        job_params_clean(
            kind="benchmark",
            params={**params, "predictors": [p for p in params.get("predictors", []) if p != "uploaded"]},
            study=study,
        )
    elif not params.get("predictors"):
        raise ApplicationError("choose at least one predictor or upload predictions", extra={"field": "predictors"})
    upload = None
    try:
        with transaction.atomic():
            if predictions_file is not None:
                upload = predictions_upload_save(study=study, upload=predictions_file, user=user)
                params["upload"] = upload.pk
            job = job_create(kind="benchmark", study=study, params=params, user=user)
            job.predictions_scale = getattr(upload, "predictions_scale", None)
            return job
    except Exception:
        if upload is not None:
            upload_discard(upload=upload)
        raise
