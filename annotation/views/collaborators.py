"""The study's collaborators page (owner only): list, add by username with a role, change a role, remove.

Every form posts with htmx and gets the collaborator list back; a refused input (an unknown user, the
owner themself, someone already added, an unknown role) is answered with its message in the page.
"""

from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from config.errors import ApplicationError, error_response

from ..access import study_view
from ..models import Collaborator
from ..services.collaborators import collaborator_add, collaborator_remove, collaborator_role_set


def _context(study) -> dict:
    return {
        "study": study,
        "collaborators": study.collaborator_roles.select_related("user").order_by("added_at", "id"),
        "roles": Collaborator.Role.choices,
    }


def _answer(request, study):
    if request.htmx:
        return render(request, "annotation/_collaborators.html", _context(study))
    return redirect("annotation:collaborators", slug=study.slug)


@require_GET
@study_view("own")
def collaborators(request, study):
    template = "annotation/_collaborators.html" if request.htmx else "annotation/collaborators.html"
    return render(request, template, _context(study))


@require_POST
@study_view("own")
def collaborator_create(request, study):
    try:
        collaborator_add(study=study, username=request.POST.get("username", ""), role=request.POST.get("role", ""))
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return _answer(request, study)


@require_POST
@study_view("own")
def collaborator_update(request, study, username: str):
    try:
        collaborator_role_set(study=study, username=username, role=request.POST.get("role", ""))
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return _answer(request, study)


@require_POST
@study_view("own")
def collaborator_delete(request, study, username: str):
    try:
        collaborator_remove(study=study, username=username)
    except ApplicationError as exc:
        return error_response(request, exc.message, status=exc.status_code)
    return _answer(request, study)
