"""The permission matrix: every researcher URL (research/… and api/…, from the URL resolver, so a new one
cannot be missed) tried with every method it serves as anonymous, an annotator's session, another
researcher, a viewer, an editor, the owner and staff, against the level its view declares.

A view declares its level (annotation/access.py): a function view has `study_access` ("view", "edit",
"own"; @study_view sets it), a DRF view class has a `study_access` dict by action (viewsets) or by method
(plain API views). None declares a URL that needs a signed-in researcher but no study (a list, "new").

Expected, for a URL that names something of the study (its slug, a job of it, …):
- anonymous and an annotator's session (an annotator is not a signed-in user): a page redirects to the
  login page, the API answers 401 or 403; nothing of the study is shown;
- another researcher: 404 (the study's existence is not revealed);
- a role below the declared level: 403;
- at or above it: not refused (not 401/403/404/405, no 5xx). A POST with no body may be a 400.
A URL with no study (None) refuses only anonymous and annotator sessions.

Every request runs in a savepoint that is rolled back, so a POST by one role (a removal, a status change)
does not change what the next role meets.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from annotation.access import LEVELS
from annotation.forms import SECTIONS
from annotation.models import Annotator, Study
from benchmark.models import Candidate, CandidatePool, ValueTopic
from jobs.models import Job
from jobs.services import artifact_dir, artifact_save, job_create, job_run

# Researcher URLs are under these prefixes; these names are not researcher views.
PREFIXES = ("research/", "api/")
EXCLUDED_NAMES = {"schema", "api-docs", "api-root"}
METHODS = ("get", "post", "put", "patch", "delete")
REFUSED = {401, 403, 404, 405}
# Roles in the order they are tried, the least trusted first.
ROLES = ("anonymous", "annotator", "outsider", "viewer", "editor", "owner", "staff")
ROLE_LEVEL = {"viewer": "view", "editor": "edit", "owner": "own", "staff": "own"}
# URL keyword arguments that name something of the study: a URL with one of them is the study's.
STUDY_KWARGS = {
    "slug",
    "job_id",
    "pk",
    "external_id",
    "pseudonym",
    "username",
    "name",
    "section",
    "pool_id",
    "candidate_id",
    "number",
}


def _route(pattern) -> str:
    return str(pattern.pattern)


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = ""):
    """(route as text, namespaced name, pattern, keyword names) of every URL, includes followed."""
    for entry in resolver.url_patterns:
        route = prefix + _route(entry).lstrip("^").rstrip("$")
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry, route, inner)
        elif isinstance(entry, URLPattern):
            yield route, f"{namespace}{entry.name}" if entry.name else None, entry


def researcher_urls() -> list[tuple[str, str, URLPattern]]:
    found = []
    for route, name, entry in _walk(get_resolver()):
        if not route.startswith(PREFIXES) or (name or "").split(":")[-1] in EXCLUDED_NAMES:
            continue
        if "(?P<format>" in route:  # DRF's .json/.api suffix variants of the same views
            continue
        found.append((route, name, entry))
    return found


def _declared(entry: URLPattern, method: str):
    """(declared, level) for a method of a URL: level is "view"/"edit"/"own", or None for no study."""
    callback = entry.callback
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if cls is None:
        return hasattr(callback, "study_access"), getattr(callback, "study_access", None)
    table = getattr(cls, "study_access", None)
    if not isinstance(table, dict):
        return False, None
    actions = getattr(callback, "actions", None)
    key = actions.get(method) if actions else method
    return key in table, table.get(key)


def _served_methods(entry: URLPattern, probe) -> list[str]:
    callback = entry.callback
    actions = getattr(callback, "actions", None)
    if actions:
        return [m for m in METHODS if m in actions]
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if cls is not None:
        return [m for m in METHODS if hasattr(cls, m)]
    return [m for m in ("get", "post") if probe(m) != 405]  # function views: ask them (as staff)


@pytest.fixture
def world(small_study, researcher, outsider, staff, client):
    """The study (recruiting) with an annotator who entered through the recruitment link, a viewer and an
    editor, jobs with files (an export, a real analysis report), and a client signed in for each role."""
    study = small_study
    Study.objects.filter(pk=study.pk).update(status=Study.Status.RECRUITING)
    User = get_user_model()
    viewer = User.objects.create_user("viewer", password="pw-viewer-1")
    editor = User.objects.create_user("editor", password="pw-editor-1")
    study.collaborators.add(viewer, through_defaults={"role": "viewer"})
    study.collaborators.add(editor, through_defaults={"role": "editor"})

    annotator_client = Client()
    answer = annotator_client.get(f"/s/{study.slug}/?PROLIFIC_PID=5f3c2a9e8b7d6c5b4a392817&STUDY_ID=s&SESSION_ID=x")
    assert answer.status_code in (200, 302), answer.status_code
    assert annotator_client.session.keys(), "the annotator's browser has a session"

    export = Job.objects.create(kind="export", study=study, status=Job.Status.SUCCEEDED, params={"format": "long"})
    folder = artifact_dir(export)
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_text("a,b\n1,2\n")
    artifact = artifact_save(job=export, path=folder / "ratings.csv")
    analysis = job_run(
        job_id=job_create(kind="analysis", study=study, params={"mixed_effects": False, "n_boot": 20}).pk
    )
    assert analysis.status == Job.Status.SUCCEEDED, analysis.error

    clients = {"anonymous": Client(), "annotator": annotator_client}
    users = {"outsider": outsider, "viewer": viewer, "editor": editor, "owner": researcher, "staff": staff}
    for role, user in users.items():
        clients[role] = Client(raise_request_exception=False)
        clients[role].force_login(user)
    clients["anonymous"].raise_request_exception = False
    annotator_client.raise_request_exception = False
    prompt = study.prompts.order_by("order", "id").first()
    # A candidate pool with one candidate and one value topic (issue 12's pool pages).
    pool = CandidatePool.objects.create(study=study, name="pool")
    topic = ValueTopic.objects.create(pool=pool, number=0, name="topic", size=1)
    candidate = Candidate.objects.create(pool=pool, external_id="c1", text="text", harm_level=0.5, topic=topic)
    values = {
        "slug": study.slug,
        "job_id": export.pk,
        "pk": export.pk,
        "name": artifact.name,
        "external_id": prompt.external_id,
        "pseudonym": Annotator.objects.filter(study=study).order_by("pk").first().pseudonym,
        "username": "viewer",
        "pool_id": pool.pk,
        "candidate_id": candidate.pk,
        "number": topic.number,
    }
    # Keyword values that depend on the URL (a table's name, a builder section).
    by_url = {
        "benchmark:overview_csv": {"name": "progress"},
        "benchmark:agreement_csv": {"name": "prompts"},
        "benchmark:latent_checkpoint": {"name": "engagement"},
    }
    return {"study": study, "clients": clients, "values": values, "by_url": by_url}


def _kwargs(route: str, name: str, entry: URLPattern, world) -> dict:
    names = _route_kwargs(route)
    values = {**world["values"], "section": SECTIONS[0][0], **world["by_url"].get(name, {})}
    missing = sorted(names - set(values))
    assert not missing, f"{route}: no fixture value for URL keyword(s) {missing}; add one to the matrix's world"
    return {key: values[key] for key in names}


def _route_kwargs(route: str) -> set[str]:
    """The keyword names of a route's path converters (<slug:slug>) and regex groups ((?P<pk>…))."""
    return set(re.findall(r"<(?:\w+:)?(\w+)>", route)) | set(re.findall(r"\(\?P<(\w+)>", route))


def _is_login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(reverse("login"))


def _call(client, method: str, url: str):
    sid = transaction.savepoint()
    try:
        return getattr(client, method)(url)
    finally:
        transaction.savepoint_rollback(sid)


def _check(role: str, level, study_url: bool, api: bool, response) -> str | None:
    """What is wrong with `response` for `role` (None if it is what the declared level says)."""
    status = response.status_code
    if status >= 500:
        return f"server error {status}"
    if role in ("anonymous", "annotator"):
        ok = status in (401, 403) if api else _is_login_redirect(response)
        return None if ok else f"expected {'401/403' if api else 'a redirect to login'}, got {status}"
    if not study_url:
        return None if status not in REFUSED and not _is_login_redirect(response) else f"refused: {status}"
    if role == "outsider":
        return None if status == 404 else f"expected 404, got {status}"
    allowed = LEVELS.index(ROLE_LEVEL[role]) >= LEVELS.index(level)
    if not allowed:
        return None if status == 403 else f"expected 403 (below {level!r}), got {status}"
    return None if status not in REFUSED and not _is_login_redirect(response) else f"refused: {status}"


def test_every_researcher_url_declares_its_access_level():
    urls = researcher_urls()
    assert len(urls) > 20, "the walk found the researcher URLs"
    undeclared = []
    for route, _name, entry in urls:
        callback = entry.callback
        cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        actions = getattr(callback, "actions", None)
        methods = list(actions) if actions else [m for m in METHODS if cls is not None and hasattr(cls, m)]
        if cls is None:
            methods = ["get"]
        for method in methods:
            declared, level = _declared(entry, method)
            if not declared or (level is not None and level not in LEVELS):
                undeclared.append(f"{route} [{method.upper()}] ({callback.__module__}.{callback.__name__})")
    assert not undeclared, "no study_access declaration:\n" + "\n".join(undeclared)


def test_every_researcher_url_answers_each_role_as_its_level_says(world):
    clients = world["clients"]
    problems, tried = [], 0
    for route, name, entry in researcher_urls():
        if not _declared(entry, "get")[0] and not _declared(entry, "post")[0]:
            continue  # reported by the declaration test
        assert name, f"{route} has no URL name, so the matrix cannot build it"
        kwargs = _kwargs(route, name, entry, world)
        url = reverse(name, kwargs=kwargs)
        study_url = bool(set(kwargs) & STUDY_KWARGS)
        api = route.startswith("api/")
        for method in _served_methods(entry, lambda m, url=url: _call(clients["staff"], m, url).status_code):
            declared, level = _declared(entry, method)
            if not declared:
                continue
            for role in ROLES:
                response = _call(clients[role], method, url)
                tried += 1
                wrong = _check(role, level, study_url and level is not None, api, response)
                if wrong:
                    problems.append(f"{method.upper()} {url} as {role} (declared {level!r}): {wrong}")
    assert tried > 200, tried
    assert not problems, f"{len(problems)} of {tried} answers are wrong:\n" + "\n".join(problems)
