"""The plots' figure dicts (issue 10): the collection timeline binned to the ratings' spread on a date axis
that never shows fractions of a second, whole-number count axes, the sorted per-prompt bars on a categorical
axis, histograms binned on the server with groups in a stable order and their sizes, long labels wrapped;
and the agreement report's cards on a study too small for its statistics."""

from datetime import UTC, datetime, timedelta

import pytest

from annotation.importers import pluriharms_import
from annotation.models import Rating
from annotation.selectors import ratings_over_time, study_overview, timeline_bin
from benchmark import figures
from benchmark.views.dashboards import AGREEMENT_NEEDS, agreement_cards
from tests.conftest import write_small_release

# --- the collection timeline ---------------------------------------------------------------------


def test_timeline_bin_follows_the_spread_of_the_ratings():
    assert timeline_bin(timedelta(minutes=6))[0] == "minute"
    assert timeline_bin(timedelta(hours=6))[0] == "minute"
    assert timeline_bin(timedelta(hours=7))[0] == "hour"
    assert timeline_bin(timedelta(days=14))[0] == "hour"
    assert timeline_bin(timedelta(days=15))[0] == "day"


@pytest.mark.django_db
def test_ratings_made_within_minutes_are_binned_by_minute_with_iso_timestamps(small_study):
    """The walk-through's case: ratings made 07:17–07:23 were one point at 07:00 (binned by hour)."""
    ratings = list(Rating.objects.filter(annotator__study=small_study, prompt__isnull=False).order_by("pk"))
    assert len(ratings) == 20
    start = datetime(2026, 11, 29, 7, 17, 5, tzinfo=UTC)
    for index, rating in enumerate(ratings):
        # 07:17:05 to 07:23:25
        Rating.objects.filter(pk=rating.pk).update(created_at=start + timedelta(seconds=20 * index))
    timeline = ratings_over_time(study=small_study)
    assert timeline["bin"] == "minute"
    rows = timeline["rows"]
    assert [row["start"] for row in rows] == [f"2026-11-29T07:{minute}:00Z" for minute in range(17, 24)]
    assert [row["ratings"] for row in rows] == [3, 3, 3, 3, 3, 3, 2]
    assert rows[-1]["cumulative"] == 20 and all(a["cumulative"] < b["cumulative"] for a, b in zip(rows, rows[1:]))

    figure = figures.progress_figure(rows, timeline["bin"])
    xaxis = figure["layout"]["xaxis"]
    assert xaxis["type"] == "date"
    # The range pads the data by five bins each side: 07:12 to 07:28, not a millisecond around 07:00.
    assert xaxis["range"] == ["2026-11-29 07:12:00", "2026-11-29 07:28:00"]
    assert all("%L" not in stop["value"] and "%f" not in stop["value"] for stop in xaxis["tickformatstops"])
    assert figure["data"][0]["x"][0] == "2026-11-29T07:17:00Z"


@pytest.mark.django_db
def test_ratings_spread_over_weeks_are_binned_by_day(small_study):
    ratings = list(Rating.objects.filter(annotator__study=small_study, prompt__isnull=False).order_by("pk"))
    start = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)
    for index, rating in enumerate(ratings):
        Rating.objects.filter(pk=rating.pk).update(created_at=start + timedelta(days=index))
    overview = study_overview(study=small_study)
    assert overview["time_bin"] == "day"
    assert overview["over_time"][0]["start"] == "2026-10-01T00:00:00Z" and len(overview["over_time"]) == 20


def test_progress_figure_of_a_study_without_ratings_has_no_range():
    figure = figures.progress_figure([], "minute")
    assert figure["data"][0]["x"] == [] and "range" not in figure["layout"]["xaxis"]


# --- counts are whole numbers; the per-prompt bars are in sorted order ---------------------------


def test_status_bars_have_whole_number_ticks():
    figure = figures.status_figure({"completed": 1, "rating": 2})
    yaxis = figure["layout"]["yaxis"]
    assert yaxis["dtick"] == 1 and yaxis["tickformat"] == ",d"
    assert figure["data"][0]["x"] == ["rating", "completed"] and figure["layout"]["xaxis"]["type"] == "category"
    many = figures.status_figure({"completed": 240})["layout"]["yaxis"]
    assert "dtick" not in many and many["tickformat"] == ",d"  # Plotly's own steps, printed as integers


def test_per_prompt_bars_are_drawn_in_sorted_order_even_for_numeric_ids():
    """Ids such as "2" and "10" made Plotly use a numeric axis, drawing bars in id order."""
    figure = figures.per_prompt_figure({"1": 5, "2": 1, "10": 3, "3": 3}, target=4)
    xaxis = figure["layout"]["xaxis"]
    assert xaxis["type"] == "category" and xaxis["categoryorder"] == "array"
    assert xaxis["categoryarray"] == ["2", "10", "3", "1"] == figure["data"][0]["x"]
    assert figure["data"][0]["y"] == [1, 3, 3, 5]
    assert figure["layout"]["yaxis"]["dtick"] == 1  # up to the target line, counts of at most 10


# --- histograms: binned here, groups in a stable order with their sizes ---------------------------


def test_histogram_counts_hold_each_lower_edge_and_100_in_the_last_bin():
    assert figures.histogram_counts([0, 9.99, 10, 55, 99, 100]) == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]


def test_histogram_of_one_group_counts_ratings_in_bars():
    figure = figures.histogram_figure({"all annotators": [3, 14, 18, 100]}, "Ratings of prompt 7")
    [trace] = figure["data"]
    assert trace["type"] == "bar" and trace["y"] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert trace["x"] == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95] and trace["customdata"][0] == "0–10"
    assert trace["name"] == "all annotators (n=4)"
    assert figure["layout"]["showlegend"] is False and figure["layout"]["yaxis"]["tickformat"] == ",d"


def test_split_groups_come_in_a_stable_order_with_their_sizes_and_wrapped_names():
    long = "Native Hawaiian or other Pacific Islander"
    groups = {"white": [10, 20], figures.MISSING_GROUP: [50], long: [90, 95, 99], "Asian": [40]}
    first = figures.histogram_figure(groups, "t")
    shuffled = figures.histogram_figure(dict(reversed(list(groups.items()))), "t")
    names = [trace["name"] for trace in first["data"]]
    assert names == [trace["name"] for trace in shuffled["data"]]  # the dict's order does not matter
    assert names == ["Asian (n=1)", "Native Hawaiian or<br>other Pacific Islander<br>(n=3)", "white (n=2)", "— (n=1)"]
    assert all(len(line) <= 22 for name in names for line in name.split("<br>"))
    long_trace = first["data"][1]
    assert long_trace["y"][9] == 100.0 and sum(long_trace["y"]) == pytest.approx(100)  # percent of the group
    assert first["layout"]["yaxis"]["title"]["text"] == "% of group" and first["layout"]["showlegend"] is True


def test_wrapped_labels_are_escaped():
    assert figures.wrap_label("<b>x</b> & y", 40) == "&lt;b&gt;x&lt;/b&gt; &amp; y"


def test_demographic_group_bars_wrap_long_labels():
    figure = figures.grouped_bar_figure(
        ["Race_Ethnicity: Native Hawaiian or other Pacific Islander", "Gender: Man"], {"α": [0.4, 0.5]}, "t"
    )
    labels = figure["data"][0]["y"]
    assert "<br>" in labels[0] and labels[1] == "Gender: Man"


# --- the agreement report on a small study --------------------------------------------------------


@pytest.fixture
def tiny_report(tmp_path, researcher):
    """Three prompts rated by one annotator: no agreement statistic is defined."""
    from benchmark.analysis import study_report

    study = pluriharms_import(
        directory=write_small_release(tmp_path / "tiny", n_prompts=3, n_annotators=1), slug="tiny", owner=researcher
    )
    return study_report(study=study, mixed_effects=False, n_boot=20)


@pytest.mark.django_db
def test_cards_of_a_tiny_report_say_what_each_figure_needs(tiny_report):
    cards = {card["key"]: card for card in agreement_cards(tiny_report)}
    assert cards["alpha"]["value"] is None and cards["alpha"]["needs"] == "needs at least 2 annotators per prompt"
    for key in ("split_half", "icc", "pairwise"):
        assert cards[key]["value"] is None and cards[key]["needs"] == AGREEMENT_NEEDS[key]
    assert cards["ratings"]["value"] == 3 and cards["ratings"]["needs"] == ""
    # No prompt has an SD, so none is in a quadrant: one card says so, none is labelled "None".
    assert cards["unplaced"]["value"] == 3 and cards["unplaced"]["needs"] == AGREEMENT_NEEDS["quadrant"]
    assert not any(str(card["label"]) in ("None", "") for card in cards.values())


@pytest.mark.django_db
def test_agreement_page_of_a_tiny_report_has_no_empty_card_and_no_empty_plot(client, researcher, tiny_report):
    from django.urls import reverse

    from jobs.models import Job

    Job.objects.create(
        kind="analysis", study_id=_study_id("tiny"), status=Job.Status.SUCCEEDED, result=tiny_report, params={}
    )
    client.force_login(researcher)
    content = client.get(reverse("benchmark:agreement", args=["tiny"])).content.decode()
    assert "No report yet." not in content and "Showing the report of" in content
    assert "needs at least 2 annotators per prompt" in content and 'id="plane-needs"' in content
    assert "data-figure" not in content.split('id="plane-needs"')[0].split('id="report-cards"')[1]
    assert "<span>None</span>" not in content and "<strong></strong>" not in content


def _study_id(slug: str) -> int:
    from annotation.models import Study

    return Study.objects.get(slug=slug).pk
