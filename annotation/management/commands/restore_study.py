from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.services.backup import study_restore
from config.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Restore a study from a dump_study file, all or nothing. Refuses a study slug that exists and a "
        "file that is not a known dump version."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument(
            "--create-users",
            action="store_true",
            help="create users the dump names that do not exist here (no usable password); "
            "otherwise their references are left empty",
        )

    def handle(self, *args, file, create_users, **options):
        try:
            raw = Path(file).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        try:
            report = study_restore(raw=raw, create_users=create_users)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        if report.remapped:
            self.stderr.write(self.style.WARNING(f"new ids given to: {', '.join(report.remapped)}"))
        counts = ", ".join(f"{label.split('.')[1]} {n}" for label, n in report.counts.items())
        self.stdout.write(f"restored study {report.study.slug!r}: {counts}")
