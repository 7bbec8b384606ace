"""Keep recruitment ids out of the logs.

An annotator arrives on `/s/<study>/?PROLIFIC_PID=…&STUDY_ID=…&SESSION_ID=…`; the database only ever
holds a keyed hash of the id, so the raw id must not end up in an access log either. This filter
rewrites any `/s/…?query` in a log record to its path. settings.LOGGING puts it on `django.server`
(runserver's access log) and `django.request`; gunicorn.conf.py puts it on gunicorn's error log and
logs the path without the query in its access log.

Pure Python (no Django import), so that gunicorn.conf.py can use it too.
"""

import logging
import re
from collections.abc import Mapping

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
