"""Prompt selection as a job and its pages (issue 12): run, plots, create a study from the selection."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from django.urls import reverse

from annotation.importers import pluriharms_import
from annotation.models import Prompt, Study
from benchmark.curation import selection_pool, selection_run
from config.errors import ApplicationError
from jobs.models import Job
from jobs.services import job_run
from tests.conftest import write_small_release


@pytest.fixture
def pool_study(db, tmp_path, researcher):
    """30 prompts of the release (with their features), 4 annotators."""
    return pluriharms_import(
        directory=write_small_release(tmp_path / "pool", n_prompts=30), slug="pool", owner=researcher
    )


def _start(client, slug="pool", **fields):
    return client.post(reverse("benchmark:selection_start", args=[slug]), fields, HTTP_HX_REQUEST="true")


def _run_selection(client, monkeypatch, capture, **fields):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    with capture(execute=True):
        started = _start(client, **fields)
    assert started.status_code == 200, started.content
    job = Job.objects.filter(kind="selection").latest("id")
    done = job_run(job_id=job.pk)
    assert done.status == "succeeded", done.error
    return done


def test_selection_job_page_plots_and_new_study(
    client, researcher, pool_study, monkeypatch, django_capture_on_commit_callbacks
):
    client.force_login(researcher)
    page = client.get(reverse("benchmark:selection", args=["pool"])).content.decode()
    assert "No prompt selection has been run" in page and 'id="start-selection"' in page
    done = _run_selection(
        client, monkeypatch, django_capture_on_commit_callbacks, k="12", optimizer="ga", seed="4", max_per_group="2"
    )
    assert done.params == {
        "k": 12,
        "targets": "paper",
        "max_per_group": 2,
        "optimizer": "ga",
        "seed": 4,
        "pilot": "",
        "disagreement_weight": 0.05,
        "embedding": True,
    }
    assert {a.name for a in done.artifacts.all()} == {"selection.json", "selected.csv"}
    result = done.result
    assert len(result["selected"]) == 12 and result["pool_size"] == 30
    assert set(result["js_distance"]) == {"harm_level", "actions", "effects", "values"}
    assert len(result["objective_per_iteration"]) == 301
    # the same selection as the science core on the same pool
    _, direct = selection_run(study=pool_study, k=12, optimizer="ga", seed=4)
    assert direct["selected"] == result["selected"] and direct["objective"] == pytest.approx(result["objective"])

    page = client.get(reverse("benchmark:selection", args=["pool"])).content.decode()
    for plot in ("selection-objective", "selection-harm_level", "selection-actions", "selection-effects"):
        assert f'id="{plot}"' in page
    assert f"{result['objective']:.4f}" in page and 'id="create-study"' in page
    figure = json.loads(
        pd.Series([page])
        .str.extract(r'id="selection-harm_level" data-name="[^"]+" data-figure="([^"]+)"')[0][0]
        .replace("&quot;", '"')
    )
    assert [t["name"] for t in figure["data"]] == ["chosen", "target"]
    assert figure["data"][1]["x"][5] == pytest.approx(0.24)  # the paper's target at 0.5
    fragment = client.get(reverse("benchmark:selection", args=["pool"]), HTTP_HX_REQUEST="true")
    assert b"<html" not in fragment.content and b'id="selection-panels"' in fragment.content
    by_number = client.get(reverse("benchmark:selection", args=["pool"]), {"job": done.pk})
    assert by_number.status_code == 200
    assert client.get(reverse("benchmark:selection", args=["pool"]), {"job": "x"}).status_code == 400
    assert client.get(reverse("benchmark:selection", args=["pool"]), {"job": done.pk + 99}).status_code == 404

    created = client.post(reverse("benchmark:selection_study", args=["pool"]), {"job": done.pk})
    study = Study.objects.exclude(pk=pool_study.pk).get()
    assert created.status_code == 302 and created["Location"] == reverse("annotation:study_detail", args=[study.slug])
    assert study.owner == researcher and study.status == Study.Status.DRAFT
    assert study.meta["selected_from"] == {"study": "pool", "job": done.pk}
    assert sorted(study.prompts.values_list("external_id", flat=True)) == sorted(result["selected"])
    source = {p.external_id: p for p in pool_study.prompts.all()}
    for prompt in study.prompts.all():
        assert prompt.text == source[prompt.external_id].text
        assert prompt.features == source[prompt.external_id].features
    again = client.post(reverse("benchmark:selection_study", args=["pool"]), {"job": done.pk}, HTTP_HX_REQUEST="true")
    assert again.status_code == 200 and b"Created the draft study" in again.content
    assert Study.objects.count() == 3


def test_selection_start_refusals(client, researcher, outsider, pool_study):
    client.force_login(researcher)
    assert "k must be a whole number" in _start(client, k="many").content.decode()
    assert _start(client, k="0").status_code == 400
    refused = _start(client, k="31")
    assert refused.status_code == 400 and "K = 31 is more than the study" in refused.content.decode()
    assert _start(client, k="5", targets="median").status_code == 400
    assert _start(client, k="5", optimizer="annealing").status_code == 400
    assert not Job.objects.filter(kind="selection").exists()
    assert client.get(reverse("benchmark:selection_start", args=["pool"])).status_code == 405
    assert client.post(reverse("benchmark:selection", args=["pool"])).status_code == 405
    missing = client.post(reverse("benchmark:selection_study", args=["pool"]), {})
    assert missing.status_code == 400
    queued = Job.objects.create(kind="selection", study=pool_study, params={"k": 5})
    unfinished = client.post(reverse("benchmark:selection_study", args=["pool"]), {"job": queued.pk})
    assert unfinished.status_code == 409 and Study.objects.count() == 1
    client.logout()
    anonymous = client.get(reverse("benchmark:selection", args=["pool"]))
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    client.force_login(outsider)
    assert client.get(reverse("benchmark:selection", args=["pool"])).status_code == 404
    assert _start(client, k="5").status_code == 404


def test_prompts_without_a_harm_level_are_refused(pool_study):
    Prompt.objects.filter(study=pool_study, external_id="3").update(harm_level=None)
    with pytest.raises(ApplicationError, match=r"1 prompt\(s\) have no harm level \(3\)"):
        selection_pool(study=pool_study)


def test_group_feature_limits_a_seed_group(pool_study):
    for prompt in pool_study.prompts.all():
        prompt.features = {**prompt.features, "group": f"seed{int(prompt.external_id) % 5}"}
        prompt.save()
    pool = selection_pool(study=pool_study)
    assert pool.frame["group"].nunique() == 5
    selected, report = selection_run(study=pool_study, k=10, max_per_group=2, optimizer="ga", seed=0)
    assert selected["group"].value_counts().max() == 2
    with pytest.raises(ApplicationError, match="at most 10 candidates with at most 2 per group"):
        selection_run(study=pool_study, k=11, max_per_group=2)


def test_selection_job_with_targets_as_an_object(
    pool_study, researcher, monkeypatch, django_capture_on_commit_callbacks
):
    from jobs.services import job_create

    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    targets = {"harm_level": {"0.5": 1}, "weights": {"values": 0}}
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind="selection", study=pool_study, params={"k": 6, "targets": targets, "optimizer": "ga"})
    done = job_run(job_id=job.pk)
    assert done.status == "succeeded", done.error
    assert done.result["targets"] == "custom" and "values" not in done.result["js_distance"]
    harm = {p.external_id: p.harm_level for p in pool_study.prompts.all()}
    assert all(harm[i] == 0.5 for i in done.result["selected"])
    for bad, message in [
        ({"harm_level": [1, 2]}, "2 numbers given, the pool has 11"),
        ({"actions": {"Nope": 1}}, "unknown category 'Nope'"),
        ("median", "unknown targets 'median'"),
        ([1], "targets must be paper, uniform or an object"),
    ]:
        with pytest.raises(ApplicationError, match=message):
            job_create(kind="selection", study=pool_study, params={"k": 6, "targets": bad})
