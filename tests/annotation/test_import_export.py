"""The release goes in and comes out unchanged; bad files are refused with a message and no writes."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotation.exports import export_study
from annotation.importers import ImportProblem, pluriharms_import
from annotation.models import Annotator, Assignment, Prompt, Rating, Study
from config.errors import ApplicationError

pytestmark = pytest.mark.django_db


def read_text(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_release_round_trip_reproduces_every_cell(release_study, release_dir, tmp_path):
    out = tmp_path / "out"
    call_command("export_study", "pluriharms", "--format", "pluriharms", "--out", str(out))

    source = pd.read_csv(release_dir / "annotations.csv")
    exported = pd.read_csv(out / "annotations.csv")
    assert list(exported.columns) == list(source.columns)
    rating_cols = [f"Rating_{i}" for i in range(1, 151)]
    trial_cols = [f"Trial_{i}" for i in range(1, 151)]
    src_ratings = source[rating_cols].to_numpy(dtype=float)
    out_ratings = exported[rating_cols].to_numpy(dtype=float)
    assert src_ratings.size == 15000
    assert np.isnan(out_ratings).sum() == np.isnan(src_ratings).sum() == 275
    assert np.array_equal(src_ratings, out_ratings, equal_nan=True)
    assert (~np.isnan(out_ratings)).sum() == 14725
    assert np.array_equal(source[trial_cols].to_numpy(), exported[trial_cols].to_numpy())
    demographic = source.columns[1:11]
    assert (source[demographic] == exported[demographic]).all().all()  # leading spaces included
    factors = ["Factor_1", "Factor_2", "Factor_3"]
    assert np.array_equal(source[factors].to_numpy(), exported[factors].to_numpy())
    pd.testing.assert_frame_equal(pd.read_csv(release_dir / "prompts.csv"), pd.read_csv(out / "prompts.csv"))
    # And, stronger than equal values: the very same bytes.
    assert (out / "annotations.csv").read_bytes() == (release_dir / "annotations.csv").read_bytes()
    assert (out / "prompts.csv").read_bytes() == (release_dir / "prompts.csv").read_bytes()


def test_import_creates_rows_with_pseudonyms(release_study):
    assert release_study.prompts.count() == 150
    assert release_study.annotators.count() == 100
    assert Rating.objects.filter(annotator__study=release_study).count() == 15000
    assert Rating.objects.filter(annotator__study=release_study, unsure=True).count() == 275
    first = release_study.annotators.order_by("id").first()
    assert first.pseudonym == "P0001" and first.source_id == "0"
    assert first.demographics["Gender"] == "Man"
    assert set(first.traits) == {"Factor_1", "Factor_2", "Factor_3"}
    prompt = release_study.prompts.get(external_id="1")
    assert prompt.harm_level == 0.5
    assert len(prompt.features) == 62
    assert prompt.features["action_Discrimination_Bias"] == pytest.approx(0.6794871794871795, abs=0)


@pytest.mark.parametrize(
    "fmt,reader",
    [
        ("long-csv", lambda p: pd.read_csv(p / "ratings.csv")),
        ("parquet", lambda p: pq.read_table(p / "ratings.parquet").to_pandas()),
        ("jsonl", lambda p: pd.read_json(p / "ratings.jsonl", lines=True, dtype={"prompt": str})),
    ],
)
def test_long_exports_one_row_per_rating_with_traits_and_features(small_study, tmp_path, fmt, reader):
    paths = export_study(study=small_study, fmt=fmt, out_dir=tmp_path / fmt)
    frame = reader(tmp_path / fmt)
    assert len(frame) == 4 * 5
    assert list(frame.columns[:6]) == ["annotator", "prompt", "rating", "unsure", "trial", "rt_ms"]
    assert set(frame["annotator"]) == {"P0001", "P0002", "P0003", "P0004"}
    assert {"Gender", "Factor_1", "harm_level", "action_Privacy", "value_topic_38"} <= set(frame.columns)
    unsure = frame["unsure"].astype(bool)
    assert frame.loc[unsure, "rating"].isna().all() and frame.loc[~unsure, "rating"].notna().all()
    manifest = json.loads((tmp_path / fmt / "manifest.json").read_text())
    assert manifest["format"] == fmt and len(paths) == 2
    # Pseudonymous ids only: the release's participant ids are not in the long table.
    assert "source_id" not in frame.columns and "Participant_ID" not in frame.columns


def test_long_export_values_match_the_source_cells(small_study, small_release, tmp_path):
    export_study(study=small_study, fmt="long-csv", out_dir=tmp_path)
    frame = pd.read_csv(tmp_path / "ratings.csv", dtype={"prompt": str})
    source = pd.read_csv(small_release / "annotations.csv")
    for _, row in frame.iterrows():
        participant = int(row["annotator"][1:]) - 1
        expected = source.loc[participant, f"Rating_{row['prompt']}"]
        assert (np.isnan(expected) and np.isnan(row["rating"])) or expected == row["rating"]
        assert row["trial"] == source.loc[participant, f"Trial_{row['prompt']}"]


def test_unknown_export_format_is_refused(small_study, tmp_path):
    with pytest.raises(ApplicationError, match="unknown export format 'xlsx'"):
        export_study(study=small_study, fmt="xlsx", out_dir=tmp_path)


def _table_counts():
    return tuple(m.objects.count() for m in (Study, Prompt, Annotator, Assignment, Rating))


def _edit(path, row, column, value):
    frame = read_text(path)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


# Each case: (how to break the files, the words the message must contain).
BAD_INPUTS = {
    "missing column": (
        lambda d: read_text(d / "annotations.csv").drop(columns=["Trial_3"]).to_csv(d / "annotations.csv", index=False),
        "annotations.csv: missing column(s): Trial_3",
    ),
    "extra column": (
        lambda d: read_text(d / "annotations.csv").assign(Shoe_Size="9").to_csv(d / "annotations.csv", index=False),
        "annotations.csv, column Shoe_Size: unexpected column",
    ),
    "extra prompt column": (
        lambda d: read_text(d / "prompts.csv").assign(Colour="red").to_csv(d / "prompts.csv", index=False),
        "prompts.csv: unexpected column(s): Colour",
    ),
    "rating above 100": (
        lambda d: _edit(d / "annotations.csv", 2, "Rating_4", "101"),
        "annotations.csv, row 3, column Rating_4: rating 101 is outside 0–100",
    ),
    "negative rating": (
        lambda d: _edit(d / "annotations.csv", 0, "Rating_1", "-3"),
        "annotations.csv, row 1, column Rating_1: rating -3 is outside 0–100",
    ),
    "rating not a number": (
        lambda d: _edit(d / "annotations.csv", 1, "Rating_2", "high"),
        "annotations.csv, row 2, column Rating_2: rating 'high' is not a number",
    ),
    "duplicate participant": (
        lambda d: _edit(d / "annotations.csv", 3, "Participant_ID", "0"),
        "annotations.csv, row 4, column Participant_ID: duplicate participant 0 (also row 1)",
    ),
    "rating without prompt": (
        lambda d: (
            read_text(d / "annotations.csv")
            .assign(Rating_99="5", Trial_99="7")
            .to_csv(d / "annotations.csv", index=False)
        ),
        "annotations.csv, column Rating_99: no prompt with Question_Index 99 in prompts.csv",
    ),
    "bad encoding": (
        lambda d: (d / "prompts.csv").write_bytes((d / "prompts.csv").read_bytes().replace(b"Ignore", b"Ign\xe9re", 1)),
        "prompts.csv: bad encoding: byte 0xe9 at line 2 is not UTF-8",
    ),
    "raw recruitment id": (
        lambda d: _edit(d / "annotations.csv", 0, "Participant_ID", "5f3c2a9e8b7d6c5b4a392817"),
        "is not a pseudonymous id",
    ),
    "trial not a number": (
        lambda d: _edit(d / "annotations.csv", 0, "Trial_5", "x"),
        "annotations.csv, row 1, column Trial_5: trial position 'x' is not a whole number",
    ),
    "duplicate trial": (
        lambda d: _edit(d / "annotations.csv", 0, "Trial_2", read_text(d / "annotations.csv").loc[0, "Trial_1"]),
        "annotations.csv, row 1: trial position",
    ),
    "missing file": (
        lambda d: (d / "annotations.csv").unlink(),
        "annotations.csv: file not found",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_file_row_column_and_writes_nothing(case, small_release, researcher):
    Study.objects.create(slug="untouched", title="An existing study")
    before = _table_counts()
    breaker, expected = BAD_INPUTS[case]
    breaker(small_release)
    with pytest.raises(CommandError) as error:
        call_command("import_pluriharms", str(small_release), "--study", "new-study")
    assert expected in str(error.value)
    assert "nothing was written" in str(error.value)
    assert _table_counts() == before


def test_existing_slug_is_refused_and_nothing_written(small_study, small_release):
    before = _table_counts()
    with pytest.raises(CommandError, match="a study with slug 'small' already exists"):
        call_command("import_pluriharms", str(small_release), "--study", "small")
    assert _table_counts() == before


def test_failure_during_the_write_rolls_back(small_release, monkeypatch):
    """Atomicity beyond validation: an error after rows were written leaves no trace."""
    import annotation.importers as importers

    def explode(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(importers, "bulk_insert_ratings", explode)
    before = _table_counts()
    with pytest.raises(RuntimeError):
        pluriharms_import(directory=small_release, slug="half")
    assert _table_counts() == before


def test_many_problems_are_all_reported(small_release):
    _edit(small_release / "annotations.csv", 0, "Rating_1", "500")
    _edit(small_release / "annotations.csv", 1, "Rating_2", "abc")
    with pytest.raises(ImportProblem) as error:
        pluriharms_import(directory=small_release, slug="x")
    assert len(error.value.problems) == 2


def test_any_size_release_round_trips(tmp_path, researcher):
    """Not only 100 x 150: a 3-prompt, 2-participant file with fractional ratings."""
    from tests.conftest import write_small_release

    directory = write_small_release(tmp_path / "tiny", n_prompts=3, n_annotators=2)
    _edit(directory / "annotations.csv", 0, "Rating_1", "12.5")
    study = pluriharms_import(directory=directory, slug="tiny")
    export_study(study=study, fmt="pluriharms", out_dir=tmp_path / "out")
    source = pd.read_csv(directory / "annotations.csv")
    exported = pd.read_csv(tmp_path / "out" / "annotations.csv")
    pd.testing.assert_frame_equal(source, exported, check_dtype=False)
    assert exported.loc[0, "Rating_1"] == 12.5
