"""Disagreement report: the analyze command, the analysis job, the agreement dashboard and prompt page."""

import json
import re
from html import unescape

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from jobs.models import Job
from jobs.services import job_create, job_run

pytestmark = pytest.mark.django_db


def test_analyze_command_reproduces_the_release_figures(release_study, tmp_path):
    out = tmp_path / "report.json"
    call_command("analyze", "pluriharms", "--json", str(out))
    report = json.loads(out.read_text())
    assert report["n_ratings"] == 14725 and report["n_unsure"] == 275
    assert round(report["krippendorff_alpha_interval"], 3) == 0.413
    assert round(report["spearman_harm_level_vs_mean"], 3) == 0.589
    assert len(report["prompts"]) == 150
    first = report["prompts"][0]
    for key in (
        "n",
        "mean",
        "median",
        "sd",
        "entropy_bits",
        "share_ge_50",
        "share_unsure",
        "bimodality",
        "mean_ci_low",
        "mean_ci_high",
        "quadrant",
        "text",
    ):
        assert key in first
    for model in ("rq1", "rq2", "rq3"):
        block = report["mixed_effects"][model]
        assert {"formula", "r2_marginal", "r2_conditional", "bic", "coefficients"} <= set(block)
    # Prompt features explain far more of the variance than annotator traits (paper: ~27% vs ~2%).
    assert report["mixed_effects"]["rq1"]["r2_marginal"] > 5 * report["mixed_effects"]["rq2"]["r2_marginal"]


def test_analyze_command_refuses_unknown_or_empty_study(tmp_path):
    with pytest.raises(CommandError, match="no study with slug 'nope'"):
        call_command("analyze", "nope", "--json", str(tmp_path / "x.json"))
    from annotation.models import Study

    Study.objects.create(slug="empty", title="Empty")
    with pytest.raises(CommandError, match="has no ratings yet"):
        call_command("analyze", "empty", "--json", str(tmp_path / "x.json"))


def test_analyze_command_writes_its_mixed_models_into_the_docs_block(small_study, tmp_path):
    from benchmark.science.report import DOCS_BEGIN, DOCS_END, mixed_effects_markdown

    docs = tmp_path / "analysis.md"
    docs.write_text(f"# before\n\n{DOCS_BEGIN}\nold text\n{DOCS_END}\n\nafter\n", encoding="utf-8")
    out = tmp_path / "report.json"
    call_command("analyze", "small", "--json", str(out), "--n-boot", "20", "--docs", str(docs))
    report = json.loads(out.read_text())
    text = docs.read_text(encoding="utf-8")
    assert text.startswith("# before") and text.endswith("after\n") and "old text" not in text
    assert mixed_effects_markdown(report["mixed_effects"]) in text
    with pytest.raises(CommandError, match="needs the mixed models"):
        call_command("analyze", "small", "--json", str(out), "--no-mixed-effects", "--docs", str(docs))
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(CommandError, match="no <!-- analyze:mixed_effects -->"):
        call_command("analyze", "small", "--json", str(out), "--n-boot", "20", "--docs", str(plain))


def test_analysis_job_stores_report_and_files(small_study):
    job = job_create(kind="analysis", study=small_study, params={"mixed_effects": False, "n_boot": 50})
    done = job_run(job_id=job.pk)
    assert done.status == "succeeded", done.error
    assert done.result["n_ratings"] + done.result["n_unsure"] == 20
    assert {a.name for a in done.artifacts.all()} == {"report.json", "prompts.csv", "annotators.csv"}


@pytest.mark.parametrize("params,field", [({"n_boot": -1}, "n_boot"), ({"mixed_effects": "yes"}, "mixed_effects")])
def test_analysis_job_bad_params(small_study, params, field):
    from config.errors import ApplicationError

    with pytest.raises(ApplicationError, match=field):
        job_create(kind="analysis", study=small_study, params=params)


@pytest.fixture
def analysed(release_study):
    job = job_create(kind="analysis", study=release_study, params={"n_boot": 100})
    assert job_run(job_id=job.pk).status == "succeeded"
    return release_study


def _figures(content):
    return {
        json.loads(unescape(m))["layout"]["title"]["text"]: json.loads(unescape(m))
        for m in re.findall(r'data-figure="([^"]*)"', content)
    }


def test_agreement_dashboard_shows_plane_alpha_forest_and_groups(client, researcher, analysed):
    client.force_login(researcher)
    content = client.get(reverse("benchmark:agreement", args=["pluriharms"])).content.decode()
    assert 'id="alpha">0.413<' in content
    figures = _figures(content)
    plane = figures["Harm × agreement"]
    assert sum(len(trace["x"]) for trace in plane["data"]) == 150
    assert all(len(t["customdata"]) == len(t["x"]) for t in plane["data"])
    assert "Trait effects on ratings (RQ2, 95% CI)" in figures
    assert "Agreement within and across demographic groups" in figures
    assert "/research/studies/pluriharms/prompts/__ID__/" in content  # click-through
    # RQ3 (issue 16): the stably selected interaction and the annotator-level tests beside the ladder
    assert 'id="rq3-selection"' in content and "<code>Factor_1:action_Sexual_Content</code>" in content
    assert 'id="rq3-tests"' in content and "data that chose them" in content
    fragment = client.get(reverse("benchmark:agreement", args=["pluriharms"]), HTTP_HX_REQUEST="true")
    assert b"<html" not in fragment.content and b'id="agreement-panels"' in fragment.content


def test_agreement_dashboard_without_report_offers_recompute(
    client, researcher, small_study, monkeypatch, django_capture_on_commit_callbacks
):
    client.force_login(researcher)
    page = client.get(reverse("benchmark:agreement", args=["small"])).content.decode()
    assert "No report has been computed" in page and 'id="recompute"' in page
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        card = client.post(reverse("benchmark:analysis_start", args=["small"]), HTTP_HX_REQUEST="true")
    job = Job.objects.get(kind="analysis")
    assert card.status_code == 200 and f'id="job-{job.pk}"' in card.content.decode()
    assert b"<progress" in card.content
    job_run(job_id=job.pk)
    poll = client.get(reverse("jobs:job_detail", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert poll["HX-Trigger"] == "analysis-finished"  # the panels refresh themselves without a reload


def test_agreement_csv_tables(client, researcher, analysed):
    client.force_login(researcher)
    response = client.get(reverse("benchmark:agreement_csv", args=["pluriharms", "prompts"]))
    prompts = b"".join(response.streaming_content).decode()
    assert prompts.splitlines()[0].startswith("prompt,harm_level,n,") and len(prompts.strip().splitlines()) == 151
    groups = client.get(reverse("benchmark:agreement_csv", args=["pluriharms", "groups"])).content.decode()
    assert groups.splitlines()[0].startswith("column,group,n_annotators,n_ratings,tested,in_group_alpha")
    coefficients = client.get(reverse("benchmark:agreement_csv", args=["pluriharms", "coefficients"])).content.decode()
    assert coefficients.splitlines()[0].startswith("model,term,estimate")
    assert client.get(reverse("benchmark:agreement_csv", args=["pluriharms", "nope"])).status_code == 404


def test_prompt_page_histogram_overall_and_by_group(client, researcher, analysed):
    client.force_login(researcher)
    url = reverse("benchmark:prompt_detail", args=["pluriharms", "1"])
    page = client.get(url).content.decode()
    figures = _figures(page)
    overall = figures["Ratings of prompt 1"]
    from annotation.models import Rating

    rated = Rating.objects.filter(prompt__study=analysed, prompt__external_id="1", unsure=False).count()
    assert rated == 99  # one of the 100 chose Unsure
    assert len(overall["data"]) == 1 and sum(overall["data"][0]["y"]) == rated  # ten bins, counted here
    by_gender = _figures(client.get(url + "?group=Gender", HTTP_HX_REQUEST="true").content.decode())
    traces = by_gender["Ratings of prompt 1"]["data"]
    names = [re.fullmatch(r"(\w+) \(n=(\d+)\)", t["name"]).groups() for t in traces]
    assert [name for name, _ in names] == ["Man", "Woman"] and sum(int(n) for _, n in names) == rated
    features = figures["Largest prompt features"]["data"][0]["x"]
    assert "action: Discrimination Bias" in features  # prompt 1's largest action category, readably named
    assert any(label.startswith("value: ") for label in features)
    assert client.get(url + "?group=Shoe_Size").status_code == 400
    assert client.get(reverse("benchmark:prompt_detail", args=["pluriharms", "999"])).status_code == 404


def test_dashboard_refusals(client, outsider, analysed):
    urls = [
        reverse("benchmark:agreement", args=["pluriharms"]),
        reverse("benchmark:prompt_detail", args=["pluriharms", "1"]),
        reverse("benchmark:agreement_csv", args=["pluriharms", "prompts"]),
    ]
    for url in urls:
        assert client.get(url).status_code == 302
    client.force_login(outsider)
    for url in urls:
        assert client.get(url).status_code == 404
    assert client.post(reverse("benchmark:analysis_start", args=["pluriharms"])).status_code == 404
    assert client.get(reverse("benchmark:analysis_start", args=["pluriharms"])).status_code == 405
