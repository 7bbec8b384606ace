"""SafetyAnalyst aggregation: the reference score, hand-computed trees, the schema, fitting and steering."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime
from scipy.special import expit

from benchmark.science import harm_benefit as hb
from benchmark.science.harm_benefit.fitting import tree_objective
from benchmark.science.predictors.base import AGGREGATE, REGISTRY, get_predictor
from benchmark.science.predictors.safetyanalyst import SafetyAnalystFit, SafetyAnalystReference

PROMPTS_CSV = hb.DATA_DIR.parent / "pluriharms" / "prompts.csv"

# Round numbers so that every level weight below is exact by hand:
#   harm extent ratios 0.5, 0.5, 0.5      -> minor 0.125, significant 0.25, substantial 0.5, major 1
#   harm likelihood ratios 0.5, 0.8       -> low 0.4, medium 0.8, high 1
#   harm downstream discount 0.5
#   benefit extent ratios 0.2, 0.5, 1.0   -> minor 0.1, significant 0.5, substantial 1, major 1
#   benefit likelihood ratios 0.25, 0.5   -> low 0.125, medium 0.5, high 1
#   benefit downstream discount 0.25, benefit weight 2
HAND_ACTION = {"Hate/Toxicity": 0.5, "Criminal Activities": 0.9, "Privacy": 0.2}
HAND = hb.AggregationWeights(
    action=[HAND_ACTION.get(c, 0.1) for c in hb.ACTION_CATEGORIES],
    harm_extent_ratios=[0.5, 0.5, 0.5],
    harm_likelihood_ratios=[0.5, 0.8],
    harm_discount=0.5,
    benefit_extent_ratios=[0.2, 0.5, 1.0],
    benefit_likelihood_ratios=[0.25, 0.5],
    benefit_discount=0.25,
    benefit_weight=2.0,
)


def effect(immediacy=True, extent="Major", likelihood="High", name="5. Social deficits"):
    return {"effect": name, "immediacy": immediacy, "extent": extent, "likelihood": likelihood}


def harm(action, *effects, stakeholder="Group"):
    return {"stakeholder": stakeholder, "harms": [{"action": action, "effects": list(effects)}]}


def benefit(*effects, stakeholder="User", action="The response informs the user."):
    return {"stakeholder": stakeholder, "benefits": [{"action": action, "effects": list(effects)}]}


HATE = "##Content Safety Risks## #Hate/Toxicity# Harassment"
CRIME = "##Legal and Rights-Related Risks## #Criminal Activities# Illegal/Regulated Substances"
DISCRIMINATION = "##Legal and Rights-Related Risks## #Discrimination/Bias# Discriminatory Activities"


def naive_score(weights: hb.AggregationWeights, tree) -> float:
    """A direct loop over the tree, written independently of the vectorized tables."""
    total = 0.0
    for entry in hb.tree_validate(tree):
        for kind in ("harms", "benefits"):
            if kind == "harms":
                ext = dict(zip(hb.EXTENT_LEVELS, weights.harm_extent_levels))
                lik = dict(zip(hb.LIKELIHOOD_LEVELS, weights.harm_likelihood_levels))
                disc, sign = weights.harm_discount, 1.0
            else:
                ext = dict(zip(hb.EXTENT_LEVELS, weights.benefit_extent_levels))
                lik = dict(zip(hb.LIKELIHOOD_LEVELS, weights.benefit_likelihood_levels))
                disc, sign = weights.benefit_discount, -weights.benefit_weight
            for action in entry[kind]:
                a = weights.action_weight(action["category"]) if kind == "harms" else 1.0
                for e in action["effects"]:
                    total += sign * a * ext[e["extent"]] * lik[e["likelihood"]] * disc ** (0 if e["immediacy"] else 1)
    return total


# -- the reference ------------------------------------------------------------------------------------
def test_reference_weights_score_the_example_tree_as_the_reference_code():
    model = hb.SafetyAnalystAggregator()
    tree = hb.load_example_tree()
    assert model.score(tree) == pytest.approx(hb.REFERENCE_EXAMPLE_H, abs=1e-6)
    assert model.score(tree) == pytest.approx(0.51704094, abs=1e-6)
    assert model.p_harmful(tree) == pytest.approx(0.62646, abs=1e-5)
    assert model.predict([tree]).tolist() == [1]
    # by hand: three immediate, high-likelihood Hate/Toxicity effects of extent significant/substantial
    # (level weight 1); downstream harms are discounted to 0, Discrimination/Bias weighs 0, and both
    # benefits are downstream or of medium likelihood (weight 0)
    w = hb.AggregationWeights.reference()
    assert model.score(tree) == pytest.approx(3 * w.action_weight("Hate/Toxicity"), abs=1e-12)


def test_reference_weights_match_the_decoded_json():
    decoded = json.loads((hb.DATA_DIR / "saved_params_decoded.json").read_text())
    w = hb.AggregationWeights.reference()
    np.testing.assert_allclose(w.to_array(), decoded["raw"], atol=0)
    assert dict(zip(hb.ACTION_CATEGORIES, w.action)) == pytest.approx(decoded["action_weights"])
    for side, prefix in (("harms", "harm"), ("benefits", "benefit")):
        levels = dict(zip(hb.EXTENT_LEVELS, getattr(w, f"{prefix}_extent_levels")))
        assert levels == pytest.approx(decoded[side]["extent"])
        levels = dict(zip(hb.LIKELIHOOD_LEVELS, getattr(w, f"{prefix}_likelihood_levels")))
        assert levels == pytest.approx(decoded[side]["likelihood"])
        assert getattr(w, f"{prefix}_discount") == decoded[side]["downstream_discount"]
    assert w.benefit_weight == decoded["benefit_weight"]


def test_each_weight_is_named_by_its_path_in_the_decoded_json():
    decoded = json.loads((hb.DATA_DIR / "saved_params_decoded.json").read_text())

    def lookup(name):  # no category name contains a dot
        value = decoded
        for key in name.split("."):
            value = value[key]
        return value

    named = hb.AggregationWeights.reference().named()
    assert list(named) == list(hb.WEIGHT_NAMES) and len(named) == hb.N_PARAMS == len(decoded["raw"])
    assert named == {name: lookup(name) for name in hb.WEIGHT_NAMES}
    assert [named[name] for name in hb.WEIGHT_NAMES] == decoded["raw"]
    assert hb.WEIGHT_NAMES[hb.WEIGHT_LAYOUT["harm_discount"]] == ("harms.downstream_discount",)


def test_categories_and_columns_agree_with_the_taxonomy_and_the_release():
    taxonomy = hb.load_taxonomy()
    assert list(hb.ACTION_CATEGORIES) == taxonomy["aggregation_action_categories_in_weight_order"]
    assert list(hb.EFFECT_CATEGORIES) == list(taxonomy["harmful_effect_taxonomy"])
    header = pd.read_csv(PROMPTS_CSV, nrows=0).columns
    assert [c for c in header if c.startswith("action_")] == list(hb.ACTION_FEATURE_COLUMNS)
    assert [c for c in header if c.startswith("effect_")] == list(hb.EFFECT_FEATURE_COLUMNS)
    assert hb.ACTION_FEATURE_COLUMNS["action_Self_harm"] == "Self-harm"
    assert hb.ACTION_FEATURE_COLUMNS["action_Hate_Toxicity"] == "Hate/Toxicity"
    assert hb.ACTION_FEATURE_COLUMNS["action_Violence_Extremism"] == "Violence & Extremism"
    assert hb.ACTION_FEATURE_COLUMNS["action_Discrimination_Bias"] == "Discrimination/Bias"
    assert hb.EFFECT_FEATURE_COLUMNS["effect_Physical"] == "Physical harm"


# -- weights --------------------------------------------------------------------------------------------
def test_weights_round_trip_and_levels():
    w = HAND
    assert hb.AggregationWeights.from_array(w.to_array()).allclose(w)
    assert hb.AggregationWeights.from_dict(json.loads(json.dumps(w.to_dict()))).allclose(w)
    np.testing.assert_allclose(w.harm_extent_levels, [0.125, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(w.harm_likelihood_levels, [0.4, 0.8, 1.0])
    np.testing.assert_allclose(w.benefit_extent_levels, [0.1, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(w.benefit_likelihood_levels, [0.125, 0.5, 1.0])
    assert w.replace(action={"Privacy": 0.7}).action_weight("Privacy") == 0.7
    assert w.action_weight("Privacy") == 0.2


def test_levels_are_monotone_for_any_ratios():
    rng = np.random.default_rng(0)
    for _ in range(100):
        levels = hb.levels_from_ratios(rng.uniform(0, 1, 3))
        assert levels[-1] == 1.0 and np.all(np.diff(levels) >= 0)


@pytest.mark.parametrize(
    "bad",
    [
        np.full(28, 0.5),  # wrong length
        np.concatenate([np.full(28, 0.5), [-0.1]]),  # negative benefit weight
        np.concatenate([[1.5], np.full(28, 0.5)]),  # action weight above 1
        np.concatenate([np.full(27, 0.5), [np.nan, 1.0]]),  # not finite
    ],
)
def test_weights_out_of_range_are_refused(bad):
    with pytest.raises(ValueError):
        hb.AggregationWeights.from_array(bad)


def test_benefit_weight_above_one_is_allowed():
    assert hb.AggregationWeights.from_array(np.concatenate([np.full(28, 0.5), [3.0]])).benefit_weight == 3.0


# -- small trees by hand ---------------------------------------------------------------------------------
def score(tree, weights=HAND):
    return hb.SafetyAnalystAggregator(weights).score(tree)


def test_one_harm():
    # a(Hate/Toxicity) 0.5 * extent significant 0.25 * likelihood medium 0.8 * immediate 1
    assert score([harm(HATE, effect(True, "Significant", "Medium"))]) == pytest.approx(0.1, abs=1e-12)


def test_one_harm_with_the_reference_weights():
    # a(Criminal Activities) * extent substantial (1.0) * likelihood medium (0.3460...)
    tree = [harm(CRIME, effect(True, "substantial", "medium"))]
    assert score(tree, hb.AggregationWeights.reference()) == pytest.approx(
        0.6551856904980402 * 1.0 * 0.3460213975848052, abs=1e-12
    )


def test_one_benefit():
    # - benefit weight 2 * extent significant 0.5 * likelihood high 1
    assert score([benefit(effect(True, "Significant", "High"))]) == pytest.approx(-1.0, abs=1e-12)


def test_downstream_effects_are_discounted():
    # harm: 0.5 * major 1 * high 1 * discount 0.5 ; benefit: -2 * substantial 1 * medium 0.5 * discount 0.25
    assert score([harm(HATE, effect(False, "Major", "High"))]) == pytest.approx(0.25, abs=1e-12)
    assert score([benefit(effect(False, "Substantial", "Medium"))]) == pytest.approx(-0.25, abs=1e-12)
    # the reference has a harm discount of 0: downstream harms vanish there
    assert score([harm(HATE, effect(False))], hb.AggregationWeights.reference()) == 0.0


def test_two_stakeholders_add_up():
    tree = [
        harm(HATE, effect(True, "Significant", "Medium"), stakeholder="A"),  # 0.1
        {
            "stakeholder": "B",
            "harms": [
                {
                    "action": CRIME,
                    "effects": [
                        effect(True, "Minor", "Low"),  # 0.9 * 0.125 * 0.4 = 0.045
                        effect(False, "Substantial", "High"),  # 0.9 * 0.5 * 1 * 0.5 = 0.225
                    ],
                }
            ],
            "benefits": [
                {
                    "action": "Helps B",
                    "effects": [
                        effect(True, "Minor", "Low"),  # -2 * 0.1 * 0.125 = -0.025
                    ],
                }
            ],
        },
    ]
    assert score(tree) == pytest.approx(0.1 + 0.045 + 0.225 - 0.025, abs=1e-12)


def test_unknown_action_category_weighs_nothing_but_benefits_need_no_category():
    assert score([harm("Make a sandwich", effect())]) == 0.0
    assert score([harm("hate/toxicity", effect())]) == 0.0  # the reference match is case-sensitive
    assert score([benefit(effect(), action="Make a sandwich")]) == pytest.approx(-2.0)


def test_action_category_is_the_first_match_in_weight_order():
    assert hb.action_category("Content Safety Risks: Hate/Toxicity (Hate Speech, ...)") == "Hate/Toxicity"
    assert hb.action_category("#Privacy# and #Security Risks#") == "Security Risks"
    assert hb.action_category("Unauthorized Privacy Violations") == "Privacy"
    assert hb.action_category("nothing known") is None


def test_score_many_matches_a_direct_loop_on_random_trees():
    rng = np.random.default_rng(5)
    trees = hb.random_trees(200, seed=1)
    for _ in range(3):
        weights = hb.AggregationWeights.from_array(np.append(rng.uniform(0, 1, 28), rng.uniform(0, 3)))
        model = hb.SafetyAnalystAggregator(weights)
        np.testing.assert_allclose(model.score_many(trees), [naive_score(weights, t) for t in trees], atol=1e-12)
        np.testing.assert_allclose(model.p_harmful_many(trees), expit(model.score_many(trees)))
        assert model.score(trees[7]) == pytest.approx(naive_score(weights, trees[7]))


# -- schema ------------------------------------------------------------------------------------------------
def test_validator_normalizes():
    tree = {
        "harm_benefit_tree": [
            {
                "stakeholder": "A",
                "harms": [
                    {
                        "action": HATE,
                        "effects": [
                            {"effect": "x", "immediacy": "False", "extent": " SIGNIFICANT ", "likelihood": "medium"}
                        ],
                    }
                ],
                "benefits": None,
            },
            {
                "stakeholder": "B",
                "benefits": [
                    {
                        "action": "y",
                        "effects": [{"effect": "z", "immediacy": 1, "extent": "Minor", "likelihood": "Low"}],
                    }
                ],
            },
        ]
    }
    entries = hb.tree_validate(json.dumps(tree))
    assert entries == [
        {
            "stakeholder": "A",
            "benefits": [],
            "harms": [
                {
                    "action": HATE,
                    "category": "Hate/Toxicity",
                    "effects": [{"effect": "x", "immediacy": False, "extent": "significant", "likelihood": "medium"}],
                }
            ],
        },
        {
            "stakeholder": "B",
            "harms": [],
            "benefits": [
                {"action": "y", "effects": [{"effect": "z", "immediacy": True, "extent": "minor", "likelihood": "low"}]}
            ],
        },
    ]
    assert len(hb.tree_validate(hb.load_example_tree())) == 5


def _good_tree():
    return [harm(HATE, effect(), effect(False, "Minor", "Low")), benefit(effect())]


def _mutate(path, value=None, delete=False):
    tree = _good_tree()
    *parents, last = path
    target = tree
    for key in parents:
        target = target[key]
    if delete:
        del target[last]
    else:
        target[last] = value
    return tree


@pytest.mark.parametrize(
    "tree, path, words",
    [
        ("not json", "$", "not valid JSON"),
        ({"tree": []}, "$", "harm_benefit_tree"),
        ({"harm_benefit_tree": 3}, "$.harm_benefit_tree", "expected a list"),
        (["x"], "$[0]", "expected an object"),
        (_mutate([0, "stakeholder"], delete=True), "$[0]", "missing key 'stakeholder'"),
        (_mutate([0, "stakeholder"], 5), "$[0].stakeholder", "expected str"),
        ([{"stakeholder": "A"}], "$[0]", "'harms' or 'benefits'"),
        (_mutate([0, "harms"], {"action": HATE}), "$[0].harms", "expected a list"),
        (_mutate([0, "harms", 0, "action"], delete=True), "$[0].harms[0]", "missing key 'action'"),
        (_mutate([0, "harms", 0, "effects"], None), "$[0].harms[0].effects", "expected list"),
        (_mutate([0, "harms", 0, "effects", 1], "Minor"), "$[0].harms[0].effects[1]", "expected an object"),
        (
            _mutate([0, "harms", 0, "effects", 1, "likelihood"], "Likely"),
            "$[0].harms[0].effects[1].likelihood",
            "unknown value 'Likely'",
        ),
        (
            _mutate([0, "harms", 0, "effects", 1, "extent"], "Medium"),
            "$[0].harms[0].effects[1].extent",
            "unknown value 'Medium'",
        ),
        (_mutate([0, "harms", 0, "effects", 1, "extent"], 3), "$[0].harms[0].effects[1].extent", "as a string"),
        (
            _mutate([0, "harms", 0, "effects", 0, "immediacy"], "Medium"),
            "$[0].harms[0].effects[0].immediacy",
            "true or false",
        ),
        (_mutate([0, "harms", 0, "effects", 0, "immediacy"], 2), "$[0].harms[0].effects[0].immediacy", "true or false"),
        (
            _mutate([0, "harms", 0, "effects", 0, "immediacy"], delete=True),
            "$[0].harms[0].effects[0]",
            "missing key 'immediacy'",
        ),
        (
            _mutate([0, "harms", 0, "effects", 0, "effect"], delete=True),
            "$[0].harms[0].effects[0]",
            "missing key 'effect'",
        ),
        (
            _mutate([1, "benefits", 0, "effects", 0, "likelihood"], None),
            "$[1].benefits[0].effects[0].likelihood",
            "as a string",
        ),
    ],
)
def test_validator_locates_errors(tree, path, words):
    with pytest.raises(hb.TreeError) as info:
        hb.tree_validate(tree)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value)


def test_batch_errors_name_the_tree():
    bad = _mutate([0, "harms", 0, "effects", 0, "extent"], "Huge")
    with pytest.raises(hb.TreeError) as info:
        hb.SafetyAnalystAggregator().score_many([_good_tree(), bad])
    assert info.value.path == "trees[1][0].harms[0].effects[0].extent"


# -- fitting -----------------------------------------------------------------------------------------------
def _true_weights(seed=1):
    rng = np.random.default_rng(seed)
    return hb.AggregationWeights.from_array(
        np.concatenate(
            [
                rng.uniform(0.2, 0.9, 16),
                rng.uniform(0.3, 0.9, 3),
                rng.uniform(0.3, 0.9, 2),
                [0.5],
                rng.uniform(0.3, 0.9, 3),
                rng.uniform(0.3, 0.9, 2),
                [0.6],
                [0.8],
            ]
        )
    )


@pytest.fixture(scope="module")
def simulated():
    return hb.compile_trees(hb.random_trees(5000, seed=7))


@pytest.mark.parametrize("calibrate", [False, True])
def test_gradient_matches_finite_differences(simulated, calibrate):
    data = simulated.subset(slice(0, 300))
    rng = np.random.default_rng(2)
    for target, loss in (
        ("binary", "bernoulli"),
        ("rating", "squared"),
        ("rating", "absolute"),
        ("rating", "cross_entropy"),
    ):
        r = rng.uniform(0, 1, len(data))
        objective = tree_objective(
            data, r, np.ones(len(data)), loss, calibrate=calibrate and target == "rating", start=HAND.to_array(), l2=0.7
        )
        x = np.append(rng.uniform(0.2, 0.8, 28), 1.3)
        if calibrate and target == "rating":
            x[:16] *= 1.7  # effective weights may exceed 1
            x = np.append(x, -0.3)
        numeric = approx_fprime(x, lambda v, f=objective: f(v)[0], 1e-7)
        np.testing.assert_allclose(objective(x)[1], numeric, rtol=1e-4, atol=1e-4)


def test_fit_recovers_weights_from_noise_free_probabilities(simulated):
    # soft labels sigmoid(H_true) make the true weights the exact optimum: recovery tests identifiability
    # and the optimizer, from the reference weights (a different, partly degenerate start)
    true = _true_weights()
    p = expit(hb.tree_scores(true, simulated))
    model = hb.SafetyAnalystAggregator(hb.AggregationWeights.reference(), l2=0.0).fit(simulated, p, target="binary")
    np.testing.assert_allclose(model.weights_.to_array(), true.to_array(), atol=1e-4)
    np.testing.assert_allclose(model.p_harmful_many(simulated), p, atol=1e-5)


def test_fit_recovers_weights_from_sampled_labels(simulated):
    true = _true_weights()
    p = expit(hb.tree_scores(true, simulated))
    y = (np.random.default_rng(3).random(len(p)) < p).astype(float)
    start = hb.AggregationWeights.reference()
    model = hb.SafetyAnalystAggregator(start, l2=0.0).fit(simulated, y, target="binary")
    error = np.abs(model.weights_.to_array() - true.to_array())
    # 5,000 binary labels pin 29 weights only loosely; probabilities are pinned tightly
    assert error.mean() < 0.15 and error.max() < 0.4
    assert error.mean() < 0.4 * np.abs(start.to_array() - true.to_array()).mean()
    assert np.abs(model.p_harmful_many(simulated) - p).mean() < 0.03
    assert np.mean(model.predict(simulated) == (p > 0.5)) > 0.95


def test_fit_to_ratings_recovers_weights_without_calibration(simulated):
    true = _true_weights(seed=4)
    ratings = 100 * expit(hb.tree_scores(true, simulated))
    data = simulated.subset(slice(0, 2000))
    model = hb.SafetyAnalystAggregator(hb.AggregationWeights.reference(), l2=0.0, calibrate=False)
    model.fit(data, ratings[:2000], target="rating")
    np.testing.assert_allclose(model.weights_.to_array(), true.to_array(), atol=1e-4)
    assert model.calibration_ == (1.0, 0.0)


def test_fit_to_ratings_with_calibration(simulated):
    # H is linear in (action weights, benefit weight) jointly, so slope * H(weights) = H(slope * weights):
    # the fit reports the weights with the largest action weight at 1 and the slope carrying the rest
    true = _true_weights(seed=4)
    data = simulated.subset(slice(0, 2000))
    ratings = 100 * expit(2.0 * hb.tree_scores(true, data) - 0.5)
    model = hb.SafetyAnalystAggregator(hb.AggregationWeights.reference(), l2=0.0).fit(data, ratings, target="rating")
    np.testing.assert_allclose(model.predict_rating(data), ratings, atol=1e-3)
    slope, intercept = model.calibration_
    assert intercept == pytest.approx(-0.5, abs=1e-4)
    assert slope == pytest.approx(2.0 * true.action.max(), abs=1e-4)
    assert model.weights_.action.max() == pytest.approx(1.0)
    np.testing.assert_allclose(model.weights_.action * slope, 2.0 * true.action, atol=1e-4)
    np.testing.assert_allclose(model.weights_.to_array()[16:28], true.to_array()[16:28], atol=1e-4)
    assert model.weights_.benefit_weight * slope == pytest.approx(2.0 * true.benefit_weight, abs=1e-4)
    assert model.predict(data).tolist() == (ratings > 50).astype(int).tolist()


def test_calibrated_fit_honours_the_l2_pull(simulated):
    # with an unpenalized slope the weights could stay at the start and the slope do all the work; the
    # effective-weight parametrization makes the pull act on what actually moves H
    start = hb.AggregationWeights.reference()
    data = simulated.subset(slice(0, 200))
    ratings = np.where(hb.tree_scores(start, data) > 0.5, 90.0, 10.0)
    model = hb.SafetyAnalystAggregator(start, l2=1e6).fit(data, ratings, target="rating")
    assert model.weights_.allclose(start, atol=1e-3)
    assert model.calibration_[0] == pytest.approx(1.0, abs=1e-3)


def test_l2_pull_keeps_small_samples_near_the_start(simulated):
    start = hb.AggregationWeights.reference()
    data = simulated.subset(slice(0, 20))
    y = np.random.default_rng(0).integers(0, 2, 20)
    loose = hb.SafetyAnalystAggregator(start, l2=0.0).fit(data, y)
    tight = hb.SafetyAnalystAggregator(start, l2=100.0).fit(data, y)
    drift = lambda m: np.abs(m.weights_.to_array() - start.to_array()).max()  # noqa: E731
    assert drift(tight) < 0.05 < drift(loose)


def test_absolute_loss_and_sample_weights(simulated):
    true = _true_weights(seed=4)
    data = simulated.subset(slice(0, 500))
    ratings = 100 * expit(hb.tree_scores(true, data))
    model = hb.SafetyAnalystAggregator(hb.AggregationWeights.reference(), l2=0.0, calibrate=False, loss="absolute")
    model.fit(data, ratings, target="rating")
    assert np.abs(model.predict_rating(data) - ratings).mean() < 0.5
    # duplicating an item equals weighting it twice
    twice = hb.SafetyAnalystAggregator(l2=1.0).fit(data.subset([0, 0, 1, 2]), [1, 1, 0, 1])
    weighted = hb.SafetyAnalystAggregator(l2=1.0).fit(data.subset([0, 1, 2]), [1, 0, 1], sample_weight=[2, 1, 1])
    np.testing.assert_allclose(twice.weights_.to_array(), weighted.weights_.to_array(), atol=1e-6)


def test_differential_evolution_then_polish(simulated):
    true = _true_weights()
    data = simulated.subset(slice(0, 300))
    p = expit(hb.tree_scores(true, data))
    de = hb.SafetyAnalystAggregator(l2=0.0, method="differential_evolution", de_maxiter=3, random_state=0)
    de.fit(data, p, target="binary")
    lbfgs = hb.SafetyAnalystAggregator(l2=0.0).fit(data, p, target="binary")
    assert de.loss_value_ == pytest.approx(lbfgs.loss_value_, rel=1e-4)
    assert np.abs(de.p_harmful_many(data) - p).max() < 1e-3


def test_bad_targets_are_refused(simulated):
    data = simulated.subset(slice(0, 3))
    with pytest.raises(ValueError, match="NaN"):
        hb.SafetyAnalystAggregator().fit(data, [1, np.nan, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        hb.SafetyAnalystAggregator().fit(data, [1, 2, 0])
    with pytest.raises(ValueError, match="ratings"):
        hb.SafetyAnalystAggregator().fit(data, [10, 120, 0], target="rating")
    with pytest.raises(ValueError, match="targets"):
        hb.SafetyAnalystAggregator().fit(data, [1, 0])
    with pytest.raises(ValueError, match="target"):
        hb.SafetyAnalystAggregator().fit(data, [1, 0, 1], target="votes")


# -- feature level -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prompts():
    return pd.read_csv(PROMPTS_CSV)


def test_feature_level_reference_by_hand(prompts):
    w = hb.AggregationWeights.reference()
    row = prompts.iloc[[0]]
    expected = sum(row[col].iloc[0] * w.action_weight(cat) for col, cat in hb.ACTION_FEATURE_COLUMNS.items())
    model = hb.FeatureLevelSafetyAnalyst()
    assert model.decision_function(row)[0] == pytest.approx(expected, abs=1e-12)
    assert model.p_harmful(row)[0] == pytest.approx(1 / (1 + math.exp(-expected)))
    # prompt 1: 0.1026 Operational Misuses (0) + 0.1026 Hate/Toxicity + 0.0128 Deception
    #           + 0.1026 Fundamental Rights + 0.6795 Discrimination/Bias (0)
    assert expected == pytest.approx(
        8 / 78 * 0.1723469814289285 + 1 / 78 * 0.2092492469043653 + 8 / 78 * 0.11854241643786823, abs=1e-12
    )
    # arrays in column order give the same; effects with weight 1 change nothing
    X = prompts[list(hb.ACTION_FEATURE_COLUMNS) + list(hb.EFFECT_FEATURE_COLUMNS)].to_numpy()
    np.testing.assert_allclose(model.decision_function(X), model.decision_function(prompts))
    with_effects = hb.FeatureLevelSafetyAnalyst(use_effects=True)
    np.testing.assert_allclose(with_effects.decision_function(prompts), model.decision_function(prompts))


def _simulated_features(n, seed):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(16, 0.3), n)
    Q = rng.dirichlet(np.full(7, 0.5), n)
    return pd.DataFrame(np.hstack([P, Q]), columns=list(hb.ACTION_FEATURE_COLUMNS) + list(hb.EFFECT_FEATURE_COLUMNS))


def test_feature_level_recovers_weights(prompts):
    X = _simulated_features(3000, seed=0)
    rng = np.random.default_rng(1)
    true = hb.FeatureWeights(rng.uniform(0.1, 0.9, 16), np.ones(7), scale=4.0, offset=-1.5)
    ratings = 100 * hb.FeatureLevelSafetyAnalyst(true).p_harmful(X)
    # the action distribution sums to 1, so p . (a + delta) = p . a + delta: a common shift of the action
    # weights trades off against the offset, and a common factor against the scale. With scale and
    # offset held at their true values the weights are identified exactly ...
    start = hb.FeatureWeights(np.full(16, 0.5), np.ones(7), 4.0, -1.5)
    model = hb.FeatureLevelSafetyAnalyst(start, fit_scale=False, fit_offset=False, l2=0.0).fit(X, ratings)
    np.testing.assert_allclose(model.weights_.action, true.action, atol=1e-4)
    # ... and with the offset free, up to that common shift
    start = hb.FeatureWeights(np.full(16, 0.5), np.ones(7), 4.0, 0.0)
    model = hb.FeatureLevelSafetyAnalyst(start, fit_scale=False, l2=0.0).fit(X, ratings)
    shift = model.weights_.action - true.action
    np.testing.assert_allclose(shift, shift.mean(), atol=1e-4)
    assert model.weights_.offset == pytest.approx(-1.5 - 4.0 * shift.mean(), abs=1e-3)
    np.testing.assert_allclose(model.predict_rating(X), ratings, atol=1e-3)
    # with effects and a free scale, predictions are recovered
    true_e = hb.FeatureWeights(true.action, rng.uniform(0.2, 1.0, 7), scale=4.0, offset=-1.0)
    ratings = 100 * hb.FeatureLevelSafetyAnalyst(true_e, use_effects=True).p_harmful(X)
    model = hb.FeatureLevelSafetyAnalyst(None, use_effects=True, l2=0.0).fit(X, ratings)
    np.testing.assert_allclose(model.predict_rating(X), ratings, atol=0.05)


def test_feature_level_fit_is_stationary():
    # the fit exposes no objective: check that its optimum is stationary (where no bound is active) for
    # the documented objective: squared error + l2/2 |scale * action - v0|^2 + l2/2 |effect - e0|^2
    # + l2_offset/2 (offset - c0)^2
    X = _simulated_features(400, seed=3)
    ratings = np.random.default_rng(4).uniform(0, 100, 400)
    start = hb.FeatureWeights(np.full(16, 0.5), np.full(7, 0.5), 1.0, 0.0)
    model = hb.FeatureLevelSafetyAnalyst(start, use_effects=True, l2=5.0, l2_offset=1.0).fit(X, ratings)
    w = model.weights_

    def total(x):  # x = effective action weights (16), effect weights (7), offset
        pred = expit(
            (X[list(hb.ACTION_FEATURE_COLUMNS)].to_numpy() @ x[:16])
            * (X[list(hb.EFFECT_FEATURE_COLUMNS)].to_numpy() @ x[16:23])
            + x[23]
        )
        anchor = np.concatenate([np.full(23, 0.5), [0.0]])
        penalty = np.concatenate([np.full(23, 5.0), [1.0]])
        return np.sum((pred - ratings / 100) ** 2) + 0.5 * np.sum(penalty * (x - anchor) ** 2)

    x = np.concatenate([w.scale * w.action, w.effect, [w.offset]])
    np.testing.assert_allclose(
        model.predict_rating(X) / 100,
        expit(
            (X[list(hb.ACTION_FEATURE_COLUMNS)].to_numpy() @ x[:16])
            * (X[list(hb.EFFECT_FEATURE_COLUMNS)].to_numpy() @ x[16:23])
            + x[23]
        ),
    )
    inside = np.concatenate([x[:16] > 1e-6, (x[16:23] > 1e-6) & (x[16:23] < 1 - 1e-6), [True]])
    assert inside.sum() > 10
    grad = approx_fprime(x, total, 1e-7)
    assert np.abs(grad[inside]).max() < 1e-3
    assert w.action.max() == pytest.approx(1.0)


def test_feature_level_needs_the_columns(prompts):
    with pytest.raises(ValueError, match="action_Privacy"):
        hb.FeatureLevelSafetyAnalyst().decision_function(prompts.drop(columns="action_Privacy"))
    with pytest.raises(ValueError, match="effect"):
        hb.FeatureLevelSafetyAnalyst(use_effects=True).fit(prompts[list(hb.ACTION_FEATURE_COLUMNS)], np.zeros(150))


# -- steering ----------------------------------------------------------------------------------------------
def test_steer_trees_toward_a_group_that_finds_discrimination_harmful():
    # the reference gives Discrimination/Bias weight 0: such trees score 0 (not harmful)
    discrimination = [[harm(DISCRIMINATION, effect(True, "Significant", "High"))] for _ in range(10)]
    crime = [[harm(CRIME, effect(True, "Major", "High"))] for _ in range(10)]
    benign = [[benefit(effect(True, "Major", "High"))] for _ in range(10)]
    trees = discrimination + crime + benign
    ratings = [90] * 10 + [90] * 10 + [5] * 10
    result = hb.steer(hb.AggregationWeights.reference(), trees_or_features=trees, ratings=ratings, l2=0.1)
    assert result.weights.action_weight("Discrimination/Bias") > 0.5
    assert sorted(result.became_harmful.tolist()) == list(range(10))
    assert result.became_benign.tolist() == []
    np.testing.assert_array_equal(result.changed, (result.old_score > 0) != (result.new_score > 0))
    np.testing.assert_allclose(result.new_score, hb.tree_scores(result.weights, trees))
    assert result.table()["changed"].sum() == 10


def test_steer_features():
    X = _simulated_features(300, seed=5)
    # this group finds privacy-heavy prompts harmful, nothing else (a smooth, not separable, response:
    # separable ratings would send the scale to infinity)
    ratings = 100 * expit(8.0 * (X["action_Privacy"].to_numpy() - 0.3))
    result = hb.steer(hb.AggregationWeights.reference(), trees_or_features=X, ratings=ratings, l2=0.001)
    assert isinstance(result.weights, hb.FeatureWeights)
    privacy = hb.ACTION_CATEGORIES.index("Privacy")
    assert result.weights.action[privacy] == 1.0
    assert np.delete(result.weights.action, privacy).max() < 0.01
    assert result.weights.scale == pytest.approx(8.0, abs=0.2)
    assert result.weights.offset == pytest.approx(-2.4, abs=0.1)
    np.testing.assert_allclose(result.model.predict_rating(X), ratings, atol=0.5)
    # a strong pull keeps the group's weights at the start
    held = hb.steer(hb.AggregationWeights.reference(), trees_or_features=X, ratings=ratings, l2=1e6)
    np.testing.assert_allclose(held.weights.action, hb.AggregationWeights.reference().action, atol=1e-3)
    np.testing.assert_allclose(result.old_score, hb.FeatureLevelSafetyAnalyst().decision_function(X))
    side = result.new_score > 0
    assert np.mean(side == (ratings > 50)) > 0.9
    assert set(result.became_benign) | set(result.became_harmful) == set(np.flatnonzero(result.changed))


# -- predictors --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_frame(prompts):
    """Six annotators on 40 real prompts; ratings from per-person feature-level models plus noise."""
    rng = np.random.default_rng(0)
    features = prompts.head(40).assign(prompt=lambda d: d["Question_Index"].astype(str))
    base = hb.FeatureWeights(rng.uniform(0, 1, 16), np.ones(7), scale=6.0, offset=-1.5)
    rows = []
    for k, offset in enumerate([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0]):
        w = hb.FeatureWeights(base.action, base.effect, base.scale, offset)
        p = hb.FeatureLevelSafetyAnalyst(w).p_harmful(features)
        score = np.clip(p + rng.normal(0, 0.05, len(p)), 0, 1)
        rows.append(features.assign(annotator=f"a{k}", score=score))
    return pd.concat(rows, ignore_index=True)


def test_predictors_are_registered():
    assert REGISTRY["safetyanalyst_reference"] is SafetyAnalystReference
    assert REGISTRY["safetyanalyst_fit"] is SafetyAnalystFit
    assert get_predictor("safetyanalyst_fit", shrinkage=2.0).get_params()["shrinkage"] == 2.0


def test_reference_predictor_uncalibrated_is_the_published_model_as_is(long_frame):
    test = long_frame.drop(columns="score").iloc[::7]
    pred = get_predictor("safetyanalyst_reference", calibrate=False).fit(long_frame).predict(test)
    assert pred.index.equals(test.index)
    np.testing.assert_allclose(pred, expit(hb.FeatureLevelSafetyAnalyst().decision_function(test)))
    assert pred.between(0.5, expit(1.0)).all()


def test_reference_predictor_calibrates_intercept_and_scale_and_keeps_the_weights(long_frame):
    """Issue 16: without an intercept the reference's outputs lay in [0.5, 0.73]; calibrated on the
    training ratings, it recovers a planted intercept and scale and leaves the published weights alone."""
    reference = hb.FeatureWeights.reference()
    h = long_frame[list(hb.ACTION_FEATURE_COLUMNS)].to_numpy(dtype=float) @ reference.action
    rng = np.random.default_rng(4)
    train = long_frame.assign(score=np.clip(expit(-3.0 + 6.0 * h) + rng.normal(0, 0.05, len(h)), 0, 1))
    model = get_predictor("safetyanalyst_reference").fit(train)
    np.testing.assert_array_equal(model.weights_.action, reference.action)
    assert model.weights_.scale == pytest.approx(6.0, rel=0.1) and model.weights_.offset == pytest.approx(-3.0, abs=0.3)
    pred = model.predict(train.drop(columns="score"))
    assert pred.min() < 0.4 and pred.max() > 0.6  # no longer stuck above one half


def test_fit_predictor_individual_and_aggregated(long_frame):
    train = long_frame[long_frame["prompt"].astype(int) <= 30]
    test = long_frame[long_frame["prompt"].astype(int) > 30]
    model = SafetyAnalystFit().fit(train)
    pred = model.predict(test.drop(columns="score"))
    assert pred.index.equals(test.index) and pred.between(0, 1).all()
    mae = (pred - test["score"]).abs().mean()
    population_model = hb.FeatureLevelSafetyAnalyst(model.population_weights_)
    population = pd.Series(population_model.p_harmful(test), index=test.index)
    assert mae < 0.5 * (population - test["score"]).abs().mean()
    # annotators keep their order of severity on unseen prompts
    means = pred.groupby(test["annotator"]).mean()
    assert list(means.sort_values().index) == [f"a{k}" for k in range(6)]
    # aggregated: one row per prompt with the AGGREGATE annotator gets the population model
    agg = test.drop_duplicates("prompt").drop(columns="score").assign(annotator=AGGREGATE)
    agg_pred = model.predict(agg)
    np.testing.assert_allclose(agg_pred, population_model.p_harmful(agg))
    truth = test.groupby("prompt")["score"].mean().loc[agg["prompt"]].to_numpy()
    assert np.abs(agg_pred.to_numpy() - truth).mean() < 0.1
    # an annotator never seen in training also gets the population model
    new = test.drop(columns="score").head(3).assign(annotator="new")
    np.testing.assert_allclose(model.predict(new), population_model.p_harmful(new))


def test_fit_predictor_without_per_annotator_refit(long_frame):
    model = SafetyAnalystFit(per_annotator=False).fit(long_frame)
    assert model.annotator_weights_ == {}
    test = long_frame.drop(columns="score")
    np.testing.assert_allclose(
        model.predict(test), hb.FeatureLevelSafetyAnalyst(model.population_weights_).p_harmful(test)
    )


def test_rows_without_features_are_predicted_as_missing(long_frame):
    train = long_frame.copy()
    train.loc[train["prompt"] == "1", "action_Privacy"] = np.nan  # one prompt without features
    test = train.drop(columns="score").head(3)
    for name in ("safetyanalyst_reference", "safetyanalyst_fit"):
        pred = get_predictor(name).fit(train).predict(test)
        assert pred.isna().tolist() == (test["prompt"] == "1").tolist()
    bare = long_frame.drop(columns=list(hb.ACTION_FEATURE_COLUMNS))
    model = SafetyAnalystFit().fit(bare)
    assert model.predict(bare.drop(columns="score")).isna().all()
    assert get_predictor("safetyanalyst_reference").fit(bare).predict(bare).isna().all()
