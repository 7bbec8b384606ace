"""One error shape for the API: {"message": str, "extra": dict}; and one for pages: `error_response`."""

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import render
from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A failure the user can act on; services raise it, views and the API turn it into a 4xx."""

    def __init__(self, message: str, extra: dict | None = None, status_code: int = 400):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        self.status_code = status_code


# The error shape's OpenAPI component, one object for every API module (two objects of the same name
# would be two components to drf-spectacular).
API_ERROR = inline_serializer(
    "ErrorResponse",
    fields={"message": serializers.CharField(), "extra": serializers.DictField()},
)

# The region of base.html that htmx error partials are swapped into (every page has it).
ERROR_TARGET = "#htmx-error"


def error_response(request, message: str, status: int = 400) -> HttpResponse:
    """A 4xx answer for a page or an htmx request, the message rendered as text by a template.

    Messages often repeat what the client sent (an unknown group, a format), so they never go into a
    response unescaped. An htmx request gets a partial aimed at the page's error region: the element
    that asked may expect something else in its place, and static/js/site.js lets htmx swap these 4xx
    answers (htmx does not swap error responses by default).
    """
    if getattr(request, "htmx", False):
        response = render(request, "_error.html", {"message": message}, status=status)
        response["HX-Retarget"] = ERROR_TARGET
        response["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "error.html", {"message": message, "status": status}, status=status)


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(_flatten(item) for item in detail)
    return str(detail)


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        # annotation.access says which role is needed (only to someone who may see the study).
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"message": "Validation error: " + _flatten(detail), "extra": {"fields": detail}}
    else:
        message = detail.get("detail", _flatten(detail)) if isinstance(detail, dict) else _flatten(detail)
        response.data = {"message": str(message), "extra": {}}
    if response.status_code == status.HTTP_500_INTERNAL_SERVER_ERROR:  # pragma: no cover
        response.data["message"] = "Internal error"
    return response
