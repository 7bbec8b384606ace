"""Prompt-bank curation core (issue 12): the JS-distance objective, targets, pools, the two optimisers."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from benchmark.science.curation import (
    PAPER_HARM_TARGET,
    Dimension,
    InfeasibleSelection,
    PoolFormatError,
    Problem,
    TargetsError,
    js_distance,
    pool_read,
    select,
)
from benchmark.science.curation.synthetic import pool_generate
from benchmark.science.release import RELEASE_DIR


@pytest.fixture(scope="module")
def release_pool():
    return pool_read((RELEASE_DIR / "prompts.csv").read_bytes(), name="prompts.csv")


def test_js_distance_by_hand():
    target = np.array([0.5, 0.5])
    assert js_distance(np.array([3.0, 3.0]), target) == pytest.approx(0.0)
    assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    # p = (1, 0) against (1/2, 1/2): m = (3/4, 1/4); JSD = ½·log2(4/3) + ½·(½·log2(2/3) + ½·log2(2)) bits
    jsd = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2((1 / 2) / (3 / 4)) + 0.5 * np.log2((1 / 2) / (1 / 4)))
    assert js_distance(np.array([2.0, 0.0]), target) == pytest.approx(np.sqrt(jsd))
    assert js_distance(np.zeros(2), target) == 1.0  # no mass at all: as far as can be


def test_paper_harm_target_is_the_issues():
    assert dict(zip([f"{x / 10:.1f}" for x in range(11)], PAPER_HARM_TARGET, strict=True)) == {
        "0.0": 0.01, "0.1": 0.02, "0.2": 0.05, "0.3": 0.10, "0.4": 0.20, "0.5": 0.24,
        "0.6": 0.20, "0.7": 0.10, "0.8": 0.05, "0.9": 0.02, "1.0": 0.01,
    }  # fmt: skip
    assert sum(PAPER_HARM_TARGET) == pytest.approx(1.0)


def test_release_pool_and_objective_match_scipy(release_pool):
    assert len(release_pool) == 150
    assert (release_pool.frame["group"] == release_pool.frame["external_id"]).all()  # no seed column
    problem = release_pool.problem("paper")
    assert [d.name for d in problem.dimensions] == ["harm_level", "actions", "effects", "values"]
    assert [len(d.labels) for d in problem.dimensions] == [11, 16, 7, 39]
    members = np.arange(0, 150, 3)
    frame = release_pool.frame.iloc[members]
    harm = np.bincount(np.rint(frame["harm_level"] * 10).astype(int), minlength=11)
    actions = frame.filter(like="action_").to_numpy().sum(axis=0)
    effects = frame.filter(like="effect_").to_numpy().sum(axis=0)
    values = np.abs(frame.filter(like="value_topic_").to_numpy()).sum(axis=0)
    expected = [
        jensenshannon(harm / harm.sum(), PAPER_HARM_TARGET, base=2),
        jensenshannon(actions / actions.sum(), np.full(16, 1 / 16), base=2),
        jensenshannon(effects / effects.sum(), np.full(7, 1 / 7), base=2),
        jensenshannon(values / values.sum(), np.full(39, 1 / 39), base=2),
    ]
    report = problem.report(members)
    assert [report[name]["js_distance"] for name in report] == pytest.approx(expected)
    assert problem.evaluate(members) == pytest.approx(np.mean(expected))


def _tiny_problem(seed: int) -> Problem:
    rng = np.random.default_rng(seed)
    features = np.hstack([rng.dirichlet(np.ones(3), size=12), rng.dirichlet(np.ones(4), size=12)])
    dims = [
        Dimension("actions", ("a", "b", "c"), 0, 3, np.array([0.2, 0.3, 0.5])),
        Dimension("effects", ("w", "x", "y", "z"), 3, 7, np.full(4, 0.25), weight=2.0),
    ]
    return Problem(features, dims, groups=np.arange(12) // 3)  # four groups of three


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_finds_the_brute_force_optimum_under_the_group_limit(seed):
    problem = _tiny_problem(seed)
    feasible = [c for c in itertools.combinations(range(12), 5) if np.bincount(problem.groups[list(c)]).max() <= 2]
    optimum = min(problem.evaluate(np.array(c)) for c in feasible)
    chosen = select(problem, 5, optimizer="best", max_per_group=2, seed=seed)
    assert np.bincount(problem.groups[chosen.members]).max() <= 2
    assert chosen.objective == pytest.approx(optimum)
    assert chosen.history[-1] == pytest.approx(chosen.objective)
    ga = select(problem, 5, optimizer="ga", max_per_group=2, seed=seed, generations=30)
    assert np.bincount(problem.groups[ga.members]).max() <= 2
    assert ga.objective >= optimum - 1e-12


def test_infeasible_k_under_the_group_limit_is_refused():
    problem = _tiny_problem(0)
    with pytest.raises(InfeasibleSelection, match=r"at most 8 candidates with at most 2 per group \(4 groups\)"):
        select(problem, 9, max_per_group=2)
    with pytest.raises(InfeasibleSelection, match="larger than the pool"):
        select(problem, 13, max_per_group=None)
    assert len(select(problem, 9, max_per_group=3).members) == 9


@pytest.mark.parametrize("optimizer", ["ga", "best"])
def test_deterministic_per_seed(release_pool, optimizer):
    problem = release_pool.problem("paper")
    params = {"generations": 20} if optimizer == "ga" else {"kicks": 3}
    first = select(problem, 30, optimizer=optimizer, seed=7, **params)
    again = select(problem, 30, optimizer=optimizer, seed=7, **params)
    other = select(problem, 30, optimizer=optimizer, seed=8, **params)
    assert first.members.tolist() == again.members.tolist()
    assert first.history == again.history
    assert len(set(first.members)) == 30
    assert first.members.tolist() != other.members.tolist()


def test_best_beats_the_genetic_algorithm_on_the_release(release_pool):
    """The issue's comparison, on the release's 150 as a pool choosing 50: the GA at its defaults
    (100 × 300 generations, as bench curation runs it) against the swap search, same objective."""
    problem = release_pool.problem("paper")
    ga = select(problem, 50, optimizer="ga", seed=0)
    best = select(problem, 50, optimizer="best", seed=0)
    assert best.objective < ga.objective
    assert ga.history == sorted(ga.history, reverse=True)  # elitism: the GA's best never gets worse
    assert best.history[-1] == pytest.approx(best.objective)


def test_large_generated_pool_uses_the_screened_search_and_respects_groups():
    pool = pool_generate(400, seed=3)  # 4,400 candidates, 11 variants per seed
    problem = pool.problem("paper")
    chosen = select(problem, 60, optimizer="best", seed=0, kicks=3)
    assert np.bincount(problem.groups[chosen.members]).max() <= 2
    start = chosen.history[0]
    assert chosen.objective < start / 3  # from the harm-drawn start to well under a third of it
    assert problem.report(chosen.members)["harm_level"]["js_distance"] < 0.05


def test_score_weight_leans_toward_disagreement_but_keeps_the_harm_axis(release_pool):
    score = np.random.default_rng(0).random(150)
    plain = select(release_pool.problem("paper"), 50, seed=0, kicks=5)
    leaning = release_pool.problem("paper", score=score, score_weight=0.2)
    chosen = select(leaning, 50, seed=0, kicks=5)
    assert score[chosen.members].mean() > score[plain.members].mean() + 0.05
    assert leaning.report(chosen.members)["harm_level"]["js_distance"] < 0.15


def test_targets_from_a_file(release_pool):
    targets = {"harm_level": {"0.5": 1}, "effects": [1, 0, 0, 0, 0, 0, 0], "weights": {"values": 0}}
    problem = release_pool.problem(targets)
    assert [d.name for d in problem.dimensions] == ["harm_level", "actions", "effects"]
    harm = problem.dimensions[0].target
    assert harm[5] == 1 and harm.sum() == 1
    chosen = select(problem, 20, seed=0, kicks=2)
    assert (release_pool.frame["harm_level"].iloc[chosen.members] == 0.5).all()
    actions = problem.dimensions[1].target
    assert actions == pytest.approx(np.full(16, 1 / 16))  # left out: uniform


@pytest.mark.parametrize(
    "targets, message",
    [
        ({"harm": [1]}, "unknown key"),
        ({"harm_level": [1, 2]}, "2 numbers given, the pool has 11"),
        ({"harm_level": {"0.55": 1}}, "'0.55' is not one of"),
        ({"actions": {"Nope": 1}}, "unknown category 'Nope'"),
        ({"effects": [0] * 7}, "no positive share"),
        ({"effects": [-1, 1, 1, 1, 1, 1, 1]}, "non-negative"),
        ({"values": "uniform"}, "expected a list"),
        ({"weights": {"harm_level": 0, "actions": 0, "effects": 0, "values": 0}}, "every dimension"),
        ("median", "unknown targets"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_targets_are_refused(release_pool, targets, message):
    with pytest.raises(TargetsError, match=message):
        release_pool.problem(targets)


def test_action_names_with_or_without_prefix(release_pool):
    a = release_pool.problem({"actions": {"Privacy": 1}}).dimensions[1].target
    b = release_pool.problem({"actions": {"action_Privacy": 1}}).dimensions[1].target
    assert a.tolist() == b.tolist() and a.max() == 1


def test_pool_csv_with_groups():
    raw = (
        b"external_id,text,harm_level,group,action_A,action_B\n"
        b"a1,one,0.5,s1,0.5,0.5\n"
        b"a2,two,0.4,s1,1,0\n"
        b"b1,three,0.3,,0,1\n"
    )
    pool = pool_read(raw)
    assert pool.frame["group"].tolist() == ["s1", "s1", "b1"]
    assert pool.feature_columns == ["action_A", "action_B"]
    problem = pool.problem("uniform")
    assert [d.name for d in problem.dimensions] == ["harm_level", "actions"]
    with pytest.raises(InfeasibleSelection):
        select(problem, 3, max_per_group=1)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"id,text\n1,x\n", "missing column(s): external_id, harm_level"),
        (b"external_id,text,harm_level,colour\n1,x,0.5,red\n", "unknown column(s): colour"),
        (b"external_id,text,harm_level\n1,x,high\n", "row 1, column harm_level: 'high' is not a number"),
        (b"external_id,text,harm_level\n1,x,1.5\n", "row 1, column harm_level: harm level 1.5 is outside"),
        (b"external_id,text,harm_level\n1,x,0.5\n1,y,0.5\n", "row 2, column external_id: duplicate id '1'"),
        (b"external_id,text,harm_level\n1, ,0.5\n", "row 1, column text: empty text"),
        (b"external_id,text,harm_level,effect_A\n1,x,0.5,-1\n", "row 1, column effect_A: -1.0 is negative"),
        (b"external_id,text,harm_level\n", "no candidates"),
        (b"", "empty file"),
        (b"external_id,text,harm_level,text\n1,x,0.5,y\n", "column text: column appears more than once"),
        (b"external_id,text,harm_level,action_A\n1,x,0.5,\n", "row 1, column action_A: '' is not a number"),
        (b"\xff\xfe", "not UTF-8"),
        (b"Question_Index,Question_Content,Harm_Level\n1,x,2\n", "harm level 2.0 is outside 0–1"),
    ],
)
def test_bad_pools_name_row_and_column(raw, expected):
    with pytest.raises(PoolFormatError) as caught:
        pool_read(raw, name="pool.csv")
    assert expected in str(caught.value)


def test_targets_file_json_round_trip(release_pool, tmp_path):
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"harm_level": list(PAPER_HARM_TARGET)}))
    problem = release_pool.problem(json.loads(path.read_text()))
    assert problem.dimensions[0].target == pytest.approx(PAPER_HARM_TARGET)
