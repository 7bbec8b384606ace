"""The parameters each job kind accepts: an explicit schema per kind, unknown keys refused.

A client names what a job should do (a format, predictors, a seed, an upload *id*), never a file:
the one input that leads to a file, `upload`, is an id that `annotation.services.uploads` resolves
within the job's study.
"""
from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers

from annotation.exports import FORMATS
from annotation.models import Study, Upload
from config.errors import ApplicationError

SEED_MAX = 2**31 - 1


class StrictParams(serializers.Serializer):
    """A serializer that refuses keys it does not declare (instead of dropping them silently)."""

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            raise serializers.ValidationError({"params": "params must be an object"})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {key: f"unknown parameter; this job kind takes {', '.join(sorted(self.fields))}" for key in unknown}
            )
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON true/false only (DRF's BooleanField would also take "yes", 1, "on"…)."""

    default_error_messages = {"invalid": "must be true or false"}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class ExportParams(StrictParams):
    format = serializers.ChoiceField(
        choices=list(FORMATS), default="pluriharms",
        error_messages={"invalid_choice": "unknown export format {input!r}; choose one of " + ", ".join(FORMATS)},
    )


class AnalysisParams(StrictParams):
    mixed_effects = StrictBooleanField(default=True)
    include_excluded = StrictBooleanField(default=False)
    n_boot = serializers.IntegerField(min_value=0, max_value=100_000, default=1000)
    seed = serializers.IntegerField(min_value=0, max_value=SEED_MAX, default=0)


class BenchmarkParams(StrictParams):
    predictors = serializers.ListField(child=serializers.CharField(), default=list, max_length=100)
    conditions = serializers.ListField(child=serializers.CharField(), required=False, allow_empty=False, max_length=10)
    splits = serializers.IntegerField(min_value=1, max_value=100, default=10)
    seed = serializers.IntegerField(min_value=0, max_value=SEED_MAX, default=0)
    upload = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                      help_text="Id of a predictions upload of this study (for the 'uploaded' predictor).")

    def validate_predictors(self, value):
        from .evaluation import predictor_names

        unknown = sorted(set(value) - set(predictor_names()))
        if unknown:
            raise serializers.ValidationError(f"unknown predictor(s): {', '.join(unknown)}")
        return value

    def validate_conditions(self, value):
        from .science.protocol import CONDITIONS

        if not set(value) <= set(CONDITIONS):
            raise serializers.ValidationError(f"conditions must be a non-empty list from {', '.join(CONDITIONS)}")
        return value

    def validate(self, attrs):
        from .science.protocol import CONDITIONS

        attrs.setdefault("conditions", list(CONDITIONS))
        study: Study | None = self.context.get("study")
        upload = attrs.get("upload")
        if "uploaded" in attrs["predictors"] and upload is None:
            raise serializers.ValidationError({"upload": "the 'uploaded' predictor needs an uploaded predictions file"})
        if upload is not None:
            if study is None or not Upload.objects.filter(pk=upload, study=study, kind=Upload.Kind.PREDICTIONS).exists():
                raise serializers.ValidationError({"upload": f"no predictions upload #{upload} in this study"})
            if "uploaded" not in attrs["predictors"]:
                attrs["predictors"] = [*attrs["predictors"], "uploaded"]
        return attrs


def params_clean(schema: type[StrictParams], params, *, study: Study | None) -> dict:
    """Validate against the kind's schema; the first problem becomes the ApplicationError's message."""
    checked = schema(data=params if params is not None else {}, context={"study": study})
    if not checked.is_valid():
        field, problems = next(iter(checked.errors.items()))
        problem = problems[0] if isinstance(problems, list) and problems else problems
        if isinstance(problem, Mapping):  # a list item's error: {index: [message]}
            problem = next(iter(problem.values()))[0]
        message = str(problem) if field in ("params", "non_field_errors") else f"{field}: {problem}"
        raise ApplicationError(message, extra={"field": field, "fields": checked.errors})
    return dict(checked.validated_data)
