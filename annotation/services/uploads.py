"""Files researchers send: stored under the study with a name of ours, found again only by id.

No path ever comes from a client. A job that reads an upload names it by id; `upload_get` checks that it
belongs to the job's study and is of the expected kind, and `upload_read` checks that its file still
resolves inside the uploads folder before reading a byte.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from config.errors import ApplicationError

from ..models import Study, Upload

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def path_within(root: Path, *parts: str) -> Path:
    """`root/parts…` resolved; refuses any result outside `root` (absolute parts, `..`, links)."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base):
        raise ApplicationError("that file is outside the folder it must be in", status_code=400)
    return target


def _uploads_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "uploads"


def upload_create(
    *,
    study: Study,
    kind: str,
    upload,
    user=None,
    validate: Callable[[bytes], None] | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> Upload:
    """Check and store an uploaded file. `validate(raw)` raises ApplicationError for bad content;
    nothing is written unless the file passes, and a failed save leaves no file behind."""
    if kind not in Upload.Kind.values:
        raise ApplicationError(f"unknown upload kind {kind!r}")
    if upload.size is not None and upload.size > max_bytes:
        raise ApplicationError(f"the file is larger than {max_bytes // 2**20} MB")
    raw = upload.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApplicationError(f"the file is larger than {max_bytes // 2**20} MB")
    if validate is not None:
        validate(raw)
    row = Upload(
        study=study,
        kind=kind,
        token=secrets.token_hex(16),
        original_name=Path(upload.name or "").name[:200],
        size=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        created_by=user if user is not None and user.is_authenticated else None,
    )
    row.file.save("upload.bin", ContentFile(raw), save=False)
    stored = row.file.name
    try:
        with transaction.atomic():
            row.save()
    except Exception:
        row.file.storage.delete(stored)
        raise
    return row


def upload_discard(*, upload: Upload) -> None:
    """Remove an upload's file (and row, if saved): the cleanup of a request that failed after storing it."""
    upload.file.storage.delete(upload.file.name)
    if upload.pk and Upload.objects.filter(pk=upload.pk).exists():
        Upload.objects.filter(pk=upload.pk).delete()


def upload_get(*, study: Study, upload_id, kind: str) -> Upload:
    """The study's upload of that kind, or a 404-style error (another study's id finds nothing)."""
    if isinstance(upload_id, bool) or not isinstance(upload_id, int):
        raise ApplicationError("an upload is named by its id (a whole number)", extra={"field": "upload"})
    upload = Upload.objects.filter(pk=upload_id, study=study, kind=kind).first()
    if upload is None:
        raise ApplicationError(
            f"no {kind} upload #{upload_id} in this study", extra={"field": "upload"}, status_code=404
        )
    return upload


def upload_read(*, upload: Upload, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The upload's bytes, after checking that its file is a regular file inside the uploads folder."""
    path = path_within(_uploads_root(), upload.file.name.removeprefix("uploads/"))
    if not path.is_file():
        raise ApplicationError(f"the file of upload #{upload.pk} is missing")
    if path.stat().st_size > max_bytes:
        raise ApplicationError(f"the file of upload #{upload.pk} is larger than {max_bytes // 2**20} MB")
    return path.read_bytes()
