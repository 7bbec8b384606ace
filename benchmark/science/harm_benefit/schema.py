"""The harm-benefit tree schema, its validator, the category and level vocabularies, and the data files.

Tree schema
-----------
A tree is a JSON list of stakeholder entries (or an object whose ``"harm_benefit_tree"`` key holds the
list, as in ``datasets/safetyanalyst/example_tree_fig2.json``; a JSON string of either is accepted)::

    [
      {"stakeholder": "Homeless individuals",            # str, free text
       "harms": [                                         # list or null; harm entries
         {"action": "##Content Safety Risks## #Hate/Toxicity# Hate Speech, ...",   # str
          "effects": [                                    # list (may be empty)
            {"effect": "5. Social deficits",              # str, free text (leaf of the effect taxonomy)
             "immediacy": true,                           # true = immediate, false = downstream
             "extent": "Significant",                     # minor | significant | substantial | major
             "likelihood": "High"}]}]},                   # low | medium | high
      {"stakeholder": "User",
       "benefits": [ ... same shape; "action" is free text ... ]}
    ]

An entry needs ``"stakeholder"`` and at least one of ``"harms"`` / ``"benefits"`` (``null`` counts as
empty; the reference ``combine_trees()`` concatenates harm entries and benefit entries, so a stakeholder
may appear twice). Level strings are matched case-insensitively after stripping whitespace; immediacy
may be a bool, 0/1, or the strings "true"/"false"/"1"/"0". Anything else raises :class:`TreeError`
whose message starts with a JSON-path-like location (``$[0].harms[1].effects[0].likelihood: ...``).
The reference code silently skips such effects; we refuse them so that LLM-output errors surface.

A harm action is assigned to the first of the 16 mid-level categories of :data:`ACTION_CATEGORIES`
(in that order) whose name occurs in the action string -- case-sensitive substring match, exactly the
reference rule, so both the prompted form ``"##L1## #Hate/Toxicity# leaf"`` and prose such as
``"Content Safety Risks: Hate/Toxicity (...)"`` match. A harm action matching no category gets weight 0.
Benefit actions are free text and get no category weight.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR = Path(__file__).resolve().parents[2] / "datasets" / "safetyanalyst"
EXAMPLE_TREE_PATH = DATA_DIR / "example_tree_fig2.json"
TAXONOMY_PATH = DATA_DIR / "taxonomy.json"

ACTION_CATEGORIES: tuple[str, ...] = (
    "Security Risks",
    "Operational Misuses",
    "Violence & Extremism",
    "Hate/Toxicity",
    "Sexual Content",
    "Child Harm",
    "Self-harm",
    "Political Usage",
    "Economic Harm",
    "Deception",
    "Manipulation",
    "Defamation",
    "Fundamental Rights",
    "Discrimination/Bias",
    "Privacy",
    "Criminal Activities",
)
#: Level-1 names of the harmful-effect taxonomy, in the reference effect-weight order.
EFFECT_CATEGORIES: tuple[str, ...] = (
    "Physical harm",
    "Psychological harm",
    "Social harm",
    "Property harm",
    "Liberty harm",
    "Collective harm",
    "Ecological harm",
)
EXTENT_LEVELS: tuple[str, ...] = ("minor", "significant", "substantial", "major")
LIKELIHOOD_LEVELS: tuple[str, ...] = ("low", "medium", "high")

N_ACTIONS = len(ACTION_CATEGORIES)
N_EFFECTS = len(EFFECT_CATEGORIES)


class TreeError(ValueError):
    """A harm-benefit tree that does not follow the schema; ``path`` locates the offending value."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.detail = message
        super().__init__(f"{path}: {message}")


def action_category(action: str) -> str | None:
    """The reference rule: the first category (weight order) whose name is a substring of `action`."""
    for category in ACTION_CATEGORIES:
        if category in action:
            return category
    return None


def _parse_level(value: Any, levels: tuple[str, ...], path: str) -> str:
    if not isinstance(value, str):
        raise TreeError(path, f"expected one of {', '.join(levels)} as a string, got {type(value).__name__}")
    level = value.strip().lower()
    if level not in levels:
        raise TreeError(path, f"unknown value {value!r}; expected one of {', '.join(levels)}")
    return level


def _parse_immediacy(value: Any, path: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise TreeError(path, f"immediacy must be true or false, got {value!r}")


def _require(obj: dict, key: str, kind: type | tuple, path: str):
    if key not in obj:
        raise TreeError(path, f"missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TreeError(f"{path}.{key}", f"expected {names}, got {type(value).__name__}")
    return value


def _parse_effect(effect: Any, fpath: str) -> dict:
    if not isinstance(effect, dict):
        raise TreeError(fpath, f"expected an object, got {type(effect).__name__}")
    name = _require(effect, "effect", str, fpath)
    for key in ("immediacy", "extent", "likelihood"):
        if key not in effect:
            raise TreeError(fpath, f"missing key {key!r}")
    return {
        "effect": name,
        "immediacy": _parse_immediacy(effect["immediacy"], f"{fpath}.immediacy"),
        "extent": _parse_level(effect["extent"], EXTENT_LEVELS, f"{fpath}.extent"),
        "likelihood": _parse_level(effect["likelihood"], LIKELIHOOD_LEVELS, f"{fpath}.likelihood"),
    }


def _parse_actions(actions: Any, kind: str, kpath: str) -> list[dict]:
    if not isinstance(actions, list):
        raise TreeError(kpath, f"expected a list, got {type(actions).__name__}")
    parsed_actions = []
    for j, action in enumerate(actions):
        apath = f"{kpath}[{j}]"
        if not isinstance(action, dict):
            raise TreeError(apath, f"expected an object, got {type(action).__name__}")
        text = _require(action, "action", str, apath)
        effects = _require(action, "effects", list, apath)
        parsed = {"action": text, "effects": [_parse_effect(e, f"{apath}.effects[{k}]") for k, e in enumerate(effects)]}
        if kind == "harms":
            parsed["category"] = action_category(text)
        parsed_actions.append(parsed)
    return parsed_actions


def tree_validate(obj: Any) -> list[dict]:
    """Check a tree against the schema and return it normalized.

    Returns a list of ``{"stakeholder", "harms", "benefits"}`` entries (both lists always present);
    harm actions carry ``"category"`` (a name from :data:`ACTION_CATEGORIES` or None); effects carry
    ``"effect"``, ``"immediacy"`` (bool), ``"extent"`` and ``"likelihood"`` (lower case).
    """
    path = "$"
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except ValueError as exc:
            raise TreeError(path, f"not valid JSON ({exc})") from None
    if isinstance(obj, dict):
        if "harm_benefit_tree" not in obj:
            raise TreeError(path, "expected a list of stakeholder entries or an object with 'harm_benefit_tree'")
        obj, path = obj["harm_benefit_tree"], "$.harm_benefit_tree"
    if not isinstance(obj, list):
        raise TreeError(path, f"expected a list of stakeholder entries, got {type(obj).__name__}")

    entries = []
    for i, entry in enumerate(obj):
        epath = f"{path}[{i}]"
        if not isinstance(entry, dict):
            raise TreeError(epath, f"expected an object, got {type(entry).__name__}")
        stakeholder = _require(entry, "stakeholder", str, epath)
        if "harms" not in entry and "benefits" not in entry:
            raise TreeError(epath, "missing key 'harms' or 'benefits'")
        normalized = {"stakeholder": stakeholder, "harms": [], "benefits": []}
        for kind in ("harms", "benefits"):
            if entry.get(kind) is not None:
                normalized[kind] = _parse_actions(entry[kind], kind, f"{epath}.{kind}")
        entries.append(normalized)
    return entries


def tree_by_action(obj: Any) -> list[dict]:
    """A tree regrouped for reading, as SafetyAnalyst draws it: action → stakeholder → effects.

    Returns ``[{"action", "kind" ("harm" | "benefit"), "category", "stakeholders": [{"stakeholder",
    "effects": [...]}]}]`` in the order actions first appear; the tree is validated first (TreeError).
    """
    actions: dict[tuple[str, str], dict] = {}
    for entry in tree_validate(obj):
        for kind, key in (("harm", "harms"), ("benefit", "benefits")):
            for action in entry[key]:
                node = actions.setdefault(
                    (kind, action["action"]),
                    {"action": action["action"], "kind": kind, "category": action.get("category"), "stakeholders": []},
                )
                node["stakeholders"].append({"stakeholder": entry["stakeholder"], "effects": action["effects"]})
    return list(actions.values())


@functools.lru_cache(maxsize=1)
def load_taxonomy() -> dict:
    return json.loads(TAXONOMY_PATH.read_text())


def load_example_tree() -> dict:
    """The hand-transcribed figure-2 tree (``prompt`` + ``harm_benefit_tree``)."""
    return json.loads(EXAMPLE_TREE_PATH.read_text())
