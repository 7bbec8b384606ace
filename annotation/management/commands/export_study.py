from django.core.management.base import BaseCommand, CommandError

from annotation.export_formats import LICENSES
from annotation.exports import FORMATS, export_study
from annotation.models import Study
from config.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Export a study's ratings: the PluriHarms release format, a long table (CSV, Parquet, JSON lines), "
        "LeWiDi JSON, or a dataset-hub zip (Parquet and a README.md card)."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--format", dest="fmt", choices=FORMATS, default="pluriharms")
        parser.add_argument("--out", required=True, help="directory to write into (created if missing)")
        parser.add_argument(
            "--license", dest="license_id", choices=list(LICENSES), default="other", help="licence in the hub card"
        )

    def handle(self, *args, slug, fmt, out, license_id="other", **options):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"no study with slug {slug!r}")
        try:
            paths = export_study(study=study, fmt=fmt, out_dir=out, license_id=license_id)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        for path in paths:
            self.stdout.write(str(path))
