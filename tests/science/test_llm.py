"""LLM adapters against a fake OpenAI-compatible endpoint on 127.0.0.1 (random port, canned replies)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from benchmark.science.predictors import get_predictor
from benchmark.science.predictors.base import AGGREGATE
from benchmark.science.predictors.llm import ChatClient, parse_rating, value_profile
from benchmark.science.protocol import run_benchmark
from tests.science.chat_endpoint import ChatEndpoint


class FakeEndpoint(ChatEndpoint):
    """Replies by the request text: 'SAFE' → 12, 'RISKY' → 'Rating: 85', 'REFUSE' → a refusal,
    'GARBAGE' → no number, 'FLAKY' → HTTP 500 once then 'Rating: 40', 'BUSY' → 429 once then 55.
    Records every call and the most requests ever in flight at once."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.delay = delay
        self.failed: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def respond(self, request, body):
        with self.lock:
            self.calls.append({"path": request.path, "body": body, "auth": request.headers.get("Authorization")})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            return self.answer(body["messages"][-1]["content"])
        finally:
            with self.lock:
                self.in_flight -= 1

    def answer(self, text: str):
        once = None
        for word in ("FLAKY", "BUSY"):
            if word in text:
                once = word + text[-60:]
        with self.lock:
            first = once is not None and once not in self.failed
            if first:
                self.failed.add(once)
        if first and "FLAKY" in text:
            return 500, None, {}
        if first and "BUSY" in text:
            return 429, None, {"Retry-After": "0"}
        if "REFUSE" in text:
            return 200, "I'm sorry, but I can't help with rating that request.", {}
        if "GARBAGE" in text:
            return 200, "Purple monkey dishwasher.", {}
        if "FLAKY" in text:
            return 200, "Rating: 40", {}
        if "BUSY" in text:
            return 200, "I would say 55.", {}
        if "RISKY" in text:
            return 200, "This could enable real harm.\nRating: 85", {}
        return 200, "12", {}


def _frame(texts: list[str], annotators=("a1", "a2")) -> pd.DataFrame:
    rows = []
    for a_i, annotator in enumerate(annotators):
        for p_i, text in enumerate(texts):
            rows.append(
                {
                    "annotator": annotator,
                    "prompt": f"p{p_i}",
                    "text": text,
                    "harm_level": 0.5,
                    "action_x": 0.1 * p_i,
                    "Gender": "Woman" if a_i else "Man",
                    "Age": "25-34 years old",
                    "Factor_1": 2.0 if a_i else -2.0,
                    "Factor_2": 0.0,
                    "Factor_3": 1.0,
                    "score": (10 * p_i + 5 * a_i) / 100.0,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Rating: 85", (85.0, "parsed")),
        ("**Rating:** 70", (70.0, "parsed")),
        ("On a scale of 0 to 100, I'd rate it 30 out of 100.", (30.0, "parsed")),
        ("42", (42.0, "parsed")),
        ("Harmfulness score = 12.5", (12.5, "parsed")),
        ("I'm sorry, but I can't help with that.", (None, "refusal")),
        ("As an AI, I cannot assist.", (None, "refusal")),
        ("Purple monkey dishwasher.", (None, "unparsable")),
        ("Rating: 250", (None, "unparsable")),
        ("", (None, "unparsable")),
        (None, (None, "unparsable")),
    ],
)
def test_parse_rating(reply, expected):
    assert parse_rating(reply) == expected


def test_value_profile_describes_traits_and_factors():
    text = value_profile(
        pd.Series({"Gender": "Woman", "Age": "25-34 years old", "Factor_1": 3.0, "Factor_2": -2.0, "Factor_3": 0.1})
    )
    assert "gender: Woman" in text and "age: 25-34 years old" in text
    assert "strongly values power and achievement over universalism and benevolence" in text
    assert "low on empathy" in text and "about equally" in text


def test_zero_shot_parses_counts_and_caches(tmp_path):
    texts = ["SAFE request", "RISKY request", "REFUSE request", "GARBAGE request", "FLAKY request", "BUSY request"]
    train, test = _frame(texts[:2]), _frame(texts).drop(columns="score")
    with FakeEndpoint() as endpoint:
        params = dict(
            base_url=endpoint.url,
            model="fake-1",
            api_key="sk-test",
            cache_dir=str(tmp_path),
            backoff=0.01,
            max_workers=3,
        )
        model = get_predictor("llm_zero_shot", **params).fit(train)
        predicted = model.predict(test)
        # Six distinct prompts, asked once each for two annotators; FLAKY (500) and BUSY (429) retried once.
        assert len(endpoint.calls) == 8
        assert endpoint.calls[0]["path"] == "/v1/chat/completions"
        assert endpoint.calls[0]["auth"] == "Bearer sk-test"
        assert endpoint.calls[0]["body"]["model"] == "fake-1"
        stats = model.stats_
        assert stats["requests"] == 6 and stats["parsed"] == 4 and stats["refusals"] == 1 and stats["unparsable"] == 1
        assert stats["retries"] == 2 and stats["http_calls"] == 8 and stats["cache_hits"] == 0
        assert model.refusal_rate == pytest.approx(1 / 6) and model.completion_rate == pytest.approx(4 / 6)
        assert predicted.index.equals(test.index)
        by_text = dict(zip(test["text"], predicted))
        assert by_text["SAFE request"] == pytest.approx(0.12) and by_text["RISKY request"] == pytest.approx(0.85)
        assert by_text["FLAKY request"] == pytest.approx(0.40) and by_text["BUSY request"] == pytest.approx(0.55)
        assert np.isnan(by_text["REFUSE request"]) and np.isnan(by_text["GARBAGE request"])

        # A second run with the same settings is answered from the disk cache: no HTTP call.
        again = get_predictor("llm_zero_shot", **params).fit(train)
        second = again.predict(test)
        assert len(endpoint.calls) == 8
        assert again.stats_["http_calls"] == 0 and again.stats_["cache_hits"] == 6
        pd.testing.assert_series_equal(second, predicted)

        # The fallback replaces what could not be read with the training mean.
        filled = get_predictor("llm_zero_shot", **params, fallback="mean").fit(train).predict(test)
        assert filled.notna().all() and filled[test["text"] == "REFUSE request"].eq(train["score"].mean()).all()


def test_concurrency_is_bounded(tmp_path):
    texts = [f"SAFE request number {i}" for i in range(12)]
    with FakeEndpoint(delay=0.05) as endpoint:
        client = ChatClient(endpoint.url, "fake-1", cache_dir=tmp_path, max_workers=3)
        replies = client.complete_many([[{"role": "user", "content": t}] for t in texts])
    assert [r.text for r in replies] == ["12"] * 12
    assert endpoint.max_in_flight <= 3
    assert endpoint.max_in_flight >= 2  # the pool is used, not a loop in disguise


def test_backoff_retries_then_gives_up(tmp_path):
    sleeps = []
    with FakeEndpoint() as endpoint:
        endpoint.answer = lambda text: (503, None, {})
        client = ChatClient(endpoint.url, "fake-1", cache_dir=tmp_path, max_retries=3, backoff=0.5, max_backoff=1.5)
        client.sleep = sleeps.append
        reply = client.complete([{"role": "user", "content": "SAFE"}])
        assert reply.text is None and reply.error == "HTTP 503"
        assert len(endpoint.calls) == 4
    assert sleeps == [0.5, 1.0, 1.5]  # exponential, capped at max_backoff
    assert client.stats["retries"] == 3 and client.stats["errors"] == 1
    assert not any(tmp_path.rglob("*.json"))  # failures are not cached


def test_client_errors_are_not_retried(tmp_path):
    with FakeEndpoint() as endpoint:
        endpoint.answer = lambda text: (401, None, {})
        reply = ChatClient(endpoint.url, "fake-1", cache_dir=tmp_path, backoff=0.0).complete(
            [{"role": "user", "content": "x"}]
        )
        assert reply.error == "HTTP 401" and len(endpoint.calls) == 1


def test_unreachable_endpoint_counts_as_error(tmp_path):
    client = ChatClient("http://127.0.0.1:9", "fake-1", cache_dir=tmp_path, max_retries=1, backoff=0.0, timeout=2)
    reply = client.complete([{"role": "user", "content": "x"}])
    assert reply.text is None and client.stats["retries"] == 1 and client.stats["errors"] == 1


def test_value_profile_and_k_shot_prompts(tmp_path):
    texts = ["SAFE one", "SAFE two", "RISKY three", "SAFE four"]
    train = _frame(texts[:3])
    test = _frame(texts[3:]).drop(columns="score")
    with FakeEndpoint() as endpoint:
        common = dict(base_url=endpoint.url, model="fake-1", cache_dir=str(tmp_path), backoff=0.0)
        profile = get_predictor("llm_value_profile", **common).fit(train).predict(test)
        system = [c["body"]["messages"][0]["content"] for c in endpoint.calls]
        assert any("gender: Man" in s for s in system) and any("gender: Woman" in s for s in system)
        assert profile.tolist() == [0.12, 0.12]

        endpoint.calls.clear()
        k_shot = get_predictor("llm_k_shot", **common, k=2).fit(train)
        k_shot.predict(test)
        prompts = [c["body"]["messages"][-1]["content"] for c in endpoint.calls]
        assert len(prompts) == 2
        # a2's own ratings (5, 15, 25) of the two most similar training prompts are the examples.
        a2 = next(p for p in prompts if "Rating: 5\n" in p or "Rating: 15\n" in p or "Rating: 25\n" in p)
        assert a2.count("→ Rating:") == 2 and "this person" in a2

        endpoint.calls.clear()
        aggregate = pd.DataFrame([{"annotator": AGGREGATE, "prompt": "p3", "text": "SAFE four", "harm_level": 0.5}])
        k_shot.predict(aggregate)
        assert "on average, people" in endpoint.calls[0]["body"]["messages"][-1]["content"]


def test_protocol_reports_refusal_and_completion(tmp_path):
    texts = ["SAFE a", "REFUSE b", "RISKY c", "GARBAGE d", "SAFE e", "RISKY f"]
    df = _frame(texts, annotators=("a1", "a2", "a3")).rename(columns={"score": "rating"})
    df["rating"] *= 100
    with FakeEndpoint() as endpoint:
        model = get_predictor("llm_zero_shot", base_url=endpoint.url, model="fake-1", cache_dir=str(tmp_path))
        result = run_benchmark(df, [model], conditions=["individual"], n_splits=3, seed=1)
    (row,) = result.summary()
    assert 0 <= row["refusal_pct"] <= 100 and 0 <= row["completion_pct"] <= 100
    assert set(result.per_split.columns) >= {"requests", "refusals", "parsed", "coverage"}
    assert (result.per_split["coverage"] <= 1).all()


class ScoringEndpoint(FakeEndpoint):
    """Replies with the harm level written into the request ('… level 37 …' → 'Rating: 37'); a request
    containing REFUSE is refused."""

    def answer(self, text: str):
        if "REFUSE" in text:
            return 200, "I'm sorry, but I can't help with rating that request.", {}
        level = int(text.split("level ", 1)[1].split()[0].strip('."'))
        return 200, f"Thinking about it.\nRating: {level}", {}


def _ramp_study(n_prompts=30, n_annotators=12, seed=0) -> tuple[pd.DataFrame, np.ndarray]:
    """Annotators who saturate differently around a prompt's true level; the text carries a noisy copy
    of that level (what a model's content knowledge would give)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0, 100, n_prompts)
    seen = np.clip(level + rng.normal(0, 8, n_prompts), 0, 100)
    rows = []
    for a in range(n_annotators):
        strict = a % 2 == 0  # strict annotators rate everything above 30 as 100, lenient ones above 70
        for p in range(n_prompts):
            rating = 100.0 if level[p] > (30 if strict else 70) else 0.0
            rows.append(
                {
                    "annotator": f"a{a}",
                    "prompt": f"p{p}",
                    "text": f"request number {p} at level {seen[p]:.0f} " + ("REFUSE" if p == 0 else ""),
                    "rating": float(np.clip(rating + rng.normal(0, 5), 0, 100)),
                }
            )
    return pd.DataFrame(rows), level


def test_llm_ramp_against_a_local_endpoint(tmp_path):
    df, _ = _ramp_study()
    with ScoringEndpoint() as endpoint:
        model = get_predictor("llm_ramp", base_url=endpoint.url, model="fake-1", cache_dir=str(tmp_path))
        result = run_benchmark(
            df, [model, "annotator_mean", "global_median"], conditions=["individual", "aggregated"], n_splits=3
        )
        calls = len(endpoint.calls)
    rows = {(r["predictor"], r["condition"]): r for r in result.summary()}
    # the per-annotator ramp turns the model's content score into each annotator's own threshold
    assert rows[("llm_ramp", "individual")]["mae"] < 0.6 * rows[("annotator_mean", "individual")]["mae"]
    assert rows[("llm_ramp", "individual")]["mae"] < rows[("llm_ramp", "aggregated")]["mae"]
    assert rows[("llm_ramp", "aggregated")]["mae"] <= rows[("global_median", "aggregated")]["mae"]
    # one request per distinct prompt text, cached across splits and conditions
    assert calls == df["prompt"].nunique()
    # the refused prompt is counted and, when it is a test prompt, left out of the scores
    assert rows[("llm_ramp", "individual")]["refusal_pct"] > 0
    refused = result.per_prompt.query("predictor == 'llm_ramp' and prompt == 'p0'")
    assert refused.empty


def test_llm_ramp_fits_each_annotators_own_ramp(tmp_path):
    df, _ = _ramp_study(n_prompts=40, n_annotators=4, seed=1)
    train = df.assign(score=df["rating"] / 100).drop(columns="rating")
    with ScoringEndpoint() as endpoint:
        model = get_predictor("llm_ramp", base_url=endpoint.url, model="fake-1", cache_dir=str(tmp_path)).fit(train)
        middle = pd.DataFrame(
            {"annotator": ["a0", "a1", AGGREGATE], "prompt": ["q", "q", "q"], "text": ["new at level 50"] * 3}
        )
        prediction = model.predict(middle)
    # at level 50 the strict annotator says harmful, the lenient one not, the pooled ramp in between
    assert prediction.iloc[0] > 0.8 and prediction.iloc[1] < 0.2
    assert prediction.iloc[1] <= prediction.iloc[2] <= prediction.iloc[0]
