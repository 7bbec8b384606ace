"""Who may do what with a study as a researcher: the one place every view, viewset and job list asks.

Levels, each including the ones before it:
- "view": read every page of the study and download its data (exports included);
- "edit": change the study and its prompts, review annotators, start jobs;
- "own": manage collaborators, delete or hand over the study.
Staff may do everything with every study; the owner owns; a collaborator has the level of their role
(viewer: "view", editor: "edit"; models.Collaborator).
A study someone may not view is a 404, never a 403, so that the slugs of other researchers' studies are
not revealed; one they may view but not change is a 403 that says which role is needed.
"""

from __future__ import annotations

import functools

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from .models import Collaborator, Study

LEVELS = ("view", "edit", "own")
# A collaborator's role and the level it gives; the owner (and staff) have "own".
ROLE_LEVEL = {Collaborator.Role.VIEWER: "view", Collaborator.Role.EDITOR: "edit"}
# The roles that reach each level below "own" (which no role reaches).
ROLES_AT_LEAST = {
    need: [role for role, level in ROLE_LEVEL.items() if LEVELS.index(level) >= LEVELS.index(need)]
    for need in ("view", "edit")
}


def _check_level(need: str) -> None:
    if need not in LEVELS:
        raise ValueError(f"unknown access level {need!r}; known: {', '.join(LEVELS)}")


def studies_for_user(user, need: str = "view") -> QuerySet[Study]:
    """The studies `user` may act on at level `need`."""
    _check_level(need)
    if not user.is_authenticated:
        return Study.objects.none()
    if user.is_staff:
        return Study.objects.all()
    if need == "own":
        return Study.objects.filter(owner=user)
    roles = ROLES_AT_LEAST[need]
    return Study.objects.filter(
        Q(owner=user) | Q(pk__in=Collaborator.objects.filter(user=user, role__in=roles).values("study_id"))
    )


def study_level(user, study: Study) -> str | None:
    """The highest level `user` has on `study` ("view", "edit", "own"), or None."""
    if not user.is_authenticated:
        return None
    if user.is_staff or study.owner_id == user.pk:
        return "own"
    role = Collaborator.objects.filter(study=study, user=user).values_list("role", flat=True).first()
    return ROLE_LEVEL.get(role)


def study_allows(user, study: Study, need: str = "view") -> bool:
    _check_level(need)
    level = study_level(user, study)
    return level is not None and LEVELS.index(level) >= LEVELS.index(need)


def get_study_for_user(user, slug: str, need: str = "view") -> Study:
    """The study if the user may act on it at level `need`: 404 if they may not even see it, 403 if they
    may see it but not act at that level."""
    _check_level(need)
    study = studies_for_user(user).filter(slug=slug).first()
    if study is None:
        raise Http404("No such study")
    if need != "view" and not study_allows(user, study, need):
        raise PermissionDenied(f"This needs the {need!r} role on study {study.slug!r}; ask its owner.")
    return study


def study_view(need: str = "view"):
    """Decorate a researcher view `(request, study, …)` routed as `(request, slug, …)`: signs-in check,
    then the study at level `need` (404/403 as `get_study_for_user`). The level is recorded on the view
    (`view.study_access`), where the permission-matrix test reads it from the URL resolver."""
    _check_level(need)

    def decorate(view):
        @functools.wraps(view)
        def inner(request, slug: str, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            return view(request, get_study_for_user(request.user, slug, need), *args, **kwargs)

        inner.study_access = need
        return inner

    return decorate
