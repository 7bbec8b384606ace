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


def predictions_validate(*, study: Study, raw: bytes) -> None:
    """Check a predictions CSV against the study (columns, ids, values); row-level messages."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApplicationError("the predictions file is not UTF-8 text") from None
    prompts = list(study.prompts.values_list("external_id", flat=True))
    annotators = list(study.annotators.values_list("pseudonym", flat=True))
    try:
        read_predictions_csv(io.StringIO(text), prompts=prompts, annotators=annotators)
    except ValueError as exc:
        raise ApplicationError(f"predictions file: {exc}") from None


def predictions_upload_save(*, study: Study, upload, user=None) -> Upload:
    """Store a checked predictions CSV under the study; nothing is written for a bad file."""
    return upload_create(
        study=study,
        kind=Upload.Kind.PREDICTIONS,
        upload=upload,
        user=user,
        validate=lambda raw: predictions_validate(study=study, raw=raw),
    )


def benchmark_job_start(*, study: Study, user, params: dict, predictions_file=None) -> Job:
    """Start a benchmark job, storing an uploaded predictions file first (scored as 'uploaded').

    The parameters are checked before the file is stored, and a job that cannot be created takes its
    upload with it: a refused request leaves no file behind.
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
            return job_create(kind="benchmark", study=study, params=params, user=user)
    except Exception:
        if upload is not None:
            upload_discard(upload=upload)
        raise
