"""The one reader of the release format: validation, the long frame, and the reference figures."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.science import agreement
from benchmark.science.release import (
    DEMOGRAPHIC_COLUMNS,
    RELEASE_DIR,
    Release,
    ReleaseFormatError,
    annotator_id,
    release_read,
)

REPO = Path(__file__).resolve().parents[2]


def test_shape_ids_and_column_order(release_long):
    df = release_long
    assert df.shape == (15_000, 5 + 10 + 3 + 1 + 62)
    assert list(df.columns[:5]) == ["annotator", "prompt", "rating", "unsure", "trial"]
    assert list(df.columns[5:15]) == list(DEMOGRAPHIC_COLUMNS)
    assert list(df.columns[15:19]) == ["Factor_1", "Factor_2", "Factor_3", "harm_level"]
    assert sum(c.startswith("action_") for c in df.columns) == 16
    assert sum(c.startswith("effect_") for c in df.columns) == 7
    assert sum(c.startswith("value_topic_") for c in df.columns) == 39
    assert df["annotator"].iloc[0] == "P0001" and df["annotator"].iloc[-1] == "P0100"
    assert df["annotator"].nunique() == 100 and df["prompt"].nunique() == 150
    assert df["prompt"].iloc[:3].tolist() == ["1", "2", "3"]
    assert df["trial"].dtype == np.int64


def test_values_match_the_files(release_long):
    raw = pd.read_csv(RELEASE_DIR / "annotations.csv")
    prompts = pd.read_csv(RELEASE_DIR / "prompts.csv")
    row = release_long[(release_long["annotator"] == "P0007") & (release_long["prompt"] == "42")].iloc[0]
    source = raw.iloc[6]
    assert row["trial"] == source["Trial_42"]
    if np.isnan(source["Rating_42"]):
        assert row["unsure"] and np.isnan(row["rating"])
    else:
        assert row["rating"] == source["Rating_42"] and not row["unsure"]
    assert row["harm_level"] == prompts.loc[prompts["Question_Index"] == 42, "Harm_Level"].item()
    assert row["Factor_2"] == source["Factor_2"]


def test_unsure_count_and_strings_kept_verbatim(release_long):
    assert int(release_long["unsure"].sum()) == 275
    assert release_long["rating"].isna().sum() == 275
    # leading spaces are part of the released answers
    assert " Straight (heterosexual)" in set(release_long["Sexual_Orientation"])
    assert " Very important" in set(release_long["Religion_Importance"])


def test_reference_figures(release_long):
    matrix = agreement.RatingsMatrix.from_frame(release_long)
    assert round(agreement.krippendorff_alpha(matrix, level="interval"), 3) == 0.413
    assert round(agreement.spearman_harm_level_vs_mean(matrix), 3) == 0.589
    assert matrix.n_unsure == 275 and matrix.n_ratings == 14_725


def test_include_text():
    df = release_read(RELEASE_DIR).long(include_text=True)
    assert df.columns[2] == "text" and df["text"].str.len().min() > 10


def test_the_release_as_read():
    release = release_read(RELEASE_DIR)
    assert isinstance(release, Release)
    assert release.ratings.shape == release.trials.shape == (100, 150)
    assert release.participants[:3] == ["0", "1", "2"]
    # Annotator ids are the file's row order, whatever Participant_ID says: the importer's pseudonyms.
    assert release.annotators[:3] == ["P0001", "P0002", "P0003"] and annotator_id(99) == "P0100"
    assert len(release.feature_columns) == 62 and release.trials.dtype == np.int64
    assert int(np.isnan(release.ratings).sum()) == 275


def test_rows_follow_the_file_and_prompts_their_number(tmp_path):
    prompts = pd.read_csv(RELEASE_DIR / "prompts.csv", dtype=str, keep_default_na=False)
    annotations = pd.read_csv(RELEASE_DIR / "annotations.csv", dtype=str, keep_default_na=False)
    prompts.iloc[::-1].to_csv(tmp_path / "prompts.csv", index=False)  # prompt 150 first
    annotations.iloc[::-1].to_csv(tmp_path / "annotations.csv", index=False)  # participant 99 first
    long = release_read(tmp_path).long()
    assert long["prompt"].iloc[:3].tolist() == ["1", "2", "3"]
    # P0001 is now the file's first row: participant 99, whose ratings are the release's last row's.
    first = long[long["annotator"] == "P0001"]
    last_row = annotations.iloc[-1][[f"Rating_{q}" for q in range(1, 151)]]
    expected = pd.to_numeric(last_row.replace("", np.nan)).to_numpy(float)
    np.testing.assert_array_equal(first["rating"].to_numpy(), expected)


def test_a_bad_release_raises_every_problem_at_once(tmp_path):
    prompts = pd.read_csv(RELEASE_DIR / "prompts.csv", dtype=str, keep_default_na=False)
    annotations = pd.read_csv(RELEASE_DIR / "annotations.csv", dtype=str, keep_default_na=False)
    prompts.to_csv(tmp_path / "prompts.csv", index=False)
    annotations.loc[1, "Rating_3"] = "lots"
    annotations.loc[4, "Trial_7"] = "-1"
    annotations.to_csv(tmp_path / "annotations.csv", index=False)
    with pytest.raises(ReleaseFormatError) as error:
        release_read(tmp_path)
    assert isinstance(error.value, ValueError)
    assert error.value.problems == [
        "annotations.csv, row 2, column Rating_3: rating 'lots' is not a number (participant 1)",
        "annotations.csv, row 5, column Trial_7: trial position '-1' is not a whole number ≥ 0",
    ]
    assert str(error.value) == "\n".join(error.value.problems)
    with pytest.raises(ReleaseFormatError, match="not a directory"):
        release_read(tmp_path / "missing")


def test_science_modules_do_not_import_django():
    code = (
        "import sys\n"
        "import benchmark.science.agreement, benchmark.science.traits, benchmark.science.mixed_effects\n"
        "import benchmark.science.report, benchmark.science.release\n"
        "assert not [m for m in sys.modules if m == 'django' or m.startswith('django.')], 'django imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
