"""Issue 13 in the app: error by group in the benchmark (JSON, CSV, leaderboard) and the jury view
(page, job, command)."""

import csv
import io
import json
import re
from html import unescape

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from jobs.models import Job
from jobs.services import job_run

pytestmark = pytest.mark.django_db

AGES = {
    "18-24 years old": 0.05,
    "25-34 years old": 0.15,
    "35-44 years old": 0.15,
    "45-54 years old": 0.15,
    "55-64 years old": 0.25,
    "65 years old or above": 0.25,
}
RELIGION = {"Very important": 0.7, "Somewhat important": 0.2, "Not at all important": 0.1}


def _figures(content):
    return [json.loads(unescape(m)) for m in re.findall(r'data-figure="([^"]*)"', content)]


def test_the_benchmark_reports_error_by_group_in_json_csv_and_leaderboard(client, researcher, release_study):
    job = Job.objects.create(
        kind="benchmark",
        study=release_study,
        params={
            "predictors": ["prompt_mean", "annotator_mean"],
            "splits": 2,
            "seed": 0,
            "seeds": 1,
            "conditions": ["new_annotator", "individual"],
            "upload": None,
        },
    )
    done = job_run(job_id=job.pk)
    assert done.status == "succeeded", done.error
    groups = done.result["groups"]
    keys = {(g["predictor"], g["condition"], g["column"]) for g in groups}
    assert ("prompt_mean", "new_annotator", "Age") in keys and ("annotator_mean", "individual", "Factor_1") in keys
    age = next(g for g in groups if g["predictor"] == "prompt_mean" and g["column"] == "Age")
    maes = [level["mae"] for level in age["levels"]]
    assert maes == sorted(maes)  # groups sorted by MAE
    assert age["gap"] is not None and 0 < age["p_value"] <= 1 and 0 < age["q_value"] <= 1
    assert age["gap"] == pytest.approx(
        max(r["mae"] for r in age["levels"] if r["n"] >= 5) - min(r["mae"] for r in age["levels"] if r["n"] >= 5)
    )
    factor = next(g for g in groups if g["column"] == "Factor_1")
    assert factor["kind"] == "tertiles" and len(factor["levels"]) == 3
    # the CSV download: one row per level
    artifact = done.artifacts.get(name="groups.csv")
    client.force_login(researcher)
    download = client.get(reverse("jobs:artifact_download", args=[done.pk, "groups.csv"]))
    rows = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert artifact and len(rows) == sum(len(g["levels"]) for g in groups)
    assert set(rows[0]) >= {
        "predictor",
        "condition",
        "column",
        "level",
        "n",
        "mae",
        "ci_low",
        "ci_high",
        "gap",
        "p_value",
    }
    # the leaderboard: the gaps table and a small-multiples figure per predictor
    page = client.get(reverse("benchmark:leaderboard", args=["pluriharms"])).content.decode()
    assert 'id="leaderboard-groups"' in page and 'id="leaderboard-gaps"' in page
    titles = [f["layout"]["title"]["text"] for f in _figures(page) if "by group" in f["layout"]["title"]["text"]]
    assert titles == [
        "prompt_mean: MAE by group (95% t-interval over annotators)",
        "annotator_mean: MAE by group (95% t-interval over annotators)",
    ]
    multiples = next(f for f in _figures(page) if f["layout"]["title"]["text"].startswith("annotator_mean"))
    assert multiples["layout"]["grid"]["rows"] >= 5  # a panel per trait column, two to a row
    assert {t["name"] for t in multiples["data"]} == {"new_annotator", "individual"}  # a colour per condition


def test_jury_command_writes_the_documented_json(release_study, tmp_path):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"Age": AGES, "Religion_Importance": RELIGION}))
    out = tmp_path / "jury.json"
    call_command(
        "jury",
        "pluriharms",
        "--mix",
        str(mix),
        "--size",
        "1000",
        "--juries",
        "50",
        "--fits",
        "2",
        "--seed",
        "3",
        "--json",
        str(out),
    )
    data = json.loads(out.read_text())
    assert len(data["prompts"]) == 150
    for row in data["prompts"]:
        assert set(row) >= {"prompt", "share_harmful", "ci_low", "ci_high", "collected_share", "shift", "distribution"}
        assert row["ci_low"] <= row["share_harmful"] <= row["ci_high"]
    for column, levels in {"Age": AGES, "Religion_Importance": RELIGION}.items():
        for level, share in levels.items():
            assert data["achieved_marginals"][column][level] == pytest.approx(share, abs=0.01)
    assert data["raking"]["feasible"] and data["size"] == 1000 and data["n_juries"] == 50 and data["seed"] == 3
    assert data["predictor"] == "traits_ramp"  # no benchmark run yet: the default, said why
    assert "validation" not in data


def test_jury_command_census_and_what_cannot_be_met(release_study, tmp_path, capsys):
    out = tmp_path / "census.json"
    call_command(
        "jury", "pluriharms", "--census", "us_acs_2022_adults", "--juries", "20", "--fits", "1", "--json", str(out)
    )
    data = json.loads(out.read_text())
    assert data["mix"]["source"]["table"].startswith("S0101")
    assert data["achieved_marginals"]["Gender"]["Woman"] == pytest.approx(0.508, abs=0.01)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Age": {"Under 18": 0.5, "25-34 years old": 0.5}}))
    call_command("jury", "pluriharms", "--mix", str(bad), "--juries", "20", "--fits", "1", "--json", str(out))
    data = json.loads(out.read_text())
    assert not data["raking"]["feasible"]
    assert "Age = Under 18: requested 50.0%, but no annotator has this level" in data["raking"]["problems"][0]
    assert "cannot be met: Age = Under 18" in capsys.readouterr().err


def test_jury_command_with_the_members_own_ratings(release_study, tmp_path):
    out = tmp_path / "ratings.json"
    call_command("jury", "pluriharms", "--ratings", "--juries", "20", "--fits", "1", "--json", str(out))
    data = json.loads(out.read_text())
    assert data["ratings"] is True and data["predictor"] == "observed_ramp"
    assert data["predictions_differ"]  # members get their own predictions
    with pytest.raises(CommandError, match="own ratings"):
        call_command("jury", "pluriharms", "--ratings", "--predictor", "traits_ramp", "--json", str(out))


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"Age": {"25-34 years old": 0.5}}', "sum to 0.5000"),
        ('{"Height": {"tall": 1}}', "unknown column"),
        ("not json", "not JSON"),
        ("[1, 2]", "must hold"),
    ],
)
def test_jury_command_refuses_a_bad_mix(release_study, tmp_path, content, message):
    mix = tmp_path / "mix.json"
    mix.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("jury", "pluriharms", "--mix", str(mix), "--json", str(tmp_path / "x.json"))


def test_jury_command_refusals(release_study, tmp_path):
    with pytest.raises(CommandError, match="no study"):
        call_command("jury", "nope", "--json", str(tmp_path / "x.json"))
    with pytest.raises(CommandError, match="predictor of new annotators"):
        call_command("jury", "pluriharms", "--predictor", "soft_impute", "--json", str(tmp_path / "x.json"))
    with pytest.raises(CommandError, match="threshold"):
        call_command("jury", "pluriharms", "--threshold", "120", "--json", str(tmp_path / "x.json"))


def _start(client, **fields):
    return client.post(reverse("benchmark:jury_start", args=["pluriharms"]), fields, HTTP_HX_REQUEST="true")


def test_jury_page_form_job_and_result(
    client, researcher, release_study, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    client.force_login(researcher)
    page = client.get(reverse("benchmark:jury", args=["pluriharms"])).content.decode()
    assert "No jury has been drawn" in page and 'name="column__0"' in page and "us_acs_2022_adults" in page
    # the form's columns and levels, as the page numbered them
    columns = dict(re.findall(r'name="column__(\d+)" value="([^"]+)"', page))
    i = next(k for k, v in columns.items() if v == "Religion_Importance")
    levels = {unescape(v): j for j, v in re.findall(rf'name="level__{i}__(\d+)" value="([^"]+)"', page)}
    fields = {"mode": "custom", "juries": "40", "fits": "1", "size": "500", "threshold": "60", "validation": "on"}
    fields.update({f"column__{k}": v for k, v in columns.items()})
    for k in columns:
        for j, v in re.findall(rf'name="level__{k}__(\d+)" value="([^"]+)"', page):
            fields[f"level__{k}__{j}"] = unescape(v)
    fields[f"share__{i}__{levels['Very important']}"] = "70"
    fields[f"share__{i}__{levels['Somewhat important']}"] = "20"
    # a column that does not add up is refused with a clear message, and no job is made
    bad = _start(client, **{**fields, f"share__{i}__{levels['Not at all important']}": "5"})
    assert bad.status_code == 400 and "Religion_Importance: the shares add up to 95%, not 100%" in bad.content.decode()
    assert not Job.objects.filter(kind="jury").exists()
    fields[f"share__{i}__{levels['Not at all important']}"] = "10"
    with django_capture_on_commit_callbacks(execute=True):
        started = _start(client, **fields)
    assert started.status_code == 200, started.content
    job = Job.objects.get(kind="jury")
    assert job.params["mix"] == {
        "Religion_Importance": {"Very important": 0.7, "Somewhat important": 0.2, "Not at all important": 0.1}
    }
    done = job_run(job_id=job.pk)
    assert done.status == "succeeded", done.error
    assert done.result["validation"]["n_held"] == 30
    assert {a.name for a in done.artifacts.all()} == {"jury.json", "jury_prompts.csv"}
    page = client.get(reverse("benchmark:jury", args=["pluriharms"])).content.decode()
    assert 'id="jury-prompts"' in page and "Raking met every requested marginal within 1 percentage point" in page
    assert unescape(done.result["validation"]["verdict"]) in unescape(page)
    fragment = client.get(reverse("benchmark:jury", args=["pluriharms"]), HTTP_HX_REQUEST="true")
    assert b"<html" not in fragment.content and b'id="jury-panels"' in fragment.content


@pytest.mark.parametrize("beats", [True, False])
def test_the_page_says_whether_the_jury_beats_the_naive_answer(client, researcher, release_study, beats):
    verdict = "The jury's share error beats the naive answer's" if beats else "The jury does NOT beat the naive answer"
    validation = {
        "beats_naive": beats,
        "verdict": verdict + ": …",
        "predictor": "traits_ramp",
        "n_held": 30,
        "repeats": 10,
        "columns": ["Age"],
        "min_ratings": 10,
        "mae_jury": 0.1,
        "mae_naive": 0.1,
        "mae_raked_observed": 0.1,
        "difference": 0.0,
        "difference_ci_low": -0.01,
        "difference_ci_high": 0.01,
        "raked_difference": 0.0,
        "raked_difference_ci_low": 0,
        "raked_difference_ci_high": 0,
        "calibration_intercept": 0,
        "calibration_slope": 1,
        "naive_calibration_slope": 1,
    }
    Job.objects.create(
        kind="jury",
        study=release_study,
        status=Job.Status.SUCCEEDED,
        params={},
        result={
            "prompts": [],
            "mix": {"label": "as collected"},
            "raking": {"requested": None},
            "validation": validation,
            "predictions_differ": True,
        },
    )
    client.force_login(researcher)
    page = client.get(reverse("benchmark:jury", args=["pluriharms"])).content.decode()
    assert verdict in unescape(page)
    assert ('class="warning" id="jury-verdict"' in page) != beats


def test_jury_start_refusals(client, researcher, release_study):
    client.force_login(researcher)
    assert _start(client, mode="martian").status_code == 400
    assert "size must be a number" in _start(client, mode="collected", size="many").content.decode()
    assert "choose a census" in _start(client, mode="census", census="atlantis").content.decode()
    assert client.get(reverse("benchmark:jury_start", args=["pluriharms"])).status_code == 405


def test_the_default_predictor_is_the_best_new_annotator_one_preferring_traits_inside_its_interval(release_study):
    from benchmark.jury import jury_default_predictor

    assert jury_default_predictor(study=release_study)[0] == "traits_ramp"  # no benchmark run yet

    def run(rows):
        Job.objects.create(kind="benchmark", study=release_study, status=Job.Status.SUCCEEDED, result={"results": rows})

    run(
        [
            {"predictor": "prompt_median", "condition": "new_annotator", "mae": 0.2230, "ci_high": 0.238},
            {"predictor": "traits_ramp", "condition": "new_annotator", "mae": 0.2231, "ci_high": 0.239},
            {"predictor": "observed_ramp", "condition": "warm", "mae": 0.171, "ci_high": 0.183},
            {"predictor": "soft_impute", "condition": "warm", "mae": 0.182, "ci_high": 0.193},
        ]
    )
    name, why = jury_default_predictor(study=release_study)
    assert name == "traits_ramp" and "inside the interval of the best (prompt_median" in why
    assert jury_default_predictor(study=release_study, ratings=True)[0] == "observed_ramp"
    run(
        [
            {"predictor": "prompt_median", "condition": "new_annotator", "mae": 0.200, "ci_high": 0.210},
            {"predictor": "traits_ramp", "condition": "new_annotator", "mae": 0.230, "ci_high": 0.240},
        ]
    )
    assert jury_default_predictor(study=release_study)[0] == "prompt_median"
