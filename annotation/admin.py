from django.contrib import admin, messages
from django.db import models, transaction

from jobs.services import job_create

from .exports import FORMATS
from .models import (
    Annotator,
    AnnotatorStatusChange,
    Assignment,
    Collaborator,
    Prompt,
    Rating,
    RatingRevision,
    Study,
    SurveyInstrument,
    SurveyResponse,
    Upload,
)
from .study_cache import study_changed


class StudyDataAdmin(admin.ModelAdmin):
    """An edit here bypasses the services, which write an annotator's row together with their ratings,
    trials and questionnaires: tell the study's cached pages that any of its ratings may have changed
    (the study the row belonged to as well, should the edit move it to another study's annotator).
    Each write and its bump share a transaction, so the bump is made again once the write has committed."""

    @staticmethod
    def _changed(study_ids) -> None:
        for study_id in set(study_ids):
            study_changed(study_id, ratings=True)

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            before = type(obj).objects.filter(pk=obj.pk).values_list("annotator__study_id", flat=True)
            studies = list(before) if change else []
            super().save_model(request, obj, form, change)
            self._changed([*studies, obj.annotator.study_id])

    def delete_model(self, request, obj):
        with transaction.atomic():
            self._changed([obj.annotator.study_id])
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            self._changed(queryset.values_list("annotator__study_id", flat=True))
            super().delete_queryset(request, queryset)


def _export_action(fmt: str):
    def action(modeladmin, request, queryset):
        for study in queryset:
            job = job_create(kind="export", study=study, params={"format": fmt}, user=request.user)
            modeladmin.message_user(request, f"Export job #{job.pk} ({fmt}) queued for {study.slug}.", messages.SUCCESS)

    action.__name__ = f"export_{fmt.replace('-', '_')}"
    action.short_description = f"Export as {fmt} (background job)"
    return action


class CollaboratorInline(admin.TabularInline):
    """The study's collaborators and their roles (viewer or editor; annotation/access.py)."""

    model = Collaborator
    extra = 0
    fields = ["user", "role", "added_at"]
    readonly_fields = ["added_at"]
    raw_id_fields = ["user"]


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "status", "design", "owner", "created_at"]
    list_filter = ["status", "design"]
    search_fields = ["slug", "title"]
    inlines = [CollaboratorInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = [_export_action(fmt) for fmt in FORMATS]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["external_id", "study", "harm_level", "short_text"]
    list_filter = ["study"]
    search_fields = ["external_id", "text"]

    @admin.display(description="text")
    def short_text(self, prompt):
        return prompt.text[:80]


@admin.register(Annotator)
class AnnotatorAdmin(admin.ModelAdmin):
    list_display = ["pseudonym", "study", "status", "created_at", "completed_at"]
    list_filter = ["study", "status"]
    search_fields = ["pseudonym"]
    # The keyed hash is shown, never editable; the raw recruitment id is not stored at all.
    readonly_fields = ["recruitment_hash", "created_at"]


@admin.register(Assignment)
class AssignmentAdmin(StudyDataAdmin):
    list_display = ["id", "annotator", "prompt", "kind", "position", "answered_at", "check_passed"]
    list_filter = ["kind", "annotator__study"]
    raw_id_fields = ["annotator", "prompt"]


@admin.register(Rating)
class RatingAdmin(StudyDataAdmin):
    list_display = ["id", "annotator", "prompt", "value", "unsure", "rt_ms", "created_at"]
    list_filter = ["unsure", "annotator__study"]
    raw_id_fields = ["assignment", "annotator", "prompt"]


@admin.register(RatingRevision)
class RatingRevisionAdmin(admin.ModelAdmin):
    """The original answer beside a revised rating (undo from the next card): read only, as the rating is."""

    list_display = ["id", "rating", "original_value", "original_unsure", "value", "unsure", "created_at"]
    raw_id_fields = ["rating"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SurveyInstrument)
class SurveyInstrumentAdmin(admin.ModelAdmin):
    list_display = ["key", "version", "title"]


@admin.register(SurveyResponse)
class SurveyResponseAdmin(StudyDataAdmin):
    list_display = ["annotator", "instrument", "submitted_at"]
    raw_id_fields = ["annotator"]


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    """Uploads are written by the upload service only (checked content, a stored name of ours)."""

    list_display = ["id", "study", "kind", "original_name", "size", "created_by", "created_at"]
    list_filter = ["kind"]
    readonly_fields = ["study", "kind", "token", "file", "original_name", "size", "sha256", "created_by", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Collaborator)
class CollaboratorAdmin(admin.ModelAdmin):
    list_display = ["study", "user", "role", "added_at"]
    list_filter = ["role"]
    raw_id_fields = ["study", "user"]


@admin.register(AnnotatorStatusChange)
class AnnotatorStatusChangeAdmin(admin.ModelAdmin):
    """Review history (annotation/services/review.py): a record, read here, never written by hand."""

    list_display = ["annotator", "from_status", "to_status", "reason", "user", "created_at"]
    list_filter = ["to_status"]
    readonly_fields = [f.name for f in AnnotatorStatusChange._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
