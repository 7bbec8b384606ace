from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Upload

from annotation.selectors import studies_for_user
from config.errors import ApplicationError

from . import services
from .models import Job, JobArtifact
from .uploads import predictions_upload_save


class JobArtifactSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = JobArtifact
        fields = ["name", "content_type", "size", "url"]

    def get_url(self, artifact) -> str:
        request = self.context.get("request")
        path = f"/api/jobs/{artifact.job_id}/files/{artifact.name}/"
        return request.build_absolute_uri(path) if request else path


class JobSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    artifacts = JobArtifactSerializer(many=True, read_only=True)
    seconds = serializers.FloatField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "study", "params", "status", "progress", "message", "result", "error",
            "created_at", "started_at", "finished_at", "seconds", "artifacts",
        ]
        read_only_fields = fields


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Job.Kind.choices)
    study = serializers.SlugField()
    params = serializers.DictField(required=False, default=dict)


class JobViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Background jobs on the caller's studies. POST {"kind": "export", "study": slug, "params": {"format": …}}."""

    serializer_class = JobSerializer
    filterset_fields = ["kind", "status"]

    def get_queryset(self):
        queryset = Job.objects.select_related("study").prefetch_related("artifacts")
        if self.request.user.is_staff:
            return queryset
        return queryset.filter(study__in=studies_for_user(self.request.user))

    @extend_schema(request=JobCreateSerializer, responses={201: JobSerializer})
    def create(self, request, *args, **kwargs):
        payload = JobCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        study = studies_for_user(request.user).filter(slug=payload.validated_data["study"]).first()
        if study is None:
            raise ApplicationError("no such study", extra={"field": "study"}, status_code=404)
        job = services.job_create(
            kind=payload.validated_data["kind"], study=study, params=payload.validated_data["params"], user=request.user
        )
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"], url_path=r"files/(?P<name>[^/]+)")
    def files(self, request, pk=None, name=None):
        job = self.get_object()
        artifact = get_object_or_404(JobArtifact, job=job, name=name)
        return FileResponse(artifact.file.open("rb"), as_attachment=True, filename=artifact.name,
                            content_type=artifact.content_type)


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
