"""Sharing a study: the owner adds researchers as viewers or editors, changes their role, removes them.

Every refusal is an ApplicationError with a message the owner can act on (the page shows it, the API
answers it in the one error shape). Who may call these is the caller's business: the views and the API
ask annotation.access for the "own" level first.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from config.errors import ApplicationError

from ..models import Collaborator, Study

ROLES = [role for role, _ in Collaborator.Role.choices]


def _role_check(role: str) -> str:
    if role not in ROLES:
        raise ApplicationError(
            f"unknown role {role!r}; a collaborator is one of: {', '.join(ROLES)}", extra={"field": "role"}
        )
    return role


def collaborator_add(*, study: Study, username: str, role: str) -> Collaborator:
    """Share `study` with the researcher `username` in `role`."""
    role = _role_check(role)
    username = (username or "").strip()
    if not username:
        raise ApplicationError("give the username of the researcher to add", extra={"field": "username"})
    User = get_user_model()
    user = User.objects.filter(**{User.USERNAME_FIELD: username}, is_active=True).first()
    if user is None:
        raise ApplicationError(
            f"no researcher with the username {username!r}; they need an account first", extra={"field": "username"}
        )
    if user.pk == study.owner_id:
        raise ApplicationError(
            f"{username!r} owns this study already; an owner is not also a collaborator", extra={"field": "username"}
        )
    existing = study.collaborator_roles.filter(user=user).first()
    if existing is not None:
        raise ApplicationError(
            f"{username!r} is already a collaborator ({existing.role}); change their role instead",
            extra={"field": "username", "role": existing.role},
            status_code=409,
        )
    try:
        with transaction.atomic():
            return Collaborator.objects.create(study=study, user=user, role=role)
    except IntegrityError:  # added by a concurrent request between the check and the insert
        raise ApplicationError(
            f"{username!r} is already a collaborator; change their role instead",
            extra={"field": "username"},
            status_code=409,
        ) from None


def collaborator_get(*, study: Study, username: str) -> Collaborator:
    User = get_user_model()
    collaborator = (
        study.collaborator_roles.select_related("user").filter(**{f"user__{User.USERNAME_FIELD}": username}).first()
    )
    if collaborator is None:
        raise ApplicationError(
            f"{username!r} is not a collaborator on this study", extra={"field": "username"}, status_code=404
        )
    return collaborator


def collaborator_role_set(*, study: Study, username: str, role: str) -> Collaborator:
    role = _role_check(role)
    collaborator = collaborator_get(study=study, username=username)
    if collaborator.role != role:
        collaborator.role = role
        collaborator.save(update_fields=["role"])
    return collaborator


def collaborator_remove(*, study: Study, username: str) -> None:
    collaborator_get(study=study, username=username).delete()
