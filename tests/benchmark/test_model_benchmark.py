"""Model benchmark on a study: the command, the job (page and API), the leaderboard, uploads, steering."""

import json
import re
from html import unescape

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.models import Job
from jobs.services import job_run

pytestmark = pytest.mark.django_db
BASELINES = "uniform_random,global_mean,annotator_mean,annotator_median"


def test_benchmark_command_writes_the_documented_json(release_study, tmp_path):
    out = tmp_path / "bench.json"
    call_command(
        "benchmark",
        "pluriharms",
        "--protocol",
        "pluriharms",
        "--splits",
        "2",
        "--seed",
        "3",
        "--seeds",
        "2",
        "--predictors",
        BASELINES,
        "--json",
        str(out),
    )
    data = json.loads(out.read_text())
    rows = {(r["predictor"], r["condition"]): r for r in data["results"]}
    assert {name for name, _ in rows} == set(BASELINES.split(","))
    assert {c for _, c in rows} == {"individual", "aggregated", "new_annotator", "warm"}
    for row in data["results"]:
        assert set(row) >= {"predictor", "condition", "mae", "ci_low", "ci_high", "spearman", "wasserstein", "seconds"}
        assert row["ci_low"] <= row["mae"] <= row["ci_high"]
    # Where arithmetic puts the baselines (10-split figures are in BENCHMARKS.md).
    assert rows[("annotator_mean", "individual")]["mae"] == pytest.approx(0.306, abs=0.02)
    assert rows[("uniform_random", "individual")]["mae"] == pytest.approx(0.39, abs=0.02)
    assert data["splits"] == 2 and data["seed"] == 3 and data["seeds"] == [3, 4]
    # seed-averaged (issue 16): the mean over the two seeds, their spread, and paired differences
    assert all(row["n_seeds"] == 2 and row["sd_seeds"] >= 0 for row in data["results"])
    paired = {(d["predictor"], d["condition"]) for d in data["paired"]}
    assert ("uniform_random", "individual") in paired
    assert all(d["reference"] == "annotator_mean" for d in data["paired"])


def test_benchmark_command_refusals(release_study, tmp_path):
    with pytest.raises(CommandError, match="unknown predictor"):
        call_command("benchmark", "pluriharms", "--predictors", "oracle", "--json", str(tmp_path / "x.json"))
    with pytest.raises(CommandError, match="no study"):
        call_command("benchmark", "nope", "--json", str(tmp_path / "x.json"))


def test_benchmark_job_through_the_api(release_study, researcher, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    api = APIClient()
    api.force_authenticate(researcher)
    bad = api.post(
        "/api/jobs/", {"kind": "benchmark", "study": "pluriharms", "params": {"predictors": ["oracle"]}}, format="json"
    )
    assert bad.status_code == 400 and "unknown predictor" in bad.json()["message"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/jobs/",
            {
                "kind": "benchmark",
                "study": "pluriharms",
                "params": {
                    "predictors": ["global_mean", "annotator_mean"],
                    "splits": 2,
                    "conditions": ["individual", "aggregated"],
                },
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    job = job_run(job_id=response.json()["id"])
    assert job.status == "succeeded", job.error
    assert {r["condition"] for r in job.result["results"]} == {"individual", "aggregated"}
    assert {a.name for a in job.artifacts.all()} >= {"benchmark.json", "per_annotator.csv", "per_prompt.csv"}


def _figure(content):
    return json.loads(unescape(re.search(r'data-figure="([^"]*)"', content).group(1)))


def test_leaderboard_shows_ours_beside_published(client, researcher, release_study):
    job = Job.objects.create(
        kind="benchmark",
        study=release_study,
        params={"predictors": ["annotator_mean"], "splits": 2, "seed": 0, "conditions": ["individual"], "upload": None},
    )
    job_run(job_id=job.pk)
    client.force_login(researcher)
    page = client.get(reverse("benchmark:leaderboard", args=["pluriharms"])).content.decode()
    assert "published, not rerun" in page and "GPT-5 k-shot" in page and "0.195" in page and "WildGuard-7B" in page
    assert re.search(r"<td>annotator_mean</td><td>individual</td><td class=\"num\">0\.3\d\d", page)
    figure = _figure(page)
    names = {trace["name"] for trace in figure["data"]}
    assert names == {"individual", "published (not rerun)"}
    fragment = client.get(reverse("benchmark:leaderboard", args=["pluriharms"]), HTTP_HX_REQUEST="true")
    assert b"<html" not in fragment.content
    assert "only the 16 released action-category probabilities" in page
    assert "two-way bootstrap" in page


def test_published_figures_only_for_the_release_and_paired_differences(client, researcher, small_study):
    """Issue 16: the paper's figures mean nothing on another study's prompts; the job reports paired
    differences against annotator_mean with their CI."""
    job = Job.objects.create(
        kind="benchmark",
        study=small_study,
        params={
            "predictors": ["annotator_mean", "global_mean"],
            "splits": 2,
            "seed": 0,
            "conditions": ["individual"],
            "upload": None,
        },
    )
    done = job_run(job_id=job.pk)
    assert done.status == "succeeded", done.error
    assert done.result["published"] == []
    (diff,) = done.result["paired"]
    assert diff["predictor"] == "global_mean" and diff["reference"] == "annotator_mean"
    assert diff["ci_low"] <= diff["difference"] <= diff["ci_high"]
    client.force_login(researcher)
    page = client.get(reverse("benchmark:leaderboard", args=["small"])).content.decode()
    assert "GPT-5" not in page and "published, not rerun" not in page
    assert 'id="leaderboard-paired"' in page
    assert {trace["name"] for trace in _figure(page)["data"]} == {"individual"}


def test_uploading_predictions_scores_them_like_any_model(
    client, researcher, small_study, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    client.force_login(researcher)
    csv = "prompt,prediction\n" + "".join(f"{p},50\n" for p in ["1", "2", "3", "4", "5"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("benchmark:benchmark_start", args=["small"]),
            {
                "predictors": ["global_mean"],
                "splits": "2",
                "seed": "0",
                "predictions": SimpleUploadedFile("mine.csv", csv.encode(), content_type="text/csv"),
            },
        )
    assert response.status_code == 302
    job = Job.objects.get(kind="benchmark")
    assert job.params["predictors"] == ["global_mean", "uploaded"]
    done = job_run(job_id=job.pk)
    assert done.status == "succeeded", done.error
    uploaded = [r for r in done.result["results"] if r["predictor"] == "uploaded"]
    assert {r["condition"] for r in uploaded} == {"individual", "aggregated"}


@pytest.mark.parametrize(
    "csv,message",
    [
        ("prompt,prediction\n1,50\n999,20\n", "999"),
        ("prompt,prediction\n1,abc\n", "row"),
        ("colour,size\nred,2\n", "prediction"),
    ],
)
def test_bad_uploads_are_refused_with_row_level_messages(client, researcher, small_study, csv, message):
    client.force_login(researcher)
    response = client.post(
        reverse("benchmark:benchmark_start", args=["small"]),
        {"splits": "2", "predictions": SimpleUploadedFile("bad.csv", csv.encode(), content_type="text/csv")},
    )
    assert response.status_code == 400 and message in response.content.decode()
    assert Job.objects.count() == 0


def test_steering_page_rescoring_and_group_fit(client, researcher, release_study):
    client.force_login(researcher)
    page = client.get(reverse("benchmark:steering", args=["pluriharms"])).content.decode()
    assert page.count('type="range"') == 16 and 'id="n-changed">0<' in page
    assert '<option value="Gender:Man">Man</option>' in page
    # Setting every weight to zero moves every prompt to the offset's side: all change or none, never a crash.
    zeros = {f"w{i}": "0" for i in range(16)}
    rescored = client.post(reverse("benchmark:steering_score", args=["pluriharms"]), zeros, HTTP_HX_REQUEST="true")
    assert rescored.status_code == 200 and b"<html" not in rescored.content
    n_harmful = int(re.search(r'id="n-harmful">(\d+)<', rescored.content.decode()).group(1))
    assert n_harmful in (0, 150)
    bad = client.post(reverse("benchmark:steering_score", args=["pluriharms"]), {"w3": "7"})
    assert bad.status_code == 400 and b"from 0 to 1" in bad.content
    fitted = client.post(
        reverse("benchmark:steering_fit", args=["pluriharms"]),
        {"value": "Political_Affiliation:Very conservative"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "weights fitted to Political_Affiliation = Very conservative" in fitted
    assert re.search(r'id="n-changed">\d+<', fitted)
    unknown = client.post(reverse("benchmark:steering_fit", args=["pluriharms"]), {"value": "Gender:Robot"})
    assert unknown.status_code == 400


def test_steering_without_features_explains(client, researcher):
    from annotation.models import Prompt, Study

    study = Study.objects.create(slug="plain", title="Plain", owner=researcher)
    Prompt.objects.create(study=study, external_id="1", text="no features")
    client.force_login(researcher)
    response = client.get(reverse("benchmark:steering", args=["plain"]))
    assert response.status_code == 409 and b"no SafetyAnalyst action-category features" in response.content


def test_benchmark_pages_refusals(client, outsider, small_study):
    pages = [reverse("benchmark:leaderboard", args=["small"]), reverse("benchmark:steering", args=["small"])]
    for url in pages:
        assert client.get(url).status_code == 302
    client.force_login(outsider)
    for url in pages:
        assert client.get(url).status_code == 404
    assert client.post(reverse("benchmark:benchmark_start", args=["small"])).status_code == 404
    assert client.post(reverse("benchmark:steering_fit", args=["small"])).status_code == 404
    assert client.get(reverse("benchmark:benchmark_start", args=["small"])).status_code == 405
