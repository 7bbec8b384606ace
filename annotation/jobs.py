"""The job kind this app owns: dataset export (registered with the jobs app in AnnotationConfig.ready())."""

from __future__ import annotations

from rest_framework import serializers

from jobs.models import Job
from jobs.params import StrictParams
from jobs.registry import SHORT_QUEUE, JobKind, Progress
from jobs.services import artifact_dir, artifact_save

from .export_formats import LICENSES
from .exports import FORMATS, export_study


class ExportParams(StrictParams):
    format = serializers.ChoiceField(
        choices=list(FORMATS),
        default="pluriharms",
        error_messages={"invalid_choice": "unknown export format {input!r}; choose one of " + ", ".join(FORMATS)},
    )
    license = serializers.ChoiceField(
        choices=list(LICENSES),
        required=False,  # left out of the stored params unless given; "other" then
        help_text="The licence named in the dataset-hub card (format 'hub'); default 'other'.",
        error_messages={"invalid_choice": "unknown licence {input!r}; choose one of " + ", ".join(LICENSES)},
    )


def export_run(job: Job, progress: Progress) -> dict:
    paths = export_study(
        study=job.study,
        fmt=job.params["format"],
        out_dir=artifact_dir(job),
        progress=progress,
        license_id=job.params.get("license", "other"),
    )
    for path in paths:
        artifact_save(job=job, path=path)
    return {"format": job.params["format"], "files": [p.name for p in paths]}


# A viewer may export: downloading the data is part of "view" (annotation/access.py).
# Exports take seconds: the short queue, so that they never wait behind a benchmark. They only read the study's
# rows: from the replica when there is one (config/db_router.py).
EXPORT = JobKind(
    name="export",
    label="Dataset export",
    params=ExportParams,
    handler=export_run,
    need="view",
    queue=SHORT_QUEUE,
    replica_reads=True,
)
