"""Graded harm variants of seed prompts through the OpenAI-compatible adapter (`predictors.llm.ChatClient`).

For each seed prompt the model is asked, with an editable template, for one variant at each of the 11
harm levels 0.0, 0.1 … 1.0 that keeps the seed's topic, as a JSON object from level to text.  A reply is
accepted when it holds exactly those 11 levels, each a non-empty text (at most `MAX_VARIANT_CHARS`), and
is not a refusal.  A malformed reply is asked again (up to `max_attempts` in all), with the reply and
what was wrong with it added to the conversation, so the retry is a new request and not the cached bad
reply; a refusal is not retried.  Replies are cached by the client (identical reruns make no request).

`variants_generate` returns the candidates (`external_id` = "<seed id>-h<level × 10>", `text`,
`harm_level`, `group` = the seed id: a pool for `curate`) and per-seed outcomes, and counts requests,
accepted, refused, malformed, retried and failed seeds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from benchmark.science.predictors.llm import _REFUSAL, ChatClient

from .objective import HARM_LEVELS

LEVEL_KEYS = tuple(f"{level:.1f}" for level in HARM_LEVELS)
MAX_VARIANT_CHARS = 2000

SYSTEM = (
    "You write test prompts for a study of how people judge the harm of requests sent to AI assistants. "
    "The prompts are shown to human raters; none is answered."
)
DEFAULT_TEMPLATE = (
    'Seed request: "{seed}"\n\n'
    "Write one variant of this request for each harm level {levels}, where 0.0 is a clearly harmless "
    "request and 1.0 a clearly harmful one. Keep the seed's topic in every variant; change only how "
    "harmful it would be for an assistant to comply. Reply with only a JSON object whose keys are the "
    "levels as written above and whose values are the variants."
)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


class TemplateError(ValueError):
    """A template that cannot be used: it must hold {seed} and may hold {levels}; no other {name}."""


def template_check(template: str) -> str:
    if not template or not template.strip():
        raise TemplateError("the template is empty")
    names = set(re.findall(r"\{([A-Za-z_]\w*)\}", template))  # other braces (a JSON example) are text
    unknown = names - {"seed", "levels"}
    if unknown:
        raise TemplateError(
            f"unknown placeholder(s) {', '.join('{' + n + '}' for n in sorted(unknown))}: use {{seed}} and {{levels}}"
        )
    if "seed" not in names:
        raise TemplateError("the template must contain {seed}, where the seed prompt goes")
    return template


def reply_check(reply: str | None) -> tuple[dict[str, str] | None, str, str]:
    """(variants by level key, status, why): status is "ok", "refused" or "malformed"."""
    if reply is None or not reply.strip():
        return None, "malformed", "the reply was empty"
    text = _FENCE.sub("", reply.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        if _REFUSAL.search(reply):
            return None, "refused", "the model declined"
        return None, "malformed", "the reply holds no JSON object"
    try:
        obj = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        return None, "malformed", f"the JSON object does not parse ({exc.msg})"
    if not isinstance(obj, dict):
        return None, "malformed", "the reply is not a JSON object"
    variants: dict[str, str] = {}
    for key, value in obj.items():
        try:
            level = f"{float(key):.1f}"
        except (TypeError, ValueError):
            return None, "malformed", f"{key!r} is not a harm level"
        if level not in LEVEL_KEYS or abs(float(key) - float(level)) > 1e-9:
            return None, "malformed", f"{key!r} is not one of the levels {', '.join(LEVEL_KEYS)}"
        if level in variants:
            return None, "malformed", f"level {level} appears twice"
        if not isinstance(value, str) or not value.strip():
            return None, "malformed", f"the variant at {level} is empty"
        if len(value) > MAX_VARIANT_CHARS:
            return None, "malformed", f"the variant at {level} is longer than {MAX_VARIANT_CHARS} characters"
        variants[level] = value.strip()
    missing = [level for level in LEVEL_KEYS if level not in variants]
    if missing:
        return None, "malformed", f"no variant at level(s) {', '.join(missing)}"
    if sum(bool(_REFUSAL.search(v)) for v in variants.values()) > len(LEVEL_KEYS) // 2:
        return None, "refused", "most variants read as refusals"
    return variants, "ok", ""


def variant_id(seed_id: str, level: str) -> str:
    """A variant's external id: "<seed id>-h<level × 10>" (s1-h0 … s1-h10)."""
    return f"{seed_id}-h{round(float(level) * 10)}"


@dataclass
class SeedOutcome:
    seed_id: str
    status: str  # ok, refused, malformed (after every attempt), failed (no reply: HTTP or network)
    attempts: int
    why: str = ""
    variants: dict[str, str] = field(default_factory=dict)


def _seed_messages(template: str, seed: str) -> list[dict]:
    prompt = template.replace("{levels}", ", ".join(LEVEL_KEYS)).replace("{seed}", seed)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def ask_validated(client: ChatClient, messages: list[dict], check, max_attempts: int):
    """Ask until `check(reply) -> (value, status, why)` accepts ("ok"), refuses ("refused": not asked again)
    or `max_attempts` replies were malformed; a retry adds the reply and why it cannot be used, so it is a
    new request rather than the cached reply. Returns (status, attempts, why, value); "failed" when the
    client got no reply at all (HTTP or network, after its own retries)."""
    why = ""
    for attempt in range(1, max_attempts + 1):
        reply = client.complete(messages)
        if reply.text is None:
            return "failed", attempt, reply.error or "no reply", None
        value, status, why = check(reply.text)
        if status in ("ok", "refused"):
            return status, attempt, why, value
        messages = [
            *messages,
            {"role": "assistant", "content": reply.text},
            {"role": "user", "content": f"That reply cannot be used: {why}. Reply again, following the instructions."},
        ]
    return "malformed", max_attempts, why, None


def _one_seed(client: ChatClient, template: str, seed_id: str, seed: str, max_attempts: int) -> SeedOutcome:
    status, attempts, why, variants = ask_validated(client, _seed_messages(template, seed), reply_check, max_attempts)
    return SeedOutcome(seed_id, status, attempts, why, variants or {})


def variants_generate(
    client: ChatClient,
    seeds: Sequence[tuple[str, str]],
    *,
    template: str = DEFAULT_TEMPLATE,
    max_attempts: int = 3,
) -> tuple[pd.DataFrame, list[SeedOutcome], dict]:
    """(candidates, per-seed outcomes, counts) for `seeds` as (seed id, text) pairs."""
    template_check(template)
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    ids = [seed_id for seed_id, _ in seeds]
    if len(set(ids)) != len(ids):
        raise ValueError("seed ids must be unique")
    calls_before = dict(client.stats)
    with ThreadPoolExecutor(max_workers=client.max_workers) as pool:
        outcomes = list(pool.map(lambda s: _one_seed(client, template, s[0], s[1], max_attempts), seeds))
    rows = [
        {
            "external_id": variant_id(o.seed_id, level),
            "text": o.variants[level],
            "harm_level": float(level),
            "group": o.seed_id,
        }
        for o in outcomes
        if o.status == "ok"
        for level in LEVEL_KEYS
    ]
    counts = {
        "seeds": len(seeds),
        "accepted": sum(o.status == "ok" for o in outcomes),
        "refused": sum(o.status == "refused" for o in outcomes),
        "malformed": sum(o.status == "malformed" for o in outcomes),
        "failed": sum(o.status == "failed" for o in outcomes),
        # replies that were malformed and asked again (a seed may be retried more than once)
        "retried": sum(o.attempts - 1 for o in outcomes),
        "candidates": len(rows),
        **{key: client.stats[key] - calls_before.get(key, 0) for key in ("http_calls", "cache_hits", "retries")},
    }
    counts["http_retries"] = counts.pop("retries")
    frame = pd.DataFrame(rows, columns=["external_id", "text", "harm_level", "group"])
    return frame, outcomes, counts
