"""Survey pages: one per instrument, validated on the server, stored with scores; nothing skipped."""

import json

import pytest
from django.urls import reverse

from annotation import surveys
from annotation.models import Annotator, Prompt, Study, SurveyResponse

pytestmark = pytest.mark.django_db

PID = "surveyperson000000000000"


@pytest.fixture
def study(researcher):
    study = Study.objects.create(
        slug="svy",
        title="Survey study",
        status="recruiting",
        owner=researcher,
        instruments=["demographics", "mini_ipip_intellect"],
    )
    Prompt.objects.create(study=study, external_id="1", text="Only prompt")
    return study


def enter_and_consent(client, study):
    client.get(f"/s/{study.slug}/?PROLIFIC_PID={PID}&STUDY_ID=s&SESSION_ID=t")
    return client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})


DEMOGRAPHICS = {
    "Race_Ethnicity": ["East Asian", "White"],
    "Gender": "Woman",
    "Sexual_Orientation": ["Straight (heterosexual)"],
    "Age": "25-34 years old",
    "Political_Affiliation": "Moderate",
    "Education": "Bachelor’s degree",
    "Religion_Importance": "Somewhat important",
    "Social_Media_Frequency": "At least once a day",
    "Toxicity_Experience": "Rarely a problem",
    "Income": "$50,000 to $74,999",
}


def test_consent_leads_to_first_instrument_with_labelled_fields(client, study):
    response = enter_and_consent(client, study)
    assert response["Location"] == reverse("take:survey", args=["svy", "demographics"])
    page = client.get(response["Location"]).content.decode()
    assert "Questionnaire 1 of 2" in page
    assert '<label class="option" for="Gender-1">' in page and 'id="Gender-1"' in page
    assert 'type="checkbox"' in page and 'name="Race_Ethnicity"' in page


def test_missing_answers_are_refused_with_messages(client, study):
    enter_and_consent(client, study)
    url = reverse("take:survey", args=["svy", "demographics"])
    partial = {k: v for k, v in DEMOGRAPHICS.items() if k != "Income"}
    response = client.post(url, partial)
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="err-Income"' in page and "Please answer this question." in page
    assert 'value="Woman" checked' in page  # what was answered is kept
    assert SurveyResponse.objects.count() == 0


def test_tampered_option_is_refused(client, study):
    enter_and_consent(client, study)
    response = client.post(reverse("take:survey", args=["svy", "demographics"]), {**DEMOGRAPHICS, "Gender": "Robot"})
    assert response.status_code == 400 and "Choose one of the listed options." in response.content.decode()


def test_answers_and_scores_are_stored_and_next_page_follows(client, study):
    enter_and_consent(client, study)
    response = client.post(reverse("take:survey", args=["svy", "demographics"]), DEMOGRAPHICS)
    assert response["Location"] == reverse("take:survey", args=["svy", "mini_ipip_intellect"])
    annotator = Annotator.objects.get()
    assert annotator.demographics["Race_Ethnicity"] == "East Asian,White"
    assert annotator.demographics["Education"] == "Bachelor’s degree"
    assert annotator.status == "surveying"
    # Cannot skip ahead: the instructions page sends the annotator back to the pending survey.
    skip = client.get(reverse("take:instructions", args=["svy"]))
    assert skip["Location"] == reverse("take:survey", args=["svy", "mini_ipip_intellect"])
    definition = surveys.instrument_load("mini_ipip_intellect")
    ids = [item["id"] for item in definition["items"]]
    answers = dict(zip(ids, ["5", "1", "2", "1"]))
    response = client.post(reverse("take:survey", args=["svy", "mini_ipip_intellect"]), answers)
    assert response["Location"] == reverse("take:instructions", args=["svy"])
    annotator.refresh_from_db()
    # Items 2–4 are reverse keyed on 1–5: (5 + (6-1) + (6-2) + (6-1)) / 4 = 4.75.
    assert annotator.traits["Mini_IPIP_mean"] == pytest.approx(4.75)
    assert SurveyResponse.objects.get(instrument__key="mini_ipip_intellect").scores == {"Mini_IPIP_mean": 4.75}


def test_survey_not_in_study_is_404_and_wrong_step_redirects(client, study):
    enter_and_consent(client, study)
    assert client.get(reverse("take:survey", args=["svy", "mfq20"])).status_code == 404
    later = client.get(reverse("take:survey", args=["svy", "mini_ipip_intellect"]))
    assert later["Location"] == reverse("take:survey", args=["svy", "demographics"])


def test_resubmitting_a_finished_page_changes_nothing(client, study):
    enter_and_consent(client, study)
    url = reverse("take:survey", args=["svy", "demographics"])
    client.post(url, DEMOGRAPHICS)
    client.post(url, {**DEMOGRAPHICS, "Gender": "Man"})  # back button + resubmit
    assert Annotator.objects.get().demographics["Gender"] == "Woman"
    assert SurveyResponse.objects.count() == 1


def test_a_new_instrument_is_just_a_json_file(client, study, tmp_path, monkeypatch):
    definition = {
        "key": "sleep",
        "version": "1",
        "title": "Sleep",
        "source": "test",
        "instructions": "About sleep.",
        "scale": {"min": 1, "max": 3, "labels": {"1": "Little", "3": "Lots"}},
        "items": [{"id": "sleep_1", "text": "I sleep well.", "type": "scale", "subscale": "Sleep", "required": True}],
        "subscales": {"Sleep": {"output": "Sleep_mean"}},
    }
    for path in surveys.INSTRUMENT_DIR.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "sleep.json").write_text(json.dumps(definition))
    monkeypatch.setattr(surveys, "INSTRUMENT_DIR", tmp_path)
    assert "sleep" in surveys.instrument_keys(directory=tmp_path)
    Study.objects.filter(pk=study.pk).update(instruments=["sleep"])
    response = enter_and_consent(client, study)
    assert response["Location"] == reverse("take:survey", args=["svy", "sleep"])
    assert b"I sleep well." in client.get(response["Location"]).content
    client.post(response["Location"], {"sleep_1": "3"})
    assert Annotator.objects.get().traits == {"Sleep_mean": 3.0}
