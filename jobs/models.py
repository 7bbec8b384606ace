"""Job rows and their files. The kinds are not fixed here: apps register them (jobs.registry)."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from .registry import kind_label


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        # Stopped on a person's request: before it started, or at its next progress point (job_cancel).
        CANCELLED = "cancelled"

    # A registered kind's name (jobs.registry); checked by job_create, not by a fixed choice list, so
    # that an app adds a kind without a migration here.
    kind = models.CharField(max_length=32)
    study = models.ForeignKey("annotation.Study", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0..1")
    message = models.CharField(max_length=300, blank=True, help_text="What the job is doing now.")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Runs started (a run whose worker died counts).")
    # A running job writes this at its start, at each progress call and every JOB_HEARTBEAT_SECONDS; one
    # silent for JOB_STALE_SECONDS lost its worker (jobs.services.jobs_reap_stale).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When the broker took the job's message; None while it waits for the broker (sent by
    # jobs.services.jobs_dispatch_pending once the broker is back).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Set when someone asks a running job to stop: its next progress call ends it as cancelled.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["study", "kind", "status"]),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__gte=0, progress__lte=1), name="job_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_done(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}

    @property
    def can_cancel(self) -> bool:
        """Queued, or running and not yet asked to stop."""
        return self.status == self.Status.QUEUED or (
            self.status == self.Status.RUNNING and self.cancel_requested_at is None
        )

    @property
    def seconds(self) -> float | None:
        """Run time so far (running) or in all (ended); None before it starts."""
        if self.started_at is None:
            return None
        end = self.finished_at or (timezone.now() if self.status == self.Status.RUNNING else None)
        return None if end is None else (end - self.started_at).total_seconds()

    @property
    def percent(self) -> str:
        """Progress as a whole percentage ("42%"), for the admin and the jobs pages."""
        return f"{self.progress:.0%}"

    @property
    def kind_label(self) -> str:
        return kind_label(self.kind)

    @property
    def counts(self) -> list[tuple[str, object]]:
        """The `counts` of a finished job's result (a kind that reports what it did: accepted, refused, …)
        as (label, value) for its card; empty when the result was not read (a list defers it) or has none."""
        if "result" in self.get_deferred_fields() or not isinstance(self.result, dict):
            return []
        counts = self.result.get("counts")
        return [(str(k).replace("_", " "), v) for k, v in counts.items()] if isinstance(counts, dict) else []


def artifact_path(instance: "JobArtifact", filename: str) -> str:
    return f"jobs/{instance.job_id}/{filename}"


class JobArtifact(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to=artifact_path, max_length=300)
    content_type = models.CharField(max_length=100, default="application/octet-stream")
    size = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="artifact_unique_name")]

    def __str__(self) -> str:
        return self.name
