"""Uploaded prediction files: validated against the study, then kept for the benchmark job."""
from __future__ import annotations

import io
import uuid
from pathlib import Path

from django.conf import settings

from annotation.models import Study
from config.errors import ApplicationError

MAX_BYTES = 20 * 1024 * 1024


def predictions_upload_save(*, study: Study, upload) -> str:
    """Check the CSV (columns, ids, values; row-level messages) and store it; returns its media path."""
    from .science.predictors.uploaded import read_predictions_csv

    if upload.size > MAX_BYTES:
        raise ApplicationError(f"the file is larger than {MAX_BYTES // 2**20} MB")
    raw = upload.read()
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
    relative = Path("uploads") / study.slug / f"{uuid.uuid4().hex}.csv"
    target = Path(settings.MEDIA_ROOT) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return str(relative)
