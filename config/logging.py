"""Keep recruitment ids out of the logs; put the request's and the job's id on every record.

An annotator arrives on `/s/<study>/?PROLIFIC_PID=…&STUDY_ID=…&SESSION_ID=…`; the database only ever
holds a keyed hash of the id, so the raw id must not end up in an access log either. This filter
rewrites any `/s/…?query` in a log record to its path. settings.LOGGING puts it on `django.server`
(runserver's access log) and `django.request`; gunicorn.conf.py puts it on gunicorn's error log and
logs the path without the query in its access log.

Every record that reaches the configured handlers also carries `request_id` (set by
config.middleware.RequestIdMiddleware) and `job_id` (set around a `jobs.run_job` task by
config/celery_app.py), "-" outside one; LOG_FORMAT=json writes one JSON object a line.

Pure Python (no Django import), so that gunicorn.conf.py can use it too.
"""

import json
import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime

# Set per request (web) and per task run (worker); None outside one.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)

# The path of an annotator page (up to the query) and its query (up to a space or a quote, which end a
# URL inside a request line or a message).
_RECRUITMENT_QUERY = re.compile(r"""(/s/[^\s?#"']*)\?[^\s"']*""")


def redact_recruitment_query(text: str) -> str:
    """`GET /s/study/?PROLIFIC_PID=… HTTP/1.1` → `GET /s/study/ HTTP/1.1`; other text unchanged."""
    return _RECRUITMENT_QUERY.sub(r"\1", text)


def _redact(value):
    return redact_recruitment_query(value) if isinstance(value, str) else value


class RecruitmentQueryFilter(logging.Filter):
    """Rewrites, never drops: the request is still logged, without its query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        if isinstance(record.args, tuple):
            # Keep the shape: django.server's record is ('"%s" %s %s', (request_line, status, size)).
            record.args = tuple(_redact(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            # A mapping (gunicorn's access atoms) may answer for keys it does not hold: format, then redact.
            message = record.getMessage()
            record.msg, record.args = redact_recruitment_query(message), ()
        return True


class LogContextFilter(logging.Filter):
    """Adds `request_id` and `job_id` to a record ("-" when there is none); never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        record.job_id = job_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id, job_id, and the
    traceback as `exc_info` when there is one. Missing ids are null."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _or_none(getattr(record, "request_id", None) or request_id_var.get()),
            "job_id": _or_none(getattr(record, "job_id", None) or job_id_var.get()),
        }
        if record.exc_info:
            # A traceback can quote a URL: it gets the same redaction as the message.
            entry["exc_info"] = redact_recruitment_query(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc_info"] = redact_recruitment_query(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _or_none(value):
    return None if value in (None, "-") else value
