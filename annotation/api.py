from django.db.models import Count
from django.shortcuts import get_object_or_404
from rest_framework import serializers, viewsets

from .access import studies_for_user
from .models import Prompt, Study


class StudySerializer(serializers.ModelSerializer):
    n_prompts = serializers.IntegerField(read_only=True)
    n_annotators = serializers.IntegerField(read_only=True)

    class Meta:
        model = Study
        fields = [
            "slug",
            "title",
            "description",
            "status",
            "design",
            "scale_min",
            "scale_max",
            "allow_unsure",
            "prompts_per_annotator",
            "target_ratings_per_prompt",
            "attention_checks",
            "instruments",
            "n_prompts",
            "n_annotators",
            "created_at",
        ]


class PromptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prompt
        fields = ["external_id", "text", "harm_level", "features", "harm_benefit_tree"]


class StudyViewSet(viewsets.ReadOnlyModelViewSet):
    """Studies the caller owns or collaborates on (staff: all)."""

    serializer_class = StudySerializer
    lookup_field = "slug"

    def get_queryset(self):
        return (
            studies_for_user(self.request.user)
            .annotate(n_prompts=Count("prompts", distinct=True), n_annotators=Count("annotators", distinct=True))
            .order_by("slug")
        )


class PromptViewSet(viewsets.ReadOnlyModelViewSet):
    """A study's prompts, in study order."""

    serializer_class = PromptSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no slug
            return Prompt.objects.none()
        study = get_object_or_404(studies_for_user(self.request.user), slug=self.kwargs["slug"])
        return study.prompts.order_by("order", "id")
