"""Job parameters: a serializer per kind that refuses keys it does not declare.

A client names what a job should do (a format, predictors, a seed, an upload *id*), never a file.
"""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers

from config.errors import ApplicationError

SEED_MAX = 2**31 - 1


class StrictParams(serializers.Serializer):
    """A serializer that refuses keys it does not declare (instead of dropping them silently).

    The job's study, if any, is in `self.context["study"]`, for checks such as "this upload id belongs
    to the study"; the person starting it, when known, in `self.context["user"]`.
    """

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


def seed_field(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=SEED_MAX, default=0, **kwargs)


def params_clean(schema: type[StrictParams], params, *, study=None, user=None) -> dict:
    """Validate against the kind's schema; the first problem becomes the ApplicationError's message."""
    checked = schema(data=params if params is not None else {}, context={"study": study, "user": user})
    if not checked.is_valid():
        field, problems = next(iter(checked.errors.items()))
        problem = problems[0] if isinstance(problems, list) and problems else problems
        if isinstance(problem, Mapping):  # a list item's error: {index: [message]}
            problem = next(iter(problem.values()))[0]
        message = str(problem) if field in ("params", "non_field_errors") else f"{field}: {problem}"
        raise ApplicationError(message, extra={"field": field, "fields": checked.errors})
    return dict(checked.validated_data)
