"""Demographic encodings and z-scores."""

import numpy as np
import pandas as pd
import pytest

from benchmark.science.traits import encode_demographics, race_categories, zscore

from .conftest import RELEASE_DIR

nan = np.nan


def test_ordinal_and_binary_mappings_strip_spaces():
    frame = pd.DataFrame(
        {
            "Age": ["18-24 years old", "65 years old or above", "45-54 years old"],
            "Political_Affiliation": ["Very conservative", "Very liberal", "Other"],
            "Education": [
                "High school diploma or GED",
                "Bachelor\u2019s degree",
                "Graduate or professional degree (MA, MS, MBA, PhD, JD, MD, DDS etc.)",
            ],
            "Religion_Importance": [" Not at all important", " Somewhat important", " Very important"],
            "Social_Media_Frequency": ["Less than once a week", "At least once a day", "Over 2 hours per day"],
            "Toxicity_Experience": ["Not a problem", "Rarely a problem", "Very often a problem"],
            "Income": ["Less than $20,000", "Over $100,000", "I prefer not to answer."],
            "Gender": ["Man", "Woman", "Non-binary"],
            "Sexual_Orientation": [" Straight (heterosexual)", "Aromantic or asexual, Lesbian", "Prefer not to answer"],
        }
    )
    out = encode_demographics(frame)
    assert out["Age"].tolist() == [0, 5, 3]
    assert out["Political_Affiliation"].tolist()[:2] == [0, 4] and np.isnan(out.loc[2, "Political_Affiliation"])
    assert out["Education"].tolist() == [0, 3, 4]
    assert out["Religion_Importance"].tolist() == [0, 2, 3]
    assert out["Social_Media_Frequency"].tolist() == [0, 2, 3]
    assert out["Toxicity_Experience"].tolist() == [0, 1, 4]
    assert out["Income"].tolist()[:2] == [0, 5] and np.isnan(out.loc[2, "Income"])
    assert out["Gender_man"].tolist()[:2] == [1, 0] and np.isnan(out.loc[2, "Gender_man"])
    assert out["Sexual_Orientation_straight"].tolist()[:2] == [1, 0]
    assert np.isnan(out.loc[2, "Sexual_Orientation_straight"])


def test_race_categories_with_commas_inside():
    indigenous = "American Indian, Alaska Native, or other Indigenous culture"
    assert race_categories(f"{indigenous},East Asian,White") == {indigenous, "East Asian", "White"}
    assert race_categories("White") == {"White"}
    assert race_categories("Latino or Hispanic,White") == {"Latino or Hispanic", "White"}
    assert race_categories("Klingon") == {"Other"}
    assert race_categories(None) is None and race_categories("Prefer not to answer") is None
    out = encode_demographics(
        pd.DataFrame({"Race_Ethnicity": [f"{indigenous},White", "Black or African American", None]})
    )
    assert out.loc[0, ["Race_Ethnicity_Indigenous", "Race_Ethnicity_White"]].tolist() == [1, 1]
    assert out.loc[0, "Race_Ethnicity_Black"] == 0 and out.loc[1, "Race_Ethnicity_Black"] == 1
    assert out.loc[2].isna().all()
    white_only = encode_demographics(
        pd.DataFrame({"Race_Ethnicity": ["White", "Latino or Hispanic,White"]}), race="white_only"
    )
    assert white_only["Race_Ethnicity_white_only"].tolist() == [1, 0]


def test_release_counts():
    people = pd.read_csv(RELEASE_DIR / "annotations.csv", dtype=str, keep_default_na=False, na_values=[""])
    out = encode_demographics(people)
    assert out["Race_Ethnicity_White"].sum() == 69  # 64 White only + 5 multi-select answers with White
    assert out["Race_Ethnicity_Indigenous"].sum() == 3
    assert out["Race_Ethnicity_East_Asian"].sum() == 7
    assert out["Gender_man"].sum() == 52
    assert out["Sexual_Orientation_straight"].sum() == 88 and out["Sexual_Orientation_straight"].isna().sum() == 1
    assert out["Political_Affiliation"].isna().sum() == 2 and out["Income"].isna().sum() == 1
    assert out.drop(columns=["Sexual_Orientation_straight", "Political_Affiliation", "Income"]).notna().all().all()


def test_zscore():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, nan], "flat": [4.0, 4.0, nan, 4.0]})
    z = zscore(frame)
    assert z["a"].tolist()[:3] == pytest.approx([-1.0, 0.0, 1.0]) and np.isnan(z.loc[3, "a"])
    assert z["flat"].tolist()[:2] == [0.0, 0.0] and np.isnan(z.loc[2, "flat"])
