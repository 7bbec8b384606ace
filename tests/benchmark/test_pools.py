"""Candidate pools (issue 12): upload (CSV, JSON lines, the release's prompts.csv; row-level problems, all or
nothing, duplicates, size), the pool and candidate pages (filters, pagination, features, tree), value topics
(deterministic clustering, rename), the services jobs call, and a selection from a pool to a new study."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Collaborator, Study
from benchmark import pools as pool_services
from benchmark.curation import selection_pool, selection_run
from benchmark.models import Candidate, CandidatePool, ValueTopic
from benchmark.pool_curation import pool_selection_pool, pool_topics_compute
from benchmark.pools import CandidateProblems, candidate_tree_set, candidates_add, pool_create
from benchmark.science.curation.topics import topics_cluster
from benchmark.science.harm_benefit import load_example_tree
from config.errors import ApplicationError
from jobs.models import Job
from jobs.services import job_run

EXAMPLE_TREE = load_example_tree()["harm_benefit_tree"]  # Hate/Toxicity 4/7, Social 2/6 (tests/science)


@pytest.fixture
def study(db, researcher):
    return Study.objects.create(slug="bank", title="Bank", owner=researcher)


@pytest.fixture
def pool(study, researcher):
    return pool_create(study=study, name="Seeds", user=researcher)


def _csv(rows: list[str], name="pool.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, ("\n".join(rows) + "\n").encode(), content_type="text/csv")


def _upload(client, pool, file, **fields):
    url = reverse("benchmark:pool_upload", args=[pool.study.slug, pool.pk])
    return client.post(url, {"file": file, **fields}, HTTP_HX_REQUEST="true")


def _graded_rows(n_seeds: int = 6) -> list[str]:
    rows = ["external_id,text,harm_level,group,action_Violence_Extremism,effect_Physical"]
    for s in range(n_seeds):
        for level in range(11):
            theme = "cats dogs" if s % 2 else "money bank"
            text = f"Seed {s} asked at level {level} about {theme}"
            rows.append(f"s{s}-{level},{text},{level / 10},seed{s},{level / 10},{1 - level / 10}")
    return rows


# --- upload -----------------------------------------------------------------------------------------


def test_csv_upload_with_groups_and_features(client, researcher, pool):
    client.force_login(researcher)
    answer = _upload(client, pool, _csv(_graded_rows(2)))
    assert answer.status_code == 200, answer.content
    assert b"Added 22 candidates" in answer.content
    assert pool.candidates.count() == 22
    c = pool.candidates.get(external_id="s1-3")
    assert c.group == "seed1" and c.harm_level == pytest.approx(0.3) and c.source == Candidate.Source.UPLOADED
    assert c.features == {"action_Violence_Extremism": pytest.approx(0.3), "effect_Physical": pytest.approx(0.7)}
    assert list(pool.candidates.values_list("order", flat=True)) == list(range(22))


def test_jsonl_upload_seeds_without_levels_and_a_tree(client, researcher, pool):
    client.force_login(researcher)
    lines = [
        json.dumps({"external_id": "a", "text": "How do I bake bread?", "group": 7}),
        json.dumps(
            {
                "external_id": "b",
                "text": "How do I make a weapon?",
                "harm_level": 0.9,
                "harm_benefit_tree": EXAMPLE_TREE,
            }
        ),
    ]
    file = SimpleUploadedFile("seeds.jsonl", "\n".join(lines).encode())
    answer = _upload(client, pool, file)
    assert answer.status_code == 200, answer.content
    a, b = pool.candidates.order_by("order")
    assert a.harm_level is None and a.group == "7"
    assert b.harm_benefit_tree and b.features["action_Hate_Toxicity"] == pytest.approx(4 / 7)
    assert b.features["effect_Social"] == pytest.approx(2 / 6)  # derived from the tree


def test_release_prompts_csv_works(client, researcher, pool, release_dir):
    client.force_login(researcher)
    file = SimpleUploadedFile("prompts.csv", (release_dir / "prompts.csv").read_bytes())
    answer = _upload(client, pool, file)
    assert answer.status_code == 200, answer.content
    assert pool.candidates.count() == 150
    first = pool.candidates.get(external_id="1")
    assert first.harm_level == pytest.approx(0.5) and len(first.features) == 16 + 7 + 39
    science = pool_selection_pool(pool=pool)
    assert len(science) == 150 and science.frame["group"].nunique() == 150
    page = client.get(reverse("benchmark:pool_detail", args=["bank", pool.pk])).content.decode()
    assert "150 candidates listed" in page and 'id="pool-values"' in page  # value topics as released


def test_bad_rows_are_listed_and_nothing_is_written(client, researcher, pool):
    client.force_login(researcher)
    rows = [
        "external_id,text,harm_level,group",
        "a,fine,0.5,g",
        "b,,0.5,g",
        "c,out of range,1.5,g",
        "a,repeated id,0.2,g",
        "d,not a number,high,g",
    ]
    answer = _upload(client, pool, _csv(rows))
    assert answer.status_code == 400
    page = answer.content.decode()
    assert answer["HX-Retarget"] == "#pool-candidates-result"
    assert "4 problems" in page and "nothing was saved" in page
    for text in (
        "empty prompt text",
        "harm level 1.5 is outside 0–1",
        "duplicate external id &#x27;a&#x27; (also row 1)",
        "is not a number",
    ):
        assert text in page, text
    assert not pool.candidates.exists()
    unknown = _upload(client, pool, _csv(["external_id,text,colour", "a,t,red"]))
    assert unknown.status_code == 400 and "unexpected column" in unknown.content.decode()


def test_ids_already_in_the_pool_are_refused(client, researcher, pool):
    client.force_login(researcher)
    assert _upload(client, pool, _csv(["external_id,text", "a,first"])).status_code == 200
    again = _upload(client, pool, _csv(["external_id,text", "b,new", "a,again"]))
    assert again.status_code == 400 and "already a candidate of this pool" in again.content.decode()
    assert list(pool.candidates.values_list("external_id", flat=True)) == ["a"]
    # without htmx: a redirect to the pool, or the problems on their own page
    url = reverse("benchmark:pool_upload", args=["bank", pool.pk])
    plain = client.post(url, {"file": _csv(["external_id,text", "c,third"])})
    assert plain.status_code == 302 and plain["Location"] == reverse("benchmark:pool_detail", args=["bank", pool.pk])
    refused = client.post(url, {"file": _csv(["external_id,text", "c,again"])})
    assert refused.status_code == 400 and b"<html" in refused.content and b"already a candidate" in refused.content


def test_size_and_count_limits(client, researcher, pool, monkeypatch):
    client.force_login(researcher)
    monkeypatch.setattr(pool_services, "MAX_POOL_BYTES", 100)
    big = _upload(client, pool, _csv(["external_id,text"] + [f"{i},text number {i}" for i in range(20)]))
    assert big.status_code == 400 and "larger than" in big.content.decode()
    monkeypatch.setattr(pool_services, "MAX_POOL_BYTES", 10_000)
    monkeypatch.setattr(pool_services, "MAX_POOL_CANDIDATES", 3)
    many = _upload(client, pool, _csv(["external_id,text"] + [f"{i},text {i}" for i in range(4)]))
    assert many.status_code == 400 and "at most 3" in many.content.decode()
    missing = client.post(reverse("benchmark:pool_upload", args=["bank", pool.pk]), {}, HTTP_HX_REQUEST="true")
    assert missing.status_code == 400
    assert not pool.candidates.exists()


def test_upload_permissions(client, researcher, outsider, pool, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-1")
    Collaborator.objects.create(study=pool.study, user=viewer, role=Collaborator.Role.VIEWER)
    client.force_login(outsider)
    assert _upload(client, pool, _csv(["external_id,text", "a,t"])).status_code == 404
    client.force_login(viewer)
    assert _upload(client, pool, _csv(["external_id,text", "a,t"])).status_code == 403
    assert client.get(reverse("benchmark:pool_detail", args=["bank", pool.pk])).status_code == 200
    editor = django_user_model.objects.create_user("editor", password="pw-editor-1")
    Collaborator.objects.create(study=pool.study, user=editor, role=Collaborator.Role.EDITOR)
    client.force_login(editor)
    assert _upload(client, pool, _csv(["external_id,text", "a,t"])).status_code == 200
    client.logout()
    assert client.post(reverse("benchmark:pool_upload", args=["bank", pool.pk])).status_code == 302
    assert not Candidate.objects.filter(pool=pool).exclude(external_id="a").exists()


def test_trees_and_features_import_for_existing_candidates(client, researcher, pool):
    client.force_login(researcher)
    _upload(client, pool, _csv(["external_id,text", "a,first", "b,second"]))
    url = reverse("benchmark:pool_annotations", args=["bank", pool.pk])
    tree_cell = json.dumps(EXAMPLE_TREE).replace('"', '""')
    good = _csv(["external_id,harm_level,harm_benefit_tree,value_topic_3", f'a,0.4,"{tree_cell}",0.5'], "trees.csv")
    answer = client.post(url, {"file": good}, HTTP_HX_REQUEST="true")
    assert answer.status_code == 200 and b"Updated 1 candidate" in answer.content
    a = pool.candidates.get(external_id="a")
    assert a.harm_level == pytest.approx(0.4) and a.harm_benefit_tree
    assert a.features["value_topic_3"] == 0.5 and a.features["action_Hate_Toxicity"] == pytest.approx(4 / 7)
    bad = SimpleUploadedFile(
        "trees.jsonl",
        "\n".join(
            [
                json.dumps({"external_id": "b", "harm_level": 0.2}),
                json.dumps({"external_id": "zz"}),
                json.dumps({"external_id": "b", "harm_benefit_tree": {"x": 1}}),
            ]
        ).encode(),
    )
    refused = client.post(url, {"file": bad}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 400
    page = refused.content.decode()
    assert "no candidate &#x27;zz&#x27; in this pool" in page and "duplicate external id" in page
    assert pool.candidates.get(external_id="b").harm_level is None  # nothing written


# --- pages ------------------------------------------------------------------------------------------


def test_pool_list_and_create(client, researcher, outsider, study):
    client.force_login(researcher)
    page = client.get(reverse("benchmark:pool_list", args=["bank"]))
    assert page.status_code == 200 and b"no candidate pool yet" in page.content and b'id="pool-create"' in page.content
    created = client.post(reverse("benchmark:pool_create", args=["bank"]), {"name": "Generated", "description": "v1"})
    made = CandidatePool.objects.get()
    assert created.status_code == 302 and created["Location"] == reverse(
        "benchmark:pool_detail", args=["bank", made.pk]
    )
    assert (
        made.created_by == researcher
        and b"Generated" in client.get(reverse("benchmark:pool_list", args=["bank"])).content
    )
    assert client.post(reverse("benchmark:pool_create", args=["bank"]), {"name": "  "}).status_code == 400
    assert client.get(reverse("benchmark:pool_create", args=["bank"])).status_code == 405
    client.force_login(outsider)
    assert client.get(reverse("benchmark:pool_list", args=["bank"])).status_code == 404
    assert client.post(reverse("benchmark:pool_create", args=["bank"]), {"name": "x"}).status_code == 404


def test_pool_page_lists_filters_and_paginates(client, researcher, outsider, pool, monkeypatch):
    client.force_login(researcher)
    _upload(client, pool, _csv(_graded_rows(6)))  # 66 candidates
    url = reverse("benchmark:pool_detail", args=["bank", pool.pk])
    page = client.get(url).content.decode()
    assert "66 candidates listed, page 1 of 2" in page
    assert 'id="pool-actions"' in page and 'id="pool-effects"' in page  # features plots
    assert "Violence Extremism (0.50)" in page or "Violence Extremism" in page
    second = client.get(url, {"page": 2}).content.decode()
    assert "s5-10" in second and "s0-0" not in second
    level = client.get(url, {"level": "0.3"}).content.decode()
    assert "6 candidates listed" in level and "s2-3" in level and "s2-4" not in level
    group = client.get(
        url, {"group": "seed2", "level": "0.5"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="pool-candidates"
    )
    assert group.status_code == 200 and b"<html" not in group.content
    assert b"1 candidate listed" in group.content and b"s2-5" in group.content
    monkeypatch.setattr("benchmark.views.pools.PLOT_SAMPLE", 10)  # the plots read every n-th candidate
    sampled = client.get(url).content.decode()
    assert "every 7th of 66" in sampled and "66 candidates listed" in sampled
    assert client.get(url, {"level": "high"}).status_code == 400
    assert client.get(url, {"level": "2"}).status_code == 400
    assert client.post(url).status_code == 405
    other = CandidatePool.objects.create(
        study=Study.objects.create(slug="other", title="O", owner=outsider), name="theirs"
    )
    assert client.get(reverse("benchmark:pool_detail", args=["bank", other.pk])).status_code == 404
    assert client.get(reverse("benchmark:pool_detail", args=["other", other.pk])).status_code == 404
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302


def test_candidate_page_shows_features_and_tree(client, researcher, outsider, pool):
    (made,) = candidates_add(
        pool=pool,
        rows=[
            {
                "external_id": "w",
                "text": "How do I make a weapon?",
                "harm_level": 0.8,
                "harm_benefit_tree": EXAMPLE_TREE,
            }
        ],
        source=Candidate.Source.UPLOADED,
    )
    client.force_login(researcher)
    url = reverse("benchmark:pool_candidate", args=["bank", pool.pk, made.pk])
    page = client.get(url).content.decode()
    assert 'id="harm-benefit-tree"' in page and "Hate Speech, Inciting" in page
    assert 'id="candidate-features"' in page and "action: Hate Toxicity" in page
    assert client.get(reverse("benchmark:pool_candidate", args=["bank", pool.pk, made.pk + 99])).status_code == 404
    client.force_login(outsider)
    assert client.get(url).status_code == 404


# --- services for jobs ------------------------------------------------------------------------------


def test_candidates_add_is_all_or_nothing_and_variants_take_the_seed_group(pool):
    (seed,) = candidates_add(pool=pool, rows=[{"external_id": "s", "text": "seed"}], source=Candidate.Source.UPLOADED)
    made = candidates_add(
        pool=pool,
        rows=[{"external_id": f"s-{i}", "text": f"variant {i}", "harm_level": i / 10, "seed": seed} for i in range(11)],
    )
    assert len(made) == 11 and {c.group for c in made} == {"s"} and made[3].seed_id == seed.pk
    assert all(c.source == Candidate.Source.VARIANT for c in made)
    with pytest.raises(CandidateProblems) as caught:
        candidates_add(
            pool=pool,
            rows=[
                {"external_id": "new", "text": "ok"},
                {"external_id": "s-1", "text": "taken"},
                {"external_id": "x", "text": " "},
                {"external_id": "y", "text": "t", "harm_level": 2},
                {"external_id": "z", "text": "t", "features": {"colour": 1}},
            ],
        )
    messages = [p["message"] for p in caught.value.extra["problems"]]
    assert len(messages) == 4 and "already a candidate of this pool" in messages[0]
    assert not pool.candidates.filter(external_id="new").exists()


def test_candidate_tree_set_validates_and_derives_features(pool):
    (c,) = candidates_add(pool=pool, rows=[{"external_id": "c", "text": "t", "features": {"value_topic_1": 0.4}}])
    candidate_tree_set(candidate=c, tree=EXAMPLE_TREE)
    c.refresh_from_db()
    assert c.features["action_Hate_Toxicity"] == pytest.approx(4 / 7) and c.features["value_topic_1"] == 0.4
    with pytest.raises(ApplicationError):
        candidate_tree_set(candidate=c, tree=[{"stakeholder": 3}])


# --- value topics -----------------------------------------------------------------------------------


def _fake_embeddings(monkeypatch):
    """Texts embedded by their words (two clear themes) instead of MiniLM: fast and offline."""

    def embed(texts):
        out = []
        for t in texts:
            v = np.array([t.count("cats") + t.count("dogs"), t.count("money") + t.count("bank"), 0.1 * len(t) % 1])
            out.append(v / (np.linalg.norm(v) or 1.0))
        return np.array(out)

    monkeypatch.setattr("benchmark.science.predictors.common.embed_texts", embed)


def test_topics_cluster_is_deterministic_per_seed():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8))
    embeddings = np.vstack([c + 0.05 * rng.normal(size=(10, 8)) for c in centers])
    texts = [f"{w} story {i}" for w in ("apple", "river", "engine") for i in range(10)]
    labels, topics = topics_cluster(embeddings, texts, 3, seed=1)
    again, topics_again = topics_cluster(embeddings, texts, 3, seed=1)
    assert (labels == again).all() and [t.words for t in topics] == [t.words for t in topics_again]
    assert sorted(t.size for t in topics) == [10, 10, 10]
    assert {t.words[0] for t in topics} == {"apple", "river", "engine"}  # the distinctive word of each
    assert all(len(set(labels[i * 10 : i * 10 + 10])) == 1 for i in range(3))
    with pytest.raises(ValueError):
        topics_cluster(embeddings, texts, 31)


def test_topics_job_rename_and_values_dimension(
    client, researcher, pool, monkeypatch, django_capture_on_commit_callbacks
):
    _fake_embeddings(monkeypatch)
    client.force_login(researcher)
    _upload(client, pool, _csv(_graded_rows(4)))
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            reverse("benchmark:pool_topics_start", args=["bank", pool.pk]),
            {"k": "2", "seed": "3"},
            HTTP_HX_REQUEST="true",
        )
    assert started.status_code == 200, started.content
    done = job_run(job_id=Job.objects.get(kind="pool_topics").pk)
    assert done.status == "succeeded", done.error
    topics = list(pool.topics.order_by("number"))
    assert [t.size for t in topics] == [22, 22]
    names = {t.name.split(" · ")[0] for t in topics}
    assert names <= {"cats", "dogs", "money", "bank"} and len(names) == 2
    assert Candidate.objects.filter(pool=pool, topic__isnull=True).count() == 0
    assert Candidate.objects.filter(pool=pool, embedding__isnull=True).count() == 0
    first = {c.external_id: c.topic.number for c in pool.candidates.select_related("topic")}
    pool_topics_compute(pool=pool, k=2, seed=3)  # the same again: deterministic, stored embeddings reused
    assert {c.external_id: c.topic.number for c in pool.candidates.select_related("topic")} == first

    science = pool_selection_pool(pool=pool)
    assert [c for c in science.feature_columns if c.startswith("value_topic_")] == ["value_topic_0", "value_topic_1"]
    assert science.frame["value_topic_0"].sum() == 22

    url = reverse("benchmark:pool_topic_rename", args=["bank", pool.pk, 0])
    renamed = client.post(url, {"name": "  Pets and   animals "}, HTTP_HX_REQUEST="true")
    assert renamed.status_code == 200 and b"Saved" in renamed.content and b"<html" not in renamed.content
    assert ValueTopic.objects.get(pool=pool, number=0).name == "Pets and animals"
    page = client.get(reverse("benchmark:pool_detail", args=["bank", pool.pk])).content.decode()
    assert 'value="Pets and animals"' in page and "Pets and animals" in page
    for bad, message in [("", "needs a name"), ("x" * 101, "at most 100"), (topics[1].name, "Another topic")]:
        refused = client.post(url, {"name": bad}, HTTP_HX_REQUEST="true")
        assert refused.status_code == 400 and message in refused.content.decode(), bad
    assert (
        client.post(reverse("benchmark:pool_topic_rename", args=["bank", pool.pk, 9]), {"name": "x"}).status_code == 404
    )
    too_many = client.post(
        reverse("benchmark:pool_topics_start", args=["bank", pool.pk]), {"k": "999"}, HTTP_HX_REQUEST="true"
    )
    assert too_many.status_code == 400


# --- selection from a pool ----------------------------------------------------------------------------


def test_selection_from_a_pool_and_a_study_from_it(
    client, researcher, outsider, pool, monkeypatch, django_capture_on_commit_callbacks
):
    _fake_embeddings(monkeypatch)
    client.force_login(researcher)
    _upload(client, pool, _csv(_graded_rows(6)))
    pool_topics_compute(pool=pool, k=2, seed=0)
    ValueTopic.objects.filter(pool=pool, number=1).update(name="Second topic")
    monkeypatch.setattr("jobs.tasks.run_job.delay", lambda job_id: None)
    url = reverse("benchmark:pool_select", args=["bank", pool.pk])
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            url, {"k": "10", "max_per_group": "2", "optimizer": "ga", "seed": "1"}, HTTP_HX_REQUEST="true"
        )
    assert started.status_code == 200, started.content
    job = Job.objects.get(kind="selection")
    assert job.params["pool"] == pool.pk
    done = job_run(job_id=job.pk)
    assert done.status == "succeeded", done.error
    result = done.result
    assert result["pool"] == {"id": pool.pk, "name": "Seeds"} and result["pool_size"] == 66
    assert len(result["selected"]) == 10 and result["largest_group_count"] <= 2
    assert "Second topic" in result["distributions"]["values"]["labels"]
    assert set(result["js_distance"]) == {"harm_level", "actions", "effects", "values"}

    page = client.get(reverse("benchmark:pool_detail", args=["bank", pool.pk])).content.decode()
    assert f"Selection #{done.pk}" in page
    assert 'id="pool-pilot"' in page  # the pilot fields (disagreement targeting) on the pool's form
    no_pilot = client.post(url, {"k": "5", "pilot": "bank"}, HTTP_HX_REQUEST="true")
    assert no_pilot.status_code == 400 and "pilot" in no_pilot.content.decode()
    shown = client.get(reverse("benchmark:selection", args=["bank"]), {"job": done.pk}).content.decode()
    assert 'id="selection-pool"' in shown and "Second topic" in shown

    created = client.post(reverse("benchmark:selection_study", args=["bank"]), {"job": done.pk})
    new = Study.objects.exclude(slug="bank").get()
    assert created.status_code == 302 and new.owner == researcher
    assert new.meta["selected_from"] == {"study": "bank", "job": done.pk, "pool": pool.pk}
    prompts = {p.external_id: p for p in new.prompts.all()}
    assert sorted(prompts) == sorted(result["selected"])
    some = prompts[result["selected"][0]]
    candidate = pool.candidates.get(external_id=some.external_id)
    assert some.text == candidate.text and some.harm_level == candidate.harm_level
    assert some.features["group"] == candidate.group
    assert some.features[f"value_topic_{candidate.topic.number}"] == 1.0
    # the new study selects from its own prompts as before, groups kept
    assert selection_pool(study=new).frame["group"].nunique() == len({c.split("-")[0] for c in result["selected"]})
    _, again = selection_run(study=new, k=4, optimizer="ga", seed=0)
    assert len(again["selected"]) == 4

    refusals = [
        ({"k": "67"}, "K = 67 is more than the pool"),
        ({"k": "x"}, "whole number"),
        ({"k": "5", "optimizer": "annealing"}, ""),
    ]
    for fields, message in refusals:
        refused = client.post(url, fields, HTTP_HX_REQUEST="true")
        assert refused.status_code == 400 and message in refused.content.decode()
    from jobs.services import job_create

    with pytest.raises(ApplicationError, match="no candidate pool"):
        other = CandidatePool.objects.create(study=Study.objects.create(slug="o", title="O", owner=outsider), name="o")
        job_create(kind="selection", study=pool.study, params={"k": 3, "pool": other.pk})
    client.force_login(outsider)
    assert client.post(url, {"k": "5"}).status_code == 404


def test_pool_without_harm_levels_cannot_be_selected(pool):
    candidates_add(pool=pool, rows=[{"external_id": "a", "text": "t"}], source=Candidate.Source.UPLOADED)
    with pytest.raises(ApplicationError, match=r"1 candidate\(s\) have no harm level \(a\)"):
        pool_selection_pool(pool=pool)


def test_topics_with_the_offline_minilm(pool, release_dir):
    """The real embedding (offline MiniLM) on 40 release prompts: stored as float32, the same topics twice."""
    import pandas as pd

    prompts = pd.read_csv(release_dir / "prompts.csv").head(40)
    candidates_add(
        pool=pool,
        rows=[{"external_id": str(r.Question_Index), "text": r.Question_Content} for r in prompts.itertuples()],
        source=Candidate.Source.UPLOADED,
    )
    summary = pool_topics_compute(pool=pool, k=4, seed=0)
    assert summary["candidates"] == 40 and len(summary["topics"]) == 4
    stored = pool.candidates.first()
    assert len(bytes(stored.embedding)) == 384 * 4
    first = dict(pool.candidates.values_list("external_id", "topic__number"))
    names = list(pool.topics.order_by("number").values_list("name", flat=True))
    assert all(name and name != "topic" for name in names)
    pool_topics_compute(pool=pool, k=4, seed=0)
    assert dict(pool.candidates.values_list("external_id", "topic__number")) == first
    assert list(pool.topics.order_by("number").values_list("name", flat=True)) == names
    assert sum(pool.topics.values_list("size", flat=True)) == 40


def test_pool_page_queries_do_not_grow_with_candidates(client, researcher, pool):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(researcher)
    url = reverse("benchmark:pool_detail", args=["bank", pool.pk])
    _upload(client, pool, _csv(_graded_rows(1)))
    client.get(url)  # warm caches (session, site settings)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    _upload(client, pool, _csv(["external_id,text,harm_level,group"] + [f"x{i},t {i},0.5,g{i}" for i in range(120)]))
    with CaptureQueriesContext(connection) as many:
        assert client.get(url).status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)
