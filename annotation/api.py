from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from config.errors import ApplicationError

from .access import get_study_for_user
from .api_ratings import ERROR
from .models import Prompt, Study
from .services.prompt_bank import FORMATS, BankProblems, bank_parse_objects, bank_rows_write, bank_upload
from .services.uploads import upload_discard


class PromptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prompt
        fields = ["external_id", "text", "harm_level", "features", "harm_benefit_tree"]


class PromptRowSerializer(serializers.Serializer):
    """One prompt of a bulk create (the same keys as a line of a JSON-lines prompt bank)."""

    external_id = serializers.CharField(help_text="The prompt's id in your bank; new to the study.")
    text = serializers.CharField(help_text="The prompt text (at most 10,000 characters; no formula-like start).")
    harm_level = serializers.FloatField(required=False, allow_null=True, help_text="Optional, 0–1.")
    features = serializers.DictField(
        child=serializers.FloatField(allow_null=True),
        required=False,
        help_text="Optional feature values, names starting with action_, effect_ or value_topic_.",
    )
    harm_benefit_tree = serializers.JSONField(
        required=False, allow_null=True, help_text="Optional SafetyAnalyst harm-benefit tree (list or object)."
    )


class PromptBankFileSerializer(serializers.Serializer):
    file = serializers.FileField(
        allow_empty_file=True,  # the importer answers an empty file like any other problem
        help_text="A CSV, JSON-lines or release prompts.csv file (at most 20 MB).",
    )
    format = serializers.ChoiceField(choices=list(FORMATS), required=False, default="auto")


class PromptBankResultSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Prompts added by this request.")
    prompts = serializers.IntegerField(help_text="The study's prompts now.")
    format = serializers.CharField()


PROBLEMS_EXAMPLE = OpenApiExample(
    "Row-level problems",
    status_codes=["400"],
    response_only=True,
    value={
        "message": "bank.csv: 1 problem; nothing was imported. bank.csv, row 2, column text: empty prompt text",
        "extra": {
            "problems": [{"file": "bank.csv", "row": 2, "column": "text", "message": "empty prompt text"}],
            "n_problems": 1,
        },
    },
)


class PromptViewSet(viewsets.GenericViewSet):
    """A study's prompts, in study order; bulk create through the prompt-bank importer."""

    serializer_class = PromptSerializer
    parser_classes = [JSONParser, MultiPartParser]
    study_access = {"list": "view", "create": "edit"}

    def get_study(self) -> Study:
        return get_study_for_user(self.request.user, self.kwargs["slug"], self.study_access[self.action])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no slug
            return Prompt.objects.none()
        return self.get_study().prompts.order_by("order", "id")

    @extend_schema(responses={200: PromptSerializer(many=True), 403: ERROR, 404: ERROR})
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        if page is not None:
            return self.get_paginated_response(self.get_serializer(page, many=True).data)
        return Response(self.get_serializer(self.get_queryset(), many=True).data)

    @extend_schema(
        summary="Add prompts to a study (bulk, all or nothing)",
        description=(
            "A JSON list of prompt objects, or a multipart upload of a prompt-bank file (CSV, JSON lines or a "
            "PluriHarms release prompts.csv), checked completely by the prompt-bank importer before anything is "
            "written. Any problem refuses the whole request with 400 and every row-level problem (file, row, "
            "column, message) in `extra.problems`. A study that has ratings cannot get new prompts (409); a body "
            "over the upload limit is refused with 413."
        ),
        request={"application/json": PromptRowSerializer(many=True), "multipart/form-data": PromptBankFileSerializer},
        responses={
            201: PromptBankResultSerializer,
            400: OpenApiResponse(ERROR, description="Row-level problems in `extra.problems`; nothing written."),
            403: ERROR,
            404: ERROR,
            409: OpenApiResponse(ERROR, description="The study has ratings; its prompt set is fixed."),
            413: OpenApiResponse(description="The request body is larger than the upload limit."),
        },
        examples=[PROBLEMS_EXAMPLE],
    )
    def create(self, request, *args, **kwargs):
        study = self.get_study()
        if request.content_type.startswith("multipart/"):
            payload = PromptBankFileSerializer(data=request.data)
            payload.is_valid(raise_exception=True)
            bank = bank_upload(
                study=study,
                upload=payload.validated_data["file"],
                fmt=payload.validated_data["format"],
                user=request.user,
            )
            if not bank.ok:
                raise BankProblems(bank)
        else:
            bank = bank_parse_objects(study=study, objects=request.data)
        try:
            created = bank_rows_write(study=study, bank=bank)
        except ApplicationError:
            if bank.upload is not None:
                upload_discard(upload=bank.upload)
            raise
        return Response(
            {"created": created, "prompts": study.prompts.count(), "format": bank.fmt}, status=status.HTTP_201_CREATED
        )
