"""`{% study_allows study "edit" as can_edit %}`: whether the signed-in user may act on the study at
that level (annotation.access), so that pages offer only what the user may do."""

from django import template

from annotation.access import study_allows as allows

register = template.Library()


@register.simple_tag(takes_context=True)
def study_allows(context, study, need: str = "view") -> bool:
    request = context.get("request")
    if request is None or study is None:
        return False
    cache = request.__dict__.setdefault("_study_allows", {})  # one answer per study and level per request
    key = (study.pk, need)
    if key not in cache:
        cache[key] = allows(request.user, study, need)
    return cache[key]
