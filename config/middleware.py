"""Site-wide request guards that must run before anything reads the body, the request id, and the CSP header."""

import re
import uuid
from dataclasses import asdict

from csp import middleware as csp_middleware
from csp.middleware import CheckableLazyObject
from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from config.errors import ERROR_TARGET
from config.logging import request_id_var

# An id a proxy or client may hand us: short, and nothing that could break a log line or a page.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


class RequestIdMiddleware:
    """Gives each request an id: the incoming X-Request-ID when it is a safe short token (a proxy's own id
    keeps one trail across both logs), otherwise a new one. Every log record of the request carries it
    (config.logging.LogContextFilter) and the response echoes it in X-Request-ID. First in MIDDLEWARE, so
    that even a refused request has one."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        # Not reset on the way out: Django logs a 4xx/5xx answer after the middleware returns; the id is
        # cleared when the response is closed (request_finished, below).
        request_id_var.set(request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


def _forget_request_id(**kwargs) -> None:
    request_id_var.set(None)


request_finished.connect(_forget_request_id, dispatch_uid="config.middleware.forget_request_id")


class RequestBodyLimitMiddleware:
    """Refuse a request whose declared body is larger than MAX_REQUEST_BYTES, before any middleware or
    view reads it: Django's own limit (DATA_UPLOAD_MAX_MEMORY_SIZE) does not count uploaded files, which
    it streams to disk in full before a view can look at their size."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("Bad Content-Length.", status=400, content_type="text/plain; charset=utf-8")
        if declared > settings.MAX_REQUEST_BYTES:
            return _too_large(request)
        return self.get_response(request)


def _too_large(request) -> HttpResponse:
    """The 413 in the caller's language: the API's error shape, an htmx error partial aimed at the page's
    error region (so the person sees why their upload went nowhere), or plain text."""
    limit = settings.MAX_REQUEST_BYTES // 2**20
    message = f"The request is larger than {limit} MB; uploads are limited to 20 MB."
    if request.path.startswith("/api/"):
        return JsonResponse({"message": message, "extra": {"limit_bytes": settings.MAX_REQUEST_BYTES}}, status=413)
    if request.headers.get("HX-Request") == "true":
        response = HttpResponse(
            render_to_string("_error.html", {"message": message}), status=413, content_type="text/html; charset=utf-8"
        )
        response["HX-Retarget"] = ERROR_TARGET
        response["HX-Reswap"] = "innerHTML"
        return response
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


class CSPMiddleware(csp_middleware.CSPMiddleware):
    """django-csp's middleware, with the site's policy built once instead of for every response.

    django-csp assembles the header from the settings on each response (about 0.1 ms of CPU, a few
    percent of a rating). When a response changes nothing (no @csp_update/@csp_replace/@csp_exempt, no
    nonce asked for, no header set by the view), its policy is the settings' own, so the built header is
    kept, keyed by the settings objects (a test that overrides them gets its own). Anything else is left
    to django-csp.
    """

    _OVERRIDES = (
        "_csp_config",
        "_csp_update",
        "_csp_replace",
        "_csp_exempt",
        "_csp_config_ro",
        "_csp_update_ro",
        "_csp_replace_ro",
        "_csp_exempt_ro",
    )
    _built: tuple = (None, None, None)

    def process_response(self, request, response):
        if (
            getattr(request, "_csp_nonce", None) is not None
            or csp_middleware.HEADER in response
            or csp_middleware.HEADER_REPORT_ONLY in response
            or any(getattr(response, name, None) is not None for name in self._OVERRIDES)
            or (settings.DEBUG and response.status_code in (500, 404))
        ):
            return super().process_response(request, response)
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", None) or {}
        report_only = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None) or {}
        key = (id(policy), id(report_only))
        if self._built[0] != key:
            parts = self.get_policy_parts(request=request, response=response)
            parts_ro = self.get_policy_parts(request=request, response=response, report_only=True)
            headers = (
                csp_middleware.build_policy(**asdict(parts)),
                csp_middleware.build_policy(**asdict(parts_ro), report_only=True),
            )
            type(self)._built = (key, headers, (policy, report_only))  # the settings kept alive with their key
        header, header_ro = self._built[1]
        path = request.path_info
        if header and not path.startswith(tuple(policy.get("EXCLUDE_URL_PREFIXES") or ())):
            response[csp_middleware.HEADER] = header
        if header_ro and not path.startswith(tuple(report_only.get("EXCLUDE_URL_PREFIXES") or ())):
            response[csp_middleware.HEADER_REPORT_ONLY] = header_ro
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response
