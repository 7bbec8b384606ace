"""The fast import (issue 14): column-wise validation of a big file, binary COPY on PostgreSQL with
the foreign keys checked set-wise when the row triggers are skipped, and still all or nothing."""

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from annotation import bulk
from annotation.importers import pluriharms_import
from annotation.models import Annotator, Assignment, Prompt, Rating, Study
from benchmark.science.release.columns import DEMOGRAPHIC_COLUMNS
from tests.conftest import write_small_release

pytestmark = pytest.mark.django_db

postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY path is PostgreSQL's")


def _table_counts():
    return tuple(m.objects.count() for m in (Study, Prompt, Annotator, Assignment, Rating))


def _big_release(tmp_path, n_annotators=1200):
    """The release's first 5 prompts, its 100 participants' rows repeated to n_annotators, ids renumbered."""
    directory = write_small_release(tmp_path / "big", n_prompts=5, n_annotators=100)
    frame = pd.read_csv(directory / "annotations.csv", dtype=str, keep_default_na=False)
    frame = frame.iloc[np.arange(n_annotators) % len(frame)].reset_index(drop=True)
    frame["Participant_ID"] = [str(i) for i in range(n_annotators)]
    frame.to_csv(directory / "annotations.csv", index=False)
    return directory, frame


def test_bad_cells_deep_in_a_big_file_are_named_by_row_and_nothing_is_written(tmp_path):
    directory, frame = _big_release(tmp_path)
    frame.loc[1186, "Rating_4"] = "1e3"  # a number, outside the scale
    frame.loc[1187, "Rating_2"] = "lots"
    frame.loc[1188, "Trial_5"] = "2.5"
    frame.loc[1199, "Factor_2"] = "?"
    frame.to_csv(directory / "annotations.csv", index=False)
    Study.objects.create(slug="untouched", title="An existing study")
    before = _table_counts()
    with pytest.raises(CommandError) as error:
        call_command("import_pluriharms", str(directory), "--study", "big")
    message = str(error.value)
    assert "nothing was written" in message
    assert "annotations.csv, row 1187, column Rating_4: rating 1000 is outside 0–100 (participant 1186)" in message
    assert "annotations.csv, row 1188, column Rating_2: rating 'lots' is not a number (participant 1187)" in message
    assert "annotations.csv, row 1189, column Trial_5: trial position '2.5' is not a whole number ≥ 0" in message
    assert "annotations.csv, row 1200, column Factor_2: '?' is not a number" in message
    assert _table_counts() == before


def test_a_big_file_imports_every_cell(tmp_path):
    directory, frame = _big_release(tmp_path)
    study = pluriharms_import(directory=directory, slug="big")
    ratings = pd.DataFrame(
        Rating.objects.filter(annotator__study=study).values_list(
            "annotator__source_id", "prompt__external_id", "value", "unsure", "assignment__position"
        ),
        columns=["participant", "prompt", "value", "unsure", "position"],
    )
    assert len(ratings) == 1200 * 5
    expected = frame.set_index("Participant_ID")
    for row in ratings.sample(300, random_state=1).itertuples():
        cell = expected.loc[row.participant, f"Rating_{row.prompt}"]
        assert (cell == "" and row.unsure and np.isnan(row.value)) or float(cell) == row.value
        assert int(expected.loc[row.participant, f"Trial_{row.prompt}"]) == row.position
    same = Rating.objects.filter(
        annotator__study=study, assignment__annotator_id=F("annotator_id"), assignment__prompt_id=F("prompt_id")
    )
    assert same.count() == len(ratings)


def _one_rating(annotator_id, prompt_id, value=50.0):
    return bulk.bulk_insert_ratings(
        annotator_ids=np.array([annotator_id]),
        prompt_ids=np.array([prompt_id]),
        positions=np.array([0]),
        values=np.array([value]),
        unsure=np.array([False]),
    )


def _replication_role():
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        return cursor.fetchone()[0]


@postgresql_only
@pytest.mark.parametrize("triggers", ["skipped", "kept"])
def test_a_missing_annotator_is_refused_with_or_without_row_triggers(small_study, triggers, monkeypatch):
    if triggers == "kept":  # a role that may not set session_replication_role
        monkeypatch.setattr(bulk, "_row_triggers_skipped", lambda cursor: None)
    prompt = small_study.prompts.first()
    before = _table_counts()
    with pytest.raises(DatabaseError):
        with transaction.atomic():
            _one_rating(annotator_id=10**12, prompt_id=prompt.pk)
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the deferred triggers, now: the test never commits
    assert _table_counts() == before
    assert _replication_role() == "origin"


@postgresql_only
def test_row_triggers_are_back_after_the_write(small_study):
    annotator = Annotator.objects.create(study=small_study, pseudonym="P9999")
    prompt = small_study.prompts.first()
    with transaction.atomic():
        assert _one_rating(annotator_id=annotator.pk, prompt_id=prompt.pk) == 1
        assert _replication_role() == "origin"
        # A later row of the same transaction is checked by its trigger again.
        with pytest.raises(DatabaseError):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO annotation_assignment (annotator_id, prompt_id, kind, position) "
                    "VALUES (%s, %s, %s, 1)",
                    [10**12, prompt.pk, "prompt"],
                )
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    rating = Rating.objects.get(annotator=annotator)
    assert rating.value == 50.0 and rating.assignment.annotator_id == annotator.pk


@postgresql_only
def test_a_failing_copy_leaves_nothing_and_the_triggers_on(small_release):
    """A value the database refuses (its check constraint) in the middle of the ratings COPY."""
    import annotation.importers as importers

    real = importers.bulk_insert_ratings

    def corrupt(**kwargs):
        values = kwargs["values"].copy()
        values[len(values) // 2] = 10**6  # above any scale: rating_value_or_unsure refuses it
        kwargs["unsure"] = np.isnan(values)
        return real(**{**kwargs, "values": values})

    importers.bulk_insert_ratings = corrupt
    try:
        before = _table_counts()
        with pytest.raises(DatabaseError):
            pluriharms_import(directory=small_release, slug="half")
    finally:
        importers.bulk_insert_ratings = real
    assert _table_counts() == before
    assert _replication_role() == "origin"


@postgresql_only
def test_ids_are_drawn_from_the_sequence():
    with connection.cursor() as cursor:
        first = bulk.ids_reserve(cursor.cursor, "annotation_assignment", 5)
        second = bulk.ids_reserve(cursor.cursor, "annotation_assignment", 3)
    assert len(set(first.tolist())) == 5 and first.tolist() == sorted(first.tolist())
    assert second.min() > first.max()


@postgresql_only
def test_binary_blocks_hold_nulls_as_the_server_reads_them():
    values = np.array([1.5, np.nan, 3.0, np.nan])
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        cursor.execute("CREATE TEMPORARY TABLE copy_probe (a bigint, v double precision, k text, u boolean)")
        with cursor.copy("COPY copy_probe (a, v, k, u) FROM STDIN (FORMAT binary)") as copy:
            for block in bulk.binary_copy_blocks(
                [
                    (np.arange(4, dtype=np.int64), None),
                    (values, np.isnan(values)),
                    (b"xy", None),
                    (np.isnan(values), None),
                ],
                4,
            ):
                copy.write(block)
        cursor.execute("SELECT a, v, k, u FROM copy_probe ORDER BY a")
        assert cursor.fetchall() == [
            (0, 1.5, "xy", False),
            (1, None, "xy", True),
            (2, 3.0, "xy", False),
            (3, None, "xy", True),
        ]


@postgresql_only
def test_a_role_that_may_not_skip_the_triggers_keeps_them(small_study):
    """The refusal of SET session_replication_role costs a savepoint, not the transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE ROLE pluriharms_test_plain NOSUPERUSER")  # rolled back with the test
        cursor.execute("SET LOCAL ROLE pluriharms_test_plain")
        assert bulk._row_triggers_skipped(cursor.cursor) is None
        cursor.execute("RESET ROLE")
        assert _replication_role() == "origin"
        assert bulk._row_triggers_skipped(cursor.cursor) == "origin"
        assert _replication_role() == "replica"


def _ratings_match_their_assignments(study) -> int:
    """Ratings of `study` whose assignment has the same annotator and prompt (every one, if the ids held)."""
    return Rating.objects.filter(
        annotator__study=study, assignment__annotator_id=F("annotator_id"), assignment__prompt_id=F("prompt_id")
    ).count()


@postgresql_only
@pytest.mark.parametrize("other_draws", [0, 1, 7])
def test_assignment_ids_are_known_even_when_another_writer_draws_from_the_sequence(tmp_path, monkeypatch, other_draws):
    """The assignments take their ids from the column default in the COPY; the ratings name them. When
    another session draws ids meanwhile (simulated: values drawn between the marker and the COPY), the ids
    are read back instead of assumed consecutive."""
    directory, frame = _big_release(tmp_path, n_annotators=40)
    real_copy, real_ids = bulk._copy_binary, bulk._copied_ids
    read_back = []

    def copy_after_others(cursor, table, *args):
        if table == Assignment._meta.db_table and other_draws:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')::regclass) FROM generate_series(1, %s)",
                [table, other_draws],
            )
        return real_copy(cursor, table, *args)

    def spy(cursor, table, sequence, before, annotator_ids, n):
        ids = real_ids(cursor, table, sequence, before, annotator_ids, n)
        read_back.append(ids[0] != before + 1)
        return ids

    monkeypatch.setattr(bulk, "_copy_binary", copy_after_others)
    monkeypatch.setattr(bulk, "_copied_ids", spy)
    study = pluriharms_import(directory=directory, slug="gap")
    assert read_back == [other_draws > 0]
    n = 40 * 5
    assert Rating.objects.filter(annotator__study=study).count() == n
    assert _ratings_match_their_assignments(study) == n
    expected = frame.set_index("Participant_ID")
    for participant, prompt, position in Rating.objects.filter(annotator__study=study).values_list(
        "annotator__source_id", "prompt__external_id", "assignment__position"
    ):
        assert int(expected.loc[participant, f"Trial_{prompt}"]) == position


def test_annotators_keep_every_field_of_the_release(small_release):
    """The annotators are written column-wise on PostgreSQL, as model objects elsewhere: the same rows."""
    study = pluriharms_import(directory=small_release, slug="fields")
    source = pd.read_csv(small_release / "annotations.csv", dtype=str, keep_default_na=False)
    annotators = list(study.annotators.order_by("id"))
    demographic_columns = [c for c in source.columns if c in DEMOGRAPHIC_COLUMNS]
    assert [a.pseudonym for a in annotators] == [f"P{i:04d}" for i in range(1, len(source) + 1)]
    assert [a.source_id for a in annotators] == source["Participant_ID"].str.strip().tolist()
    for annotator, (_, row) in zip(annotators, source.iterrows()):
        assert annotator.status == Annotator.Status.COMPLETED
        assert annotator.recruitment_hash == "" and annotator.exclusion == "" and annotator.order_seed == 0
        assert annotator.created_at is not None and annotator.completed_at is None
        assert set(annotator.demographics) == set(demographic_columns)
        assert all(annotator.demographics[c] == row[c] for c in annotator.demographics)
        assert len(annotator.traits) == 3
        for column, value in annotator.traits.items():
            assert (value is None and row[column] == "") or value == float(row[column])
    assert len(demographic_columns) == 10


@postgresql_only
def test_columns_copy_refuses_what_is_not_a_field(small_study):
    with pytest.raises(ValueError, match="not fields of annotation.Annotator: nickname"):
        bulk.columns_copy(Annotator(study=small_study), {"nickname": ["x"]})
    with pytest.raises(ValueError, match="one value per row"):
        bulk.columns_copy(Annotator(study=small_study), {"pseudonym": ["a", "b"], "source_id": ["1"]})
