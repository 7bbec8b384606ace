"""The benchmark's API: uploading predictions to score (jobs themselves are in jobs.api)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import get_study_for_user
from annotation.api_ratings import ERROR
from annotation.models import Upload

from .uploads import predictions_upload_save


class UploadSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Upload
        fields = ["id", "study", "kind", "original_name", "size", "sha256", "created_at"]
        read_only_fields = fields


class PredictionsUploadSerializer(UploadSerializer):
    """An upload just made: also the scale its values were read on."""

    scale = serializers.ChoiceField(
        choices=["unit", "percent"],
        source="predictions_scale",
        read_only=True,
        help_text="How the values were read: unit (0–1, no value above 1) or percent (0–100, scored as value / 100).",
    )

    class Meta(UploadSerializer.Meta):
        fields = [*UploadSerializer.Meta.fields, "scale"]
        read_only_fields = fields


class PredictionsUploadRequest(serializers.Serializer):
    file = serializers.FileField(help_text="CSV: prompt[, annotator], prediction (0–1 or 0–100).")


class PredictionsUploadView(APIView):
    """Upload a predictions CSV to a study; start a benchmark job with {"predictors": ["uploaded"], "upload": id}."""

    parser_classes = [MultiPartParser]
    # The access level on the study each method needs (the permission-matrix test reads it): an upload
    # is a change to the study.
    study_access = {"post": "edit"}

    @extend_schema(
        request={"multipart/form-data": PredictionsUploadRequest},
        responses={201: PredictionsUploadSerializer, 400: ERROR, 403: ERROR, 404: ERROR},
    )
    def post(self, request, slug: str):
        study = get_study_for_user(request.user, slug, self.study_access["post"])
        payload = PredictionsUploadRequest(data=request.data)
        payload.is_valid(raise_exception=True)
        upload = predictions_upload_save(study=study, upload=payload.validated_data["file"], user=request.user)
        return Response(PredictionsUploadSerializer(upload).data, status=status.HTTP_201_CREATED)
