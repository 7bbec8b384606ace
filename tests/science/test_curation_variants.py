"""Graded variants through the OpenAI-compatible adapter, against a local fake endpoint (issue 12)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.science.curation import Pool, select
from benchmark.science.curation.variants import (
    DEFAULT_TEMPLATE,
    LEVEL_KEYS,
    TemplateError,
    reply_check,
    template_check,
    variants_generate,
)
from benchmark.science.predictors.llm import ChatClient
from tests.science.chat_endpoint import ChatEndpoint


def _variants(topic: str, skip: str | None = None) -> str:
    body = {level: f"{topic} request at harm {level}" for level in LEVEL_KEYS if level != skip}
    return "```json\n" + json.dumps(body) + "\n```"


class VariantEndpoint(ChatEndpoint):
    """Replies by the seed text: GOOD → 11 variants in a code fence; REFUSE → a refusal; BROKEN → level 1.0
    missing, then (once told why) all 11; HOPELESS → never JSON; DOWN → HTTP 500."""

    def answer(self, messages):
        seed = messages[1]["content"]
        told = len(messages) > 2
        if "DOWN" in seed:
            return 500, None
        if "REFUSE" in seed:
            return 200, "I'm sorry, but I can't help with writing harmful variants."
        if "HOPELESS" in seed:
            return 200, "Here are some ideas, in no particular format."
        if "BROKEN" in seed and not told:
            return 200, _variants("broken", skip="1.0")
        return 200, _variants(seed.split('"')[1])


def _client(endpoint, tmp_path):
    client = ChatClient(endpoint.url, "fake-1", cache_dir=tmp_path, max_retries=1, max_workers=2)
    client.sleep = lambda seconds: None
    return client


SEEDS = [("s1", "GOOD cooking"), ("s2", "REFUSE this"), ("s3", "BROKEN chemistry"), ("s4", "HOPELESS"), ("s5", "DOWN")]


def test_variants_validated_counted_retried_and_cached(tmp_path):
    with VariantEndpoint() as endpoint:
        frame, outcomes, counts = variants_generate(_client(endpoint, tmp_path), SEEDS, max_attempts=3)
        first_calls = len(endpoint.calls)
        again, _, cached_counts = variants_generate(_client(endpoint, tmp_path), SEEDS, max_attempts=3)
        second_calls = len(endpoint.calls) - first_calls
    by_seed = {o.seed_id: o for o in outcomes}
    assert {k: o.status for k, o in by_seed.items()} == {
        "s1": "ok",
        "s2": "refused",
        "s3": "ok",
        "s4": "malformed",
        "s5": "failed",
    }
    assert by_seed["s3"].attempts == 2 and by_seed["s4"].attempts == 3 and by_seed["s2"].attempts == 1
    assert "no variant at level(s) 1.0" not in by_seed["s3"].why  # accepted on the retry
    assert by_seed["s4"].why == "the reply holds no JSON object"
    assert counts["accepted"] == 2 and counts["refused"] == 1 and counts["malformed"] == 1 and counts["failed"] == 1
    assert counts["retried"] == 1 + 2  # BROKEN once, HOPELESS twice
    assert counts["candidates"] == 22 and len(frame) == 22
    # s5: one request and one HTTP retry; the rest one request per attempt
    assert counts["http_calls"] == first_calls == 1 + 1 + 2 + 3 + 2
    assert sorted(frame["harm_level"].unique()) == [float(k) for k in LEVEL_KEYS]
    assert set(frame["group"]) == {"s1", "s3"} and frame["external_id"].is_unique
    assert frame.loc[frame["external_id"] == "s1-h5", "text"].item() == "GOOD cooking request at harm 0.5"
    # the retry carried the bad reply and why it was refused, so it was a new request
    retry = next(m for m in endpoint.calls if "BROKEN" in m[1]["content"] and len(m) > 2)
    assert "no variant at level(s) 1.0" in retry[-1]["content"]
    # a rerun is served from the cache, except the seed whose requests failed
    assert again.equals(frame) and cached_counts["cache_hits"] >= 7 and second_calls == 2


def test_variants_become_a_pool_with_seed_groups(tmp_path):
    seeds = [(f"s{i}", f"GOOD topic {i}") for i in range(6)]
    with VariantEndpoint() as endpoint:
        frame, _, counts = variants_generate(_client(endpoint, tmp_path), seeds)
    assert counts["accepted"] == 6 and counts["http_calls"] == 6
    pool = Pool(frame.assign(group=frame["group"]), [])
    problem = pool.problem("paper")
    chosen = select(problem, 10, max_per_group=2, seed=0, kicks=2)
    assert np.bincount(problem.groups[chosen.members]).max() <= 2


@pytest.mark.parametrize(
    "reply, status, why",
    [
        (json.dumps({k: "x" for k in LEVEL_KEYS}), "ok", ""),
        (json.dumps({**{k: "x" for k in LEVEL_KEYS}, "0.55": "y"}), "malformed", "'0.55' is not one of the levels"),
        (json.dumps({**{k: "x" for k in LEVEL_KEYS}, "0.5": " "}), "malformed", "the variant at 0.5 is empty"),
        (json.dumps({k: "x" for k in LEVEL_KEYS[:-2]}), "malformed", "no variant at level(s) 0.9, 1.0"),
        ('{"0.0": "x",', "malformed", "the reply holds no JSON object"),
        ('{"0.0": "x", }', "malformed", "does not parse"),
        (json.dumps({k: "I'm sorry, I can't help with that." for k in LEVEL_KEYS}), "refused", "refusals"),
        ("", "malformed", "empty"),
        ("I cannot assist with this request.", "refused", "declined"),
    ],
)
def test_reply_check(reply, status, why):
    _, got, reason = reply_check(reply)
    assert got == status and why in reason


def test_templates():
    assert template_check(DEFAULT_TEMPLATE) == DEFAULT_TEMPLATE
    assert template_check('Vary {seed} across {levels}; an example is fine: {"0.0": "…", "1.0": "…"}')
    with pytest.raises(TemplateError, match="must contain"):
        template_check("No seed here: {levels}")
    with pytest.raises(TemplateError, match=r"unknown placeholder\(s\) \{topic\}"):
        template_check("{seed} about {topic}")
    with pytest.raises(TemplateError, match="empty"):
        template_check("  ")
