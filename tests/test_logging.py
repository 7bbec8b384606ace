"""Recruitment ids never reach the logs (ASVS 7.1.1): the annotator link carries PROLIFIC_PID, STUDY_ID
and SESSION_ID in its query string, so access logs write the path of /s/… requests without the query."""

import datetime
import io
import logging
import runpy
import types
from pathlib import Path

import pytest
from django.conf import settings
from django.core.servers.basehttp import WSGIRequestHandler

from config.logging import RecruitmentQueryFilter, redact_recruitment_query

ROOT = Path(settings.BASE_DIR)
LINK = "/s/harm-demo/?PROLIFIC_PID=5f3c2a9e8b7d6c5b4a392817&STUDY_ID=st123&SESSION_ID=se456"
SECRETS = ("5f3c2a9e8b7d6c5b4a392817", "PROLIFIC_PID", "st123", "se456")


def server_record(request_line: str, status: str = "302") -> logging.LogRecord:
    """A record shaped as django.core.servers.basehttp.WSGIRequestHandler.log_message makes it."""
    return logging.LogRecord(
        "django.server", logging.INFO, __file__, 0, '"%s" %s %s', (request_line, status, "0"), None
    )


def test_filter_drops_the_query_of_an_annotator_request_line():
    record = server_record(f"GET {LINK} HTTP/1.1")
    assert RecruitmentQueryFilter().filter(record) is True  # the line is kept, only rewritten
    assert record.getMessage() == '"GET /s/harm-demo/ HTTP/1.1" 302 0'
    assert record.args[1] == "302"  # the shape django.server's formatter and handlers expect is kept


@pytest.mark.parametrize(
    "text,expected",
    [
        (f"GET {LINK} HTTP/1.1", "GET /s/harm-demo/ HTTP/1.1"),
        (f"http://testserver{LINK}", "http://testserver/s/harm-demo/"),
        ("POST /s/harm-demo/rate/12/?PROLIFIC_PID=x HTTP/1.1", "POST /s/harm-demo/rate/12/ HTTP/1.1"),
        # Other pages keep their query (paging, filters): only the annotator's links carry ids.
        ("GET /research/studies/small/?page=2 HTTP/1.1", "GET /research/studies/small/?page=2 HTTP/1.1"),
        ("GET /s/harm-demo/consent/ HTTP/1.1", "GET /s/harm-demo/consent/ HTTP/1.1"),
    ],
)
def test_redaction(text, expected):
    assert redact_recruitment_query(text) == expected


def test_filter_handles_preformatted_messages_and_mapping_args():
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 0, f"Bad Request: {LINK}", None, None)
    RecruitmentQueryFilter().filter(record)
    assert record.getMessage() == "Bad Request: /s/harm-demo/"
    mapped = logging.LogRecord("x", logging.INFO, __file__, 0, "%(r)s %(s)s", None, None)
    mapped.args = {"r": f"GET {LINK} HTTP/1.1", "s": "200"}
    RecruitmentQueryFilter().filter(mapped)
    assert mapped.getMessage() == "GET /s/harm-demo/ HTTP/1.1 200"


@pytest.fixture
def captured():
    """Everything the django.server and django.request loggers emit, as the configured handlers see it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    loggers = [logging.getLogger("django.server"), logging.getLogger("django.request")]
    for logger in loggers:
        logger.addHandler(handler)
    yield stream
    for logger in loggers:
        logger.removeHandler(handler)


def test_runserver_access_log_has_no_recruitment_ids(captured):
    # The development server's own logging call, through the LOGGING of config/settings.py.
    fake_handler = types.SimpleNamespace(request=None, log_date_time_string=lambda: "01/Jan/2026 00:00:00")
    WSGIRequestHandler.log_message(fake_handler, '"%s" %s %s', f"GET {LINK} HTTP/1.1", "302", "0")
    WSGIRequestHandler.log_message(fake_handler, '"%s" %s %s', f"GET {LINK} HTTP/1.1", "400", "12")
    logged = captured.getvalue()
    assert '"GET /s/harm-demo/ HTTP/1.1" 302 0' in logged and '"GET /s/harm-demo/ HTTP/1.1" 400 12' in logged
    for secret in SECRETS:
        assert secret not in logged


def test_the_access_log_is_still_written():
    # Configuring django.server replaces its handlers: the access log must keep its own.
    logger = logging.getLogger("django.server")
    assert logger.propagate is False
    formatters = [type(h.formatter).__name__ for h in logger.handlers if h.formatter]
    assert "ServerFormatter" in formatters
    assert any(isinstance(f, RecruitmentQueryFilter) for f in logger.filters)
    assert any(isinstance(f, RecruitmentQueryFilter) for f in logging.getLogger("django.request").filters)


def test_request_log_of_an_annotator_page_has_no_recruitment_ids(client, captured, db):
    client.get(LINK)  # no such study: django.request logs the 404
    logged = captured.getvalue()
    assert "Not Found: /s/harm-demo/" in logged
    for secret in SECRETS:
        assert secret not in logged


# --- gunicorn (production) ------------------------------------------------------------------------

QUERY_ATOMS = ("%(r)s", "%(q)s", "%(f)s", "{referer}i", "{raw_uri}e", "{query_string}e")


def gunicorn_config():
    """gunicorn.conf.py loaded the way gunicorn loads it (its module-level names become settings)."""
    from gunicorn.config import Config

    names = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    config = Config()
    for name, value in names.items():
        if name in config.settings:
            config.set(name, value)
    return config


def test_gunicorn_access_log_format_has_no_query_bearing_atoms():
    config = gunicorn_config()
    assert config.accesslog == "-"
    for atom in QUERY_ATOMS:
        assert atom.lower() not in config.access_log_format.lower(), atom
    assert "%(U)s" in config.access_log_format  # the path is logged, without its query


def test_gunicorn_access_line_of_an_annotator_link_has_no_recruitment_ids():
    from gunicorn.glogging import Logger

    config = gunicorn_config()
    log = Logger(config)
    stream = io.StringIO()
    for handler in log.access_log.handlers:
        handler.setStream(stream)
    path, query = LINK.split("?")
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": LINK,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_USER_AGENT": "test",
        "HTTP_REFERER": f"https://example.org{LINK}",
    }
    response = types.SimpleNamespace(status="302 Found", sent=0, headers=[("Location", "/s/harm-demo/consent/")])
    request = types.SimpleNamespace(headers=[("REFERER", f"https://example.org{LINK}")])
    log.access(response, request, environ, datetime.timedelta(milliseconds=12))
    line = stream.getvalue()
    assert "GET /s/harm-demo/ HTTP/1.1" in line and " 302 " in line
    for secret in SECRETS:
        assert secret not in line


def test_gunicorn_error_log_drops_recruitment_queries():
    from gunicorn.glogging import Logger

    names = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    worker = types.SimpleNamespace(log=Logger(gunicorn_config()))
    names["post_worker_init"](worker)
    record = logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 0, "Error handling request %s", (LINK,), None)
    assert all(f.filter(record) for f in worker.log.error_log.filters)
    assert record.getMessage() == "Error handling request /s/harm-demo/"


def test_the_image_runs_gunicorn_with_that_config():
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD"))
    assert "gunicorn" in cmd and '"--config", "gunicorn.conf.py"' in cmd
