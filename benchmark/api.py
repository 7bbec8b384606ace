"""The benchmark's API: uploading predictions to score (jobs themselves are in jobs.api)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import studies_for_user
from annotation.models import Upload
from config.errors import ApplicationError

from .uploads import predictions_upload_save


class UploadSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Upload
        fields = ["id", "study", "kind", "original_name", "size", "sha256", "created_at"]
        read_only_fields = fields


class PredictionsUploadRequest(serializers.Serializer):
    file = serializers.FileField(help_text="CSV: prompt[, annotator], prediction (0–1 or 0–100).")


class PredictionsUploadView(APIView):
    """Upload a predictions CSV to a study; start a benchmark job with {"predictors": ["uploaded"], "upload": id}."""

    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": PredictionsUploadRequest}, responses={201: UploadSerializer})
    def post(self, request, slug: str):
        study = studies_for_user(request.user).filter(slug=slug).first()
        if study is None:
            raise ApplicationError("no such study", extra={"field": "study"}, status_code=404)
        payload = PredictionsUploadRequest(data=request.data)
        payload.is_valid(raise_exception=True)
        upload = predictions_upload_save(study=study, upload=payload.validated_data["file"], user=request.user)
        return Response(UploadSerializer(upload).data, status=status.HTTP_201_CREATED)
