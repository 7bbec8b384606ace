"""A study's prompt bank: upload a file, see its preview and every problem, then import it (htmx)."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from config.errors import ApplicationError, error_response

from ..access import study_view
from ..services.prompt_bank import FORMATS, MAX_TEXT_CHARS, BankProblems, bank_import, bank_upload
from ..services.study import PROTECTED_REASON, study_has_ratings
from ..services.uploads import MAX_UPLOAD_BYTES

PREVIEW_TARGET = "#bank-preview"


def _context(study, **more) -> dict:
    locked = study_has_ratings(study=study)
    return {
        "study": study,
        "formats": FORMATS,
        "locked": locked,
        "locked_reason": PROTECTED_REASON if locked else "",
        "max_mb": MAX_UPLOAD_BYTES // 2**20,
        "max_text": MAX_TEXT_CHARS,
        "n_prompts": study.prompts.count(),
        **more,
    }


def _preview(request, study, bank, *, status: int = 200, imported: int | None = None):
    """The preview partial (htmx) or the page with it; a bank with problems is a 400 aimed at the preview."""
    context = _context(study, bank=bank, imported=imported)
    if not request.htmx:
        return render(request, "annotation/prompt_bank.html", context, status=status)
    response = render(request, "annotation/_prompt_bank_preview.html", context, status=status)
    if status >= 400:
        response["HX-Retarget"] = PREVIEW_TARGET
        response["HX-Reswap"] = "innerHTML"
    return response


@require_http_methods(["GET", "POST"])
@study_view("edit")
def prompt_bank_upload(request, study):
    """GET: the upload form. POST: store and parse the file; answer with its preview and problems."""
    if request.method == "GET":
        return render(request, "annotation/prompt_bank.html", _context(study))
    file = request.FILES.get("file")
    if file is None:
        return error_response(request, "Choose a file to upload (CSV, JSON lines or a release's prompts.csv).")
    try:
        bank = bank_upload(study=study, upload=file, fmt=request.POST.get("format", "auto"), user=request.user)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return _preview(request, study, bank, status=200 if bank.ok else 400)


@require_POST
@study_view("edit")
def prompt_bank_import(request, study):
    """Import a previewed upload, all or nothing; problems found now are shown like the preview's."""
    try:
        upload_id = int(request.POST.get("upload", ""))
    except ValueError:
        return error_response(request, "Upload the file again: the form did not name an upload.")
    try:
        bank = bank_import(study=study, upload_id=upload_id, fmt=request.POST.get("format", "auto"))
    except BankProblems as exc:
        return _preview(request, study, exc.bank, status=400)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return _preview(request, study, bank, imported=len(bank.rows))
