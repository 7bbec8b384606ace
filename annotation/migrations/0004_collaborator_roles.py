"""Collaborators get a role: the plain many-to-many becomes the Collaborator through model.

Existing collaborators could change everything before, so they become editors. The old join table is
copied first, then dropped, and the field is declared again through Collaborator (which needs no table of
its own). Reversible: going back copies every collaborator, whatever the role, into the plain join table.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def copy_as_editors(apps, schema_editor):
    Study = apps.get_model("annotation", "Study")
    Collaborator = apps.get_model("annotation", "Collaborator")
    Through = Study.collaborators.through
    Collaborator.objects.bulk_create(
        [
            Collaborator(study_id=row.study_id, user_id=row.user_id, role="editor")
            for row in Through.objects.order_by("id").iterator()
        ]
    )


def copy_back(apps, schema_editor):
    Study = apps.get_model("annotation", "Study")
    Collaborator = apps.get_model("annotation", "Collaborator")
    Through = Study.collaborators.through
    Through.objects.bulk_create(
        [Through(study_id=c.study_id, user_id=c.user_id) for c in Collaborator.objects.order_by("id").iterator()]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0003_upload_kind_prompts"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Collaborator",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "role",
                    models.CharField(
                        choices=[
                            ("viewer", "Viewer: read pages, download data and exports"),
                            ("editor", "Editor: also change the study and its prompts, review annotators, run jobs"),
                        ],
                        default="viewer",
                        max_length=16,
                    ),
                ),
                ("added_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "study",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="collaborator_roles",
                        to="annotation.study",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="collaborations",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["study", "added_at", "id"],
                "constraints": [models.UniqueConstraint(fields=("study", "user"), name="collaborator_once_per_study")],
            },
        ),
        migrations.RunPython(copy_as_editors, copy_back),
        migrations.RemoveField(model_name="study", name="collaborators"),
        migrations.AddField(
            model_name="study",
            name="collaborators",
            field=models.ManyToManyField(
                blank=True,
                related_name="studies",
                through="annotation.Collaborator",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
