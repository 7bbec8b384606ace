"""The annotators API: the participants table's rows, and exclude / reinstate with a reason."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from config.errors import ApplicationError

from .access import get_study_for_user
from .api_ratings import ERROR as ApiErrorSerializer  # the one error shape's schema component
from .models import Annotator
from .participants import PARTICIPANT_COLUMNS, participants_table
from .services.review import REASON_MAX, annotator_exclude, annotator_reinstate

STATUSES = [value for value, _ in Annotator.Status.choices]


def _help(name: str) -> str:
    return PARTICIPANT_COLUMNS[name]


class AnnotatorRowSerializer(serializers.Serializer):
    pseudonym = serializers.CharField(help_text=_help("pseudonym"))
    status = serializers.ChoiceField(choices=Annotator.Status.choices, help_text=_help("status"))
    exclusion_reason = serializers.CharField(help_text=_help("exclusion_reason"), allow_blank=True)
    answered = serializers.IntegerField(help_text=_help("answered"))
    assigned = serializers.IntegerField(help_text=_help("assigned"))
    time_on_task_s = serializers.FloatField(allow_null=True, help_text=_help("time_on_task_s"))
    median_rt_s = serializers.FloatField(allow_null=True, help_text=_help("median_rt_s"))
    checks_passed = serializers.IntegerField(help_text=_help("checks_passed"))
    checks_failed = serializers.IntegerField(help_text=_help("checks_failed"))
    too_fast = serializers.IntegerField(help_text=_help("too_fast"))
    straight_lining = serializers.FloatField(allow_null=True, help_text=_help("straight_lining"))
    surveys_done = serializers.IntegerField(help_text=_help("surveys_done"))
    surveys_required = serializers.IntegerField(help_text=_help("surveys_required"))
    agreement_r = serializers.FloatField(allow_null=True, help_text=_help("agreement_r"))
    expected_disengaged = serializers.FloatField(allow_null=True, help_text=_help("expected_disengaged"))
    latent_flag = serializers.BooleanField(allow_null=True, help_text=_help("latent_flag"))


class ReviewRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=REASON_MAX, help_text="Why; kept with the decision.")

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            unknown = sorted(set(data) - {"reason", "csrfmiddlewaretoken"})
            if unknown:
                raise serializers.ValidationError({key: "unknown field; this takes only reason" for key in unknown})
        return super().to_internal_value(data)


ERRORS = {
    400: OpenApiResponse(ApiErrorSerializer, description="Bad input (message names it)."),
    401: OpenApiResponse(ApiErrorSerializer, description="Not signed in."),
    403: OpenApiResponse(ApiErrorSerializer, description="The study is visible but needs a higher role."),
    404: OpenApiResponse(ApiErrorSerializer, description="No such study (or not visible), or no such annotator."),
}


class AnnotatorPagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class AnnotatorViewSet(viewsets.GenericViewSet):
    """A study's annotators with the participants table's columns; researchers with the edit role
    exclude or reinstate one (nothing is deleted: excluded annotators stay in exports with `status`)."""

    serializer_class = AnnotatorRowSerializer
    pagination_class = AnnotatorPagination
    study_access = {"list": "view", "exclude": "edit", "reinstate": "edit"}
    lookup_field = "pseudonym"
    queryset = Annotator.objects.none()  # rows come from participants_table; this only names the model

    def _study(self):
        return get_study_for_user(self.request.user, self.kwargs["slug"], self.study_access[self.action])

    def _row(self, study, pseudonym: str) -> dict:
        row = next((r for r in participants_table(study=study) if r["pseudonym"] == pseudonym), None)
        if row is None:  # pragma: no cover  (the service found them just before)
            raise ApplicationError(f"No annotator {pseudonym!r} in this study.", status_code=404)
        return row

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=STATUSES, description="Only annotators with this status."
            ),
        ],
        responses={200: AnnotatorRowSerializer(many=True), **ERRORS},
    )
    def list(self, request, slug: str):
        study = self._study()
        status = request.query_params.get("status", "")
        if status and status not in STATUSES:
            raise ApplicationError(
                f"Unknown status {status!r}; choose one of {', '.join(STATUSES)}.", extra={"field": "status"}
            )
        rows = participants_table(study=study, status=status or None)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(AnnotatorRowSerializer(page, many=True).data)

    def _review(self, request, slug: str, pseudonym: str, service):
        study = self._study()
        payload = ReviewRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        annotator = Annotator.objects.filter(study=study, pseudonym=pseudonym).first()
        if annotator is None:
            raise ApplicationError(f"No annotator {pseudonym!r} in this study.", status_code=404)
        service(annotator=annotator, reason=payload.validated_data["reason"], user=request.user)
        return Response(AnnotatorRowSerializer(self._row(study, pseudonym)).data)

    @extend_schema(
        request=ReviewRequestSerializer,
        responses={
            200: AnnotatorRowSerializer,
            **ERRORS,
            409: OpenApiResponse(ApiErrorSerializer, description="Already excluded."),
        },
    )
    def exclude(self, request, slug: str, pseudonym: str):
        """Exclude the annotator from analyses, with a reason (their data stays, marked excluded)."""
        return self._review(request, slug, pseudonym, annotator_exclude)

    @extend_schema(
        request=ReviewRequestSerializer,
        responses={
            200: AnnotatorRowSerializer,
            **ERRORS,
            409: OpenApiResponse(ApiErrorSerializer, description="Not excluded."),
        },
    )
    def reinstate(self, request, slug: str, pseudonym: str):
        """Take an excluded annotator back, with a reason; they return to the status they had."""
        return self._review(request, slug, pseudonym, annotator_reinstate)
