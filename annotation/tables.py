"""The participants table (django-tables2): sorted and paginated on the rows of participants_table."""

from __future__ import annotations

import django_tables2 as tables
import numpy as np
from django.urls import reverse
from django.utils.html import format_html
from django_tables2.data import TableListData
from django_tables2.utils import OrderBy, OrderByTuple

PER_PAGE = 25
NUMERIC_TYPES = {int, float, bool, type(None), np.float64, np.int64}


def _sort_key(values: list, descending: bool) -> np.ndarray | None:
    """A numpy key ordering `values` as django-tables2 orders a list (None before every number or string,
    after them when descending; ties keep their order), or None for values it cannot express."""
    kinds = set(map(type, values))
    if kinds <= NUMERIC_TYPES:
        key = np.array(values, dtype=float)  # None becomes NaN
    elif kinds == {str}:
        key = np.unique(np.array(values), return_inverse=True)[1].astype(float)
    else:
        return None
    if descending:
        key = -key
    return np.where(np.isnan(key), np.inf if descending else -np.inf, key)


class SortedRows(TableListData):
    """Rows for a table of thousands, given by column ({name: [values]}, as the cache keeps them): sorted
    by numpy, not by django-tables2's comparison of two rows at a time in Python (seconds for 10,000
    annotators), and only the rows of the page shown are made into dicts."""

    def __init__(self, columns: dict[str, list]):
        super().__init__([])
        self.columns = columns
        self._n = len(next(iter(columns.values()), []))
        self._order: np.ndarray | list | None = None

    def _row(self, i: int) -> dict:
        return {name: values[i] for name, values in self.columns.items()}

    def __len__(self):
        return self._n

    def __getitem__(self, key):
        order = range(self._n) if self._order is None else self._order
        if isinstance(key, slice):
            return [self._row(i) for i in order[key]]
        return self._row(order[key])

    def __iter__(self):
        return (self._row(i) for i in (range(self._n) if self._order is None else self._order))

    def order_by(self, aliases):
        accessors = []
        for alias in aliases:  # as TableListData.order_by: a column's own order_by, flipped when descending
            bound_column = self.table.columns[OrderBy(alias).bare]
            if alias[0] != bound_column.order_by_alias[0]:
                accessors += bound_column.order_by.opposite
            else:
                accessors += bound_column.order_by
        keys = []
        for accessor in reversed(OrderByTuple(accessors)):  # numpy.lexsort: the last key sorts first
            values = self.columns.get(accessor.bare)
            key = None if values is None else _sort_key(values, accessor.is_descending)
            if key is None:  # something numpy cannot order as django-tables2 does: its own sort
                self.data = [self._row(i) for i in range(self._n)]
                super().order_by(aliases)
                self._order = None
                self.columns = _columns(self.data, self.columns)
                return
            keys.append(key)
        self._order = np.lexsort(keys) if keys else None


def _columns(rows: list[dict], like: dict) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name in like}


def _number(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


class ParticipantsTable(tables.Table):
    pseudonym = tables.Column(verbose_name="Pseudonym")
    status = tables.Column(verbose_name="Status")
    progress = tables.Column(
        verbose_name="Progress", accessor="answered", order_by=("answered", "assigned"), attrs={"td": {"class": "num"}}
    )
    time_on_task_s = tables.Column(verbose_name="Time on task", attrs={"td": {"class": "num"}})
    median_rt_s = tables.Column(verbose_name="Median RT (s)", attrs={"td": {"class": "num"}})
    checks = tables.Column(
        verbose_name="Checks passed / failed",
        accessor="checks_failed",
        order_by=("checks_failed", "checks_passed"),
        attrs={"td": {"class": "num"}},
    )
    too_fast = tables.Column(verbose_name="Too fast", attrs={"td": {"class": "num"}})
    straight_lining = tables.Column(verbose_name="Straight-lining", attrs={"td": {"class": "num"}})
    surveys = tables.Column(
        verbose_name="Surveys", accessor="surveys_done", order_by=("surveys_done",), attrs={"td": {"class": "num"}}
    )
    agreement_r = tables.Column(verbose_name="Agreement (r)", attrs={"td": {"class": "num"}})
    expected_disengaged = tables.Column(verbose_name="Disengaged (expected trials)", attrs={"td": {"class": "num"}})

    class Meta:
        template_name = "annotation/_participants_dt2.html"
        attrs = {"class": "data", "id": "participants"}
        empty_text = "No annotators yet."
        orderable = True

    def __init__(self, *args, study, **kwargs):
        self.study = study
        super().__init__(*args, **kwargs)

    def render_pseudonym(self, value):
        url = reverse("annotation:participant_detail", args=[self.study.slug, value])
        return format_html('<a href="{}">{}</a>', url, value)

    def render_status(self, value, record):
        if record["exclusion_reason"]:
            return format_html(
                '<span class="badge {}">{}</span> <span class="muted">{}</span>',
                value,
                value,
                record["exclusion_reason"],
            )
        return format_html('<span class="badge {}">{}</span>', value, value)

    def render_progress(self, value, record):
        return f"{record['answered']} / {record['assigned']}"

    def render_time_on_task_s(self, value):
        minutes, seconds = divmod(round(value), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"

    def render_median_rt_s(self, value):
        return _number(value, 1)

    def render_checks(self, value, record):
        return f"{record['checks_passed']} / {record['checks_failed']}"

    def render_straight_lining(self, value):
        return _number(value)

    def render_surveys(self, value, record):
        return f"{record['surveys_done']} / {record['surveys_required']}" if record["surveys_required"] else "—"

    def render_agreement_r(self, value):
        return _number(value)

    def render_expected_disengaged(self, value, record):
        # A flag suggests a look at the annotator's page; it excludes nobody.
        if record.get("latent_flag"):
            return format_html(
                '{} <span class="badge flagged" title="suggested for review">review</span>', f"{value:.1f}"
            )
        return f"{value:.1f}"
