import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation import surveys
from annotation.importers import prompts_create
from annotation.models import Study
from benchmark.science.release import release_read

RELEASE_DIR = Path(settings.BASE_DIR) / "benchmark" / "datasets" / "pluriharms"


class Command(BaseCommand):
    help = "Create a recruiting study over the vendored PluriHarms prompts with every survey instrument."

    def add_arguments(self, parser):
        parser.add_argument("--slug", required=True)
        parser.add_argument(
            "--prompts-per-annotator",
            type=int,
            default=None,
            help="partial design: prompts each annotator rates (default: all 150, full crossing)",
        )
        parser.add_argument(
            "--target-ratings",
            type=int,
            default=None,
            help="partial design: ratings wanted per prompt (default: unlimited)",
        )
        parser.add_argument("--attention-checks", type=int, default=2)
        parser.add_argument(
            "--instruments",
            default=",".join(surveys.DEFAULT_INSTRUMENTS),
            help="comma-separated instrument keys, in order ('' for none)",
        )
        parser.add_argument("--owner", default="", help="username of the owning researcher")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(
        self,
        *args,
        slug,
        prompts_per_annotator,
        target_ratings,
        attention_checks,
        instruments,
        owner,
        base_url,
        **options,
    ):
        keys = [k.strip() for k in instruments.split(",") if k.strip()]
        unknown = sorted(set(keys) - set(surveys.instrument_keys()))
        if unknown:
            raise CommandError(
                f"unknown instrument(s): {', '.join(unknown)}; available: {', '.join(surveys.instrument_keys())}"
            )
        if prompts_per_annotator is not None and prompts_per_annotator < 1:
            raise CommandError("--prompts-per-annotator must be at least 1")
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            user = get_user_model().objects.filter(username=owner).first() if owner else None
            if owner and user is None:
                raise CommandError(f"no user named {owner!r}")
            with transaction.atomic():
                code = secrets.token_hex(4).upper()
                study = Study.objects.create(
                    slug=slug,
                    title="How harmful is it? (PluriHarms prompts)",
                    status=Study.Status.RECRUITING,
                    design=Study.Design.PARTIAL if prompts_per_annotator else Study.Design.FULL,
                    prompts_per_annotator=prompts_per_annotator,
                    target_ratings_per_prompt=target_ratings,
                    attention_checks=attention_checks,
                    instruments=keys,
                    completion_code=code,
                    failed_checks_code="FAIL" + secrets.token_hex(2).upper(),
                    completion_url=f"https://app.prolific.com/submissions/complete?cc={code}",
                    owner=user,
                )
                release = release_read(RELEASE_DIR)
                prompts_create(study=study, prompts=release.prompts, feature_columns=release.feature_columns)
                study.meta = {"feature_columns": release.feature_columns}
                study.save(update_fields=["meta"])
            self.stdout.write(
                self.style.SUCCESS(f"created recruiting study {slug!r} with {study.prompts.count()} prompts")
            )
        else:
            self.stdout.write(f"study {slug!r} already exists")
        self.stdout.write(
            f"annotator link: {base_url.rstrip('/')}/s/{slug}/?PROLIFIC_PID={secrets.token_hex(12)}"
            f"&STUDY_ID=demo&SESSION_ID={secrets.token_hex(6)}"
        )
