"""gunicorn's settings for the image (Dockerfile: `gunicorn --config gunicorn.conf.py …`).

The access log goes to stdout with the request's path but never its query string: annotator links carry
recruitment ids (`/s/<study>/?PROLIFIC_PID=…&STUDY_ID=…&SESSION_ID=…`). So no %(r)s (request line with
the query), %(q)s (the query) or %(f)s (the Referer, which can be such a link); %(U)s is the path only.
"""

import os

# Production defaults, measured with bench/load.py on 2 cores (BENCHMARKS.md): one process per core, each
# with threads, so that a request waiting on PostgreSQL or Redis leaves the core to another request, and
# kept-alive connections (a browser rating card after card reuses its connection).
workers = int(os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 2)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = 75
timeout = 60
accesslog = "-"
# The request id the site echoes (config.middleware.RequestIdMiddleware) ties an access line to the app's log.
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s" %(M)sms request=%({x-request-id}o)s'
)


def post_worker_init(worker):
    """gunicorn's error log names the request URI (with its query) when a request fails: filter it too."""
    from config.logging import RecruitmentQueryFilter  # noqa: PLC0415  (in the worker, after Django's set-up)

    worker.log.error_log.addFilter(RecruitmentQueryFilter())
