from django.contrib import admin

from .models import Candidate, CandidatePool, ValueTopic


@admin.register(CandidatePool)
class CandidatePoolAdmin(admin.ModelAdmin):
    list_display = ("name", "study", "created_by", "created_at")
    search_fields = ("name", "study__slug")
    raw_id_fields = ("study", "created_by")


@admin.register(Candidate)
class CandidateAdmin(admin.ModelAdmin):
    list_display = ("external_id", "pool", "harm_level", "group", "source", "topic")
    list_filter = ("source",)
    search_fields = ("external_id", "text", "group")
    # A pool may hold 100,000 candidates: no select lists of them.
    raw_id_fields = ("pool", "seed", "topic")


@admin.register(ValueTopic)
class ValueTopicAdmin(admin.ModelAdmin):
    list_display = ("number", "name", "pool", "size")
    search_fields = ("name",)
    raw_id_fields = ("pool",)
