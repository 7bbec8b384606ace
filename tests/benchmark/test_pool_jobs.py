"""A pool's generation jobs (issue 12): graded variants with the researcher's template and harm-benefit
trees, against the local fake OpenAI-compatible endpoint; counts on the job and pool pages; results
written into the pool's candidates; progress and cancel; starts from the page and the API."""

from __future__ import annotations

import html
import json

import pytest
from django.urls import reverse

from annotation.models import Collaborator, Study
from benchmark import pool_jobs
from benchmark.models import Candidate
from benchmark.pools import candidates_add, pool_create
from benchmark.science.curation.variants import DEFAULT_TEMPLATE, LEVEL_KEYS
from benchmark.science.harm_benefit import load_example_tree
from jobs.models import Job
from jobs.services import job_run
from tests.science.chat_endpoint import ChatEndpoint

EXAMPLE_TREE = load_example_tree()["harm_benefit_tree"]  # Hate/Toxicity 4/7, Social 2/6 (tests/science)
TEMPLATE = "Topic kept. Seed: <<{seed}>>. Levels: {levels}. Reply with a JSON object level -> text."


class PoolEndpoint(ChatEndpoint):
    """Variants (the seed between << >>): GOOD → 11 variants; REFUSE → a refusal; BROKEN → level 1.0 missing,
    then (told why) all 11; HOPELESS → never JSON. Trees (a "Request:" message): TREE-BAD → off the
    schema, then the example; TREE-REFUSE → a refusal; TREE-DOWN → HTTP 503; else the example tree."""

    def answer(self, messages):
        content = messages[1]["content"]
        told = len(messages) > 2
        if content.startswith("Request:"):
            if "TREE-DOWN" in content:
                return 503, None
            if "TREE-REFUSE" in content:
                return 200, "I can't help with that."
            if "TREE-BAD" in content and not told:
                return 200, json.dumps([{"stakeholder": "x", "harms": [{"action": "a", "effects": [{"effect": "e"}]}]}])
            return 200, json.dumps(EXAMPLE_TREE)
        seed = content.split("<<")[1].split(">>")[0]
        if "REFUSE" in seed:
            return 200, "I'm sorry, but I can't help with writing harmful variants."
        if "HOPELESS" in seed:
            return 200, "Some ideas, in no particular format."
        levels = [k for k in LEVEL_KEYS if not ("BROKEN" in seed and not told and k == "1.0")]
        return 200, json.dumps({k: f"{seed} at {k}" for k in levels})


@pytest.fixture
def endpoint(settings, tmp_path, monkeypatch):
    with PoolEndpoint() as running:
        settings.LLM_BASE_URL, settings.LLM_MODEL, settings.LLM_CACHE_DIR = running.url, "fake-1", tmp_path / "llm"
        made = pool_jobs.curation_llm_client

        def client():
            built = made()
            built.sleep = lambda seconds: None  # the HTTP retries' backoff, not waited for
            built.max_retries = 1
            return built

        monkeypatch.setattr(pool_jobs, "curation_llm_client", client)
        yield running


@pytest.fixture
def study(db, researcher):
    return Study.objects.create(slug="bank", title="Bank", owner=researcher)


@pytest.fixture
def pool(study, researcher):
    pool = pool_create(study=study, name="Seeds", user=researcher)
    seeds = [
        ("s1", "GOOD cooking", "g1"),
        ("s2", "REFUSE this", ""),
        ("s3", "BROKEN chemistry", ""),
        ("s4", "HOPELESS", ""),
    ]
    candidates_add(
        pool=pool,
        rows=[{"external_id": i, "text": t, "group": g} for i, t, g in seeds],
        source=Candidate.Source.UPLOADED,
    )
    return pool


def _post(client, name, pool, **fields):
    return client.post(reverse(f"benchmark:{name}", args=[pool.study.slug, pool.pk]), fields, HTTP_HX_REQUEST="true")


def _start_and_run(client, monkeypatch, capture, name, pool, **fields):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    with capture(execute=True):
        started = _post(client, name, pool, **fields)
    assert started.status_code == 200, started.content
    job = Job.objects.latest("id")
    assert f'id="job-{job.pk}"' in started.content.decode()
    return job_run(job_id=job.pk)


def test_variants_job_from_the_pool_page(
    client, researcher, pool, endpoint, monkeypatch, django_capture_on_commit_callbacks
):
    client.force_login(researcher)
    page = client.get(reverse("benchmark:pool_detail", args=["bank", pool.pk])).content.decode()
    assert 'id="pool-variants-start"' in page and 'id="pool-trees-start"' in page
    assert html.escape(DEFAULT_TEMPLATE) in page  # the default until the researcher edits it
    done = _start_and_run(
        client,
        monkeypatch,
        django_capture_on_commit_callbacks,
        "pool_variants_start",
        pool,
        template=TEMPLATE,
        attempts="3",
    )
    assert done.status == "succeeded", done.error
    assert done.params == {"pool": pool.pk, "template": TEMPLATE, "attempts": 3}
    counts = done.result["counts"]
    assert counts["seeds"] == 4 and counts["accepted"] == 2 and counts["refused"] == 1 and counts["malformed"] == 1
    assert counts["retried"] == 1 + 2  # BROKEN once, HOPELESS twice
    assert counts["candidates"] == 22 and counts["http_calls"] == 1 + 2 + 1 + 3
    assert {o["external_id"]: o["status"] for o in done.result["not_accepted"]} == {"s2": "refused", "s4": "malformed"}
    assert endpoint.calls[0][1]["content"].startswith("Topic kept. Seed: <<")  # the researcher's template
    assert "0.0, 0.1, 0.2" in endpoint.calls[0][1]["content"]
    # written into the pool: 11 graded variants per accepted seed, in the seed's group, linked to the seed
    variants = pool.candidates.filter(source=Candidate.Source.VARIANT)
    assert variants.count() == 22
    s1 = pool.candidates.get(external_id="s1")
    assert sorted(s1.variants.values_list("harm_level", flat=True)) == [float(k) for k in LEVEL_KEYS]
    assert set(s1.variants.values_list("group", flat=True)) == {"g1"}
    assert set(pool.candidates.get(external_id="s3").variants.values_list("group", flat=True)) == {"s3"}
    assert pool.candidates.get(external_id="s1-h5").text == "GOOD cooking at 0.5"
    pool.refresh_from_db()
    assert pool.meta["variants_template"] == TEMPLATE
    assert {a.name for a in done.artifacts.all()} == {"variants.json", "variants_outcomes.csv"}
    # counts on the job page and the pool page; the edited template is offered again
    job_page = client.get(reverse("jobs:job_detail", args=[done.pk])).content.decode()
    assert f'id="job-{done.pk}-counts"' in job_page and "<dt>Refused</dt><dd>1</dd>" in job_page
    page = html.unescape(client.get(reverse("benchmark:pool_detail", args=["bank", pool.pk])).content.decode())
    assert 'id="variants-counts"' in page and 'id="variants-not-accepted"' in page and TEMPLATE in page
    assert "the reply holds no JSON object" in page
    assert 'hx-trigger="variants-finished from:body, trees-finished from:body"' in page
    fragment = client.get(reverse("benchmark:pool_generation", args=["bank", pool.pk]), HTTP_HX_REQUEST="true")
    assert (
        fragment.status_code == 200 and b"<html" not in fragment.content and b'id="variants-counts"' in fragment.content
    )
    assert client.post(reverse("benchmark:pool_generation", args=["bank", pool.pk])).status_code == 405
    whole = client.get(reverse("benchmark:pool_generation", args=["bank", pool.pk]))  # no htmx: the pool page
    assert whole.status_code == 200 and b"<html" in whole.content and b'id="pool-variants"' in whole.content
    missing = client.get(reverse("benchmark:pool_generation", args=["bank", pool.pk + 99]), HTTP_HX_REQUEST="true")
    assert missing.status_code == 404
    # a rerun asks only the seeds without variants; the refusal comes from the cache
    calls = len(endpoint.calls)
    again = _start_and_run(
        client, monkeypatch, django_capture_on_commit_callbacks, "pool_variants_start", pool, template=""
    )
    assert again.params["template"] == TEMPLATE  # empty: the pool's last template
    assert again.result["counts"]["seeds"] == 2 and again.result["counts"]["skipped_with_variants"] == 2
    assert again.result["counts"]["cache_hits"] >= 1 and again.result["counts"]["candidates"] == 0
    assert len(endpoint.calls) - calls == 0  # every reply was cached
    assert pool.candidates.count() == 4 + 22


def test_variants_start_refusals(client, researcher, outsider, pool, study, endpoint, settings):
    client.force_login(researcher)
    for template, message in [
        ("Write variants.", "must contain {seed}"),
        ("{seed} about {topic}", "unknown placeholder(s) {topic}"),
    ]:
        response = _post(client, "pool_variants_start", pool, template=template)
        assert response.status_code == 400 and message in html.unescape(response.content.decode()), template
    assert _post(client, "pool_variants_start", pool, template=TEMPLATE, attempts="9").status_code == 400
    assert _post(client, "pool_variants_start", pool, template=TEMPLATE, attempts="x").status_code == 400
    other = pool_create(study=Study.objects.create(slug="other", title="Other", owner=researcher), name="Other")
    wrong = client.post(reverse("benchmark:pool_variants_start", args=["bank", other.pk]), {"template": TEMPLATE})
    assert wrong.status_code == 404
    empty = pool_create(study=study, name="Empty")
    no_seeds = _post(client, "pool_variants_start", empty, template=TEMPLATE)
    assert no_seeds.status_code == 400 and "no uploaded seed prompts" in no_seeds.content.decode()
    settings.LLM_BASE_URL = ""
    unconfigured = _post(client, "pool_variants_start", pool, template=TEMPLATE)
    assert unconfigured.status_code == 400 and "LLM_BASE_URL" in unconfigured.content.decode()
    assert not Job.objects.exists()
    pool.refresh_from_db()
    assert "variants_template" not in pool.meta  # a refused start keeps nothing
    assert client.get(reverse("benchmark:pool_variants_start", args=["bank", pool.pk])).status_code == 405
    client.force_login(outsider)
    assert _post(client, "pool_variants_start", pool, template=TEMPLATE).status_code == 404
    Collaborator.objects.create(study=study, user=outsider, role=Collaborator.Role.VIEWER)
    assert _post(client, "pool_trees_start", pool).status_code == 403
    page = client.get(reverse("benchmark:pool_detail", args=["bank", pool.pk])).content.decode()
    assert 'id="pool-variants"' in page and 'id="pool-variants-start"' not in page  # a viewer sees, cannot start
    client.logout()
    assert _post(client, "pool_variants_start", pool).status_code == 302


def test_variants_and_trees_start_through_the_api(client, researcher, pool, endpoint, monkeypatch):
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    client.force_login(researcher)
    made = client.post(
        "/api/jobs/",
        {"kind": "variants", "study": "bank", "params": {"pool": pool.pk}},
        content_type="application/json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["params"]["template"] == DEFAULT_TEMPLATE
    bad = client.post(
        "/api/jobs/",
        {"kind": "variants", "study": "bank", "params": {"pool": pool.pk, "template": "no seed here"}},
        content_type="application/json",
    )
    assert bad.status_code == 400 and bad.json()["extra"]["field"] == "template"
    trees = client.post(
        "/api/jobs/",
        {"kind": "trees", "study": "bank", "params": {"pool": pool.pk, "which": "all"}},
        content_type="application/json",
    )
    assert trees.status_code == 201 and trees.json()["params"] == {"pool": pool.pk, "which": "all", "attempts": 3}
    unknown = client.post(
        "/api/jobs/",
        {"kind": "trees", "study": "bank", "params": {"pool": pool.pk + 99}},
        content_type="application/json",
    )
    assert unknown.status_code == 400 and "no candidate pool" in unknown.json()["message"]


@pytest.mark.parametrize(
    "kind, params",
    [
        ("pool_topics", {"k": 2}),
        ("variants", {"template": TEMPLATE}),
        ("trees", {}),
        ("selection", {"k": 2}),
    ],
)
def test_every_pool_job_refuses_another_studys_pool_on_its_pool_field(client, researcher, pool, endpoint, kind, params):
    """The four validators that name a pool share one lookup: the same 400 on `pool`, and no job."""
    client.force_login(researcher)
    other = pool_create(study=Study.objects.create(slug="other", title="Other", owner=researcher), name="Other")
    for pool_id in (other.pk, other.pk + 99):
        response = client.post(
            "/api/jobs/",
            {"kind": kind, "study": "bank", "params": {"pool": pool_id, **params}},
            content_type="application/json",
        )
        body = response.json()
        assert response.status_code == 400, body
        assert body["extra"]["field"] == "pool" and f"no candidate pool #{pool_id} in this study" in body["message"]
    assert not Job.objects.exists()


def test_trees_job_writes_trees_and_features_and_reports_failures(
    client, researcher, study, endpoint, monkeypatch, django_capture_on_commit_callbacks
):
    pool = pool_create(study=study, name="Candidates")
    texts = {"c1": "fine", "c2": "TREE-BAD", "c3": "TREE-REFUSE", "c4": "TREE-DOWN"}
    candidates_add(
        pool=pool,
        rows=[{"external_id": i, "text": t, "harm_level": 0.5} for i, t in texts.items()],
        source=Candidate.Source.UPLOADED,
    )
    client.force_login(researcher)
    done = _start_and_run(client, monkeypatch, django_capture_on_commit_callbacks, "pool_trees_start", pool)
    assert done.status == "succeeded", done.error
    assert done.result["counts"] == {
        "candidates": 4,
        "accepted": 2,
        "refused": 1,
        "malformed": 0,
        "failed": 1,
        "retried": 1,
        "http_calls": 1 + 2 + 1 + 2,
        "cache_hits": 0,
        "written": 2,
    }
    failures = {o["external_id"]: (o["status"], o["why"]) for o in done.result["not_accepted"]}
    assert failures["c3"] == ("refused", "the model declined") and failures["c4"][0] == "failed"
    c1, c2 = pool.candidates.get(external_id="c1"), pool.candidates.get(external_id="c2")
    assert c1.harm_benefit_tree and c2.harm_benefit_tree
    assert c1.features["action_Hate_Toxicity"] == pytest.approx(4 / 7)
    assert c1.features["effect_Social"] == pytest.approx(2 / 6)
    assert len([k for k in c1.features if k.startswith("action_")]) == 16
    assert len([k for k in c1.features if k.startswith("effect_")]) == 7
    assert pool.candidates.get(external_id="c3").harm_benefit_tree is None
    page = client.get(reverse("benchmark:pool_detail", args=["bank", pool.pk])).content.decode()
    assert 'id="trees-counts"' in page and 'id="trees-not-accepted"' in page
    # "missing": only the candidates still without a tree are asked again
    endpoint.calls.clear()
    again = _start_and_run(client, monkeypatch, django_capture_on_commit_callbacks, "pool_trees_start", pool)
    assert again.result["counts"]["candidates"] == 2
    assert {m[1]["content"].split('"')[1] for m in endpoint.calls} == {"TREE-DOWN"}  # the refusal was cached


def test_cancel_keeps_the_written_chunks_and_a_rerun_does_the_rest(
    researcher, study, endpoint, monkeypatch, django_capture_on_commit_callbacks
):
    from jobs.services import job_create

    pool = pool_create(study=study, name="Many")
    candidates_add(
        pool=pool,
        rows=[{"external_id": f"s{i}", "text": f"GOOD {i}"} for i in range(5)],
        source=Candidate.Source.UPLOADED,
    )
    monkeypatch.setattr(pool_jobs, "CHUNK", 2)
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    written = []
    add = pool_jobs.candidates_add

    def add_then_cancel(**kwargs):  # the researcher presses Cancel while the first chunk is written
        written.append(add(**kwargs))
        Job.objects.filter(kind="variants", status="running").update(cancel_requested_at="2026-01-01T00:00:00Z")
        return written[-1]

    monkeypatch.setattr(pool_jobs, "candidates_add", add_then_cancel)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind="variants", study=study, params={"pool": pool.pk, "template": TEMPLATE}, user=researcher)
    done = job_run(job_id=job.pk)
    assert done.status == "cancelled" and len(written) == 1
    assert pool.candidates.filter(source=Candidate.Source.VARIANT).count() == 22  # the first chunk: 2 seeds
    monkeypatch.setattr(pool_jobs, "candidates_add", add)
    with django_capture_on_commit_callbacks(execute=True):
        rerun = job_create(
            kind="variants", study=study, params={"pool": pool.pk, "template": TEMPLATE}, user=researcher
        )
    finished = job_run(job_id=rerun.pk)
    assert finished.status == "succeeded" and finished.result["counts"]["seeds"] == 3
    assert pool.candidates.filter(source=Candidate.Source.VARIANT).count() == 55
    assert finished.message == "done" and finished.progress == 1.0


def test_progress_messages_carry_the_counts_so_far(study, endpoint, monkeypatch):
    pool = pool_create(study=study, name="Progress")
    candidates_add(
        pool=pool,
        rows=[{"external_id": f"s{i}", "text": t} for i, t in enumerate(["GOOD a", "REFUSE b", "GOOD c"])],
        source=Candidate.Source.UPLOADED,
    )
    monkeypatch.setattr(pool_jobs, "CHUNK", 2)
    messages = []
    result, outcomes = pool_jobs.pool_variants_generate(
        pool=pool, template=TEMPLATE, progress=lambda fraction, message: messages.append((fraction, message))
    )
    assert messages[0] == (0.02, "variants of seeds 1–2 of 3")
    assert (
        messages[1][1] == "variants of seeds 3–3 of 3 (so far: accepted 1, refused 1, malformed 0, failed 0, retried 0)"
    )
    assert [f for f, _ in messages] == sorted(f for f, _ in messages)
    assert result["counts"]["accepted"] == 2 and [o["status"] for o in outcomes] == ["ok", "refused", "ok"]


def test_a_seed_whose_variant_ids_are_taken_is_skipped_and_said(study, endpoint):
    pool = pool_create(study=study, name="Ids")
    candidates_add(
        pool=pool,
        rows=[
            {"external_id": "s1", "text": "GOOD a"},
            {"external_id": "s1-h3", "text": "already here"},
            {"external_id": "x" * 62, "text": "GOOD long id"},
            {"external_id": "s2", "text": "GOOD b"},
        ],
        source=Candidate.Source.UPLOADED,
    )
    result, outcomes = pool_jobs.pool_variants_generate(pool=pool, template=TEMPLATE)
    status = {o["external_id"]: (o["status"], o["why"]) for o in outcomes}
    assert status["s1"] == ("skipped", "the variant id 's1-h3' is already a candidate of this pool")
    assert status["x" * 62][0] == "skipped" and "longer than 64 characters" in status["x" * 62][1]
    assert status["s2"][0] == "ok" and status["s1-h3"][0] == "ok"  # an uploaded candidate is a seed too
    assert result["counts"]["skipped_id_conflict"] == 2 and result["counts"]["candidates"] == 22
    assert {o["external_id"] for o in result["not_accepted"]} == {"s1", "x" * 62}
