"""An imported file may not name a column twice: pandas would keep one silently (renaming the other
`X.1`), so the study would be built from whichever copy it kept. Names are compared ignoring case and
surrounding spaces, and a prompt's Rating_/Trial_ column counts once however its id is written
(`Rating_01` is `Rating_1`). Refused like any bad file: file, column, message; nothing written."""

import csv

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from annotation.models import Annotator, Assignment, Prompt, Rating, Study

pytestmark = pytest.mark.django_db


def _read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _add_column(path, name, values):
    """Append a column under `name`, even one the header already has (pandas cannot write that)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows[0].append(name)
    for row, value in zip(rows[1:], values):
        row.append(value)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def _copy_column(path, source, name, change=None):
    values = _read(path)[source].tolist()
    _add_column(path, name, [change(v) for v in values] if change else values)


CASES = {
    "same rating column twice": (
        lambda d: _copy_column(d / "annotations.csv", "Rating_2", "Rating_2", lambda v: "0"),
        "annotations.csv, column Rating_2: duplicate column",
    ),
    "rating column with a leading zero": (
        lambda d: _copy_column(d / "annotations.csv", "Rating_1", "Rating_01", lambda v: "0"),
        "annotations.csv, column Rating_01: duplicate column: Rating_1 and Rating_01 both name prompt 1",
    ),
    "trial column with a leading zero": (
        lambda d: _copy_column(d / "annotations.csv", "Trial_3", "Trial_003"),
        "annotations.csv, column Trial_003: duplicate column: Trial_3 and Trial_003 both name prompt 3",
    ),
    "demographic column in another case": (
        lambda d: _copy_column(d / "annotations.csv", "Gender", " gender"),
        "annotations.csv, column ' gender': duplicate column: same name as Gender",
    ),
    "feature column in another case": (
        lambda d: _copy_column(d / "prompts.csv", "action_Privacy", "action_privacy", lambda v: "0.5"),
        "prompts.csv, column action_privacy: duplicate column: same name as action_Privacy",
    ),
    "feature column with a trailing space": (
        lambda d: _copy_column(d / "prompts.csv", "action_Privacy", "action_Privacy ", lambda v: "0.5"),
        "prompts.csv, column 'action_Privacy ': duplicate column: same name as action_Privacy",
    ),
    "prompt text twice": (
        lambda d: _copy_column(d / "prompts.csv", "Question_Content", "Question_Content", lambda v: "other"),
        "prompts.csv, column Question_Content: duplicate column",
    ),
    "prompt id with a leading zero": (
        lambda d: pd.concat(
            [_read(d / "prompts.csv"), _read(d / "prompts.csv").head(1).assign(Question_Index="01")]
        ).to_csv(d / "prompts.csv", index=False),
        "prompts.csv, row 6, column Question_Index: duplicate prompt 1 (also row 1)",
    ),
}


def _counts():
    return tuple(m.objects.count() for m in (Study, Prompt, Annotator, Assignment, Rating))


@pytest.mark.parametrize("case", sorted(CASES))
def test_duplicate_columns_are_refused_naming_the_column(case, small_release):
    before = _counts()
    breaker, expected = CASES[case]
    breaker(small_release)
    with pytest.raises(CommandError) as error:
        call_command("import_pluriharms", str(small_release), "--study", "dup")
    assert "nothing was written" in str(error.value)
    assert expected in str(error.value)
    assert _counts() == before


def test_a_column_named_like_a_pandas_copy_is_not_taken_for_one(small_release):
    """`Rating_1.1` is simply an unexpected column, not a duplicate of Rating_1."""
    _copy_column(small_release / "annotations.csv", "Rating_1", "Rating_1.1")
    with pytest.raises(CommandError) as error:
        call_command("import_pluriharms", str(small_release), "--study", "dup")
    assert "annotations.csv, column Rating_1.1: unexpected column" in str(error.value)
    assert "duplicate" not in str(error.value)
