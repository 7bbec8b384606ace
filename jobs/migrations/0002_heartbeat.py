from django.db import migrations, models
from django.db.models import F


def jobs_already_sent(apps, schema_editor):
    """Jobs created before this migration were sent to the broker then: not for jobs.dispatch_pending."""
    Job = apps.get_model("jobs", "Job")
    Job.objects.update(dispatched_at=F("created_at"))
    Job.objects.filter(status="running").update(heartbeat_at=F("started_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="dispatched_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="job",
            name="attempts",
            field=models.PositiveSmallIntegerField(
                default=0, help_text="Runs started (a run whose worker died counts)."
            ),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
        ),
        migrations.RunPython(jobs_already_sent, migrations.RunPython.noop),
    ]
