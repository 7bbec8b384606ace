"""The participants table sorts thousands of rows with numpy (annotation.tables.SortedRows) in the order
django-tables2's own sort of the same list gives: None first ascending and last descending, ties kept."""

import random

import pytest
from django_tables2.data import TableListData

from annotation.models import Study
from annotation.tables import ParticipantsTable, SortedRows

COLUMNS = ["pseudonym", "status", "progress", "time_on_task_s", "median_rt_s", "checks", "too_fast", "agreement_r"]


def _rows(n: int) -> list[dict]:
    rng = random.Random(7)
    maybe = lambda value: None if rng.random() < 0.2 else value  # noqa: E731
    return [
        {
            "pseudonym": f"P{rng.randrange(1000):04d}",
            "status": rng.choice(["completed", "rating", "excluded"]),
            "exclusion_reason": "",
            "answered": rng.randrange(5),
            "assigned": rng.randrange(5, 7),
            "time_on_task_s": maybe(rng.uniform(0, 900)),
            "median_rt_s": maybe(rng.choice([1.5, 2.0, 3.25])),
            "checks_passed": rng.randrange(3),
            "checks_failed": rng.randrange(2),
            "too_fast": rng.randrange(3),
            "straight_lining": maybe(rng.random()),
            "surveys_done": 0,
            "surveys_required": 0,
            "agreement_r": maybe(round(rng.uniform(-1, 1), 1)),
            "expected_disengaged": maybe(1.0),
            "latent_flag": None,
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("descending", [False, True])
def test_numpy_order_is_django_tables2_order(column, descending):
    study = Study(slug="s")
    rows = _rows(300)
    order = ("-" if descending else "") + column
    expected = ParticipantsTable(TableListData([dict(r) for r in rows]), study=study, order_by=order)
    got = ParticipantsTable(SortedRows({k: [r[k] for r in rows] for k in rows[0]}), study=study, order_by=order)
    assert got.data._order is not None  # sorted by numpy, not by the fallback
    assert [id_row(r) for r in got.data] == [id_row(r) for r in expected.data]
    assert [id_row(r) for r in got.data[10:20]] == [id_row(r) for r in list(expected.data)[10:20]]


def id_row(row: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in row.items()))
