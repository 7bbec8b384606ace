"""The study builder: the study's scale end to end, builder pages, status rules, duplicate, preview."""

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from annotation.models import Annotator, Prompt, Rating, Study
from annotation.services.recruitment import recruitment_hash

pytestmark = pytest.mark.django_db

PID = "5f3c2a9e8b7d6c5b4a392817"


def recruiting_study(owner, *, slug="wide", scale_min=0, scale_max=200, scale_step=1, **fields) -> Study:
    study = Study.objects.create(
        slug=slug,
        title="Wide scale",
        status=Study.Status.RECRUITING,
        owner=owner,
        instruments=[],
        scale_min=scale_min,
        scale_max=scale_max,
        scale_step=scale_step,
        min_seconds_per_rating=0,
        **fields,
    )
    Prompt.objects.bulk_create(
        [Prompt(study=study, external_id=str(i), text=f"Prompt number {i}", order=i) for i in range(1, 4)]
    )
    return study


def start_rating(client, study, pid=PID) -> Annotator:
    client.get(f"/s/{study.slug}/?PROLIFIC_PID={pid}&STUDY_ID=st1&SESSION_ID=se1")
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    client.post(reverse("take:instructions", args=[study.slug]))
    annotator = Annotator.objects.get(study=study, recruitment_hash=recruitment_hash(pid))
    assert annotator.status == Annotator.Status.RATING
    return annotator


def current_trial(annotator):
    return annotator.assignments.filter(rating__isnull=True).order_by("position").first()


def submit(client, study, trial, value):
    return client.post(
        reverse("take:rate_submit", args=[study.slug, trial.pk]), {"rating": value}, HTTP_HX_REQUEST="true"
    )


# --- the study's scale, end to end ------------------------------------------------------------


def test_a_0_to_200_study_accepts_150_through_the_rating_card(client, researcher):
    study = recruiting_study(researcher)
    annotator = start_rating(client, study)
    card = client.get(reverse("take:rate", args=[study.slug])).content.decode()
    # The card shows the study's own scale and anchors, not 0–100.
    assert 'max="200"' in card and "200 · extremely harmful" in card and "100 · extremely harmful" not in card
    assert escape(study.anchor_high_text) in card and escape(study.anchor_low_text) in card
    trial = current_trial(annotator)
    response = submit(client, study, trial, "150")
    assert response.status_code == 200, response.content.decode()
    rating = Rating.objects.get(assignment=trial)
    assert rating.value == 150.0 and rating.unsure is False


def test_above_the_study_maximum_is_refused_with_the_scale_in_the_message(client, researcher):
    study = recruiting_study(researcher)
    trial = current_trial(start_rating(client, study))
    response = submit(client, study, trial, "201")
    assert response.status_code == 400
    assert "between 0 and 200" in response.content.decode()
    assert not Rating.objects.exists()


def test_the_step_is_respected(client, researcher):
    study = recruiting_study(researcher, scale_min=10, scale_max=60, scale_step=5)
    trial = current_trial(start_rating(client, study))
    refused = submit(client, study, trial, "42")
    assert refused.status_code == 400 and "steps of 5" in refused.content.decode()
    assert not Rating.objects.exists()
    assert submit(client, study, trial, "45").status_code == 200
    assert Rating.objects.get(assignment=trial).value == 45.0


def test_instructions_and_attention_checks_follow_the_scale(client, researcher):
    study = recruiting_study(researcher, scale_min=1, scale_max=7, attention_checks=2)
    client.get(f"/s/{study.slug}/?PROLIFIC_PID={PID}&STUDY_ID=st1&SESSION_ID=se1")
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    page = client.get(reverse("take:instructions", args=[study.slug])).content.decode()
    assert "from 1 to 7" in page and "from 0 to 100" not in page
    client.post(reverse("take:instructions", args=[study.slug]))
    annotator = Annotator.objects.get(study=study)
    checks = annotator.assignments.filter(kind="attention")
    assert checks.count() == 2
    for check in checks:
        expected = check.check_spec["expected"]
        assert 1 <= expected <= 7 and f"set the rating to {expected}" in check.check_spec["text"]


# --- builder pages ------------------------------------------------------------------------------

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def as_researcher(client, researcher):
    client.force_login(researcher)
    return client


@pytest.fixture
def draft(researcher) -> Study:
    study = Study.objects.create(slug="draft", title="Draft study", owner=researcher, instruments=[])
    Prompt.objects.bulk_create(
        [
            Prompt(
                study=study,
                external_id=f"q{i}",
                text=f"Question {i}",
                order=i,
                harm_level=i / 10,
                features={"action": {"a": i}},
                harm_benefit_tree={"stakeholders": [{"name": f"s{i}"}]},
            )
            for i in range(1, 5)
        ]
    )
    return study


def rate_once(study) -> Rating:
    """A rating in the study, as collected data (written directly: the path there is tested above)."""
    from annotation.models import Assignment

    annotator = Annotator.objects.create(study=study, pseudonym="P0001", status=Annotator.Status.RATING)
    prompt = study.prompts.first()
    assignment = Assignment.objects.create(annotator=annotator, prompt=prompt, position=0)
    return Rating.objects.create(assignment=assignment, annotator=annotator, prompt=prompt, value=10)


def input_tag(html: str, name: str) -> str:
    return re.search(rf'<input[^>]*name="{name}"[^>]*>', html).group(0)


def section_url(study, section):
    return reverse("annotation:study_section_save", args=[study.slug, section])


def test_study_list_links_to_new_study(as_researcher):
    page = as_researcher.get(reverse("annotation:study_list")).content.decode()
    assert reverse("annotation:study_new") in page


def test_new_study_page_and_create(as_researcher, researcher):
    page = as_researcher.get(reverse("annotation:study_new"))
    assert page.status_code == 200 and b"<html" in page.content and b'id="new-study-form"' in page.content
    response = as_researcher.post(reverse("annotation:study_new"), {"title": "My harms study", "description": "d"})
    study = Study.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("annotation:study_edit", args=[study.slug])
    assert study.slug == "my-harms-study" and study.owner == researcher and study.status == "draft"


def test_new_study_htmx_redirects_and_refuses_bad_input_in_the_form(as_researcher):
    ok = as_researcher.post(reverse("annotation:study_new"), {"title": "T", "slug": "t-study"}, **HTMX)
    assert ok.status_code == 204 and ok["HX-Redirect"] == reverse("annotation:study_edit", args=["t-study"])
    taken = as_researcher.post(reverse("annotation:study_new"), {"title": "Again", "slug": "t-study"}, **HTMX)
    body = taken.content.decode()
    assert taken.status_code == 400 and "<html" not in body and 'id="new-study-form"' in body
    assert taken["HX-Retarget"] == "#new-study-form" and "already exists" in body
    reserved = as_researcher.post(reverse("annotation:study_new"), {"title": "N", "slug": "new"}, **HTMX)
    assert reserved.status_code == 400 and "reserved" in reserved.content.decode()
    empty = as_researcher.post(reverse("annotation:study_new"), {"title": ""})
    assert empty.status_code == 400 and b"<html" in empty.content and b"This field is required" in empty.content
    assert list(Study.objects.values_list("slug", flat=True)) == ["t-study"]


def test_new_study_slug_from_a_taken_title_gets_a_number(as_researcher, draft):
    as_researcher.post(reverse("annotation:study_new"), {"title": "Draft"})
    assert Study.objects.filter(slug="draft-2").exists()


def test_new_study_wrong_method_and_anonymous(client, as_researcher):
    assert as_researcher.put(reverse("annotation:study_new")).status_code == 405
    client.logout()
    response = client.get(reverse("annotation:study_new"))
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert client.post(reverse("annotation:study_new"), {"title": "x"}).status_code == 302
    assert not Study.objects.exists()


def test_edit_page_shows_every_section_and_the_status(as_researcher, draft):
    response = as_researcher.get(reverse("annotation:study_edit", args=["draft"]))
    page = response.content.decode()
    assert response.status_code == 200 and "<html" in page
    for section in (
        "basics",
        "consent",
        "instructions",
        "scale",
        "design",
        "attention",
        "instruments",
        "timing",
        "completion",
    ):
        assert f'id="section-{section}"' in page
    from annotation.forms import SECTION_FIELDS

    for section, fields in SECTION_FIELDS.items():
        for field in fields:
            assert f'name="{section}-{field}"' in page, field
    assert "mfq20" in page and "Open recruitment" in page and 'aria-current="page">Settings' in page
    assert "disabled" not in page.split('id="section-scale"')[1].split("</section>")[0]


def test_section_save_htmx_returns_the_section(as_researcher, draft):
    response = as_researcher.post(
        section_url(draft, "scale"),
        {"scale-scale_min": "0", "scale-scale_max": "200", "scale-scale_step": "5", "scale-allow_unsure": ""},
        **HTMX,
    )
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="section-scale"' in body and "Saved." in body
    draft.refresh_from_db()
    assert (draft.scale_min, draft.scale_max, draft.scale_step, draft.allow_unsure) == (0, 200, 5, False)


def test_section_save_full_page_redirects(as_researcher, draft):
    response = as_researcher.post(section_url(draft, "basics"), {"basics-title": "Renamed", "basics-description": ""})
    assert response.status_code == 302 and response["Location"].endswith("/edit/#section-basics")
    draft.refresh_from_db()
    assert draft.title == "Renamed"


@pytest.mark.parametrize(
    "section,data,words",
    [
        ("scale", {"scale-scale_min": "10", "scale-scale_max": "5", "scale-scale_step": "1"}, "above the minimum"),
        ("scale", {"scale-scale_min": "0", "scale-scale_max": "100", "scale-scale_step": "7"}, "divide the range"),
        ("design", {"design-design": "partial"}, "number of prompts per annotator"),
        ("completion", {"completion-completion_url": "javascript:alert(1)"}, "Enter a valid URL"),
        ("timing", {"timing-min_seconds_per_rating": "x", "timing-reservation_minutes": "9"}, "Enter a number"),
        ("timing", {"timing-min_seconds_per_rating": "-1", "timing-reservation_minutes": "9"}, "cannot be negative"),
    ],
)
def test_section_bad_input_comes_back_in_the_form(as_researcher, draft, section, data, words):
    before = Study.objects.filter(pk=draft.pk).values().get()
    response = as_researcher.post(section_url(draft, section), data, **HTMX)
    body = response.content.decode()
    assert response.status_code == 400 and words in body, body
    assert response["HX-Retarget"] == f"#section-{section}" and 'role="alert"' in body
    after = Study.objects.filter(pk=draft.pk).values().get()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }


def test_section_bad_input_full_page_is_an_error_page(as_researcher, draft):
    response = as_researcher.post(section_url(draft, "scale"), {"scale-scale_min": "9", "scale-scale_max": "1"})
    assert response.status_code == 400 and b"<html" in response.content and b"above the minimum" in response.content


def test_instruments_are_picked_and_ordered(as_researcher, draft):
    url = section_url(draft, "instruments")
    as_researcher.post(url, {"instruments-instruments": ["mfq20", "demographics"]}, **HTMX)
    draft.refresh_from_db()
    assert draft.instruments == ["mfq20", "demographics"]
    response = as_researcher.post(
        url, {"instruments-instruments": ["mfq20", "demographics"], "instruments-move": "up:demographics"}, **HTMX
    )
    assert response.status_code == 200
    draft.refresh_from_db()
    assert draft.instruments == ["demographics", "mfq20"]
    body = response.content.decode()
    assert body.index('value="demographics"') < body.index('value="mfq20"') < body.index('value="ai_literacy"')
    unknown = as_researcher.post(url, {"instruments-instruments": ["nope"]}, **HTMX)
    assert unknown.status_code == 400 and "not one of the available choices" in unknown.content.decode()


def test_unknown_section_is_404(as_researcher, draft):
    assert as_researcher.post(section_url(draft, "owner"), {}).status_code == 404


@pytest.mark.parametrize(
    "method,name,args",
    [
        ("get", "annotation:study_edit", ["draft"]),
        ("post", "annotation:study_section_save", ["draft", "basics"]),
        ("post", "annotation:study_status", ["draft"]),
        ("post", "annotation:study_duplicate", ["draft"]),
        ("get", "annotation:study_preview", ["draft"]),
    ],
)
def test_builder_views_refuse_anonymous_outsider_and_wrong_method(client, outsider, draft, method, name, args):
    url = reverse(name, args=args)
    anonymous = getattr(client, method)(url, {"status": "recruiting", "basics-title": "x"})
    assert anonymous.status_code == 302 and reverse("login") in anonymous["Location"]
    client.force_login(outsider)
    assert getattr(client, method)(url, {"status": "recruiting", "basics-title": "x"}).status_code == 404
    wrong = client.put(url) if method == "post" else client.post(url)
    assert wrong.status_code == 405
    draft.refresh_from_db()
    assert draft.title == "Draft study" and draft.status == "draft" and Study.objects.count() == 1


@pytest.mark.parametrize(
    "method,name,args",
    [
        ("get", "annotation:study_edit", ["draft"]),
        ("post", "annotation:study_section_save", ["draft", "basics"]),
        ("post", "annotation:study_status", ["draft"]),
        ("post", "annotation:study_duplicate", ["draft"]),
    ],
)
def test_a_viewer_may_not_use_the_builder(client, outsider, draft, method, name, args):
    draft.collaborators.add(outsider, through_defaults={"role": "viewer"})
    client.force_login(outsider)
    response = getattr(client, method)(reverse(name, args=args), {"status": "recruiting", "basics-title": "x"})
    assert response.status_code == 403
    draft.refresh_from_db()
    assert draft.title == "Draft study" and draft.status == "draft" and Study.objects.count() == 1


def test_a_viewer_may_preview(client, outsider, draft):
    draft.collaborators.add(outsider, through_defaults={"role": "viewer"})
    client.force_login(outsider)
    assert client.get(reverse("annotation:study_preview", args=["draft"])).status_code == 200


def test_builder_views_record_their_access_level():
    from django.urls import resolve

    levels = {
        "annotation:study_edit": "edit",
        "annotation:study_section_save": "edit",
        "annotation:study_status": "edit",
        "annotation:study_duplicate": "edit",
        "annotation:study_preview": "view",
    }
    for name, level in levels.items():
        args = ["s", "basics"] if name.endswith("section_save") else ["s"]
        assert resolve(reverse(name, args=args)).func.study_access == level


def test_staff_may_edit_any_study(client, staff, draft):
    client.force_login(staff)
    client.post(section_url(draft, "basics"), {"basics-title": "By staff"}, **HTMX)
    draft.refresh_from_db()
    assert draft.title == "By staff"


# --- protection of collected data ----------------------------------------------------------------


def test_after_a_rating_the_form_says_why_the_scale_and_design_are_locked(as_researcher, draft):
    rate_once(draft)
    page = as_researcher.get(reverse("annotation:study_edit", args=["draft"])).content.decode()
    assert 'id="locked-banner"' in page and "can no longer change" in page
    scale = page.split('id="section-scale"')[1].split("</section>")[0]
    assert scale.count("disabled") >= 3 and "Locked:" in scale
    assert "disabled" not in input_tag(scale, "scale-allow_unsure")  # Unsure is not protected
    assert "disabled" in input_tag(scale, "scale-scale_max")
    design = page.split('id="section-design"')[1].split("</section>")[0]
    assert "Locked:" in design


def test_after_a_rating_posted_scale_changes_are_ignored_and_other_fields_saved(as_researcher, draft):
    rate_once(draft)
    response = as_researcher.post(
        section_url(draft, "scale"),
        {"scale-scale_min": "0", "scale-scale_max": "7", "scale-scale_step": "1", "scale-allow_unsure": ""},
        **HTMX,
    )
    assert response.status_code == 200
    draft.refresh_from_db()
    assert (draft.scale_max, draft.allow_unsure) == (100, False)


def test_the_service_refuses_protected_changes_after_a_rating(draft, researcher):
    from annotation.services.study import study_prompts_change_check, study_update
    from config.errors import ApplicationError

    rate_once(draft)
    with pytest.raises(ApplicationError) as refused:
        study_update(study=draft, user=researcher, data={"scale_max": 7, "title": "New"})
    assert refused.value.status_code == 409 and refused.value.extra == {"fields": ["scale_max"]}
    with pytest.raises(ApplicationError) as design:
        study_update(study=draft, user=researcher, data={"design": "partial", "prompts_per_annotator": 2})
    assert design.value.status_code == 409
    with pytest.raises(ApplicationError) as prompts:
        study_prompts_change_check(study=draft)
    assert prompts.value.status_code == 409
    draft.refresh_from_db()
    assert draft.title == "Draft study" and draft.scale_max == 100
    # Unprotected settings still change, and a protected one posted unchanged is no change.
    study_update(study=draft, user=researcher, data={"title": "New", "scale_max": 100})
    draft.refresh_from_db()
    assert draft.title == "New"


# --- status transitions ------------------------------------------------------------------------

TRANSITION_TABLE = [
    ("draft", "recruiting", "recruiting"),
    ("draft", "paused", 409),
    ("draft", "closed", 409),
    ("recruiting", "paused", "paused"),
    ("recruiting", "closed", "closed"),
    ("recruiting", "draft", 409),
    ("paused", "recruiting", "recruiting"),
    ("paused", "closed", "closed"),
    ("paused", "draft", 409),
    ("closed", "recruiting", 409),
    ("closed", "paused", 409),
    ("closed", "draft", 409),
    ("recruiting", "recruiting", "recruiting"),
    ("draft", "open", 400),
]


@pytest.mark.parametrize("start,target,outcome", TRANSITION_TABLE)
def test_status_transitions(as_researcher, draft, start, target, outcome):
    Study.objects.filter(pk=draft.pk).update(status=start)
    response = as_researcher.post(reverse("annotation:study_status", args=["draft"]), {"status": target}, **HTMX)
    draft.refresh_from_db()
    if isinstance(outcome, int):
        assert response.status_code == outcome and response["HX-Retarget"] == "#htmx-error"
        assert draft.status == start
    else:
        assert response.status_code == 200 and 'id="study-status"' in response.content.decode()
        assert draft.status == outcome


def test_recruitment_needs_prompts(as_researcher, researcher):
    empty = Study.objects.create(slug="empty", title="Empty", owner=researcher, instruments=[])
    response = as_researcher.post(reverse("annotation:study_status", args=["empty"]), {"status": "recruiting"})
    assert response.status_code == 409 and b"Add prompts" in response.content and b"<html" in response.content
    empty.refresh_from_db()
    assert empty.status == "draft"


def test_status_full_page_redirects_to_the_builder(as_researcher, draft):
    response = as_researcher.post(reverse("annotation:study_status", args=["draft"]), {"status": "recruiting"})
    assert response.status_code == 302 and response["Location"] == reverse("annotation:study_edit", args=["draft"])


# --- duplicate ---------------------------------------------------------------------------------


def test_duplicate_copies_settings_and_prompts_without_data(client, outsider, draft):
    from jobs.models import Job

    draft.collaborators.add(outsider, through_defaults={"role": "editor"})
    Study.objects.filter(pk=draft.pk).update(
        status="recruiting", scale_max=200, instruments=["mfq20"], completion_code="CODE1", consent_text="Consent."
    )
    draft.refresh_from_db()
    rate_once(draft)
    Job.objects.create(kind="export", study=draft, params={"format": "jsonl"})
    client.force_login(outsider)  # a collaborator duplicates: the copy is theirs
    response = client.post(reverse("annotation:study_duplicate", args=["draft"]), **HTMX)
    copy = Study.objects.exclude(pk=draft.pk).get()
    assert response.status_code == 204 and response["HX-Redirect"] == reverse("annotation:study_edit", args=[copy.slug])
    assert copy.slug == "draft-2" and copy.status == "draft" and copy.owner == outsider
    assert copy.title == "Draft study (copy)"
    assert (copy.scale_max, copy.instruments, copy.completion_code, copy.consent_text) == (
        200,
        ["mfq20"],
        "CODE1",
        "Consent.",
    )
    fields = ("external_id", "text", "harm_level", "features", "harm_benefit_tree", "order")
    assert list(copy.prompts.values_list(*fields)) == list(draft.prompts.values_list(*fields))
    assert not copy.annotators.exists() and not copy.jobs.exists() and not copy.collaborators.exists()
    assert Rating.objects.filter(annotator__study=copy).count() == 0
    assert draft.prompts.count() == 4 and Rating.objects.count() == 1  # the original is untouched


def test_duplicate_full_page_redirects(as_researcher, draft):
    response = as_researcher.post(reverse("annotation:study_duplicate", args=["draft"]))
    assert response.status_code == 302 and response["Location"] == reverse("annotation:study_edit", args=["draft-2"])


# --- preview -----------------------------------------------------------------------------------


def test_preview_shows_every_step_and_writes_nothing(as_researcher, draft):
    from annotation.models import Assignment, SurveyInstrument, SurveyResponse

    Study.objects.filter(pk=draft.pk).update(
        instruments=["demographics", "mfq20"],
        consent_text="Our consent words.",
        instructions_text="Rate well.",
        scale_max=200,
    )
    response = as_researcher.get(reverse("annotation:study_preview", args=["draft"]))
    page = response.content.decode()
    assert response.status_code == 200 and "Preview — nothing is saved" in page
    assert "Our consent words." in page and "Rate well." in page and "from 0 to 200" in page
    assert 'id="preview-survey-demographics"' in page and 'id="preview-survey-mfq20"' in page
    assert page.count("preview-card") == 3 and "Question 1" in page and "Question 4" not in page
    assert "<form" not in page.split('id="preview-banner"')[1]  # nothing on the page can post
    assert page.count("<fieldset disabled") >= 1 + 2 + 3
    for model in (Annotator, Assignment, Rating, SurveyResponse, SurveyInstrument):
        assert not model.objects.exists(), model


def test_preview_of_a_study_without_prompts(as_researcher, researcher):
    Study.objects.create(slug="bare", title="Bare", owner=researcher, instruments=[])
    page = as_researcher.get(reverse("annotation:study_preview", args=["bare"])).content.decode()
    assert "no prompts yet" in page and not Annotator.objects.exists()


# --- htmx forms show their errors in the page --------------------------------------------------


def error_region(page: str, target: str) -> bool:
    """Whether the page has an empty error box with this id (where static/js/site.js puts the message)."""
    return f'<div class="form-error" id="{target}"></div>' in page


def test_export_form_error_is_the_message_partial_aimed_at_the_forms_own_box(as_researcher, small_study):
    page = as_researcher.get(reverse("annotation:study_detail", args=["small"])).content.decode()
    assert 'data-error-target="#export-error"' in page and error_region(page, "export-error")
    response = as_researcher.post(
        reverse("annotation:export_start", args=["small"]), {"format": "<b>bogus</b>"}, **HTMX
    )
    body = response.content.decode()
    assert response.status_code == 400 and response["HX-Retarget"] == "#htmx-error"
    assert body.strip().startswith('<div class="htmx-error-message" role="alert">')
    assert "unknown export format" in body and "&lt;b&gt;bogus&lt;/b&gt;" in body and "<html" not in body


def test_benchmark_form_error_is_the_message_partial_aimed_at_the_forms_own_box(as_researcher, small_study):
    page = as_researcher.get(reverse("benchmark:leaderboard", args=["small"])).content.decode()
    assert 'data-error-target="#benchmark-error"' in page and error_region(page, "benchmark-error")
    response = as_researcher.post(
        reverse("benchmark:benchmark_start", args=["small"]), {"predictors": ["nope"], "splits": "2"}, **HTMX
    )
    body = response.content.decode()
    assert response.status_code == 400 and response["HX-Retarget"] == "#htmx-error"
    assert 'role="alert"' in body and "<html" not in body and "nope" in body


def test_builder_forms_name_their_error_boxes(as_researcher, draft):
    page = as_researcher.get(reverse("annotation:study_edit", args=["draft"])).content.decode()
    for target in ("status-error", "duplicate-error"):
        assert f'data-error-target="#{target}"' in page and error_region(page, target)
