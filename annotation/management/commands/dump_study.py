import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from annotation.services.backup import dump_bytes, study_dump
from config.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Back up one study (every row hanging off it, and its files' checksums) as canonical JSON; "
        "gzip when FILE ends in .gz. Restore with restore_study."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--out", required=True, help="file to write (replaced if present); .gz to compress")
        parser.add_argument(
            "--with-files", action="store_true", help="include the bytes of uploads and job artifacts (base64)"
        )

    def handle(self, *args, slug, out, with_files, **options):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"no study with slug {slug!r}")
        try:
            raw = dump_bytes(study_dump(study=study, with_files=with_files), gzipped=out.endswith(".gz"))
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        target = Path(out)
        # Write beside the target and rename, so that an interrupted dump never leaves half a file.
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(raw)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.stdout.write(f"{target} ({len(raw)} bytes)")
