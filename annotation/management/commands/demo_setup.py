import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from annotation.importers import pluriharms_import
from annotation.models import Study
from benchmark.science.release import RELEASE_DIR


class Command(BaseCommand):
    help = (
        "Prepare the demo: a researcher account and the vendored PluriHarms release as study 'pluriharms'. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="researcher")
        # No known default: a password is generated and printed unless one is given (`make demo` gives
        # its documented one, for a local run only).
        parser.add_argument("--password", default=None, help="Default: a generated password, printed once.")

    def handle(self, *args, username, password, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        if created:
            password = password or secrets.token_urlsafe(12)
            user.set_password(password)
            user.save()
        study = Study.objects.filter(slug="pluriharms").first()
        if study is None:
            study = pluriharms_import(
                directory=RELEASE_DIR, slug="pluriharms", title="PluriHarms (public release, 100 × 150)", owner=user
            )
            self.stdout.write(
                f"imported the PluriHarms release as study 'pluriharms' ({study.prompts.count()} prompts)"
            )
        else:
            self.stdout.write("study 'pluriharms' already present")
        self.stdout.write(
            self.style.SUCCESS(
                f"researcher login: {username} / {password}"
                if created
                else f"researcher login: {username} (existing account)"
            )
        )
