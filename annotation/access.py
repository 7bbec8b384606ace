"""Who may see a study as a researcher: the one place every view, viewset and job list asks.

Staff see every study; others the studies they own or collaborate on. A study someone may not see is
a 404, never a 403, so that the slugs of other researchers' studies are not revealed.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from .models import Study


def studies_for_user(user) -> QuerySet[Study]:
    if not user.is_authenticated:
        return Study.objects.none()
    if user.is_staff:
        return Study.objects.all()
    return Study.objects.filter(Q(owner=user) | Q(collaborators=user)).distinct()


def get_study_for_user(user, slug: str) -> Study:
    """The study if the user may see it; 404 otherwise."""
    study = studies_for_user(user).filter(slug=slug).first()
    if study is None:
        raise Http404("No such study")
    return study
