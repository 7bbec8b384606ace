"""Survey instruments as data (annotation/surveys.py): definitions, answers, scores, factor scores.

Plain pytest, no database. Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from annotation import surveys
from annotation.surveys import (
    DEFAULT_INSTRUMENTS,
    FACTOR_COLUMNS,
    answers_validate,
    factor_scores,
    instrument_keys,
    instrument_load,
    instrument_score,
    instrument_validate,
    load_factor_loadings,
    multi_split,
)
from benchmark.science.release import DEMOGRAPHIC_COLUMNS, RELEASE_DIR

LOADING_NAMES = [
    "Schwartz_Power_mean",
    "Schwartz_Achievement_mean",
    "Schwartz_Hedonism_mean",
    "Schwartz_Stimulation_mean",
    "Schwartz_Self_direction_mean",
    "Schwartz_Universalism_mean",
    "Schwartz_Benevolence_mean",
    "Schwartz_Tradition_mean",
    "Schwartz_Conformity_mean",
    "Schwartz_Security_mean",
    "MFQ_Harm_mean",
    "MFQ_Fairness_mean",
    "MFQ_Ingroup_mean",
    "MFQ_Authority_mean",
    "MFQ_Purity_mean",
    "IRI_EC_mean",
    "IRI_F_mean",
    "IRI_PD_mean",
    "IRI_PT_mean",
    "Mini_IPIP_mean",
    "AI_literacy_score_mean",
]


def _items(definition):
    return {item["id"]: item for item in definition["items"]}


def _full_answers(definition, value_for):
    """Form-style data (strings) answering every item with value_for(item)."""
    return {item["id"]: str(value_for(item)) for item in definition["items"]}


def _minimal_definition(**overrides):
    definition = {
        "key": "tiny",
        "version": "1",
        "title": "Tiny",
        "source": "Test fixture.",
        "instructions": "Answer.",
        "scale": {"min": 1, "max": 5, "labels": {"1": "Low", "5": "High"}},
        "items": [
            {"id": "q1", "text": "One", "type": "scale", "subscale": "S"},
            {"id": "q2", "text": "Two", "type": "single", "options": ["Yes", "No"]},
        ],
        "subscales": {"S": {"output": "S_mean"}},
    }
    definition.update(overrides)
    return definition


# --------------------------------------------------------------------------------------------------
# Shipped instruments
# --------------------------------------------------------------------------------------------------


def test_default_instruments_are_the_shipped_files():
    assert instrument_keys() == sorted(DEFAULT_INSTRUMENTS)
    assert DEFAULT_INSTRUMENTS == [
        "demographics",
        "schwartz_short",
        "mfq20",
        "iri_brief",
        "mini_ipip_intellect",
        "ai_literacy",
    ]


@pytest.mark.parametrize("key", DEFAULT_INSTRUMENTS)
def test_every_shipped_instrument_loads_and_is_complete(key):
    definition = instrument_load(key)
    assert definition["key"] == key
    for field in ("version", "title", "source", "instructions"):
        assert definition[field].strip()
    for item in definition["items"]:
        assert item["required"] is True
        if item["type"] == "scale":
            assert item.get("subscale"), "every scored item feeds a factor-score subscale"
    # Loading twice gives equal but independent dicts, so callers may mutate theirs.
    again = instrument_load(key)
    assert again == definition and again is not definition


@pytest.mark.parametrize(
    ("key", "count"),
    [
        ("demographics", 10),
        ("schwartz_short", 10),
        ("mfq20", 20),
        ("iri_brief", 16),
        ("mini_ipip_intellect", 4),
        # The published AILS (Wang, Rau & Yuan) has 12 items; no 8-item AI-literacy scale could be verified.
        ("ai_literacy", 12),
    ],
)
def test_item_counts(key, count):
    assert len(instrument_load(key)["items"]) == count


def test_subscales_have_the_published_structure():
    mfq = instrument_load("mfq20")
    per_subscale = pd.Series([i["subscale"] for i in mfq["items"]]).value_counts().to_dict()
    assert per_subscale == {"Harm": 4, "Fairness": 4, "Ingroup": 4, "Authority": 4, "Purity": 4}
    # 10 relevance items on 0-5 relevance anchors, then 10 agreement items on 0-5 agreement anchors.
    assert [i["scale"]["labels"]["5"] for i in mfq["items"]].count("Strongly agree") == 10
    assert all(i["scale"]["min"] == 0 and i["scale"]["max"] == 5 for i in mfq["items"])
    assert not any(i["reverse"] for i in mfq["items"])

    iri = instrument_load("iri_brief")
    assert pd.Series([i["subscale"] for i in iri["items"]]).value_counts().to_dict() == {
        "EC": 4,
        "F": 4,
        "PD": 4,
        "PT": 4,
    }
    assert all((i["scale"]["min"], i["scale"]["max"]) == (1, 5) for i in iri["items"])

    ssvs = instrument_load("schwartz_short")
    assert (ssvs["scale"]["min"], ssvs["scale"]["max"]) == (0, 8)
    assert ssvs["scale"]["labels"]["0"] == "Opposed to my principles"
    assert ssvs["scale"]["labels"]["8"] == "Of supreme importance"
    assert len({i["subscale"] for i in ssvs["items"]}) == 10

    ipip = instrument_load("mini_ipip_intellect")
    assert [i["reverse"] for i in ipip["items"]] == [False, True, True, True]

    ails = instrument_load("ai_literacy")
    assert [n for n, i in enumerate(ails["items"], 1) if i["reverse"]] == [2, 5, 11]
    assert (ails["scale"]["min"], ails["scale"]["max"]) == (1, 7)


def test_subscale_outputs_cover_exactly_the_loadings():
    outputs = [spec["output"] for key in DEFAULT_INSTRUMENTS for spec in instrument_load(key)["subscales"].values()]
    loading_names = [name.removesuffix("_z_scored") for name in load_factor_loadings().index]
    assert len(outputs) == len(set(outputs)) == 21
    assert set(outputs) == set(loading_names) == set(LOADING_NAMES)


def test_demographic_keys_are_the_release_columns():
    demographics = instrument_load("demographics")
    assert [i["id"] for i in demographics["items"]] == list(DEMOGRAPHIC_COLUMNS)
    assert {i["id"]: i["type"] for i in demographics["items"] if i["type"] == "multi"} == {
        "Race_Ethnicity": "multi",
        "Sexual_Orientation": "multi",
    }
    assert "Bachelor’s degree" in _items(demographics)["Education"]["options"]  # curly apostrophe
    assert "65 years old or above" in _items(demographics)["Age"]["options"]
    assert "I prefer not to answer." in _items(demographics)["Income"]["options"]
    assert "Prefer not to answer" in _items(demographics)["Sexual_Orientation"]["options"]


def test_demographic_options_cover_every_release_value():
    release = pd.read_csv(RELEASE_DIR / "annotations.csv", usecols=list(DEMOGRAPHIC_COLUMNS))
    demographics = _items(instrument_load("demographics"))
    checked = 0
    for column in DEMOGRAPHIC_COLUMNS:
        item = demographics[column]
        for raw in release[column].dropna().unique():
            value = raw.strip()  # the release has stray leading spaces (" Very important")
            if item["type"] == "single":
                assert value in item["options"], (column, raw)
                answers, errors = answers_validate({"items": [item]}, {column: value})
                assert errors == {} and answers[column] == value
            else:
                # Options may contain ", " themselves, so split greedily on known options.
                parts = multi_split(value, item["options"])
                assert parts and all(p in item["options"] for p in parts), (column, raw)
                answers, errors = answers_validate({"items": [item]}, {column: parts})
                assert errors == {}
                # Stored joined with "," in option order: the release's order is the option order.
                assert answers[column] == ",".join(parts)
                assert multi_split(answers[column], item["options"]) == parts
            checked += 1
    assert checked == release.apply(lambda s: s.nunique()).sum()


def test_multi_split_handles_options_with_commas():
    options = instrument_load("demographics")["items"][0]["options"]
    value = "American Indian, Alaska Native, or other Indigenous culture,East Asian,White"
    assert multi_split(value, options) == [
        "American Indian, Alaska Native, or other Indigenous culture",
        "East Asian",
        "White",
    ]
    for bad in ("Martian", "White,", "White;East Asian", "White,,East Asian"):
        with pytest.raises(ValueError):
            multi_split(bad, options)


# --------------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------------


class FakeQueryDict:
    """What answers_validate needs from Django's QueryDict: getlist() -> list of str ([] if absent)."""

    def __init__(self, pairs):
        self.pairs = pairs

    def getlist(self, name):
        return [v for k, v in self.pairs if k == name]


def test_complete_valid_submission_has_no_errors():
    for key in DEFAULT_INSTRUMENTS:
        definition = instrument_load(key)
        data = {}
        for item in definition["items"]:
            data[item["id"]] = item["options"][0] if item["type"] != "scale" else str(item["scale"]["max"])
        answers, errors = answers_validate(definition, data)
        assert errors == {}, key
        assert set(answers) == {i["id"] for i in definition["items"]}


def test_querydict_and_real_django_querydict():
    from django.http import QueryDict

    definition = instrument_load("demographics")
    pairs = [
        ("csrfmiddlewaretoken", "x"),
        ("Race_Ethnicity", "White"),
        ("Race_Ethnicity", "American Indian, Alaska Native, or other Indigenous culture"),
        ("Gender", "Woman"),
        ("Sexual_Orientation", "Straight (heterosexual)"),
        ("Age", "25-34 years old"),
        ("Political_Affiliation", "Moderate"),
        ("Education", "Bachelor’s degree"),
        ("Religion_Importance", "Not at all important"),
        ("Social_Media_Frequency", "Over 2 hours per day"),
        ("Toxicity_Experience", "Often a problem"),
        ("Income", "$50,000 to $74,999"),
    ]
    expected_race = "American Indian, Alaska Native, or other Indigenous culture,White"  # option order
    for data in (FakeQueryDict(pairs), QueryDict(mutable=True)):
        if isinstance(data, QueryDict):
            for name, value in pairs:
                data.appendlist(name, value)
        answers, errors = answers_validate(definition, data)
        assert errors == {}
        assert answers["Race_Ethnicity"] == expected_race
        assert answers["Education"] == "Bachelor’s degree"
        assert "csrfmiddlewaretoken" not in answers


def test_every_required_item_must_be_answered():
    definition = instrument_load("mini_ipip_intellect")
    answers, errors = answers_validate(definition, {"ipip_05_vivid": "4", "ipip_10_abstract_interest": ""})
    assert answers == {"ipip_05_vivid": 4}
    assert errors == {
        "ipip_10_abstract_interest": "Please answer this question.",
        "ipip_15_abstract_difficulty": "Please answer this question.",
        "ipip_20_no_imagination": "Please answer this question.",
    }
    _, errors = answers_validate(instrument_load("demographics"), {"Race_Ethnicity": []})
    assert errors["Race_Ethnicity"] == "Please answer this question."
    assert len(errors) == 10


def test_optional_item_may_be_left_blank():
    definition = instrument_validate(
        _minimal_definition(
            items=[
                {"id": "q1", "text": "One", "type": "scale", "subscale": "S"},
                {"id": "q2", "text": "Two", "type": "single", "options": ["Yes", "No"], "required": False},
            ]
        )
    )
    answers, errors = answers_validate(definition, {"q1": "3", "q2": "  "})
    assert (answers, errors) == ({"q1": 3}, {})


@pytest.mark.parametrize("value", ["9", "-1", "abc", "3.5", "4.0", "", "1e1", ["3", "4"], True])
def test_scale_values_outside_the_scale_are_errors(value):
    definition = instrument_load("schwartz_short")
    data = _full_answers(definition, lambda item: 4)
    data["ssvs_01_power"] = value
    answers, errors = answers_validate(definition, data)
    expected = "Please answer this question." if value == "" else "Choose a whole number from 0 to 8."
    assert errors == {"ssvs_01_power": expected}
    assert "ssvs_01_power" not in answers


def test_scale_accepts_whole_numbers_with_spaces_and_ints_and_bounds():
    definition = instrument_load("schwartz_short")
    data = _full_answers(definition, lambda item: 4)
    data.update({"ssvs_01_power": " 0 ", "ssvs_02_achievement": 8, "ssvs_03_hedonism": ["5"]})
    answers, errors = answers_validate(definition, data)
    assert errors == {}
    assert (answers["ssvs_01_power"], answers["ssvs_02_achievement"], answers["ssvs_03_hedonism"]) == (0, 8, 5)


def test_mfq_messages_use_each_items_scale():
    _, errors = answers_validate(instrument_load("mfq20"), {"mfq_01_emotionally": "6", "mfq_11_compassion": "x"})
    assert errors["mfq_01_emotionally"] == "Choose a whole number from 0 to 5."
    assert errors["mfq_11_compassion"] == "Choose a whole number from 0 to 5."
    _, errors = answers_validate(instrument_load("iri_brief"), {"iri_01_ec_d2": "0"})
    assert errors["iri_01_ec_d2"] == "Choose a whole number from 1 to 5."


@pytest.mark.parametrize(
    "value",
    ["Female", "man", ["Man", "Woman"], "Man,Woman"],
)
def test_single_unknown_or_several_options_are_errors(value):
    _, errors = answers_validate(instrument_load("demographics"), {"Gender": value})
    assert errors["Gender"] == "Choose one of the listed options."


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["White", "Klingon"], "Choose only from the listed options."),
        # A client that joins the values itself sends one value that is not an option.
        (["White,East Asian"], "Choose only from the listed options."),
        (["White", "White"], "Choose each option at most once."),
    ],
)
def test_tampered_multi_values_are_errors(value, message):
    answers, errors = answers_validate(instrument_load("demographics"), {"Race_Ethnicity": value})
    assert errors["Race_Ethnicity"] == message
    assert "Race_Ethnicity" not in answers


def test_exclusive_multi_option_cannot_be_combined():
    definition = instrument_load("demographics")
    _, errors = answers_validate(definition, {"Sexual_Orientation": ["Gay", "Prefer not to answer"]})
    assert errors["Sexual_Orientation"] == "“Prefer not to answer” cannot be combined with other answers."
    answers, errors = answers_validate(definition, {"Sexual_Orientation": ["Prefer not to answer"]})
    assert "Sexual_Orientation" not in errors
    assert answers["Sexual_Orientation"] == "Prefer not to answer"


def test_multi_answers_are_stored_in_option_order():
    answers, errors = answers_validate(
        instrument_load("demographics"), {"Sexual_Orientation": ["Straight (heterosexual)", "Aromantic or asexual"]}
    )
    assert answers["Sexual_Orientation"] == "Aromantic or asexual,Straight (heterosexual)"
    assert "Sexual_Orientation" not in errors


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def test_mini_ipip_score_with_reverse_keys_by_hand():
    definition = instrument_load("mini_ipip_intellect")
    data = {
        "ipip_05_vivid": "2",  # 2
        "ipip_10_abstract_interest": "1",  # reverse: 1 + 5 - 1 = 5
        "ipip_15_abstract_difficulty": "5",  # reverse: 6 - 5 = 1
        "ipip_20_no_imagination": "4",  # reverse: 6 - 4 = 2
    }
    answers, errors = answers_validate(definition, data)
    assert errors == {}
    assert instrument_score(definition, answers) == {"Mini_IPIP_mean": 2.5}  # (2 + 5 + 1 + 2) / 4


def test_ai_literacy_score_with_reverse_keys_by_hand():
    definition = instrument_load("ai_literacy")
    raw = [7, 2, 6, 5, 3, 4, 1, 7, 7, 6, 1, 5]
    # Items 2, 5, 11 reversed on 1..7: 8-2=6, 8-3=5, 8-1=7.
    keyed = [7, 6, 6, 5, 5, 4, 1, 7, 7, 6, 7, 5]  # sum 66
    answers = {item["id"]: x for item, x in zip(definition["items"], raw, strict=True)}
    assert sum(keyed) == 66
    assert instrument_score(definition, answers) == {"AI_literacy_score_mean": 5.5}


def test_iri_subscale_means_by_hand():
    definition = instrument_load("iri_brief")
    given = {"EC": [5, 4, 4, 3], "F": [1, 2, 2, 2], "PD": [3, 3, 3, 3], "PT": [5, 5, 4, 5]}
    queues = {k: list(v) for k, v in given.items()}
    answers = {item["id"]: queues[item["subscale"]].pop(0) for item in definition["items"]}
    assert instrument_score(definition, answers) == {
        "IRI_EC_mean": 4.0,  # 16 / 4
        "IRI_F_mean": 1.75,  # 7 / 4
        "IRI_PD_mean": 3.0,
        "IRI_PT_mean": 4.75,  # 19 / 4
    }


def test_mfq_and_ssvs_means_by_hand():
    mfq = instrument_load("mfq20")
    # Relevance items score 1, agreement items score 4: each foundation has 2 + 2 -> mean 2.5,
    # except Purity where every answer is 5.
    answers = {
        i["id"]: (5 if i["subscale"] == "Purity" else (1 if n <= 10 else 4)) for n, i in enumerate(mfq["items"], 1)
    }
    assert instrument_score(mfq, answers) == {
        "MFQ_Harm_mean": 2.5,
        "MFQ_Fairness_mean": 2.5,
        "MFQ_Ingroup_mean": 2.5,
        "MFQ_Authority_mean": 2.5,
        "MFQ_Purity_mean": 5.0,
    }
    ssvs = instrument_load("schwartz_short")
    answers = {item["id"]: min(n, 8) for n, item in enumerate(ssvs["items"])}  # 0, 1, ..., 8, 8
    scores = instrument_score(ssvs, answers)
    assert scores["Schwartz_Power_mean"] == 0.0
    assert scores["Schwartz_Conformity_mean"] == 8.0
    assert scores["Schwartz_Security_mean"] == 8.0


def test_score_from_form_strings_end_to_end():
    definition = instrument_load("mini_ipip_intellect")
    answers, errors = answers_validate(definition, _full_answers(definition, lambda item: 5))
    assert errors == {}
    assert instrument_score(definition, answers) == {"Mini_IPIP_mean": 2.0}  # (5 + 1 + 1 + 1) / 4


def test_demographics_have_no_scores():
    definition = instrument_load("demographics")
    assert instrument_score(definition, {"Gender": "Man"}) == {}


def test_score_rejects_missing_or_off_scale_answers():
    definition = instrument_load("mini_ipip_intellect")
    with pytest.raises(ValueError, match="ipip_20_no_imagination"):
        instrument_score(
            definition, {"ipip_05_vivid": 1, "ipip_10_abstract_interest": 1, "ipip_15_abstract_difficulty": 1}
        )
    with pytest.raises(ValueError, match="not on its scale"):
        instrument_score(definition, {i["id"]: 6 for i in definition["items"]})


def test_score_skips_unanswered_optional_items():
    definition = instrument_validate(
        _minimal_definition(
            items=[
                {"id": "q1", "text": "One", "type": "scale", "subscale": "S", "required": False},
                {"id": "q2", "text": "Two", "type": "scale", "subscale": "S", "required": False, "reverse": True},
            ]
        )
    )
    assert instrument_score(definition, {"q2": 2}) == {"S_mean": 4.0}  # 1 + 5 - 2
    assert math.isnan(instrument_score(definition, {})["S_mean"])


# --------------------------------------------------------------------------------------------------
# Malformed definitions
# --------------------------------------------------------------------------------------------------


def _item(**fields):
    return {"id": "q1", "text": "One", "type": "scale", "subscale": "S", **fields}


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        (_minimal_definition(items=[_item(), _item()]), "duplicate item id 'q1'"),
        (_minimal_definition(items=[_item(), {"id": "q2", "text": "Two", "type": "single"}]), "missing 'options'"),
        (
            _minimal_definition(items=[_item(), {"id": "q2", "text": "Two", "type": "single", "options": ["Only"]}]),
            "at least two options",
        ),
        (
            _minimal_definition(items=[_item(), {"id": "q2", "text": "Two", "type": "multi", "options": ["A", "A"]}]),
            "duplicate options",
        ),
        (_minimal_definition(items=[_item(type="slider")]), "unknown type 'slider'"),
        (
            _minimal_definition(
                items=[
                    _item(),
                    {"id": "q2", "text": "Two", "type": "single", "options": ["Yes", "No"], "reverse": True},
                ]
            ),
            "'reverse' is only allowed on scale items",
        ),
        (_minimal_definition(items=[_item(subscale="Nope")]), "subscale 'Nope' is not declared"),
        (
            _minimal_definition(subscales={"S": {"output": "S_mean"}, "T": {"output": "T_mean"}}),
            "subscales without items: T",
        ),
        (
            _minimal_definition(
                items=[
                    _item(),
                    {"id": "q2", "text": "Two", "type": "single", "options": ["Yes", "No"], "subscale": "S"},
                ]
            ),
            "only scale items can belong to a subscale",
        ),
        (_minimal_definition(items=[_item(options=["A", "B"])]), "a scale item cannot have 'options'"),
        (_minimal_definition(items=[_item(revrese=True)]), "unknown keys 'revrese'"),
        (_minimal_definition(items=[_item(id="bad id")]), "'id' must be"),
        (_minimal_definition(items=[]), "'items' must be a non-empty list"),
        (_minimal_definition(scale={"min": 5, "max": 1}), "min < max"),
        (_minimal_definition(scale={"min": 1, "max": 5, "labels": {"9": "Off"}}), "label key '9'"),
        (_minimal_definition(title=""), "'title' must be a non-empty string"),
        (
            _minimal_definition(
                items=[
                    _item(),
                    {"id": "q2", "text": "Two", "type": "single", "options": ["A", "B"], "exclusive": ["A"]},
                ]
            ),
            "'exclusive' is only allowed on multi",
        ),
        (_minimal_definition(subscales={"S": {"output": "X"}, "T": {"output": "X"}}), "same output 'X'"),
        ({k: v for k, v in _minimal_definition().items() if k != "source"}, "missing 'source'"),
    ],
)
def test_malformed_definition_raises(definition, problem):
    with pytest.raises(ValueError, match="^<definition>: ") as raised:
        instrument_validate(definition)
    assert problem in str(raised.value)


def test_scale_item_without_any_scale_raises():
    definition = _minimal_definition()
    del definition["scale"]
    with pytest.raises(ValueError, match="needs a 'scale'"):
        instrument_validate(definition)


def test_malformed_file_error_names_the_file(tmp_path):
    (tmp_path / "broken.json").write_text(json.dumps(_minimal_definition(key="broken", items=[_item(), _item()])))
    with pytest.raises(ValueError, match=r"^broken\.json: duplicate item id 'q1'"):
        instrument_load("broken", directory=tmp_path)
    (tmp_path / "notjson.json").write_text("{ nope")
    with pytest.raises(ValueError, match=r"^notjson\.json: not valid JSON"):
        instrument_load("notjson", directory=tmp_path)
    (tmp_path / "renamed.json").write_text(json.dumps(_minimal_definition()))  # key "tiny"
    with pytest.raises(ValueError, match=r"^renamed\.json: 'key' is 'tiny'"):
        instrument_load("renamed", directory=tmp_path)


def test_unknown_or_unsafe_key_raises():
    with pytest.raises(ValueError, match="unknown instrument 'nope'"):
        instrument_load("nope")
    with pytest.raises(ValueError, match="invalid instrument key"):
        instrument_load("../config/settings")


def test_adding_a_json_file_adds_an_instrument(tmp_path):
    for key in DEFAULT_INSTRUMENTS:
        shutil.copy(surveys.INSTRUMENT_DIR / f"{key}.json", tmp_path)
    (tmp_path / "tiny.json").write_text(json.dumps(_minimal_definition()))
    assert instrument_keys(directory=tmp_path) == sorted([*DEFAULT_INSTRUMENTS, "tiny"])
    tiny = instrument_load("tiny", directory=tmp_path)
    answers, errors = answers_validate(tiny, {"q1": "2", "q2": "No"})
    assert errors == {} and instrument_score(tiny, answers) == {"S_mean": 2.0}


# --------------------------------------------------------------------------------------------------
# Factor scores
# --------------------------------------------------------------------------------------------------


def test_load_factor_loadings():
    loadings = load_factor_loadings()
    assert list(loadings.columns) == FACTOR_COLUMNS
    assert [name.removesuffix("_z_scored") for name in loadings.index] == LOADING_NAMES
    assert loadings.loc["MFQ_Harm_mean_z_scored", "Factor_2"] == pytest.approx(0.5251502835946145)


def _three_people():
    """Columns whose within-sample mean and SD (ddof=1) are easy by hand."""
    frame = pd.DataFrame({name: [5.0, 5.0, 8.0] for name in LOADING_NAMES}, index=["P1", "P2", "P3"])
    frame["Schwartz_Power_mean"] = [1.0, 2.0, 3.0]  # mean 2, SD 1   -> z = -1, 0, 1
    frame["MFQ_Harm_mean"] = [2.0, 4.0, 6.0]  # mean 4, SD 2   -> z = -1, 0, 1
    frame["IRI_PT_mean"] = [3.0, 2.0, 1.0]  # mean 2, SD 1   -> z = 1, 0, -1
    frame["extra_column_is_ignored"] = ["a", "b", "c"]
    return frame  # others: mean 6, SD sqrt(3) -> z = -1/√3, -1/√3, 2/√3


def _hand_loadings():
    loadings = pd.DataFrame(0.0, index=[f"{n}_z_scored" for n in LOADING_NAMES], columns=FACTOR_COLUMNS)
    loadings.loc["Schwartz_Power_mean_z_scored", "Factor_1"] = 1.0
    loadings.loc["MFQ_Harm_mean_z_scored", "Factor_1"] = 0.5
    loadings.loc["IRI_PT_mean_z_scored", "Factor_2"] = -2.0
    loadings.loc["Schwartz_Power_mean_z_scored", "Factor_3"] = 0.25
    loadings.loc["AI_literacy_score_mean_z_scored", "Factor_3"] = 3.0
    return loadings


def test_factor_scores_small_example_by_hand():
    scores = factor_scores(_three_people(), loadings=_hand_loadings())
    r3 = math.sqrt(3.0)
    expected = pd.DataFrame(
        {
            "Factor_1": [1.0 * -1 + 0.5 * -1, 0.0, 1.0 * 1 + 0.5 * 1],  # -1.5, 0, 1.5
            "Factor_2": [-2.0 * 1, 0.0, -2.0 * -1],  # -2, 0, 2
            "Factor_3": [0.25 * -1 + 3.0 * (-1 / r3), 3.0 * (-1 / r3), 0.25 * 1 + 3.0 * (2 / r3)],
        },
        index=["P1", "P2", "P3"],
    )
    np.testing.assert_allclose(scores.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    assert list(scores.index) == ["P1", "P2", "P3"] and list(scores.columns) == FACTOR_COLUMNS


def test_factor_scores_with_release_loadings_by_hand():
    loadings = load_factor_loadings()
    frame = _three_people()
    r3 = math.sqrt(3.0)
    z = {name: [-1 / r3, -1 / r3, 2 / r3] for name in LOADING_NAMES}
    z["Schwartz_Power_mean"] = z["MFQ_Harm_mean"] = [-1.0, 0.0, 1.0]
    z["IRI_PT_mean"] = [1.0, 0.0, -1.0]
    expected = np.zeros((3, 3))
    for person in range(3):
        for k, factor in enumerate(FACTOR_COLUMNS):
            expected[person, k] = sum(
                z[name][person] * loadings.loc[f"{name}_z_scored", factor] for name in LOADING_NAMES
            )
    np.testing.assert_allclose(factor_scores(frame).to_numpy(), expected, rtol=0, atol=1e-12)


def test_one_hot_z_gives_the_loadings_row():
    loadings = load_factor_loadings()
    # Reference columns (-1, 0, 1) have mean 0 and SD 1, so z equals the raw value.
    reference = pd.DataFrame({name: [-1.0, 0.0, 1.0] for name in LOADING_NAMES})
    one_hot = pd.DataFrame(np.eye(21), columns=LOADING_NAMES, index=LOADING_NAMES)
    scores = factor_scores(one_hot, reference)
    np.testing.assert_allclose(scores.to_numpy(), loadings.to_numpy(), rtol=0, atol=1e-12)
    single = factor_scores(one_hot.loc[["IRI_EC_mean"]], reference)
    np.testing.assert_allclose(
        single.to_numpy()[0], loadings.loc["IRI_EC_mean_z_scored"].to_numpy(), rtol=0, atol=1e-12
    )


def test_reference_sample_mean_and_sd_are_used():
    reference = pd.DataFrame({name: [0.0, 1.0, 2.0] for name in LOADING_NAMES})  # mean 1, SD 1
    reference["Schwartz_Power_mean"] = [10.0, 20.0, 30.0]  # mean 20, SD 10
    person = pd.DataFrame({name: [1.0] for name in LOADING_NAMES}, index=["new"])  # z = 0 elsewhere
    person["Schwartz_Power_mean"] = [35.0]  # z = (35 - 20) / 10 = 1.5
    scores = factor_scores(person, reference, loadings=_hand_loadings())
    np.testing.assert_allclose(scores.to_numpy(), [[1.5, 0.0, 0.375]], rtol=0, atol=1e-12)  # 1.5·1, 0, 1.5·0.25
    # The same person alone cannot be standardised within its own sample (SD undefined).
    with pytest.raises(ValueError, match="SD is zero or undefined"):
        factor_scores(person, loadings=_hand_loadings())


def test_within_sample_scores_have_mean_zero_like_the_release():
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(4.0, 1.2, size=(100, 21)), columns=LOADING_NAMES)
    scores = factor_scores(frame)
    np.testing.assert_allclose(scores.mean().to_numpy(), 0.0, rtol=0, atol=1e-12)
    release = pd.read_csv(RELEASE_DIR / "annotations.csv", usecols=FACTOR_COLUMNS)
    np.testing.assert_allclose(release.mean().to_numpy(), 0.0, rtol=0, atol=1e-12)


def test_missing_columns_are_named():
    frame = _three_people().drop(columns=["IRI_F_mean", "Mini_IPIP_mean"])
    with pytest.raises(ValueError, match="subscale_means is missing columns: IRI_F_mean, Mini_IPIP_mean"):
        factor_scores(frame)
    with pytest.raises(ValueError, match="reference is missing columns: IRI_F_mean, Mini_IPIP_mean"):
        factor_scores(_three_people(), frame)


def test_nan_mean_gives_nan_scores_for_that_row_only():
    frame = _three_people()
    frame = pd.concat([frame, frame.iloc[[0]].rename(index={"P1": "P4"})])
    frame.loc["P4", "MFQ_Purity_mean"] = np.nan
    scores = factor_scores(frame, _three_people())
    assert scores.loc["P4"].isna().all()
    assert scores.loc[["P1", "P2", "P3"]].notna().all().all()


def test_unnormalised_definition_uses_the_instrument_scale():
    raw = _minimal_definition()  # scale items inherit "scale" without instrument_validate copying it
    answers, errors = answers_validate(raw, {"q1": "6", "q2": "Yes"})
    assert errors == {"q1": "Choose a whole number from 1 to 5."}
    assert instrument_score(raw, {"q1": 4}) == {"S_mean": 4.0}
