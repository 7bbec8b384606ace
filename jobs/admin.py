from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from config.errors import ApplicationError

from . import registry, services
from .models import Job, JobArtifact


class JobAdminForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=registry.kind_choices)

    class Meta:
        model = Job
        fields = ["kind", "study", "params"]

    def clean(self):
        cleaned = super().clean()
        try:
            cleaned["params"] = services.job_params_clean(
                kind=cleaned.get("kind", ""), params=cleaned.get("params") or {}, study=cleaned.get("study")
            )
        except ApplicationError as exc:
            raise ValidationError(exc.message) from exc
        return cleaned


def _download_link(artifact: JobArtifact) -> str:
    if artifact.pk is None:
        return ""
    url = reverse("jobs:artifact_download", args=[artifact.job_id, artifact.name])
    return format_html('<a href="{}">{}</a>', url, artifact.name)


class JobArtifactInline(admin.TabularInline):
    """Files are written by the job; the admin shows them, never adds them."""

    model = JobArtifact
    extra = 0
    readonly_fields = ["name", "content_type", "size", "download"]
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="download")
    def download(self, artifact):
        return _download_link(artifact)


@admin.register(JobArtifact)
class JobArtifactAdmin(admin.ModelAdmin):
    list_display = ["name", "job", "content_type", "size", "download"]
    list_filter = ["content_type"]
    readonly_fields = ["job", "name", "file", "content_type", "size"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="download")
    def download(self, artifact):
        return _download_link(artifact)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "study", "status", "percent", "created_at", "finished_at", "files"]
    list_filter = ["kind", "status"]
    list_select_related = ["study"]
    readonly_fields = [
        "status",
        "percent",
        "message",
        "result",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "attempts",
    ]
    inlines = [JobArtifactInline]
    form = JobAdminForm
    actions = ["cancel"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("artifacts")

    @admin.display(description="progress", ordering="progress")
    def percent(self, job):
        return f"{job.progress:.0%}"

    @admin.action(description="Cancel the selected queued or running jobs")
    def cancel(self, request, queryset):
        cancelled = 0
        for job in queryset.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]):
            try:
                services.job_cancel(job=job)
            except ApplicationError:  # it ended meanwhile
                continue
            cancelled += 1
        self.message_user(request, f"{cancelled} job(s) cancelled or asked to stop at their next progress point.")

    @admin.display(description="files")
    def files(self, job):
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("jobs:artifact_download", args=[job.pk, a.name]), a.name) for a in job.artifacts.all()),
        )

    def save_model(self, request, obj, form, change):
        # A job added here is queued like one started from a page or the API.
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            services.job_enqueue(job=obj)
