"""The benchmark form: predictors grouped by family with one line each and a time estimate, a fast default
set (not all of them), a sortable results table, and the scale an uploaded predictions file was read on."""

import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from benchmark.evaluation import (
    DEFAULT_MAX_SECONDS,
    SECONDS_PER_SPLIT_SEED,
    builtin_predictors,
    predictor_families,
    run_estimate_text,
)
from benchmark.uploads import SCALE_NOTES
from jobs.models import Job

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_every_builtin_predictor_is_in_one_family_with_a_line_on_what_it_does():
    families = predictor_families()
    names = [p["name"] for f in families for p in f["predictors"]]
    assert sorted(names) == sorted(builtin_predictors()) and len(names) == len(set(names))
    assert len(families) >= 6 and all(f["label"] != "Other" for f in families)
    for family in families:
        assert family["blurb"]
        for p in family["predictors"]:
            assert p["description"] and len(p["description"]) < 200, p


def test_the_default_set_is_the_fast_predictors_not_all_of_them():
    predictors = [p for f in predictor_families() for p in f["predictors"]]
    default = [p["name"] for p in predictors if p["default"]]
    assert 5 <= len(default) < len(predictors)
    for p in predictors:
        assert p["default"] == (p["seconds"] is not None and p["seconds"] <= DEFAULT_MAX_SECONDS), p
    # The slow ones are left to the researcher to tick.
    for slow in ("ensemble_ramp", "feature_boosting", "soft_impute", "observed_ramp", "embedding_knn"):
        assert slow not in default
    assert "safetyanalyst_fit" not in default  # not measured


def test_time_estimates_are_the_benchmarks_table_per_split_and_seed():
    """SECONDS_PER_SPLIT_SEED is BENCHMARKS.md's Prediction table (Seconds over 10 splits x 10 seeds, summed
    over conditions) / 100: a rerun of the benchmark that changes the table must change the estimates."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    section = text[text.index("## Prediction (") :]
    section = section[: section.index("\n## ", 5)]
    totals: dict[str, float] = {}
    for match in re.finditer(
        r"^\| (?:individual|aggregated|new_annotator|warm) \| (\w+) \|.*\| ([\d.]+) \|$", section, re.M
    ):
        totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(2))
    assert set(totals) == set(SECONDS_PER_SPLIT_SEED)
    for name, total in totals.items():
        assert SECONDS_PER_SPLIT_SEED[name] == pytest.approx(total / 100, abs=0.006), name


def test_estimate_text():
    assert run_estimate_text(42.4) == "about 42 s"
    assert run_estimate_text(600) == "about 10 min"
    assert run_estimate_text(30, unmeasured=1) == "about 30 s, plus 1 predictor(s) not measured"


def test_the_form_shows_families_defaults_estimates_and_sortable_headings(client, researcher, small_study):
    client.force_login(researcher)
    html = client.get(reverse("benchmark:leaderboard", args=[small_study.slug])).content.decode()
    for family in predictor_families():
        assert f'id="family-{family["key"]}"' in html and f"<legend>{family['label']}</legend>" in html
    checked = set(re.findall(r'id="p-(\w+)" name="predictors" value="\w+"(?: data-seconds="[\d.]+")? checked', html))
    everything = set(re.findall(r'id="p-(\w+)" name="predictors"', html))
    assert checked == {p["name"] for f in predictor_families() for p in f["predictors"] if p["default"]}
    assert checked < everything
    assert "≈ 0.99 s per split × seed" in html  # feature_ramp
    assert "time not measured (slow)" in html  # safetyanalyst_fit
    total = sum(SECONDS_PER_SPLIT_SEED[name] for name in checked) * 100
    assert f"data-estimate-form>{run_estimate_text(total)}</output>" in html
    assert html.count('<button type="button" class="sort" data-sort>') >= 8  # every results column


def _upload(client, study, csv: str, **headers):
    return client.post(
        reverse("benchmark:benchmark_start", args=[study.slug]),
        {"splits": "2", "predictions": SimpleUploadedFile("mine.csv", csv.encode(), content_type="text/csv")},
        headers=headers,
    )


@pytest.mark.parametrize(
    "values,scale",
    [(["50", "12.5", "80", "0", "100"], "percent"), (["0.5", "0.125", "0.8", "0", "1"], "unit")],
)
def test_the_predictions_upload_says_which_scale_it_assumed(
    client, researcher, small_study, monkeypatch, values, scale
):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    client.force_login(researcher)
    csv = "prompt,prediction\n" + "".join(f"{p},{v}\n" for p, v in zip(["1", "2", "3", "4", "5"], values))
    answer = _upload(client, small_study, csv, **{"HX-Request": "true"})
    html = answer.content.decode()
    assert answer.status_code == 200 and 'id="predictions-scale"' in html
    assert SCALE_NOTES[scale].replace("'", "&#x27;") in html
    assert ("0–100 scale" in html) == (scale == "percent") and ("0–1 scale" in html) == (scale == "unit")
    assert Job.objects.filter(kind="benchmark").count() == 1
    # Without htmx: the same note as a message on the page the redirect leads to.
    page = client.get(_upload(client, small_study, csv)["Location"]).content.decode()
    assert SCALE_NOTES[scale].replace("'", "&#x27;") in page


def test_no_scale_note_without_a_file(client, researcher, small_study, monkeypatch):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    client.force_login(researcher)
    answer = client.post(
        reverse("benchmark:benchmark_start", args=[small_study.slug]),
        {"predictors": ["global_mean"], "splits": "2"},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200 and "predictions-scale" not in answer.content.decode()


def test_the_api_upload_says_which_scale_it_assumed(researcher, small_study):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(researcher)
    url = f"/api/studies/{small_study.slug}/uploads/predictions/"
    for values, scale in (((50, 12.5, 80, 0, 100), "percent"), ((0.5, 0.1, 0.8, 0, 1), "unit")):
        csv = "prompt,prediction\n" + "".join(f"{p},{v}\n" for p, v in zip("12345", values))
        answer = api.post(url, {"file": SimpleUploadedFile("p.csv", csv.encode(), content_type="text/csv")})
        assert answer.status_code == 201 and answer.json()["scale"] == scale, answer.json()
