from collections.abc import Mapping

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.errors import API_ERROR, ApplicationError

from . import registry, services
from .models import Job, JobArtifact
from .selectors import cancel_refusal, jobs_for_user


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
    """A job as listed: everything but its result, which can be large (GET /api/jobs/<id>/ has it)."""

    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    artifacts = JobArtifactSerializer(many=True, read_only=True)
    seconds = serializers.SerializerMethodField(help_text="Run time; null until it has run.")

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "study",
            "params",
            "status",
            "progress",
            "message",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "seconds",
            "attempts",  # runs started: more than 1 after a worker died mid-job (jobs.services.job_reap)
            "heartbeat_at",
            "cancel_requested_at",  # set when someone asked a running job to stop (POST …/cancel/)
            "artifacts",
        ]
        read_only_fields = fields

    def get_seconds(self, job: Job) -> float | None:
        """The run time in all: null while queued or running (`Job.seconds` also counts a running job's time)."""
        return job.seconds if job.finished_at else None


class JobDetailSerializer(JobSerializer):
    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "result"]
        read_only_fields = fields


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="A registered job kind: export, analysis, benchmark, …")
    study = serializers.SlugField()
    params = serializers.JSONField(required=False, default=dict, help_text="The kind's parameters (an object).")

    def to_internal_value(self, data):
        # Unknown keys are refused, not dropped, as in the parameters (a client that sends "status" or
        # "result" learns that it sets neither). A form post's CSRF token is not a key of the request.
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields) - {"csrfmiddlewaretoken"})
            if unknown:
                message = "unknown field; a job request takes kind, study and params"
                raise serializers.ValidationError({key: message for key in unknown})
        return super().to_internal_value(data)


ERROR = API_ERROR  # the API's one error shape (config.errors)
FORBIDDEN = OpenApiResponse(ERROR, description="Not signed in.")
NOT_FOUND = OpenApiResponse(ERROR, description="No such job among your studies' jobs (or no such file of it).")


@extend_schema_view(
    list=extend_schema(
        responses={
            200: JobSerializer(many=True),
            400: OpenApiResponse(ERROR, description="A filter value is not one of its choices."),
            403: FORBIDDEN,
            404: OpenApiResponse(ERROR, description="No such page."),
        }
    ),
    retrieve=extend_schema(responses={200: JobDetailSerializer, 403: FORBIDDEN, 404: NOT_FOUND}),
)
class JobViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Background jobs on the caller's studies. POST {"kind": "export", "study": slug, "params": {"format": …}}."""

    filterset_fields = ["kind", "status"]
    # The access level on a study each action needs (the permission-matrix test reads it). Creating a job
    # asks the kind: an export needs "view", every other kind "edit" (JobKind.need).
    # Cancelling asks the kind as well (jobs.selectors.cancel_refusal).
    study_access = {"list": "view", "retrieve": "view", "files": "view", "create": "view", "cancel": "view"}

    def get_serializer_class(self):
        return JobDetailSerializer if self.action == "retrieve" else JobSerializer

    def get_queryset(self):
        queryset = jobs_for_user(self.request.user).select_related("study").prefetch_related("artifacts")
        return queryset.defer("result") if self.action == "list" else queryset

    @extend_schema(
        request=JobCreateSerializer,
        responses={
            201: JobDetailSerializer,
            400: OpenApiResponse(
                ERROR, description="Unknown kind, bad parameters or unknown keys (`extra` names them)."
            ),
            403: OpenApiResponse(
                ERROR, description="Not signed in, or your role on the study is below the kind's need."
            ),
            404: OpenApiResponse(ERROR, description="No such study, or not one you may see."),
        },
    )
    def create(self, request, *args, **kwargs):
        payload = JobCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        kind = registry.kind_get(payload.validated_data["kind"])
        slug = payload.validated_data["study"]
        study = registry.studies_for_user(request.user, kind.need).filter(slug=slug).first()
        if study is None:
            if registry.studies_for_user(request.user, "view").filter(slug=slug).exists():
                raise ApplicationError(
                    f"starting a {kind.name} job needs the {kind.need!r} role on study {slug!r}; ask its owner",
                    extra={"field": "study", "need": kind.need},
                    status_code=403,
                )
            raise ApplicationError("no such study", extra={"field": "study"}, status_code=404)
        job = services.job_create(
            kind=payload.validated_data["kind"], study=study, params=payload.validated_data["params"], user=request.user
        )
        return Response(JobDetailSerializer(job, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={
            200: JobDetailSerializer,
            403: OpenApiResponse(
                ERROR, description="Not signed in, or your role on the study is below what starting the kind needs."
            ),
            404: NOT_FOUND,
            409: OpenApiResponse(ERROR, description="The job has ended or is already stopping."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued job (it ends `cancelled` at once) or a running one (it stops at its next progress
        point and ends `cancelled`; until then `cancel_requested_at` is set and status stays `running`)."""
        job = self.get_object()
        refusal = cancel_refusal(request.user, job)
        if refusal:
            raise ApplicationError(refusal, status_code=403)
        job = services.job_cancel(job=job)
        return Response(JobDetailSerializer(job, context={"request": request}).data)

    @extend_schema(
        responses={
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The file, with its own content type."),
            403: FORBIDDEN,
            404: NOT_FOUND,
        }
    )
    @action(detail=True, methods=["get"], url_path=r"files/(?P<name>[^/]+)")
    def files(self, request, pk=None, name=None):
        job = self.get_object()
        artifact = get_object_or_404(JobArtifact, job=job, name=name)
        return FileResponse(
            artifact.file.open("rb"), as_attachment=True, filename=artifact.name, content_type=artifact.content_type
        )
