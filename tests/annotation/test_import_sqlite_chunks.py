"""A large import on SQLite must not lock everyone else out.

SQLite has one writer at a time; others wait up to their busy timeout (20 s in settings) and then
fail, so an import written as one transaction gives annotators of other studies errors for as long
as it runs. On SQLite the importer writes in short transactions, to a study that stays hidden
(draft, no owner, meta["importing"]) until the last one, and deletes what it wrote if any fails.

These tests run the importer against a real file database (a copy of the test database) in a
thread of its own, and watch it from a second, plain sqlite3 connection, as another process would.
"""

import copy
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, connections

from annotation import importers
from annotation.exports import export_study
from tests.conftest import RELEASE_DIR, write_small_release

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="SQLite's single writer; PostgreSQL keeps one transaction"
    ),
]

SECONDS_PER_RATING = 0.0002  # a slow disk: 3 s for the release's 15,000 ratings, written in one go
CHUNK_RATINGS = 1500  # 10 annotators of the release per chunk: 0.3 s of "disk" each
WRITER_TIMEOUT = 1.5  # the other writer's busy timeout: longer than a chunk, shorter than the whole


@pytest.fixture
def file_db(tmp_path, researcher):
    """A file copy of the test database (schema and the researcher), and a way to run code on it."""
    path = tmp_path / "import.sqlite3"
    connection.ensure_connection()
    target = sqlite3.connect(path)
    connection.connection.backup(target)
    target.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, at REAL)")
    target.commit()
    target.close()
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    settings_dict["NAME"] = str(path)

    def run_in_thread(function, outcome: dict) -> threading.Thread:
        def target_function():
            from django.db.utils import load_backend

            wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "default")
            connections["default"] = wrapper  # this thread only: the handler keeps connections per thread
            try:
                outcome["value"] = function()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc
            finally:
                wrapper.close()

        thread = threading.Thread(target=target_function)
        thread.start()
        return thread

    return path, run_in_thread


def _slow_chunks(monkeypatch, calls: list, fail_when=None):
    """Ratings writes that take SECONDS_PER_RATING each, inside the importer's transaction."""
    real = importers.bulk_insert_ratings

    def slow(**kwargs):
        started = time.monotonic()
        if fail_when is not None and fail_when(kwargs):
            raise RuntimeError("disk full")
        written = real(**kwargs)
        time.sleep(len(kwargs["annotator_ids"]) * SECONDS_PER_RATING)
        calls.append((started, time.monotonic()))
        return written

    monkeypatch.setattr(importers, "bulk_insert_ratings", slow)
    # raising=False: on an importer without chunks the attribute does not exist, and the test then
    # fails on its assertions, not here.
    monkeypatch.setattr(importers, "IMPORT_CHUNK_RATINGS", CHUNK_RATINGS, raising=False)


def _study_row(path: Path, slug: str):
    with sqlite3.connect(path, timeout=WRITER_TIMEOUT) as probe:
        return probe.execute(
            "SELECT id, status, owner_id, meta FROM annotation_study WHERE slug = ?", [slug]
        ).fetchone()


def _count(path: Path, sql: str, *params) -> int:
    with sqlite3.connect(path, timeout=WRITER_TIMEOUT) as probe:
        return probe.execute(sql, params).fetchone()[0]


def test_another_writer_gets_in_between_chunks(file_db, monkeypatch, researcher):
    path, run_in_thread = file_db
    calls: list = []
    _slow_chunks(monkeypatch, calls)
    outcome: dict = {}
    thread = run_in_thread(
        lambda: importers.pluriharms_import(directory=RELEASE_DIR, slug="big", owner=researcher).pk, outcome
    )
    writes, refused = [], []
    writer = sqlite3.connect(path, timeout=WRITER_TIMEOUT, isolation_level=None)
    while thread.is_alive():
        started = time.monotonic()
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO probe (at) VALUES (?)", [started])
            writer.execute("COMMIT")
            writes.append((started, time.monotonic()))
        except sqlite3.OperationalError as exc:
            refused.append((started, time.monotonic(), str(exc)))
        time.sleep(0.05)
    thread.join()
    writer.close()
    assert "error" not in outcome, outcome.get("error")
    assert not refused, f"another writer was locked out for {WRITER_TIMEOUT} s: {refused[:3]}"
    assert len(calls) >= 5, "the ratings were written in one transaction"
    during = [w for w in writes if calls[0][0] < w[0] and w[1] < calls[-1][1]]
    assert len(during) >= 3, "no write got in while the import was running"
    # Finished: complete and visible.
    study_id, status, owner_id, meta = _study_row(path, "big")
    assert (status, owner_id) == ("closed", researcher.pk) and '"importing"' not in meta
    assert (
        _count(
            path,
            "SELECT COUNT(*) FROM annotation_rating r JOIN annotation_annotator a "
            "ON a.id = r.annotator_id WHERE a.study_id = ?",
            study_id,
        )
        == 15000
    )


def test_study_is_hidden_while_importing(file_db, monkeypatch, researcher):
    path, run_in_thread = file_db
    seen = []

    def look(kwargs):
        seen.append(_study_row(path, "hidden"))  # as another process sees it, between chunks
        return False

    _slow_chunks(monkeypatch, [], fail_when=look)
    outcome: dict = {}
    run_in_thread(
        lambda: importers.pluriharms_import(directory=RELEASE_DIR, slug="hidden", owner=researcher), outcome
    ).join()
    assert "error" not in outcome, outcome.get("error")
    assert len(seen) >= 5 and seen[0] is not None, "nothing was committed before the ratings"
    for _, status, owner_id, meta in seen:
        assert status == "draft" and owner_id is None and '"importing": true' in meta
    _, status, owner_id, meta = _study_row(path, "hidden")
    assert status == "closed" and owner_id == researcher.pk and '"importing"' not in meta


def test_failure_in_a_late_chunk_leaves_nothing(file_db, monkeypatch, researcher, tmp_path):
    path, run_in_thread = file_db
    committed = []

    def fail_late(kwargs):
        # Before failing, what another process sees: the earlier chunks are committed.
        study = _study_row(path, "half")
        if study is not None:
            committed.append(_count(path, "SELECT COUNT(*) FROM annotation_annotator WHERE study_id = ?", study[0]))
        return study is None or len(committed) == 8

    _slow_chunks(monkeypatch, [], fail_when=fail_late)
    tables = (
        "annotation_study",
        "annotation_prompt",
        "annotation_annotator",
        "annotation_assignment",
        "annotation_rating",
    )
    before = {t: _count(path, f"SELECT COUNT(*) FROM {t}") for t in tables}
    outcome: dict = {}
    run_in_thread(
        lambda: importers.pluriharms_import(directory=RELEASE_DIR, slug="half", owner=researcher), outcome
    ).join()
    assert isinstance(outcome.get("error"), RuntimeError)
    assert committed and committed[-1] >= 70, f"the failure was not in a late chunk: {committed}"
    assert {t: _count(path, f"SELECT COUNT(*) FROM {t}") for t in tables} == before
    assert _study_row(path, "half") is None
    # And the slug is free again.
    monkeypatch.undo()
    outcome = {}
    small = write_small_release(tmp_path / "small")
    run_in_thread(lambda: importers.pluriharms_import(directory=small, slug="half").pk, outcome).join()
    assert "error" not in outcome, outcome.get("error")


def test_chunked_import_round_trips_byte_for_byte(file_db, monkeypatch, researcher, tmp_path):
    _, run_in_thread = file_db
    calls: list = []
    monkeypatch.setattr(importers, "IMPORT_CHUNK_RATINGS", CHUNK_RATINGS, raising=False)
    real = importers.bulk_insert_ratings
    monkeypatch.setattr(importers, "bulk_insert_ratings", lambda **kw: calls.append(1) or real(**kw))
    out = tmp_path / "out"

    def import_and_export():
        study = importers.pluriharms_import(directory=RELEASE_DIR, slug="trip", owner=researcher)
        export_study(study=study, fmt="pluriharms", out_dir=out)

    outcome: dict = {}
    run_in_thread(import_and_export, outcome).join()
    assert "error" not in outcome, outcome.get("error")
    assert len(calls) >= 5
    for name in ("prompts.csv", "annotations.csv"):
        assert (out / name).read_bytes() == (RELEASE_DIR / name).read_bytes(), name
