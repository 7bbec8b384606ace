"""The importers never half-write (Hypothesis): files made by mutating a valid small one either
import completely or are refused with the importer's error and a message, the tables unchanged.

Two importers: a release directory (`pluriharms_import`, prompts.csv + annotations.csv) and a
predictions CSV (`benchmark.uploads.predictions_upload_save`). Mutations: columns dropped,
duplicated or renamed; cells made non-numeric, out of range, huge, formula-like or NUL; rows
truncated, lengthened, duplicated or all removed; bytes cut, made non-UTF-8 or re-encoded; a file
emptied or missing.
"""

from __future__ import annotations

import csv
import io
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from annotation.importers import ImportProblem, pluriharms_import
from annotation.models import Annotator, Assignment, Prompt, Rating, Study, Upload
from benchmark.science.release import ANNOTATIONS_FILE, PROMPTS_FILE, release_read
from benchmark.uploads import predictions_upload_save
from config.errors import ApplicationError
from tests.conftest import write_small_release

N_PROMPTS, N_ANNOTATORS = 3, 3
PROPERTY = settings(
    max_examples=100,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What a mutated cell may hold: bad numbers, numbers out of range or too big for a column, formula
# cells, huge or odd text, and a few valid values so that some mutations leave a good file.
CELL_VALUES = [
    "",
    " ",
    "high",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "-1",
    "-0",
    "101",
    "100.0000001",
    "0.5",
    "50",
    "07",
    "1e20",
    "3000000000",
    "9" * 30,
    "9" * 70,
    "0" * 80 + "1",
    "9" * 5000,
    "x" * 100_000,
    "=1+1",
    "+5",
    "-3",
    "@SUM(A1:A9)",
    "=cmd|' /C calc'!A0",
    "P0001",
    "P" + "1" * 12,
    "0",
    "2",
    "zéro ∞ 💥",
    "a\x00b",
    "line\nbreak",
    'quote"inside',
    "<script>alert(1)</script>",
]

KEY_COLUMNS = (
    "Question_Index",
    "Question_Content",
    "Harm_Level",
    "Participant_ID",
    "Rating_",
    "Trial_",
    "Factor_",
    "prompt",
    "annotator",
    "prediction",
)

BAD_BYTES = [b"\xff", b"\xc3\x28", b"\x80abc", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf"]


def _rows(raw: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(raw.decode("utf-8"))))


def _text(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


@st.composite
def table_mutation(draw, rows: list[list[str]]) -> list[list[str]]:
    """One change to a parsed CSV (header row first)."""
    rows = [list(r) for r in rows]
    width = len(rows[0])
    kind = draw(
        st.sampled_from(
            ["drop_column", "duplicate_column", "rename_column", "cell", "cell", "cell", "truncate_row", "extend_row"]
            + ["duplicate_row", "no_rows", "swap_columns", "swap_rows"]
        )
    )
    # Half the time one of the columns the importer parses (ids, ratings, trials, levels, factors).
    key_columns = [j for j, name in enumerate(rows[0]) if name.startswith(KEY_COLUMNS)]
    if key_columns and draw(st.booleans()):
        column = draw(st.sampled_from(key_columns))
    else:
        column = draw(st.integers(0, width - 1))
    row = draw(st.integers(1, len(rows) - 1))
    if kind == "drop_column":
        rows = [r[:column] + r[column + 1 :] for r in rows]
    elif kind == "duplicate_column":
        rows = [r + [r[column]] if column < len(r) else r for r in rows]
    elif kind == "rename_column":
        name = rows[0][column]
        rows[0][column] = draw(
            st.sampled_from(
                [
                    name.upper(),
                    f" {name} ",
                    name.replace("_", "_0", 1),
                    name + "x",
                    "",
                    "Rating_99",
                    "Trial_" + "1" * 5000,
                    "Rating_" + "9" * 70,
                    "action_new",
                    rows[0][(column + 1) % width],
                ]
            )
        )
    elif kind == "cell" and column < len(rows[row]):  # (a row cut short by an earlier change has fewer)
        rows[row][column] = draw(st.sampled_from(CELL_VALUES) | st.text(max_size=12))
    elif kind == "truncate_row":
        rows[row] = rows[row][: draw(st.integers(0, width - 1))]
    elif kind == "extend_row":
        rows[row] = rows[row] + draw(st.lists(st.sampled_from(CELL_VALUES[:15]), min_size=1, max_size=3))
    elif kind == "duplicate_row":
        rows.insert(draw(st.integers(1, len(rows))), list(rows[row]))
    elif kind == "no_rows":
        rows = rows[:1]
    elif kind == "swap_columns":
        other = draw(st.integers(0, width - 1))
        for r in rows:
            if max(column, other) < len(r):
                r[column], r[other] = r[other], r[column]
    elif kind == "swap_rows" and len(rows) > 2:
        rows[1], rows[-1] = rows[-1], rows[1]
    return rows


@st.composite
def byte_mutation(draw, raw: bytes) -> bytes | None:
    """One change to a file's bytes; None removes the file."""
    kind = draw(st.sampled_from(["cut", "insert", "empty", "missing", "utf16", "latin1", "cr", "bom", "spaces"]))
    at = draw(st.integers(0, len(raw)))
    if kind == "cut":
        return raw[:at]
    if kind == "insert":
        return raw[:at] + draw(st.sampled_from(BAD_BYTES)) + raw[at:]
    if kind == "empty":
        return b""
    if kind == "missing":
        return None
    if kind == "utf16":
        return raw.decode("utf-8", errors="replace").encode("utf-16")
    if kind == "latin1":
        return raw.decode("utf-8", errors="replace").replace("e", "é", 3).encode("latin-1", errors="replace")
    if kind == "cr":
        return raw.replace(b"\n", b"\r")
    if kind == "bom":
        return b"\xef\xbb\xbf" + raw
    return b"\n \n" + raw + b"\n\n"


@st.composite
def mutated(draw, files: dict[str, bytes]) -> dict[str, bytes | None]:
    """1–3 changes, each to one of the files, at the table level (most) or the byte level."""
    out: dict[str, bytes | None] = dict(files)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(out)))
        raw = out[name]
        if raw is None:
            continue
        try:
            rows = _rows(raw)
        except (UnicodeDecodeError, csv.Error):
            rows = []
        if len(rows) >= 2 and rows[0] and draw(st.integers(0, 3)):
            out[name] = _text(draw(table_mutation(rows)))
        else:
            out[name] = draw(byte_mutation(raw))
    return out


def _counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Study, Prompt, Annotator, Assignment, Rating))


# --------------------------------------------------------------------------- the release importer


@pytest.fixture(scope="module")
def release_files() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as directory:
        small = write_small_release(Path(directory), n_prompts=N_PROMPTS, n_annotators=N_ANNOTATORS)
        return {name: (small / name).read_bytes() for name in (PROMPTS_FILE, ANNOTATIONS_FILE)}


_slugs = itertools.count()


# transaction=True: the importer runs as it does in production, outside any test transaction (on
# SQLite in short transactions with a clean-up on failure, on PostgreSQL in one transaction).
@pytest.mark.django_db(transaction=True)
@PROPERTY
@given(data=st.data())
def test_a_mutated_release_imports_completely_or_is_refused_without_writes(release_files, data):
    files = data.draw(mutated(release_files), label="files")
    slug = f"prop-{next(_slugs)}"
    before = _counts()
    with tempfile.TemporaryDirectory() as directory:
        for name, raw in files.items():
            if raw is not None:
                (Path(directory) / name).write_bytes(raw)
        try:
            study = pluriharms_import(directory=directory, slug=slug)
        except ImportProblem as error:
            event("refused")
            assert error.message.strip() and error.problems, "a refusal says what is wrong"
            assert all(p.startswith((PROMPTS_FILE, ANNOTATIONS_FILE, directory)) for p in error.problems)
            assert _counts() == before, "a refused file leaves every table as it was"
            assert not Study.objects.filter(slug=slug).exists()
            return
        release = release_read(directory)
    event("imported")
    n_p, n_a = len(release.prompts), len(release.participants)
    assert np.subtract(_counts(), before).tolist() == [1, n_p, n_a, n_a * n_p, n_a * n_p], "all of it, once"
    assert study.meta.get("importing") is None and study.status == Study.Status.CLOSED
    stored = Rating.objects.filter(annotator__study=study)
    assert stored.filter(unsure=True).count() == int(np.isnan(release.ratings).sum())
    assert sorted(stored.exclude(unsure=True).values_list("value", flat=True)) == sorted(
        release.ratings[~np.isnan(release.ratings)].tolist()
    )
    assert sorted(study.prompts.values_list("external_id", flat=True)) == sorted(release.prompts["external_id"])
    positions = sorted(Assignment.objects.filter(annotator__study=study).values_list("position", flat=True))
    assert positions == sorted(release.trials.ravel().tolist())


# Files the property found (or that only PostgreSQL refuses at write time), kept as fixed cases:
# before the fix each one raised something other than ImportProblem. Each: the file the problem is
# in, the words of the refusal, and the edits (a prompt id changes in both files).
def _prompt_id(new: str) -> list[tuple[str, str, str]]:
    return [
        (PROMPTS_FILE, "\n1,", f"\n{new},"),
        (ANNOTATIONS_FILE, "Rating_1,", f"Rating_{new},"),
        (ANNOTATIONS_FILE, "Trial_1,", f"Trial_{new},"),
    ]


FOUND = {
    # int() of a 5,000-digit run raised ValueError.
    "5,000-digit Trial_ column": (
        ANNOTATIONS_FILE,
        "no prompt with Question_Index",
        [(ANNOTATIONS_FILE, "Trial_1,", "Trial_" + "1" * 5000 + ",")],
    ),
    "5,000-digit prompt id": (PROMPTS_FILE, "has more than 18 digits", _prompt_id("9" * 5000)),
    # A prompt id longer than the 64 characters of Prompt.external_id (PostgreSQL: DataError).
    "70-digit prompt id": (PROMPTS_FILE, "has more than 18 digits", _prompt_id("9" * 70)),
    # 1e20 was cast to a negative int64; 3e9 overflows the integer column (PostgreSQL: DataError).
    "trial 1e20": (ANNOTATIONS_FILE, "is above 2147483647", [(ANNOTATIONS_FILE, ",10,92,81\n", ",1e20,92,81\n")]),
    "trial 3000000000": (
        ANNOTATIONS_FILE,
        "is above 2147483647",
        [(ANNOTATIONS_FILE, ",10,92,81\n", ",3000000000,92,81\n")],
    ),
    # PostgreSQL cannot store a NUL character in text or JSON.
    "NUL in a prompt text": (PROMPTS_FILE, "NUL character", [(PROMPTS_FILE, "Ignore their", "Ign\x00ore their")]),
    "NUL in a demographic": (
        ANNOTATIONS_FILE,
        "NUL character",
        [(ANNOTATIONS_FILE, "Black or African", "Black\x00or African")],
    ),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", FOUND)
def test_files_the_property_found_are_refused_without_writes(release_files, tmp_path, case):
    name, words, edits = FOUND[case]
    files = dict(release_files)
    for file, old, new in edits:
        text = files[file].decode("utf-8")
        assert old in text
        files[file] = text.replace(old, new, 1).encode("utf-8")
    for file, raw in files.items():
        (tmp_path / file).write_bytes(raw)
    before = _counts()
    with pytest.raises(ImportProblem) as refused:
        pluriharms_import(directory=tmp_path, slug="found")
    problems = refused.value.problems
    assert all(p.startswith(name) for p in problems) and words in problems[0], problems[0][:300]
    assert _counts() == before


# --------------------------------------------------------------------------- the predictions upload


@pytest.fixture
def predictions_study(db, tmp_path, researcher):
    small = write_small_release(tmp_path / "small", n_prompts=N_PROMPTS, n_annotators=N_ANNOTATORS)
    return pluriharms_import(directory=small, slug="predictions", owner=researcher)


def _valid_predictions(study: Study) -> bytes:
    rows = [["prompt", "annotator", "prediction"]]
    for i, (prompt, annotator) in enumerate(
        itertools.product(
            study.prompts.order_by("order").values_list("external_id", flat=True),
            study.annotators.order_by("id").values_list("pseudonym", flat=True),
        )
    ):
        rows.append([prompt, annotator, str((7 * i) % 101)])
    return _text(rows)


def _stored_files(settings) -> int:
    root = Path(settings.MEDIA_ROOT) / "uploads"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


@PROPERTY
@given(data=st.data())
def test_a_mutated_predictions_file_is_stored_whole_or_refused_without_writes(
    predictions_study, researcher, settings, data
):
    valid = _valid_predictions(predictions_study)
    raw = data.draw(mutated({"predictions.csv": valid}), label="file")["predictions.csv"]
    if raw is None:
        raw = b""
    before = (Upload.objects.count(), _stored_files(settings))
    upload = SimpleUploadedFile("predictions.csv", raw, content_type="text/csv")
    try:
        row = predictions_upload_save(study=predictions_study, upload=upload, user=researcher)
    except ApplicationError as error:
        assert error.message.strip(), "a refusal says what is wrong"
        assert error.status_code == 400
        assert (Upload.objects.count(), _stored_files(settings)) == before, "nothing is kept of a refused file"
        event("refused")
        return
    event("stored")
    assert (Upload.objects.count(), _stored_files(settings)) == (before[0] + 1, before[1] + 1)
    assert row.size == len(raw) and Path(row.file.path).read_bytes() == raw
