"""API fuzz test: every operation of the live OpenAPI schema (/api/schema/, loaded through the WSGI app)
run by schemathesis with generated valid and invalid input (positive and negative modes: wrong types,
missing fields, bad formats, odd content types).

As the owner of a study with prompts, ratings, an excluded annotator, a collaborator and a finished job
with a file, path parameters point at those real objects, so requests reach the views' code and not only
a 404. Each example runs in a savepoint that is rolled back, so one example's change (a status move, an
exclusion, a removed collaborator) is not what the next one meets. As an outsider, every operation that
names something of the study must be refused and no list may show it.

Checks: no 5xx; the status code, content type, headers and body are the ones the schema documents
(error responses included); a request without credentials or with wrong ones is refused (ignored_auth);
a method an operation does not serve answers 405. Left out, on purpose:
- positive_data_acceptance: the schema cannot hold every business rule, and these answer 400 by design
  for schema-valid input (an unknown username or job kind, scale_min above scale_max, a formula-like
  prompt text, a harm-benefit tree off the SafetyAnalyst schema);
- negative_data_rejection: DRF is lenient where the schema is strict (it reads a number sent for a text
  field as text, and treats an empty or unreadable page_size or an empty filter value as absent); such
  input still runs through every check above.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from annotation.models import Annotator, Assignment, Prompt, Rating, Study
from annotation.services.review import annotator_exclude
from jobs.models import Job
from jobs.services import artifact_dir, artifact_save

# Django's WSGI handler with the project's settings and middleware (config.wsgi adds only the keys check,
# which refuses to start without production keys).
application = get_wsgi_application()
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# The outsider's run asks who may see what, not which input shapes are read: fuzzing only, no coverage
# phase (its boundary cases per field are what the owner's run is for, and they are most of its time).
outsider_schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
outsider_schema.config.phases.coverage.enabled = False

OWNER_TOKEN = "f0220000000000000000000000000000000000a1"
OUTSIDER_TOKEN = "f0220000000000000000000000000000000000b2"
SLUG = "fuzz"
EXCLUDED_CHECKS = [positive_data_acceptance, negative_data_rejection]  # why: the module's docstring
# Examples per operation and mode; the world is shared by one operation's examples (each rolled back).
FUZZ = settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ_OUTSIDER = settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _token_provider(key: str):
    class TokenAuth:
        def get(self, case, context):
            return key

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Token {data}"}

    return TokenAuth


@pytest.fixture
def _keep_connection():
    """The requests go through the WSGI handler, whose request signals close the database connection (on
    PostgreSQL that ends the test's transaction); Django's test client unhooks them the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, _keep_connection):
    """The owner's study: 3 prompts, 2 annotators with 3 ratings each (P0002 excluded), a viewer, a
    succeeded export job with a file; tokens for the owner and an outsider. Users have no password (no
    hashing: this runs once per operation)."""
    User = get_user_model()
    owner, outsider = User.objects.create_user("fuzz-owner"), User.objects.create_user("fuzz-outsider")
    study = Study.objects.create(slug=SLUG, title="Fuzz", owner=owner, instruments=[])
    prompts = Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=f"q{i}", text=f"Question {i}", order=i) for i in range(3)]
    )
    now = timezone.now()
    for n, status in enumerate([Annotator.Status.COMPLETED, Annotator.Status.RATING], start=1):
        annotator = Annotator.objects.create(study=study, pseudonym=f"P{n:04d}", status=status, consented_at=now)
        for position, prompt in enumerate(prompts):
            assignment = Assignment.objects.create(
                annotator=annotator, prompt=prompt, position=position, shown_at=now, answered_at=now
            )
            Rating.objects.create(
                assignment=assignment, annotator=annotator, prompt=prompt, value=10 * (n + position), rt_ms=3000
            )
    annotator_exclude(annotator=annotator, reason="fuzz fixture", user=owner)
    viewer = User.objects.create_user("fuzz-viewer")
    study.collaborators.add(viewer, through_defaults={"role": "viewer"})
    job = Job.objects.create(kind="export", study=study, status=Job.Status.SUCCEEDED, params={"format": "long"})
    folder = artifact_dir(job)
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_text("a,b\n1,2\n")
    artifact = artifact_save(job=job, path=folder / "ratings.csv")
    Token.objects.create(user=owner, key=OWNER_TOKEN)
    Token.objects.create(user=outsider, key=OUTSIDER_TOKEN)
    return {"slug": SLUG, "id": job.pk, "name": artifact.name, "pseudonym": "P0001", "username": viewer.username}


def aim(case, world) -> None:
    """Point the path parameters at the world's objects (reinstate at the excluded annotator)."""
    for key in case.path_parameters or {}:
        if key in world:
            case.path_parameters[key] = world[key]
    if case.path.endswith("/reinstate/"):
        case.path_parameters["pseudonym"] = "P0002"


def call(case):
    with transaction.atomic():
        response = case.call_and_validate(excluded_checks=EXCLUDED_CHECKS)
        transaction.set_rollback(True)
    return response


@schema.parametrize()
@schema.auth(_token_provider(OWNER_TOKEN), refresh_interval=None)
@FUZZ
def test_api_as_owner(case, world):
    aim(case, world)
    call(case)


@outsider_schema.parametrize()
@outsider_schema.auth(_token_provider(OUTSIDER_TOKEN), refresh_interval=None)
@FUZZ_OUTSIDER
def test_api_as_outsider_shows_nothing_of_the_study(case, world):
    aim(case, world)
    response = call(case)
    if case.method.upper() != case.operation.method.upper():
        return  # a probe with another method (405, or DRF's OPTIONS description of the view)
    if case.path_parameters:
        assert response.status_code >= 400, (case.method, case.formatted_path, response.status_code)
    elif case.method.upper() == "GET":
        assert f'"{SLUG}"' not in response.text, case.path
