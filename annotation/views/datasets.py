"""The datasets page: every export format one click away, each a job whose card shows its progress."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.access import study_view
from annotation.export_formats import LICENSES, SOFT_LABEL_BINS
from annotation.exports import FORMAT_LABELS, FORMATS
from annotation.selectors import study_counts

# The export jobs shown under the buttons (newest first).
RECENT_EXPORTS = 20


@require_GET
@study_view("view")  # viewers may download the data: starting an export is part of that
def datasets(request, study):
    context = {
        "study": study,
        "counts": study_counts(study=study),
        "formats": [(fmt, FORMAT_LABELS[fmt]) for fmt in FORMATS],
        "licenses": list(LICENSES.items()),
        "bins": SOFT_LABEL_BINS,
        "jobs": study.jobs.filter(kind="export").defer("result").prefetch_related("artifacts")[:RECENT_EXPORTS],
    }
    if request.htmx and request.htmx.target == "dataset-jobs":
        return render(request, "annotation/_dataset_jobs.html", context)
    return render(request, "annotation/datasets.html", context)
