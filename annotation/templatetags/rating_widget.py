"""`{% rating_widget study prefix="" name="rating" disabled=False %}`: the rating scale's HTML.

The same for every card of a study (it depends on the study's scale and anchor texts only), so it is
rendered once per distinct scale and kept: the rating card is the page served hundreds of times a second
(bench/load.py), and rendering the widget's template was a tenth of a rating's server time.
"""

from functools import lru_cache

from django import template
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

register = template.Library()


@lru_cache(maxsize=512)
def _widget(scale: tuple, prefix: str, name: str, disabled: bool, language: str | None) -> str:
    scale_min, scale_max, scale_step, scale_mid, low_text, high_text = scale
    study = {
        "scale_min": scale_min,
        "scale_max": scale_max,
        "scale_step": scale_step,
        "scale_mid": scale_mid,
        "anchor_low_text": low_text,
        "anchor_high_text": high_text,
    }
    context = {"study": study, "prefix": prefix, "name": name, "disabled": disabled}
    return render_to_string("annotation/take/_rating_widget.html", context)


@register.simple_tag
def rating_widget(study, prefix: str = "", name: str = "rating", disabled: bool = False):
    scale = (
        study.scale_min,
        study.scale_max,
        study.scale_step,
        study.scale_mid,
        study.anchor_low_text,
        study.anchor_high_text,
    )
    return mark_safe(_widget(scale, str(prefix), str(name), bool(disabled), get_language()))  # noqa: S308  (rendered by the template engine, which escaped it)
