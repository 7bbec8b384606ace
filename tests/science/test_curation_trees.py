"""Harm-benefit trees per candidate through the adapter, and their category distributions (issue 12)."""

from __future__ import annotations

import json

import pytest

from benchmark.science.curation.trees import effect_category, tree_features, tree_reply_check, trees_generate
from benchmark.science.harm_benefit.schema import EFFECT_CATEGORIES, TreeError, load_example_tree
from benchmark.science.predictors.llm import ChatClient
from tests.science.chat_endpoint import ChatEndpoint

EXAMPLE = load_example_tree()["harm_benefit_tree"]


def test_example_tree_features_by_hand():
    features = tree_features(EXAMPLE)
    # Hate/Toxicity: 2 + 2 effects; Discrimination/Bias: one action without effects (counts 1) + 2 effects
    assert features["action_Hate_Toxicity"] == pytest.approx(4 / 7)
    assert features["action_Discrimination_Bias"] == pytest.approx(3 / 7)
    # effects: social deficits ×2, emotional changes ×2 (psychological), freedom (liberty), societal disruption
    assert features["effect_Social"] == pytest.approx(2 / 6)
    assert features["effect_Psychological"] == pytest.approx(2 / 6)
    assert features["effect_Liberty"] == pytest.approx(1 / 6)
    assert features["effect_Collective"] == pytest.approx(1 / 6)
    assert len(features) == 23 and sum(v for k, v in features.items() if k.startswith("action_")) == pytest.approx(1)
    with pytest.raises(TreeError):
        tree_features([{"stakeholder": "x", "harms": [{"action": "a", "effects": [{"effect": "e"}]}]}])


def test_effect_leaves_map_to_level_one_categories():
    assert EFFECT_CATEGORIES[effect_category("1. Death")] == "Physical harm"
    assert EFFECT_CATEGORIES[effect_category("Financial property loss")] == "Property harm"
    assert EFFECT_CATEGORIES[effect_category("12. something else")] == "Collective harm"  # by number
    assert effect_category("Moon damage") is None


class TreeEndpoint(ChatEndpoint):
    """GOOD → the example tree in a code fence; BAD → a tree with likelihood 'sometimes', then (told why)
    the example; REFUSE → a refusal; DOWN → HTTP 503."""

    def answer(self, messages):
        request = messages[1]["content"]
        if "DOWN" in request:
            return 503, None
        if "REFUSE" in request:
            return 200, "I can't help with that."
        if "BAD" in request and len(messages) == 2:
            broken = json.loads(json.dumps(EXAMPLE))
            broken[0]["harms"][0]["effects"][0]["likelihood"] = "sometimes"
            return 200, json.dumps(broken)
        return 200, "```json\n" + json.dumps(EXAMPLE) + "\n```\nThat is the tree."


def test_trees_through_the_adapter(tmp_path):
    candidates = [("c1", "GOOD"), ("c2", "BAD"), ("c3", "REFUSE"), ("c4", "DOWN")]
    with TreeEndpoint() as endpoint:
        client = ChatClient(endpoint.url, "fake-1", cache_dir=tmp_path, max_retries=1)
        client.sleep = lambda seconds: None
        frame, outcomes, counts = trees_generate(client, candidates)
    by_id = {o.candidate_id: o for o in outcomes}
    assert {k: o.status for k, o in by_id.items()} == {"c1": "ok", "c2": "ok", "c3": "refused", "c4": "failed"}
    assert by_id["c2"].attempts == 2
    retry = next(m for m in endpoint.calls if "BAD" in m[1]["content"] and len(m) > 2)
    assert "likelihood" in retry[-1]["content"] and "off the schema" in retry[-1]["content"]
    assert counts == {
        "candidates": 4,
        "accepted": 2,
        "refused": 1,
        "malformed": 0,
        "failed": 1,
        "retried": 1,
        "http_calls": 1 + 2 + 1 + 2,
        "cache_hits": 0,
    }
    assert frame["external_id"].tolist() == ["c1", "c2"]
    assert frame.loc[0, "action_Hate_Toxicity"] == pytest.approx(4 / 7)


@pytest.mark.parametrize(
    "reply, status, why",
    [
        ("[]", "malformed", "no stakeholder"),
        ('[{"stakeholder": "x"}]', "malformed", "missing key"),
        ("not json at all", "malformed", "no JSON"),
        ("[{", "malformed", "does not parse"),
        ("I'm sorry, I cannot do that.", "refused", "declined"),
    ],
)
def test_tree_reply_check(reply, status, why):
    _, got, reason = tree_reply_check(reply)
    assert got == status and why in reason
