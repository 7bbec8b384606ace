"""A simulated crowd: annotators walking the whole path over HTTP, as browsers would, then a reconciliation.

Each simulated annotator is one thread with one keep-alive connection and its own cookies. It opens the
recruitment link, consents, answers every questionnaire page (when asked to), reads the instructions,
then submits every card as htmx does (POST with the CSRF token, the card's idempotency key, the
response time and the HX-Request header), answering attention checks (or failing them at a given
rate), and ends on the completion page. A submission whose answer is lost (connection dropped, 5xx)
is sent again with the same idempotency key, as the page's form still holds it.

A rating counts as *acknowledged* when the server answered its submission with the next card or the
redirect that ends the loop. The reconciliation then reads the database: every acknowledged rating
must be stored once, with the value sent.

The HTTP client is a minimal one on a socket (see _Browser): a load generator's own CPU must stay
small beside the server's on the same machine.
"""

from __future__ import annotations

import random
import re
import secrets
import socket
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import numpy as np

STEPS = ("enter", "consent", "survey", "instructions", "rate_page", "rating", "done")
RETRIES = 6  # attempts per request after a dropped connection or a 5xx (the page lets its user retry)

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_FORM_ACTION = re.compile(r'<form method="post" action="(/s/[^"]+/rate/(\d+)/)" id="rating-form"')
_KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')
_CHECK = re.compile(r"set the rating to (\d+)")
_CHOICE = re.compile(r'<input type="(radio|checkbox)"[^>]*?name="([^"]+)" value="([^"]*)"', re.S)
_PAGE_STEPS = (("/rate/", "rate_page"), ("/done/", "done"))
_CODE = re.compile(r'id="completion-code">([^<]+)<')


class CrowdError(Exception):
    """The run could not start (bad URL, unknown study); its message says why."""


@dataclass
class AnnotatorLog:
    """What one simulated annotator did and saw."""

    participant: str
    outcome: str = "unfinished"
    acknowledged: dict[int, float | None] = field(default_factory=dict)  # assignment id -> value sent
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    code: str = ""


@dataclass
class CrowdReport:
    annotators: int
    concurrency: int
    think_ms: float
    seconds: float
    rating_seconds: float
    latencies: dict[str, list[float]]
    logs: list[AnnotatorLog]
    reconciliation: dict | None = None

    @property
    def acknowledged(self) -> int:
        return sum(len(log.acknowledged) for log in self.logs)

    @property
    def errors(self) -> list[str]:
        return [error for log in self.logs for error in log.errors]

    @property
    def throughput(self) -> float:
        """Acknowledged ratings per second over the rating phase (first card served to last answer)."""
        return self.acknowledged / self.rating_seconds if self.rating_seconds > 0 else 0.0

    def step_table(self) -> list[dict]:
        rows = []
        for step in STEPS:
            values = self.latencies.get(step) or []
            if not values:
                continue
            ms = np.asarray(values) * 1000
            rows.append(
                {
                    "step": step,
                    "n": len(values),
                    "p50_ms": round(float(np.percentile(ms, 50)), 1),
                    "p95_ms": round(float(np.percentile(ms, 95)), 1),
                    "p99_ms": round(float(np.percentile(ms, 99)), 1),
                    "max_ms": round(float(ms.max()), 1),
                }
            )
        return rows

    def as_dict(self) -> dict:
        outcomes: dict[str, int] = defaultdict(int)
        for log in self.logs:
            outcomes[log.outcome] += 1
        return {
            "annotators": self.annotators,
            "concurrency": self.concurrency,
            "think_ms": self.think_ms,
            "seconds": round(self.seconds, 2),
            "rating_seconds": round(self.rating_seconds, 2),
            "ratings_acknowledged": self.acknowledged,
            "ratings_per_second": round(self.throughput, 1),
            "retries": sum(log.retries for log in self.logs),
            "errors": len(self.errors),
            "error_examples": sorted(set(self.errors))[:10],
            "outcomes": dict(outcomes),
            "steps": self.step_table(),
            "reconciliation": self.reconciliation,
        }


class _Response:
    """Status, headers (lower-case names; Set-Cookie kept as a list) and body of one HTTP answer."""

    __slots__ = ("status", "headers", "cookies")

    def __init__(self, status: int, headers: dict[str, str], cookies: list[str]):
        self.status, self.headers, self.cookies = status, headers, cookies

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


class _Browser:
    """One annotator's browser: a keep-alive HTTP/1.1 connection, cookies, redirects followed by hand.

    A minimal HTTP/1.1 client on a socket (Content-Length bodies, as Django sends them): the standard
    library's http.client parses headers with the email package, which cost more CPU per request than
    the rest of the simulated browser, and the load generator shares the machine with the server.
    """

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.cookies: dict[str, str] = {}
        self.path = ""  # the last page requested: a form without an action posts back to it

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buffer = b""

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buffer += chunk
        body, self.buffer = self.buffer[:n], self.buffer[n:]
        return body

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        """(status, response, text) of one request; raises OSError if the connection fails."""
        self.path = path
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "User-Agent: pluriharms-simulate-crowd"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        data = b""
        if body is not None:
            data = urlencode(body).encode()
            lines += [
                "Content-Type: application/x-www-form-urlencoded",
                f"Content-Length: {len(data)}",
                f"Referer: http://{self.host}:{self.port}{path}",
                f"Origin: http://{self.host}:{self.port}",
            ]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        try:
            if self.sock is None:
                self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
            head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
            status = int(head[0].split(" ", 2)[1])
            received: dict[str, str] = {}
            set_cookies = []
            for line in head[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "set-cookie":
                    set_cookies.append(value)
                else:
                    received[name] = value
            if "chunked" in received.get("transfer-encoding", ""):
                raise ConnectionError("chunked answers are not supported by this client")
            length = int(received.get("content-length", "0") or 0)
            text = self._read_exactly(length).decode("utf-8", "replace") if method != "HEAD" else ""
        except (OSError, ValueError, IndexError):
            self.close()
            raise OSError(f"request to {path} failed") from None
        for header in set_cookies:
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        if received.get("connection", "").lower() == "close":
            self.close()
        return status, _Response(status, received, set_cookies), text


def _location(response) -> str:
    target = response.getheader("HX-Redirect") or response.getheader("Location") or ""
    return urlsplit(target).path + (f"?{urlsplit(target).query}" if urlsplit(target).query else "")


class Crowd:
    """Runs `annotators` simulated annotators, `concurrency` at a time, against `url`."""

    def __init__(
        self,
        *,
        url: str,
        study: str,
        annotators: int,
        concurrency: int,
        think_ms: float = 0.0,
        fail_checks: float = 0.0,
        surveys: bool = False,
        platform_study_id: str = "SIMULATED",
        timeout: float = 60.0,
        seed: int = 0,
    ):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise CrowdError(f"--url must be an http:// address with a host, not {url!r}")
        if annotators < 1 or concurrency < 1:
            raise CrowdError("--annotators and --concurrency must be at least 1")
        if not 0 <= fail_checks <= 1:
            raise CrowdError("--fail-checks is a rate between 0 and 1")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.study, self.annotators, self.concurrency = study, annotators, concurrency
        self.think_ms, self.fail_checks, self.surveys = think_ms, fail_checks, surveys
        self.platform_study_id, self.timeout = platform_study_id, timeout
        self.seed = seed
        # Prolific ids are 24 hex characters: 8 for this run, 16 for the annotator.
        self.run_token = secrets.token_hex(4)
        self._lock = threading.Lock()
        self._latencies: dict[str, list[float]] = defaultdict(list)
        self._first_card: float | None = None
        self._last_rating: float | None = None

    def participant(self, index: int) -> str:
        return f"{self.run_token}{index:016x}"

    def participants(self) -> list[str]:
        return [self.participant(i) for i in range(self.annotators)]

    # -- one request, timed and retried -------------------------------------------------------------

    def _timed(self, browser: _Browser, log: AnnotatorLog, step: str, method: str, path: str, body=None, headers=None):
        """One request as the page makes it; a dropped connection or a 5xx is retried (same body)."""
        last_error = ""
        for attempt in range(RETRIES + 1):
            if attempt:
                log.retries += 1
                time.sleep(min(2.0, 0.05 * 2**attempt))
            started = time.perf_counter()
            try:
                status, response, text = browser.request(method, path, body, headers)
            except OSError as exc:
                last_error = f"{step}: {type(exc).__name__}"
                continue
            elapsed = time.perf_counter() - started
            if status >= 500:
                last_error = f"{step}: HTTP {status}"
                continue
            with self._lock:
                self._latencies[step].append(elapsed)
            return status, response, text
        log.errors.append(last_error + f" (gave up after {RETRIES + 1} attempts)")
        return None

    def _follow(self, browser, log, step, status, response, text):
        """Follow redirects (3xx, or htmx's HX-Redirect) to the page they lead to."""
        hops = 0
        while (300 <= status < 400 or response.getheader("HX-Redirect")) and hops < 10:
            hops += 1
            target = _location(response)
            label = next((name for suffix, name in _PAGE_STEPS if urlsplit(target).path.endswith(suffix)), step)
            answer = self._timed(browser, log, label, "GET", target)
            if answer is None:
                return None
            status, response, text = answer
        return status, response, text

    # -- the path -------------------------------------------------------------------------------------

    def _walk(self, index: int) -> AnnotatorLog:
        rng = random.Random(self.seed * 1_000_003 + index)
        # Check outcomes from a stream of their own: the k-th check of annotator i passes or fails the
        # same way for a given seed, wherever the server placed the checks among the cards.
        checks_rng = random.Random(f"checks:{self.seed}:{index}")
        participant = self.participant(index)
        log = AnnotatorLog(participant=participant)
        browser = _Browser(self.host, self.port, self.timeout)
        base = f"{self.prefix}/s/{self.study}"
        query = urlencode(
            {"PROLIFIC_PID": participant, "STUDY_ID": self.platform_study_id, "SESSION_ID": f"sim{index:x}"}
        )
        try:
            answer = self._timed(browser, log, "enter", "GET", f"{base}/?{query}")
            if answer is not None:
                answer = self._follow(browser, log, "enter", *answer)
            while answer is not None:
                status, _response, text = answer
                answer = self._page(browser, log, (rng, checks_rng), base, status, text)
        finally:
            browser.close()
        return log

    def _page(self, browser, log, rngs, base, status, text):
        """Act on the page the annotator is on; return the next (status, response, text) or None at the end.

        `rngs`: the annotator's (answers, attention checks) generators.
        """
        rng = rngs[0]
        if status >= 400:
            reason = re.search(r'data-reason="([^"]+)"', text)
            log.outcome = "refused"
            log.errors.append(f"refused: HTTP {status}" + (f" ({reason.group(1)})" if reason else ""))
            return None
        if 'id="completion-code"' in text or "You have finished the study" in text:
            code = _CODE.search(text)
            log.code = code.group(1).strip() if code else ""
            log.outcome = "completed"
            return None
        if 'id="rating-card"' in text:
            return self._rate(browser, log, rngs, base, text)
        stopped = re.search(r'id="stopped" data-step="([^"]+)"', text)
        if stopped:
            log.outcome = stopped.group(1)  # excluded, declined or returned
            return None
        token = _CSRF.search(text)
        if token is None:
            log.outcome = "stuck"
            log.errors.append("a page without a form or code (where the flow should go on)")
            return None
        csrf = token.group(1)
        if 'name="consent"' in text:
            answer = self._timed(
                browser, log, "consent", "POST", f"{base}/consent/", {"csrfmiddlewaretoken": csrf, "consent": "agree"}
            )
            return answer and self._follow(browser, log, "consent", *answer)
        if "Questionnaire " in text and _CHOICE.search(text):
            if not self.surveys:
                log.outcome = "stuck"
                log.errors.append("the study asks questionnaires: run with --surveys to answer them")
                return None
            page = browser.path
            choices: dict[str, list[str]] = defaultdict(list)
            for _kind, name, value in _CHOICE.findall(text):
                choices[name].append(value)
            body = [("csrfmiddlewaretoken", csrf)] + [(name, rng.choice(values)) for name, values in choices.items()]
            answer = self._timed(browser, log, "survey", "POST", page, dict(body))
            return answer and self._follow(browser, log, "survey", *answer)
        if 'id="practice-form"' in text:
            answer = self._timed(
                browser, log, "instructions", "POST", f"{base}/instructions/", {"csrfmiddlewaretoken": csrf}
            )
            return answer and self._follow(browser, log, "instructions", *answer)
        log.outcome = "stuck"
        log.errors.append("an unknown page")
        return None

    def _rate(self, browser, log, rngs, base, text):
        rng, checks_rng = rngs
        """The rating loop: submit every card as htmx would, until the server redirects elsewhere."""
        with self._lock:
            now = time.perf_counter()
            self._first_card = now if self._first_card is None else min(self._first_card, now)
        headers = {
            "HX-Request": "true",
            "HX-Target": "rating-card",
            "HX-Current-URL": f"http://{self.host}{base}/rate/",
        }
        csrf = self._csrf_of(text)
        while True:
            form = _FORM_ACTION.search(text)
            if form is None:  # "All done" card: continue to the completion page
                answer = self._timed(browser, log, "done", "GET", f"{base}/done/")
                return answer and self._follow(browser, log, "done", *answer)
            action, assignment_id = form.group(1), int(form.group(2))
            key = _KEY.search(text).group(1)
            check = _CHECK.search(text)
            if check:
                expected = int(check.group(1))
                value = float(expected if checks_rng.random() >= self.fail_checks else (expected + 50) % 100)
            else:
                value = float(rng.randint(0, 100))
            unsure = not check and rng.random() < 0.02
            if self.think_ms:
                time.sleep(rng.uniform(0.5, 1.5) * self.think_ms / 1000)
            body = {"csrfmiddlewaretoken": csrf, "idempotency_key": key, "rt_ms": str(rng.randint(1500, 9000))}
            if unsure:
                body["unsure"] = "1"
            else:
                body["rating"] = str(int(value))
            answer = self._timed(browser, log, "rating", "POST", action, body, headers)
            if answer is None:
                return None
            status, response, text = answer
            if status == 200 and 'id="rating-card"' in text:
                if 'role="alert"' in text and 'id="rating-error"' in text:
                    log.errors.append(
                        "rating: refused: " + re.sub(r"<[^>]+>", "", text.split('id="rating-error">')[1])[:80]
                    )
                    return None
                log.acknowledged[assignment_id] = None if unsure else value
                self._rated()
                continue
            if status == 204 and response.getheader("HX-Redirect"):
                log.acknowledged[assignment_id] = None if unsure else value
                self._rated()
                return self._follow(browser, log, "done", status, response, text)
            log.errors.append(f"rating: HTTP {status}")
            return None

    def _rated(self) -> None:
        with self._lock:
            self._last_rating = time.perf_counter()

    @staticmethod
    def _csrf_of(text: str) -> str:
        match = _CSRF.search(text) or re.search(r'"X-CSRFToken": "([^"]+)"', text)
        return match.group(1) if match else ""

    def run(self) -> CrowdReport:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="annotator") as pool:
            logs = list(pool.map(self._walk, range(self.annotators)))
        seconds = time.perf_counter() - started
        rating_seconds = (
            (self._last_rating - self._first_card) if self._first_card is not None and self._last_rating else 0.0
        )
        return CrowdReport(
            annotators=self.annotators,
            concurrency=self.concurrency,
            think_ms=self.think_ms,
            seconds=seconds,
            rating_seconds=rating_seconds,
            latencies=dict(self._latencies),
            logs=logs,
        )


def reconcile(*, study, report: CrowdReport) -> dict:
    """Acknowledged ratings against the database: stored once with the value sent, or lost/duplicated."""
    from django.db.models import Count  # noqa: PLC0415  (the HTTP part above runs without Django)

    from .models import Annotator, Rating  # noqa: PLC0415
    from .services.recruitment import recruitment_hash  # noqa: PLC0415

    by_hash = {recruitment_hash(log.participant): log for log in report.logs}
    annotators = dict(
        Annotator.objects.filter(study=study, recruitment_hash__in=list(by_hash)).values_list("id", "recruitment_hash")
    )
    found = {by_hash[digest].participant for digest in annotators.values()}
    stored = {
        row["assignment_id"]: row
        for row in Rating.objects.filter(annotator_id__in=list(annotators)).values(
            "assignment_id", "value", "annotator_id"
        )
    }
    per_assignment = (
        Rating.objects.filter(annotator_id__in=list(annotators))
        .values("assignment_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    acknowledged = {aid: value for log in report.logs for aid, value in log.acknowledged.items()}
    lost = [aid for aid in acknowledged if aid not in stored]
    wrong = [aid for aid, value in acknowledged.items() if aid in stored and stored[aid]["value"] != value]
    unacknowledged = [aid for aid in stored if aid not in acknowledged]
    completed = Annotator.objects.filter(id__in=list(annotators), status=Annotator.Status.COMPLETED).count()
    return {
        "annotators_in_database": len(annotators),
        "annotators_missing": sum(1 for log in report.logs if log.participant not in found and log.acknowledged),
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        "lost": len(lost),
        "duplicated": per_assignment,
        "value_mismatch": len(wrong),
        "stored_unacknowledged": len(unacknowledged),
        "completed_in_database": completed,
        "completion_codes_wrong": sum(
            1 for log in report.logs if log.outcome == "completed" and log.code != study.completion_code
        ),
    }
