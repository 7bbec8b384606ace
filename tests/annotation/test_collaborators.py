"""Collaborators: roles decide levels (annotation/access.py); the owner's page and the API add, change
and remove them; a job kind's `need` decides who may start it."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.access import studies_for_user, study_allows, study_level
from annotation.models import Collaborator
from jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(small_study):
    user = get_user_model().objects.create_user("viewer", password="pw-viewer-1")
    small_study.collaborators.add(user, through_defaults={"role": "viewer"})
    return user


@pytest.fixture
def editor(small_study):
    user = get_user_model().objects.create_user("editor", password="pw-editor-1")
    small_study.collaborators.add(user, through_defaults={"role": "editor"})
    return user


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- levels ---------------------------------------------------------------------------------------


def test_roles_give_levels(small_study, researcher, viewer, editor, outsider, staff):
    levels = {u.username: study_level(u, small_study) for u in (researcher, viewer, editor, outsider, staff)}
    assert levels == {"researcher": "own", "viewer": "view", "editor": "edit", "outsider": None, "staffer": "own"}
    assert list(studies_for_user(viewer, "view")) == [small_study]
    assert list(studies_for_user(viewer, "edit")) == []
    assert list(studies_for_user(editor, "edit")) == [small_study]
    assert list(studies_for_user(editor, "own")) == []
    assert study_allows(editor, small_study, "edit") and not study_allows(viewer, small_study, "edit")


def test_a_plain_add_makes_a_viewer(small_study, outsider):
    small_study.collaborators.add(outsider)
    assert small_study.collaborator_roles.get().role == Collaborator.Role.VIEWER


# --- page -----------------------------------------------------------------------------------------


def test_owner_adds_changes_and_removes_with_htmx(client, small_study, researcher, outsider):
    client.force_login(researcher)
    page = client.get(reverse("annotation:collaborators", args=["small"]))
    assert page.status_code == 200 and b"Nobody yet" in page.content and b'id="collaborators"' in page.content
    added = client.post(
        reverse("annotation:collaborator_create", args=["small"]),
        {"username": "outsider", "role": "editor"},
        HTTP_HX_REQUEST="true",
    )
    assert added.status_code == 200 and b"<html" not in added.content and b"outsider" in added.content
    assert study_level(outsider, small_study) == "edit"
    changed = client.post(
        reverse("annotation:collaborator_update", args=["small", "outsider"]),
        {"role": "viewer"},
        HTTP_HX_REQUEST="true",
    )
    assert changed.status_code == 200 and study_level(outsider, small_study) == "view"
    removed = client.post(reverse("annotation:collaborator_delete", args=["small", "outsider"]), HTTP_HX_REQUEST="true")
    assert removed.status_code == 200 and b"Nobody yet" in removed.content
    assert study_level(outsider, small_study) is None


def test_without_htmx_the_forms_go_back_to_the_page(client, small_study, researcher, outsider):
    client.force_login(researcher)
    response = client.post(
        reverse("annotation:collaborator_create", args=["small"]), {"username": "outsider", "role": "viewer"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("annotation:collaborators", args=["small"])


@pytest.mark.parametrize(
    ("username", "role", "status", "message"),
    [
        ("nobody", "viewer", 400, b"no researcher with the username &#x27;nobody&#x27;"),
        ("researcher", "viewer", 400, b"owns this study already"),
        ("viewer", "editor", 409, b"already a collaborator (viewer)"),
        ("outsider", "admin", 400, b"unknown role &#x27;admin&#x27;"),
        ("", "viewer", 400, b"give the username"),
    ],
    ids=["unknown-user", "owner", "duplicate", "bad-role", "empty"],
)
def test_bad_input_is_a_message_in_the_page(
    client, small_study, researcher, outsider, viewer, username, role, status, message
):
    client.force_login(researcher)
    before = list(small_study.collaborator_roles.values_list("user__username", "role"))
    response = client.post(
        reverse("annotation:collaborator_create", args=["small"]),
        {"username": username, "role": role},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == status and message in response.content
    assert response["HX-Retarget"] == "#htmx-error"
    assert list(small_study.collaborator_roles.values_list("user__username", "role")) == before


def test_changing_someone_who_is_not_a_collaborator_is_a_404_message(client, small_study, researcher):
    client.force_login(researcher)
    response = client.post(
        reverse("annotation:collaborator_update", args=["small", "outsider"]),
        {"role": "viewer"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 404 and b"not a collaborator" in response.content


def test_only_the_owner_and_staff_manage(client, small_study, editor, viewer, outsider, staff):
    url = reverse("annotation:collaborators", args=["small"])
    for user, status in ((editor, 403), (viewer, 403), (outsider, 404), (staff, 200)):
        client.force_login(user)
        assert client.get(url).status_code == status, user.username
    client.logout()
    assert client.get(url).status_code == 302
    client.force_login(editor)
    response = client.post(reverse("annotation:collaborator_create", args=["small"]), {"username": "outsider"})
    assert response.status_code == 403 and not small_study.collaborator_roles.filter(user=outsider).exists()


def test_wrong_method(client, small_study, researcher):
    client.force_login(researcher)
    assert client.get(reverse("annotation:collaborator_create", args=["small"])).status_code == 405
    assert client.post(reverse("annotation:collaborators", args=["small"])).status_code == 405


# --- API ------------------------------------------------------------------------------------------


def test_api_round(small_study, researcher, outsider, viewer):
    api = _api(researcher)
    url = "/api/studies/small/collaborators/"
    created = api.post(url, {"username": "outsider", "role": "editor"}, format="json")
    assert created.status_code == 201 and created.json()["username"] == "outsider"
    assert created.json()["role"] == "editor"
    assert [c["username"] for c in api.get(url).json()] == ["viewer", "outsider"]
    changed = api.patch(f"{url}outsider/", {"role": "viewer"}, format="json")
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    assert api.delete(f"{url}outsider/").status_code == 204
    assert [c["username"] for c in api.get(url).json()] == ["viewer"]


def test_api_errors_have_the_one_shape(small_study, researcher, viewer, outsider):
    api = _api(researcher)
    url = "/api/studies/small/collaborators/"
    for payload, status, field in (
        ({"username": "nobody", "role": "viewer"}, 400, "username"),
        ({"username": "researcher", "role": "viewer"}, 400, "username"),
        ({"username": "viewer", "role": "viewer"}, 409, "username"),
        ({"username": "outsider", "role": "admin"}, 400, "role"),
    ):
        response = api.post(url, payload, format="json")
        body = response.json()
        assert response.status_code == status and set(body) == {"message", "extra"}, payload
        assert field in body["message"] or body["extra"].get("field") == field, body
    assert api.patch(f"{url}outsider/", {"role": "viewer"}, format="json").status_code == 404
    # A viewer lists but does not manage; an outsider does not see the study.
    assert _api(viewer).get(url).status_code == 200
    refused = _api(viewer).post(url, {"username": "outsider", "role": "viewer"}, format="json")
    assert refused.status_code == 403 and set(refused.json()) == {"message", "extra"}
    assert _api(outsider).get(url).status_code == 404
    assert APIClient().get(url).status_code in (401, 403)


def test_api_schema_documents_collaborators(client):
    schema = client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert set(paths["/api/studies/{slug}/collaborators/"]) >= {"get", "post"}
    item = paths["/api/studies/{slug}/collaborators/{username}/"]
    assert set(item) >= {"patch", "delete"}
    assert {"400", "403", "404"} <= set(item["patch"]["responses"])


# --- jobs: the kind's need ------------------------------------------------------------------------


def test_a_viewer_may_export_but_not_start_an_analysis(small_study, viewer, editor, outsider):
    export = _api(viewer).post(
        "/api/jobs/", {"kind": "export", "study": "small", "params": {"format": "jsonl"}}, format="json"
    )
    assert export.status_code == 201
    analysis = _api(viewer).post("/api/jobs/", {"kind": "analysis", "study": "small"}, format="json")
    assert analysis.status_code == 403 and "'edit'" in analysis.json()["message"]
    assert _api(editor).post("/api/jobs/", {"kind": "analysis", "study": "small"}, format="json").status_code == 201
    hidden = _api(outsider).post("/api/jobs/", {"kind": "analysis", "study": "small"}, format="json")
    assert hidden.status_code == 404
    assert sorted(Job.objects.values_list("kind", flat=True)) == ["analysis", "export"]


def test_a_viewer_sees_pages_but_cannot_start_work(client, small_study, viewer):
    client.force_login(viewer)
    assert client.get(reverse("benchmark:leaderboard", args=["small"])).status_code == 200
    assert client.post(reverse("benchmark:analysis_start", args=["small"])).status_code == 403
    assert client.post(reverse("benchmark:benchmark_start", args=["small"])).status_code == 403
    assert client.post(reverse("benchmark:steering_fit", args=["small"])).status_code == 403
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("who", "shown"),
    [
        ("viewer", set()),
        ("editor", {"Prompts", "Settings", "prompt-bank-link"}),
        ("researcher", {"Prompts", "Settings", "Collaborators", "prompt-bank-link"}),  # the owner
        ("staff", {"Prompts", "Settings", "Collaborators", "prompt-bank-link"}),
    ],
)
def test_pages_offer_only_what_the_role_may_do(client, small_study, viewer, editor, researcher, staff, who, shown):
    client.force_login({"viewer": viewer, "editor": editor, "researcher": researcher, "staff": staff}[who])
    page = client.get(reverse("annotation:study_detail", args=[small_study.slug])).content.decode()
    offered = {
        "Prompts": ">Prompts</a>" in page,
        "Settings": ">Settings</a>" in page,
        "Collaborators": ">Collaborators</a>" in page,
        "prompt-bank-link": 'id="prompt-bank-link"' in page,
    }
    assert {name for name, present in offered.items() if present} == shown
    assert ">Datasets</a>" in page and ">Participants</a>" in page  # every role may read and download
