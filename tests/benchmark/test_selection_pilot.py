"""The pilot option of prompt selection (issue 12): ratings in a study as the pilot, the disagreement model
fitted in the job, its held-out rank correlation on the page, and the refusals."""

from __future__ import annotations

import html

import numpy as np
import pytest
from django.urls import reverse

from annotation.importers import pluriharms_import
from annotation.models import Annotator, Collaborator, Prompt
from benchmark.curation import selection_pool
from benchmark.pilot import pilot_matrix
from benchmark.science.curation.disagreement import disagreement_predict
from config.errors import ApplicationError
from jobs.models import Job
from jobs.services import job_create, job_run
from tests.conftest import write_small_release


@pytest.fixture
def pool_study(db, tmp_path, researcher):
    """60 prompts of the release with their features, rated by 10 of its annotators."""
    return pluriharms_import(
        directory=write_small_release(tmp_path / "pool", n_prompts=60, n_annotators=10), slug="pool", owner=researcher
    )


def _start(client, slug="pool", **fields):
    return client.post(reverse("benchmark:selection_start", args=[slug]), fields, HTTP_HX_REQUEST="true")


def _text(response) -> str:
    return html.unescape(response.content.decode())


def _run_started(monkeypatch, capture, start):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    with capture(execute=True):
        response = start()
    return response


def test_pilot_from_the_study_itself_page_and_result(
    client, researcher, pool_study, monkeypatch, django_capture_on_commit_callbacks
):
    client.force_login(researcher)
    page = client.get(reverse("benchmark:selection", args=["pool"])).content.decode()
    assert 'id="pilot"' in page and "This study's ratings" in page and 'id="disagreement_weight"' in page
    started = _run_started(
        monkeypatch,
        django_capture_on_commit_callbacks,
        lambda: _start(client, k="20", optimizer="ga", pilot="pool", disagreement_weight="0.5"),
    )
    assert started.status_code == 200, started.content
    job = Job.objects.get(kind="selection")
    assert job.params["pilot"] == "pool" and job.params["disagreement_weight"] == 0.5
    assert job.params["embedding"] is False  # the checkbox was not sent
    done = job_run(job_id=job.pk)
    assert done.status == "succeeded", done.error
    block = done.result["disagreement"]
    assert block["pilot_study"] == "pool" and block["pilot_annotators"] == 10 and block["pilot_prompts"] == 60
    assert block["weight"] == 0.5 and "MiniLM" not in block["model"]
    heldout = block["heldout"]
    assert heldout["prompts"] == 60 and heldout["folds"] == 5
    assert -1 <= heldout["spearman"] <= 1 and -1 <= heldout["harm_heuristic_spearman"] <= 1
    # the job's predictions are the science core's on the same pilot matrix; the choice leans toward them
    pool = selection_pool(study=pool_study)
    predicted = disagreement_predict(pool, pilot_matrix(pool=pool, pilot=pool_study), embeddings=None)
    assert block["mean_predicted_sd"]["pool"] == pytest.approx(predicted.mean())
    assert block["mean_predicted_sd"]["selected"] > block["mean_predicted_sd"]["pool"]
    plain = job_run(
        job_id=job_create(kind="selection", study=pool_study, params={"k": 20, "optimizer": "ga"}, user=researcher).pk
    )
    chosen = pool.frame["external_id"].isin(plain.result["selected"]).to_numpy()
    assert block["mean_predicted_sd"]["selected"] > predicted[chosen].mean()
    assert "disagreement" not in plain.result
    assert "predicted_sd" in (done.artifacts.get(name="selected.csv").file.open().read().decode().splitlines()[0])

    page = client.get(reverse("benchmark:selection", args=["pool"]), {"job": done.pk}).content.decode()
    assert 'id="selection-disagreement"' in page and "Held-out rank correlation" in page
    assert f"ρ = {heldout['spearman']:.3f}" in page
    assert f"the harm-level heuristic on the same prompts: ρ = {heldout['harm_heuristic_spearman']:.3f}" in page


def test_pilot_from_another_study_of_the_owner_matched_by_text(
    client, researcher, pool_study, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    pilot = pluriharms_import(
        directory=write_small_release(tmp_path / "pilot", n_prompts=60, n_annotators=10), slug="pilot", owner=researcher
    )
    for prompt in Prompt.objects.filter(study=pilot):  # other ids, the same texts
        prompt.external_id = f"p-{prompt.external_id}"
        prompt.save()
    Annotator.objects.filter(study=pool_study).delete()  # the pool itself has no ratings now
    Annotator.objects.filter(study=pilot, pseudonym__in=["P0001", "P0002"]).update(status=Annotator.Status.EXCLUDED)
    client.force_login(researcher)
    page = client.get(reverse("benchmark:selection", args=["pool"])).content.decode()
    assert '<option value="pilot">' in page and "(no ratings yet)" in page  # the pool study's own entry
    refused = _start(client, k="10", pilot="pool")
    assert refused.status_code == 400
    assert "has 0 candidate prompt(s) rated by two annotators or more" in refused.content.decode()
    _run_started(
        monkeypatch,
        django_capture_on_commit_callbacks,
        lambda: _start(client, k="10", optimizer="ga", pilot="pilot", embedding="on"),
    )
    done = job_run(job_id=Job.objects.get(kind="selection").pk)
    assert done.status == "succeeded", done.error
    block = done.result["disagreement"]
    assert block["pilot_study"] == "pilot" and block["pilot_annotators"] == 8  # two excluded
    assert "MiniLM" in block["model"] and block["heldout"]["spearman"] is not None


def test_pilot_refusals(client, researcher, outsider, pool_study, tmp_path):
    others = pluriharms_import(
        directory=write_small_release(tmp_path / "other", n_prompts=60, n_annotators=10), slug="theirs", owner=outsider
    )
    client.force_login(researcher)
    hidden = _start(client, k="10", pilot="theirs")
    assert hidden.status_code == 400 and "no study 'theirs' among the studies you may see" in _text(hidden)
    assert _start(client, k="10", pilot="nope").status_code == 400
    Collaborator.objects.create(study=others, user=researcher, role=Collaborator.Role.VIEWER)
    foreign = _start(client, k="10", pilot="theirs")
    assert foreign.status_code == 400 and "belongs to another owner" in _text(foreign)
    weight = _start(client, k="10", pilot="pool", disagreement_weight="much")
    assert weight.status_code == 400 and "disagreement weight must be a number" in _text(weight)
    assert _start(client, k="10", pilot="pool", disagreement_weight="-1").status_code == 400
    assert _start(client, k="10", pilot="pool", disagreement_weight="nan").status_code == 400
    assert not Job.objects.filter(kind="selection").exists()
    # the API (the generic job start) refuses the same way, naming the field
    api = client.post(
        "/api/jobs/",
        {"kind": "selection", "study": "pool", "params": {"k": 10, "pilot": "theirs"}},
        content_type="application/json",
    )
    assert api.status_code == 400 and api.json()["extra"]["field"] == "pilot"
    with pytest.raises(ApplicationError, match="belongs to another owner"):
        job_create(kind="selection", study=pool_study, params={"k": 10, "pilot": "theirs"})
    with pytest.raises(ApplicationError, match="unknown parameter"):
        job_create(kind="selection", study=pool_study, params={"k": 10, "pilot_weight": 1})


def test_pilot_matrix_places_ratings_on_candidates(pool_study):
    pool = selection_pool(study=pool_study)
    matrix = pilot_matrix(pool=pool, pilot=pool_study)
    assert matrix.shape == (10, 60)
    prompt = Prompt.objects.get(study=pool_study, external_id=pool.frame["external_id"][3])
    values = sorted(v for v in prompt.ratings.values_list("value", flat=True) if v is not None)
    assert sorted(matrix[np.isfinite(matrix[:, 3]), 3]) == pytest.approx(values)


def test_pilot_for_a_selection_from_a_candidate_pool(researcher, pool_study, monkeypatch):
    from benchmark.models import Candidate
    from benchmark.pools import candidates_add, pool_create

    pool = pool_create(study=pool_study, name="Candidates")
    prompts = list(pool_study.prompts.order_by("order"))
    candidates_add(  # the study's prompts under other ids (matched to the pilot by text), plus 20 unrated ones
        pool=pool,
        rows=[{"external_id": f"c{p.external_id}", "text": p.text, "harm_level": p.harm_level} for p in prompts]
        + [{"external_id": f"new{i}", "text": f"an unrated candidate {i}", "harm_level": i / 20} for i in range(20)],
        source=Candidate.Source.UPLOADED,
    )
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    params = {"k": 15, "pool": pool.pk, "pilot": "pool", "embedding": False, "optimizer": "ga"}
    done = job_run(job_id=job_create(kind="selection", study=pool_study, params=params, user=researcher).pk)
    assert done.status == "succeeded", done.error
    block = done.result["disagreement"]
    assert block["pilot_prompts"] == 60 and block["heldout"]["prompts"] == 60
    assert done.result["pool"]["id"] == pool.pk and len(done.result["selected"]) == 15

    embedded = []

    def embed(texts):  # instead of MiniLM: a fixed vector per text, counted
        embedded.extend(texts)
        return np.array([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=384) for t in texts])

    monkeypatch.setattr("benchmark.science.predictors.common.embed_texts", embed)
    params = {**params, "embedding": True}
    with_embedding = job_run(job_id=job_create(kind="selection", study=pool_study, params=params, user=researcher).pk)
    assert with_embedding.status == "succeeded", with_embedding.error
    assert "MiniLM" in with_embedding.result["disagreement"]["model"] and len(embedded) == 80
    assert pool.candidates.filter(embedding__isnull=True).count() == 0  # kept on the pool's candidates
    again = job_run(job_id=job_create(kind="selection", study=pool_study, params=params, user=researcher).pk)
    assert again.result["disagreement"] == with_embedding.result["disagreement"] and len(embedded) == 80
