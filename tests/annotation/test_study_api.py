"""The studies API: create, change with the protection rules, status moves, duplicate; roles; the error
shape; the OpenAPI schema."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Annotator, Assignment, Prompt, Rating, Study

pytestmark = pytest.mark.django_db

LIST = "/api/studies/"


def detail(slug):
    return f"/api/studies/{slug}/"


@pytest.fixture
def api(researcher):
    client = APIClient()
    client.force_authenticate(researcher)
    return client


@pytest.fixture
def study(researcher) -> Study:
    study = Study.objects.create(slug="api-study", title="API study", owner=researcher, instruments=[])
    Prompt.objects.bulk_create(
        [
            Prompt(study=study, external_id=f"q{i}", text=f"Question {i}", order=i, features={"action_x": 0.5})
            for i in range(3)
        ]
    )
    return study


def rate_once(study) -> Rating:
    annotator = Annotator.objects.create(study=study, pseudonym="P0001", status=Annotator.Status.RATING)
    prompt = study.prompts.first()
    assignment = Assignment.objects.create(annotator=annotator, prompt=prompt, position=0)
    return Rating.objects.create(assignment=assignment, annotator=annotator, prompt=prompt, value=40)


def assert_error_shape(response, status_code):
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"message", "extra"} and isinstance(body["message"], str) and body["message"]
    return body


# --- create ------------------------------------------------------------------------------------


def test_create_a_study(api, researcher):
    response = api.post(
        LIST,
        {"title": "Wide scale", "scale_max": 200, "scale_step": 5, "instruments": ["mfq20", "demographics"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "wide-scale" and body["status"] == "draft" and body["owner"] == "researcher"
    assert body["scale_max"] == 200 and body["instruments"] == ["mfq20", "demographics"] and body["n_prompts"] == 0
    study = Study.objects.get(slug="wide-scale")
    assert study.owner == researcher and study.scale_step == 5


def test_create_with_a_slug_and_its_refusals(api, study):
    assert api.post(LIST, {"title": "X", "slug": "chosen"}, format="json").json()["slug"] == "chosen"
    taken = assert_error_shape(api.post(LIST, {"title": "Y", "slug": "api-study"}, format="json"), 400)
    assert "slug" in taken["extra"]["fields"]
    reserved = assert_error_shape(api.post(LIST, {"title": "Y", "slug": "new"}, format="json"), 400)
    assert "reserved" in reserved["message"]
    assert set(Study.objects.values_list("slug", flat=True)) == {"api-study", "chosen"}


@pytest.mark.parametrize(
    "data,field",
    [
        ({}, "title"),
        ({"title": "T", "scale_min": 10, "scale_max": 5}, "scale_max"),
        ({"title": "T", "scale_max": 100, "scale_step": 7}, "scale_step"),
        ({"title": "T", "design": "partial"}, "prompts_per_annotator"),
        ({"title": "T", "instruments": ["nope"]}, "instruments"),
        ({"title": "T", "instruments": ["mfq20", "mfq20"]}, "instruments"),
        ({"title": "T", "completion_url": "javascript:alert(1)"}, "completion_url"),
        ({"title": "T", "scale_max": -1}, "scale_max"),
        ({"title": "T", "status": "recruiting", "owner": "staffer"}, None),
    ],
)
def test_create_validates_like_the_form(api, data, field):
    response = api.post(LIST, data, format="json")
    if field is None:  # read-only fields are ignored: a new study is always the caller's draft
        assert response.status_code == 201 and response.json()["status"] == "draft"
        assert response.json()["owner"] == "researcher"
        return
    body = assert_error_shape(response, 400)
    assert field in body["extra"]["fields"], body
    assert not Study.objects.exists()


def test_anonymous_cannot_create_or_list():
    client = APIClient()
    assert_error_shape(client.post(LIST, {"title": "T"}, format="json"), 403)
    assert_error_shape(client.get(LIST), 403)
    assert not Study.objects.exists()


# --- read and update ---------------------------------------------------------------------------


def test_list_and_retrieve_show_only_ones_own(api, client, outsider, study):
    assert [s["slug"] for s in api.get(LIST).json()["results"]] == ["api-study"]
    body = api.get(detail("api-study")).json()
    assert body["n_prompts"] == 3 and body["has_ratings"] is False and "consent_text" in body
    other = APIClient()
    other.force_authenticate(outsider)
    assert other.get(LIST).json()["results"] == []
    assert_error_shape(other.get(detail("api-study")), 404)


def test_patch_changes_settings(api, study):
    response = api.patch(detail("api-study"), {"scale_max": 200, "consent_text": "Hello."}, format="json")
    assert response.status_code == 200 and response.json()["scale_max"] == 200
    study.refresh_from_db()
    assert study.scale_max == 200 and study.consent_text == "Hello."


def test_patch_refuses_invalid_settings_and_saves_nothing(api, study):
    body = assert_error_shape(
        api.patch(detail("api-study"), {"title": "Changed", "scale_min": 50, "scale_max": 10}, format="json"), 400
    )
    assert "scale_max" in body["extra"]["fields"]
    study.refresh_from_db()
    assert study.title == "API study" and study.scale_max == 100


def test_patch_of_read_only_fields_changes_nothing(api, study):
    api.patch(detail("api-study"), {"slug": "other", "status": "closed"}, format="json")
    study.refresh_from_db()
    assert study.slug == "api-study" and study.status == "draft"


@pytest.mark.parametrize(
    "data",
    [{"scale_max": 7}, {"scale_min": 1}, {"scale_step": 2}, {"design": "partial", "prompts_per_annotator": 2}],
)
def test_patch_of_protected_settings_after_a_rating_is_409(api, study, data):
    rate_once(study)
    body = assert_error_shape(api.patch(detail("api-study"), {**data, "title": "New"}, format="json"), 409)
    assert set(body["extra"]["fields"]) <= set(data) and body["extra"]["fields"]
    assert "Duplicate the study" in body["message"]
    study.refresh_from_db()
    assert study.title == "API study" and (study.scale_min, study.scale_max, study.design) == (0, 100, "full")


def test_after_a_rating_other_settings_still_change(api, study):
    rate_once(study)
    response = api.patch(detail("api-study"), {"title": "New", "scale_max": 100}, format="json")
    assert response.status_code == 200 and response.json()["has_ratings"] is True
    study.refresh_from_db()
    assert study.title == "New"


def test_put_and_delete_are_not_allowed(api, study):
    assert_error_shape(api.put(detail("api-study"), {"title": "x"}, format="json"), 405)
    assert_error_shape(api.delete(detail("api-study")), 405)
    assert Study.objects.filter(slug="api-study").exists()


# --- roles -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,data",
    [
        ("patch", "", {"title": "x"}),
        ("post", "status/", {"status": "recruiting"}),
        ("post", "duplicate/", {}),
    ],
)
def test_roles(study, outsider, staff, method, path, data):
    client = APIClient()
    url = detail("api-study") + path
    client.force_authenticate(outsider)
    assert_error_shape(getattr(client, method)(url, data, format="json"), 404)  # not theirs: not even seen
    study.collaborators.add(outsider, through_defaults={"role": "viewer"})
    body = assert_error_shape(getattr(client, method)(url, data, format="json"), 403)
    assert "edit" in body["message"]
    assert client.get(detail("api-study")).status_code == 200  # a viewer reads
    study.refresh_from_db()
    assert study.title == "API study" and study.status == "draft" and Study.objects.count() == 1
    study.collaborators.remove(outsider)
    study.collaborators.add(outsider, through_defaults={"role": "editor"})
    assert getattr(client, method)(url, data, format="json").status_code in (200, 201)
    client.force_authenticate(staff)
    assert client.get(detail("api-study")).status_code == 200


def test_study_access_is_declared_for_every_action():
    from annotation.api_studies import StudyViewSet

    assert StudyViewSet.study_access == {
        "list": "view",
        "retrieve": "view",
        "create": None,
        "partial_update": "edit",
        "status": "edit",
        "duplicate": "edit",
    }


# --- status ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start,target,expected",
    [
        ("draft", "recruiting", 200),
        ("draft", "paused", 409),
        ("draft", "closed", 409),
        ("recruiting", "paused", 200),
        ("recruiting", "closed", 200),
        ("recruiting", "draft", 409),
        ("paused", "recruiting", 200),
        ("paused", "closed", 200),
        ("closed", "recruiting", 409),
        ("closed", "draft", 409),
        ("paused", "paused", 200),
        ("draft", "open", 400),
    ],
)
def test_status_transitions(api, study, start, target, expected):
    Study.objects.filter(pk=study.pk).update(status=start)
    response = api.post(detail("api-study") + "status/", {"status": target}, format="json")
    study.refresh_from_db()
    if expected == 200:
        assert response.status_code == 200 and response.json()["status"] == target == study.status
    else:
        body = assert_error_shape(response, expected)
        assert study.status == start
        if expected == 409:
            assert "allowed" in body["extra"]


def test_status_needs_a_body(api, study):
    body = assert_error_shape(api.post(detail("api-study") + "status/", {}, format="json"), 400)
    assert "status" in body["extra"]["fields"]


def test_opening_recruitment_needs_prompts(api, researcher):
    Study.objects.create(slug="empty", title="Empty", owner=researcher, instruments=[])
    body = assert_error_shape(api.post(detail("empty") + "status/", {"status": "recruiting"}, format="json"), 409)
    assert "Add prompts" in body["message"]


def test_partial_design_needs_enough_prompts_to_recruit(api, study):
    Study.objects.filter(pk=study.pk).update(design="partial", prompts_per_annotator=5)
    body = assert_error_shape(api.post(detail("api-study") + "status/", {"status": "recruiting"}, format="json"), 409)
    assert "5 prompts per annotator" in body["message"]


# --- duplicate ---------------------------------------------------------------------------------


def test_duplicate(api, study):
    rate_once(study)
    Study.objects.filter(pk=study.pk).update(status="recruiting", scale_max=200, consent_text="C.")
    response = api.post(detail("api-study") + "duplicate/", format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "api-study-2" and body["status"] == "draft" and body["n_prompts"] == 3
    assert body["n_annotators"] == 0 and body["has_ratings"] is False and body["scale_max"] == 200
    copy = Study.objects.get(slug="api-study-2")
    assert copy.consent_text == "C." and list(copy.prompts.values_list("external_id", "features")) == list(
        study.prompts.values_list("external_id", "features")
    )
    # The copy is a draft with no data, so its scale can change again.
    assert api.patch(detail("api-study-2"), {"scale_max": 7}, format="json").status_code == 200


# --- the 0–200 scale through the API and the annotator path --------------------------------------


def test_a_0_to_200_study_made_over_the_api_collects_150(api, client):
    from annotation.services.recruitment import recruitment_hash

    api.post(LIST, {"title": "Wide", "scale_max": 200, "min_seconds_per_rating": 0}, format="json")
    Prompt.objects.create(study=Study.objects.get(slug="wide"), external_id="1", text="A prompt")
    assert api.post(detail("wide") + "status/", {"status": "recruiting"}, format="json").status_code == 200
    client.get("/s/wide/?PROLIFIC_PID=abc123&STUDY_ID=st&SESSION_ID=se")
    client.post(reverse("take:consent", args=["wide"]), {"consent": "agree"})
    client.post(reverse("take:instructions", args=["wide"]))
    annotator = Annotator.objects.get(recruitment_hash=recruitment_hash("abc123"))
    trial = annotator.assignments.get()
    response = client.post(reverse("take:rate_submit", args=["wide", trial.pk]), {"rating": "150"})
    assert response.status_code == 302
    assert Rating.objects.get(assignment=trial).value == 150.0
    # …and from then on the scale is fixed.
    assert_error_shape(api.patch(detail("wide"), {"scale_max": 100}, format="json"), 409)


# --- OpenAPI -----------------------------------------------------------------------------------


def test_the_schema_documents_the_study_endpoints_with_their_errors(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    expected = {
        "/api/studies/": {"get": {"200", "403", "404"}, "post": {"201", "400", "403"}},
        "/api/studies/{slug}/": {"get": {"200", "403", "404"}, "patch": {"200", "400", "403", "404", "409"}},
        "/api/studies/{slug}/status/": {"post": {"200", "400", "403", "404", "409"}},
        "/api/studies/{slug}/duplicate/": {"post": {"201", "403", "404"}},
    }
    for path, methods in expected.items():
        assert set(paths[path]) - {"parameters"} == set(methods), path
        for method, codes in methods.items():
            # At least these (a project-wide hook may document more, e.g. 413 for any body).
            assert codes <= set(paths[path][method]["responses"]), (path, method)
    error = paths["/api/studies/{slug}/"]["patch"]["responses"]["409"]["content"]["application/json"]["schema"]
    assert error["$ref"].endswith("/ErrorResponse")
