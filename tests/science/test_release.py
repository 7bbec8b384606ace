"""The release read straight into the long frame, and the reference figures computed from it."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.science import agreement
from benchmark.science.release import DEMOGRAPHIC_COLUMNS, load_release_long

from .conftest import RELEASE_DIR

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
    df = load_release_long(RELEASE_DIR, include_text=True)
    assert df.columns[2] == "text" and df["text"].str.len().min() > 10


def test_science_modules_do_not_import_django():
    code = (
        "import sys\n"
        "import benchmark.science.agreement, benchmark.science.traits, benchmark.science.mixed_effects\n"
        "import benchmark.science.report, benchmark.science.release\n"
        "assert not [m for m in sys.modules if m == 'django' or m.startswith('django.')], 'django imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
