from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.importers import pluriharms_import
from config.errors import ApplicationError


class Command(BaseCommand):
    help = "Import a directory in the PluriHarms release format (prompts.csv + annotations.csv) as a new study."

    def add_arguments(self, parser):
        parser.add_argument("directory")
        parser.add_argument("--study", required=True, help="slug of the study to create")
        parser.add_argument("--title", default="")
        parser.add_argument("--owner", default="", help="username of the owning researcher")

    def handle(self, *args, directory, study, title, owner, **options):
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"no user named {owner!r}")
        try:
            created = pluriharms_import(directory=directory, slug=study, title=title, owner=user)
        except ApplicationError as exc:
            raise CommandError(f"import failed, nothing was written:\n{exc.message}") from exc
        n_prompts, n_annotators = created.prompts.count(), created.annotators.count()
        # Every cell of the release is written, an Unsure one too (the bulk writer checks the count it wrote):
        # no need to count 1.5 million rows again.
        self.stdout.write(
            self.style.SUCCESS(
                f"imported study {created.slug!r}: {n_prompts} prompts, "
                f"{n_annotators} annotators, {n_prompts * n_annotators} rating cells"
            )
        )
