"""Forms of the study builder: one form per section of the edit page, each validated by the model
(Study.clean and the field validators) before the service saves it."""

from __future__ import annotations

from django import forms

from . import surveys
from .models import Study
from .services.study import PROTECTED_FIELDS, PROTECTED_REASON, RESERVED_SLUGS

# The edit page's sections, in page order: (key, heading, fields).
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("basics", "Title and description", ("title", "description")),
    ("consent", "Consent", ("consent_text", "payment_text", "contact_text", "withdrawal_text")),
    ("instructions", "Instructions and anchor examples", ("instructions_text", "anchor_low_text", "anchor_high_text")),
    ("scale", "Scale", ("scale_min", "scale_max", "scale_step", "allow_unsure")),
    ("design", "Design", ("design", "prompts_per_annotator", "target_ratings_per_prompt", "max_annotators")),
    ("attention", "Attention checks", ("attention_checks", "attention_max_failures", "attention_tolerance")),
    ("instruments", "Questionnaires", ("instruments",)),
    ("timing", "Timing", ("min_seconds_per_rating", "reservation_minutes")),
    (
        "completion",
        "Completion and recruitment platform",
        ("completion_code", "completion_url", "failed_checks_code", "recruitment_study_id"),
    ),
)
SECTION_FIELDS = {key: fields for key, _heading, fields in SECTIONS}
HELP = {
    "anchor_low_text": "An example prompt for the bottom of the scale, shown in the instructions and on every card.",
    "anchor_high_text": "An example prompt for the top of the scale.",
    "allow_unsure": "Annotators may answer Unsure instead of a number.",
    "scale_step": "Ratings must be the minimum plus a multiple of the step.",
    "attention_tolerance": "How far from the asked value an answer may be and still pass.",
    "attention_checks": "Checks mixed into each annotator's prompts.",
    "min_seconds_per_rating": "Faster answers are flagged (and the annotator is asked to slow down).",
    "completion_code": "Shown when the annotator finishes (Prolific's completion code).",
    "failed_checks_code": "Shown to an annotator excluded by attention checks.",
    "consent_text": (
        "The consent page also shows the estimated duration, computed from the questionnaires' items and the "
        "prompts per annotator (6 s per scale item, 10 s per other item, 15 s per prompt or 3× the minimum "
        "time per rating, 10 s per attention check, 2 min for consent and instructions)."
    ),
}


class InstrumentOrderField(forms.MultipleChoiceField):
    """Instrument keys in the order the form sent them (checkboxes in page order)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(choices=(), **kwargs)
        self.choices = [(key, key) for key in surveys.instrument_keys()]


def instrument_titles() -> dict[str, str]:
    titles = {}
    for key in surveys.instrument_keys():
        try:
            titles[key] = surveys.instrument_load(key).get("title", key)
        except ValueError:  # a broken file is reported by the system check; offer it by key
            titles[key] = key
    return titles


class StudySectionForm(forms.ModelForm):
    """One section of the study's settings. With `locked=True` (the study has ratings) the protected
    fields are shown disabled, with the reason, and whatever is posted for them is ignored."""

    class Meta:
        model = Study
        fields = ()

    def __init__(self, *args, locked: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.locked_fields = []
        for name, field in self.fields.items():
            if name in HELP and not field.help_text:
                field.help_text = HELP[name]
            if locked and name in PROTECTED_FIELDS:
                field.disabled = True
                self.locked_fields.append(name)
        if self.locked_fields:
            self.locked_reason = PROTECTED_REASON

    def changes(self) -> dict:
        """The posted values of the section's editable fields, for study_update."""
        return {name: self.cleaned_data[name] for name in self.fields if name not in self.locked_fields}


class StudyInstrumentsForm(StudySectionForm):
    instruments = InstrumentOrderField(label="Questionnaires")


def section_form_class(section: str) -> type[StudySectionForm]:
    fields = SECTION_FIELDS[section]
    base = StudyInstrumentsForm if "instruments" in fields else StudySectionForm
    widgets = {
        name: forms.Textarea(attrs={"rows": 6})
        for name in ("description", "consent_text", "instructions_text", "withdrawal_text")
        if name in fields
    }
    return forms.modelform_factory(Study, form=base, fields=fields, widgets=widgets)


class StudyCreateForm(forms.ModelForm):
    """The "New study" form: a title (and optionally a slug and description); everything else later."""

    slug = forms.SlugField(
        max_length=64, required=False, help_text="The study's address; made from the title when left empty."
    )

    class Meta:
        model = Study
        fields = ("title", "slug", "description")
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def clean_slug(self):
        slug = self.cleaned_data.get("slug") or ""
        if slug in RESERVED_SLUGS:
            raise forms.ValidationError("This slug is reserved; choose another.")
        return slug

    def validate_unique(self):
        if self.cleaned_data.get("slug"):
            super().validate_unique()
