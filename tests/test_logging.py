"""Recruitment ids never reach the logs (ASVS 7.1.1): the annotator link carries PROLIFIC_PID, STUDY_ID
and SESSION_ID in its query string, so access logs write the path of /s/… requests without the query.
Every record carries the request's id and the job's id; LOG_FORMAT=json writes JSON lines."""

import datetime
import io
import json
import logging
import os
import re
import runpy
import subprocess
import sys
import types
from pathlib import Path

import pytest
from django.conf import settings
from django.core.servers.basehttp import WSGIRequestHandler

from config.logging import JsonFormatter, LogContextFilter, RecruitmentQueryFilter, redact_recruitment_query

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
    response = types.SimpleNamespace(
        status="302 Found", sent=0, headers=[("Location", "/s/harm-demo/consent/"), ("X-Request-ID", "req5f3a")]
    )
    request = types.SimpleNamespace(headers=[("REFERER", f"https://example.org{LINK}")])
    log.access(response, request, environ, datetime.timedelta(milliseconds=12))
    line = stream.getvalue()
    assert "GET /s/harm-demo/ HTTP/1.1" in line and " 302 " in line
    assert line.rstrip().endswith("request=req5f3a")  # the id the app's own log lines carry
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


# --- request and job ids (structured logs) --------------------------------------------------------


@pytest.fixture
def console():
    """What the configured console handler (the root's, with the id and redaction filters) writes."""
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, LogContextFilter) for f in h.filters))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield types.SimpleNamespace(stream=stream, handler=handler)
    handler.setStream(previous)


@pytest.fixture
def json_console(console):
    previous = console.handler.formatter
    console.handler.setFormatter(JsonFormatter())
    yield console
    console.handler.setFormatter(previous)


def test_a_requests_log_lines_carry_its_id_and_the_response_echoes_it(client, console, db):
    first = client.get("/no-such-page/")
    second = client.get("/no-such-page/")
    request_id = first["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id) and second["X-Request-ID"] != request_id
    line = next(line for line in console.stream.getvalue().splitlines() if "Not Found: /no-such-page/" in line)
    assert f"request={request_id} " in line
    logging.getLogger("pluriharms.test").warning("after the request")
    assert "[request=- job=-] after the request" in console.stream.getvalue()  # cleared when it ended


def test_a_safe_incoming_request_id_is_kept(client, console, db):
    response = client.get("/no-such-page/", HTTP_X_REQUEST_ID="lb-7f3a9c21.0001")
    assert response["X-Request-ID"] == "lb-7f3a9c21.0001"
    assert "request=lb-7f3a9c21.0001 " in console.stream.getvalue()


@pytest.mark.parametrize(
    "tampered",
    [
        "a" * 65,
        "abcdefgh\nWARNING forged line",
        "<script>alert(1)</script>",
        "abc def ghi",
        "short",
        "",
    ],
)
def test_a_tampered_request_id_is_replaced(client, console, db, tampered):
    response = client.get("/no-such-page/", HTTP_X_REQUEST_ID=tampered)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    logged = console.stream.getvalue()
    assert f"request={response['X-Request-ID']} " in logged
    if tampered:
        assert tampered not in logged and tampered not in response["X-Request-ID"]


def test_json_lines_parse_with_the_ids(client, json_console, db):
    response = client.get("/no-such-page/")
    entries = [json.loads(line) for line in json_console.stream.getvalue().splitlines()]
    entry = next(e for e in entries if e["message"] == "Not Found: /no-such-page/")
    assert entry["request_id"] == response["X-Request-ID"] and entry["job_id"] is None
    assert entry["level"] == "WARNING" and entry["logger"] == "django.request"
    assert datetime.datetime.fromisoformat(entry["time"]).tzinfo is not None


def test_json_formatter_keeps_a_traceback_on_one_line():
    try:
        raise ValueError(f"bad link {LINK}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 0, "failed", None, sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert "ValueError" in entry["exc_info"] and entry["request_id"] is None
    for secret in SECRETS:
        assert secret not in line


def test_log_format_json_setting_writes_json_lines(tmp_path):
    # Settings as a deployment gets them: LOG_FORMAT=json in the environment of a fresh process.
    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PLURIHARMS_DEV": "1",
        "PLURIHARMS_VAR_DIR": str(tmp_path),
    }
    code = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "print(Client().get('/no-such-page/')['X-Request-ID'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    request_id = done.stdout.strip().splitlines()[-1]
    entries = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]  # every line is JSON
    assert any(e["message"] == "Not Found: /no-such-page/" and e["request_id"] == request_id for e in entries)


def test_an_unknown_log_format_is_refused(tmp_path):
    env = {**os.environ, "LOG_FORMAT": "xml", "DJANGO_SETTINGS_MODULE": "config.settings", "PLURIHARMS_DEV": "1"}
    env["PLURIHARMS_VAR_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode != 0 and "LOG_FORMAT must be 'text' or 'json'" in done.stderr


@pytest.mark.parametrize("call", [{"args": (42,)}, {"kwargs": {"job_id": 42}}])
def test_records_inside_a_job_carry_its_id(console, monkeypatch, call):
    from jobs import tasks

    def job_run(*, job_id):
        logging.getLogger("jobs.services").warning("working on it")

    monkeypatch.setattr(tasks.services, "job_run", job_run)
    tasks.run_job.apply(**call)  # eagerly, through Celery's trace: task_prerun and task_postrun fire
    logging.getLogger("jobs.services").warning("between jobs")
    logged = console.stream.getvalue()
    assert "[request=- job=42] working on it" in logged
    assert "[request=- job=-] between jobs" in logged


def test_a_failing_job_still_unbinds_its_id(console, monkeypatch):
    from jobs import tasks

    def job_run(*, job_id):
        raise RuntimeError("boom")

    monkeypatch.setattr(tasks.services, "job_run", job_run)
    tasks.run_job.apply(args=(43,))
    logging.getLogger("jobs.services").warning("after the failure")
    assert "[request=- job=-] after the failure" in console.stream.getvalue()


@pytest.fixture
def recruiting_study(researcher):
    from annotation.models import Prompt, Study

    study = Study.objects.create(
        slug="harm-demo", title="Harm", status=Study.Status.RECRUITING, owner=researcher, instruments=[]
    )
    Prompt.objects.create(study=study, external_id="1", text="A prompt", order=1)
    return study


@pytest.mark.parametrize("formatter", ["text", "json"])
def test_no_recruitment_id_in_any_log_output_of_the_annotator_path(client, console, recruiting_study, formatter):
    """Everything the root console handler writes at DEBUG, in both formats, while an annotator arrives,
    consents and comes back; and a record of any logger that quotes the link (a future `logger.info(
    request.get_full_path())`) is redacted by the handler itself."""
    if formatter == "json":
        previous_formatter = console.handler.formatter
        console.handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        assert client.get(LINK, HTTP_X_REQUEST_ID="trace-0001").status_code == 302
        client.post("/s/harm-demo/consent/", {"consent": "agree"})
        client.get(LINK)  # resuming
        client.get(LINK.replace("harm-demo", "no-such-study"))  # a 404, logged by django.request
        logging.getLogger("annotation.views").info("arrived at %s", LINK)
    finally:
        root.setLevel(previous_level)
        if formatter == "json":
            console.handler.setFormatter(previous_formatter)
    logged = console.stream.getvalue()
    assert "arrived at /s/harm-demo/" in logged and "Not Found: /s/no-such-study/" in logged
    for secret in SECRETS:
        assert secret not in logged
