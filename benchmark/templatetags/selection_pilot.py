"""`{% selection_pilot_fields study %}` (or `… prefix="pool-"` for unique ids): a selection form's pilot
fields (disagreement targeting), offering this study and the owner's other studies the requester may see,
those with ratings first (one without any is listed, and refused with the reason if chosen)."""

from django import template

from annotation.access import studies_for_user

from ..pilot import studies_with_ratings

register = template.Library()

PILOT_CHOICES = 50  # the owner's latest studies offered (the API takes any slug)


@register.inclusion_tag("benchmark/_selection_pilot_fields.html", takes_context=True)
def selection_pilot_fields(context, study, prefix: str = "") -> dict:
    request = context["request"]
    others = studies_for_user(request.user, "view").filter(owner_id=study.owner_id).exclude(pk=study.pk)
    choices = [study, *others.order_by("-created_at")[:PILOT_CHOICES]]
    rated = studies_with_ratings(studies=[c.pk for c in choices])
    for choice in choices:
        choice.has_ratings = choice.pk in rated
    return {
        "study": study,
        "prefix": prefix,
        "pilots": sorted(choices, key=lambda c: (c.pk != study.pk, not c.has_ratings)),
    }
