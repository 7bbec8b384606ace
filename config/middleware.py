"""Site-wide request guards that must run before anything reads the body."""

from django.conf import settings
from django.http import HttpResponse


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
            limit = settings.MAX_REQUEST_BYTES // 2**20
            return HttpResponse(
                f"The request is larger than {limit} MB; uploads are limited to 20 MB.",
                status=413,
                content_type="text/plain; charset=utf-8",
            )
        return self.get_response(request)
