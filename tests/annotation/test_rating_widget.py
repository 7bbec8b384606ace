"""The rating widget is rendered once per distinct scale and kept: each study still gets its own."""

from types import SimpleNamespace

from django.template import Context, Template


def _study(**scale):
    values = {"scale_min": 0, "scale_max": 100, "scale_step": 1, "anchor_low_text": "low", "anchor_high_text": "hi"}
    values.update(scale)
    values["scale_mid"] = (values["scale_min"] + values["scale_max"]) // 2
    return SimpleNamespace(**values)


def render(study, **kwargs):
    args = " ".join(f'{k}="{v}"' for k, v in kwargs.items())
    return Template("{% load rating_widget %}{% rating_widget study " + args + " %}").render(Context({"study": study}))


def test_each_scale_and_anchor_text_renders_its_own_widget():
    percent = render(_study())
    seven = render(_study(scale_min=1, scale_max=7, anchor_high_text="<b>worst</b>"))
    stepped = render(_study(scale_step=5))
    assert 'max="100"' in percent and 'max="7"' in seven and 'min="1"' in seven
    assert "&lt;b&gt;worst&lt;/b&gt;" in seven and "<b>" not in seven  # escaped before it is kept
    assert "in steps of 5" in stepped and "in steps of" not in percent
    assert render(_study()) == percent  # the kept copy is the same text


def test_prefix_and_name_are_part_of_what_is_kept():
    card = render(_study())
    practice = render(_study(), prefix="practice-", name="practice")
    assert 'id="rating"' in card and 'name="rating"' in card
    assert 'id="practice-rating"' in practice and 'name="practice"' in practice
