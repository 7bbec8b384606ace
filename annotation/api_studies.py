"""Studies over the API: list, read, create, change (PATCH), move along the status line, duplicate.

The same services as the study builder (annotation/services/study.py), so the same rules: the model's
validation (Study.clean), and once a rating exists the scale, the design and the prompt set are fixed (409).
Errors have the one shape {"message", "extra"}; a bad field names itself in `extra.fields`.
"""

from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from .access import get_study_for_user, studies_for_user
from .api_ratings import ERROR
from .models import Study
from .services.study import (
    EDITABLE_FIELDS,
    PROTECTED_FIELDS,
    study_create,
    study_duplicate,
    study_has_ratings,
    study_status_set,
    study_update,
)

READ_ONLY = ("slug", "status", "owner", "n_prompts", "n_annotators", "has_ratings", "created_at", "updated_at")


class StudySerializer(serializers.ModelSerializer):
    """A study's settings as the builder shows them, with counts."""

    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    n_prompts = serializers.IntegerField(read_only=True)
    n_annotators = serializers.IntegerField(read_only=True)
    has_ratings = serializers.SerializerMethodField(
        help_text=f"Whether ratings exist; then {', '.join(PROTECTED_FIELDS)} and the prompt set are fixed."
    )
    instruments = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Ordered questionnaire keys (annotation/instruments)."
    )

    class Meta:
        model = Study
        fields = list(READ_ONLY) + list(EDITABLE_FIELDS)
        read_only_fields = READ_ONLY

    def get_has_ratings(self, study: Study) -> bool:
        return study_has_ratings(study=study)


class StudyCreateSerializer(StudySerializer):
    slug = serializers.SlugField(
        max_length=64, required=False, help_text="The study's address; made from the title when left out."
    )

    class Meta(StudySerializer.Meta):
        read_only_fields = tuple(name for name in READ_ONLY if name != "slug")
        extra_kwargs = {"slug": {"validators": []}}  # the service answers a taken slug in the error shape


class StudyStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Study.Status.choices, help_text="draft → recruiting ⇄ paused → closed (recruiting → closed too)."
    )


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ERROR, description=description)


PROTECTED_EXAMPLE = OpenApiExample(
    "Protected after ratings",
    status_codes=["409"],
    response_only=True,
    value={
        "message": "Ratings have been collected under these settings, so the scale, the design and the prompt set "
        "can no longer change. Duplicate the study to run it with other settings.",
        "extra": {"fields": ["scale_max"]},
    },
)
VALIDATION_EXAMPLE = OpenApiExample(
    "Invalid settings",
    status_codes=["400"],
    response_only=True,
    value={
        "message": "Validation error: scale_max: The maximum must be above the minimum.",
        "extra": {"fields": {"scale_max": ["The maximum must be above the minimum."]}},
    },
)
NOT_FOUND = _error("No such study, or not one of yours (the same answer for both).")
FORBIDDEN = _error("Not signed in, or your role on the study does not allow this (the message names the role).")


@extend_schema_view(
    list=extend_schema(
        summary="Studies you own or collaborate on (staff: all)",
        responses={200: StudySerializer(many=True), 403: FORBIDDEN, 404: _error("No such page.")},
    ),
    retrieve=extend_schema(
        summary="One study's settings", responses={200: StudySerializer, 403: FORBIDDEN, 404: NOT_FOUND}
    ),
)
class StudyViewSet(viewsets.GenericViewSet):
    """Studies: read, create, change, status, duplicate (no delete: collected data is never deleted here)."""

    lookup_field = "slug"
    serializer_class = StudySerializer
    # The level each action needs on the study (annotation.access). Creating needs no study: any signed-in
    # researcher may create one, and owns it.
    study_access = {
        "list": "view",
        "retrieve": "view",
        "create": None,
        "partial_update": "edit",
        "status": "edit",
        "duplicate": "edit",
    }

    def get_queryset(self):
        return (
            studies_for_user(self.request.user)
            .annotate(n_prompts=Count("prompts", distinct=True), n_annotators=Count("annotators", distinct=True))
            .order_by("slug")
        )

    def get_object(self) -> Study:
        """The study at the action's level: 404 if the caller cannot see it, 403 if their role is too low."""
        return get_study_for_user(self.request.user, self.kwargs["slug"], self.study_access[self.action])

    def _answer(self, study: Study, code: int = status.HTTP_200_OK) -> Response:
        return Response(StudySerializer(self.get_queryset().get(pk=study.pk)).data, status=code)

    def list(self, request, *args, **kwargs):
        queryset = self.get_queryset()
        page = self.paginate_queryset(queryset)
        if page is not None:
            return self.get_paginated_response(StudySerializer(page, many=True).data)
        return Response(StudySerializer(queryset, many=True).data)

    def retrieve(self, request, *args, **kwargs):
        return self._answer(self.get_object())

    @extend_schema(
        summary="Create a study (a draft you own)",
        description="Every setting is optional but the title; the slug is made from the title when left out.",
        request=StudyCreateSerializer,
        responses={
            201: StudySerializer,
            400: _error("A setting is invalid (`extra.fields` names it), or the slug is taken or reserved."),
            403: FORBIDDEN,
        },
        examples=[VALIDATION_EXAMPLE],
    )
    def create(self, request, *args, **kwargs):
        serializer = StudyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        slug = data.pop("slug", None)
        study = study_create(user=request.user, data=data, slug=slug)
        return self._answer(study, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a study's settings",
        description=(
            "Send only the settings to change. Once the study has ratings, "
            f"{', '.join(PROTECTED_FIELDS)} (and the prompt set) cannot change: 409 naming the fields."
        ),
        request=StudySerializer,
        responses={
            200: StudySerializer,
            400: _error("A setting is invalid; `extra.fields` names it. Nothing is saved."),
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: _error("The study has ratings and a protected setting would change; `extra.fields` lists them."),
        },
        examples=[VALIDATION_EXAMPLE, PROTECTED_EXAMPLE],
    )
    def partial_update(self, request, *args, **kwargs):
        study = self.get_object()
        serializer = StudySerializer(study, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        study = study_update(study=study, user=request.user, data=dict(serializer.validated_data))
        return self._answer(study)

    @extend_schema(
        summary="Move the study along draft → recruiting ⇄ paused → closed",
        request=StudyStatusSerializer,
        responses={
            200: StudySerializer,
            400: _error("Not a status."),
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: _error(
                "Not an allowed move from the current status (`extra.allowed` lists those), or the study is not "
                "ready to recruit (no prompts; more prompts per annotator than prompts)."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def status(self, request, *args, **kwargs):
        study = self.get_object()
        serializer = StudyStatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        study = study_status_set(study=study, status=serializer.validated_data["status"], user=request.user)
        return self._answer(study)

    @extend_schema(
        summary="Duplicate a study: its settings and prompt bank, no data",
        description="A draft copy you own, with a new slug; no annotators, ratings, jobs or collaborators.",
        request=None,
        responses={201: StudySerializer, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    @action(detail=True, methods=["post"])
    def duplicate(self, request, *args, **kwargs):
        copy = study_duplicate(study=self.get_object(), user=request.user)
        return self._answer(copy, status.HTTP_201_CREATED)
