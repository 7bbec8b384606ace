"""`manage.py curate select` (issue 12): outputs, the release's prompts.csv as a pool, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from scipy.spatial.distance import jensenshannon

from benchmark.science.curation import PAPER_HARM_TARGET, pool_read
from benchmark.science.curation.synthetic import pool_generate
from benchmark.science.release import RELEASE_DIR

RELEASE_PROMPTS = RELEASE_DIR / "prompts.csv"


@pytest.fixture
def generated_pool(tmp_path):
    path = tmp_path / "pool.csv"
    pool_generate(30, seed=1).frame.to_csv(path, index=False)  # 330 candidates, 30 seed groups
    return path


def _run(tmp_path, pool, *extra):
    out, report = tmp_path / "selected.csv", tmp_path / "report.json"
    call_command("curate", "select", str(pool), *extra, "--out", str(out), "--json", str(report))
    return pd.read_csv(out, dtype={"external_id": str, "group": str}), json.loads(report.read_text())


def test_release_prompts_as_a_pool(tmp_path):
    selected, report = _run(tmp_path, RELEASE_PROMPTS, "--k", "50", "--optimizer", "ga", "--seed", "3")
    release = pd.read_csv(RELEASE_PROMPTS, dtype={"Question_Index": str})
    assert len(selected) == 50 and selected["external_id"].is_unique
    assert set(selected["external_id"]) <= set(release["Question_Index"])
    assert report["optimizer"] == "ga" and report["k"] == 50 and report["pool_size"] == 150
    assert set(report["js_distance"]) == {"harm_level", "actions", "effects", "values"}
    assert report["seconds"] > 0
    history = report["objective_per_iteration"]
    assert len(history) == 301 and history[-1] == pytest.approx(report["objective"])
    # the reported harm distance is the one of the written file against the paper's target
    counts = np.bincount(np.rint(selected["harm_level"] * 10).astype(int), minlength=11)
    expected = jensenshannon(counts / 50, PAPER_HARM_TARGET, base=2)
    assert report["js_distance"]["harm_level"] == pytest.approx(expected)
    assert report["distributions"]["harm_level"]["target"] == pytest.approx(PAPER_HARM_TARGET)
    # the selection is a pool again
    again = pool_read((tmp_path / "selected.csv").read_bytes())
    assert len(again) == 50


def test_group_limit_and_determinism(tmp_path, generated_pool):
    first, report = _run(tmp_path, generated_pool, "--k", "40", "--seed", "5")
    assert first["group"].value_counts().max() <= 2 and report["largest_group_count"] <= 2
    again, report_again = _run(tmp_path, generated_pool, "--k", "40", "--seed", "5")
    assert first.equals(again)
    assert report["objective_per_iteration"] == report_again["objective_per_iteration"]
    looser, _ = _run(tmp_path, generated_pool, "--k", "40", "--seed", "5", "--max-per-group", "0")
    assert len(looser) == 40


def test_targets_file(tmp_path, generated_pool):
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"harm_level": {"0.2": 1, "0.8": 1}, "weights": {"values": 0}}))
    selected, report = _run(tmp_path, generated_pool, "--k", "20", "--targets", str(path), "--max-per-group", "1")
    assert sorted(selected["harm_level"].unique()) == [0.2, 0.8]
    assert report["targets"] == "targets.json" and "values" not in report["js_distance"]
    _, uniform = _run(tmp_path, generated_pool, "--k", "22", "--targets", "uniform")
    assert uniform["distributions"]["harm_level"]["target"] == pytest.approx([1 / 11] * 11)


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("missing-columns", ["--k", "2"], "missing column(s): harm_level"),
        ("pool", ["--k", "61"], "K = 61 is larger than what the group limit allows: at most 60 candidates"),
        ("pool", ["--k", "400", "--max-per-group", "0"], "larger than the pool (330 candidates)"),
        ("pool", ["--k", "0"], "K must be at least 1"),
        ("pool", ["--k", "5", "--max-per-group", "-1"], "--max-per-group must be 0"),
        ("bad-json", ["--k", "5"], "is not valid JSON"),
        ("bad-targets", ["--k", "5"], "bad targets: harm_level: 2 numbers given, the pool has 11"),
        ("pool", ["--k", "5", "--targets", "median"], "must be one of paper, uniform or a JSON file"),
        ("pool", ["--k", "5", "--targets", "absent.json"], "cannot read the targets file absent.json"),
        ("no-file", ["--k", "5"], "cannot read the pool"),
    ],
)
def test_clear_errors(tmp_path, generated_pool, monkeypatch, setup, args, message):
    monkeypatch.chdir(tmp_path)
    pool = generated_pool
    if setup == "missing-columns":
        pool = tmp_path / "bad.csv"
        pool.write_text("external_id,text\n1,x\n2,y\n")
    elif setup == "no-file":
        pool = tmp_path / "nothing.csv"
    elif setup in ("bad-json", "bad-targets"):
        targets = tmp_path / "t.json"
        targets.write_text("{nope" if setup == "bad-json" else json.dumps({"harm_level": [1, 1]}))
        args = [*args, "--targets", str(targets)]
    with pytest.raises(CommandError) as caught:
        _run(tmp_path, pool, *args)
    assert message in str(caught.value)
    assert not (tmp_path / "selected.csv").exists()  # nothing half-written


def _release_pilot(tmp_path, annotators=10, prompts=100):
    from benchmark.science.release import release_read

    release = release_read(RELEASE_DIR)
    ids = release.prompts["external_id"].tolist()
    rows = [
        {"external_id": ids[p], "annotator": f"P{a + 1:04d}", "rating": release.ratings[a, p]}
        for a in range(annotators)
        for p in range(prompts)
    ]
    path = tmp_path / "pilot.csv"
    pd.DataFrame(rows).to_csv(path, index=False)  # NaN (Unsure) is written as an empty cell
    return path


def test_pilot_leans_toward_predicted_disagreement(tmp_path):
    pilot = _release_pilot(tmp_path)
    args = ["--k", "50"]
    plain_selected, plain = _run(tmp_path, RELEASE_PROMPTS, *args)
    selected, report = _run(
        tmp_path, RELEASE_PROMPTS, *args, "--pilot", str(pilot), "--no-embedding", "--disagreement-weight", "0.1"
    )
    block = report["disagreement"]
    assert block["pilot_annotators"] == 10 and block["pilot_prompts"] == 100 and block["weight"] == 0.1
    assert block["mean_predicted_sd"]["selected"] > block["mean_predicted_sd"]["pool"]
    assert "predicted_sd" in selected.columns
    assert set(selected["external_id"]) != set(plain_selected["external_id"])
    assert report["js_distance"]["harm_level"] < 0.15  # the harm axis is still covered


@pytest.mark.parametrize(
    "content, message",
    [
        ("external_id,annotator\n1,a\n", "missing column(s): rating"),
        ("external_id,annotator,rating\n999,a,10\n", "row 1, column external_id: '999' is not in the pool"),
        ("external_id,annotator,rating\n1,a,101\n", "row 1, column rating: '101' is not a number in 0–100"),
        ("external_id,annotator,rating\n1,a,5\n1,a,6\n", "row 2: annotator 'a' rated '1' twice"),
        ("external_id,annotator,rating\n1,a,5\n1,b,6\n", "only 1 pool prompts have two or more pilot ratings"),
    ],
)
def test_bad_pilot_files(tmp_path, content, message):
    pilot = tmp_path / "pilot.csv"
    pilot.write_text(content)
    with pytest.raises(CommandError) as caught:
        _run(tmp_path, RELEASE_PROMPTS, "--k", "5", "--pilot", str(pilot), "--no-embedding")
    assert message in str(caught.value)
    with pytest.raises(CommandError, match="--disagreement-weight must be a non-negative number"):
        _run(tmp_path, RELEASE_PROMPTS, "--k", "5", "--pilot", str(pilot), "--disagreement-weight", "-1")


def test_variants_then_trees_then_select_through_a_local_endpoint(tmp_path, settings):
    from tests.science.test_curation_trees import TreeEndpoint
    from tests.science.test_curation_variants import VariantEndpoint

    settings.LLM_MODEL, settings.LLM_CACHE_DIR = "fake-1", tmp_path / "cache"
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("seed_id,text\ns1,GOOD cooking\ns2,REFUSE this\ns3,BROKEN chemistry\ns4,GOOD gardening\n")
    pool, counts_path = tmp_path / "pool.csv", tmp_path / "counts.json"
    with VariantEndpoint() as endpoint:
        settings.LLM_BASE_URL = endpoint.url
        call_command("curate", "variants", str(seeds), "--out", str(pool), "--json", str(counts_path))
    counts = json.loads(counts_path.read_text())
    assert counts["accepted"] == 3 and counts["refused"] == 1 and counts["retried"] == 1
    frame = pd.read_csv(pool)
    assert len(frame) == 33 and set(frame["group"]) == {"s1", "s3", "s4"}

    featured, tree_counts = tmp_path / "featured.csv", tmp_path / "tree_counts.json"
    with TreeEndpoint() as endpoint:
        settings.LLM_BASE_URL = endpoint.url
        call_command("curate", "trees", str(pool), "--out", str(featured), "--json", str(tree_counts))
    assert json.loads(tree_counts.read_text())["accepted"] == 33
    with_features = pd.read_csv(featured)
    assert len(with_features) == 33 and with_features["action_Hate_Toxicity"].iloc[0] == pytest.approx(4 / 7)

    selected, report = _run(tmp_path, featured, "--k", "6", "--optimizer", "ga")
    assert selected["group"].value_counts().max() <= 2
    assert set(report["js_distance"]) == {"harm_level", "actions", "effects"}


def test_variants_refusals(tmp_path, settings):
    settings.LLM_BASE_URL, settings.LLM_MODEL = "", ""
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("seed_id,text\ns1,x\n")
    out = ["--out", str(tmp_path / "p.csv"), "--json", str(tmp_path / "c.json")]
    with pytest.raises(CommandError, match="set LLM_BASE_URL and LLM_MODEL"):
        call_command("curate", "variants", str(seeds), *out)
    settings.LLM_BASE_URL, settings.LLM_MODEL = "http://127.0.0.1:9/v1", "m"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prompt\n1,x\n")
    with pytest.raises(CommandError, match=r"missing column\(s\): group, text"):
        call_command("curate", "variants", str(bad), *out)
    template = tmp_path / "template.txt"
    template.write_text("Vary {topic}")
    with pytest.raises(CommandError, match="unknown placeholder"):
        call_command("curate", "variants", str(seeds), "--template", str(template), *out)
    twice = tmp_path / "twice.csv"
    twice.write_text("seed_id,text\ns1,x\ns1,y\n")
    with pytest.raises(CommandError, match="seed ids must be unique"):
        call_command("curate", "variants", str(twice), *out)
    assert not (tmp_path / "p.csv").exists()
