"""Survey instruments as data: loading, validation, answer checking, scoring, PluriHarms factor scores.

Pure Python (json, pandas, numpy): no models, no Django import, so it runs in a view, a worker, a
notebook or a test alike. Views turn a definition into a form (one field per item, field name = item
id), hand the submitted ``request.POST`` to :func:`answers_validate`, store the cleaned answers and
:func:`instrument_score` on a ``SurveyResponse``; the science code turns per-annotator subscale means
into the PluriHarms factors with :func:`factor_scores`.

Instrument definition schema
============================
One JSON file per instrument in ``annotation/instruments/<key>.json``; adding a file is all it takes
to add an instrument (:func:`instrument_keys` lists the files). :func:`instrument_load` validates the
file and raises ``ValueError("<file>: <problem>")`` for anything malformed. Top level::

    {
      "key":          "mfq20",              # required, equals the file name stem, [a-z0-9_]+
      "version":      "1",                  # required, non-empty string; bump it when wording changes
      "title":        "Moral judgments",    # required, shown to annotators
      "source":       "Graham et al. ...",  # required, full citation of the public instrument
      "instructions": "...",                # required, shown above the items
      "scale":        {"min": 0, "max": 5,  # optional: the response scale shared by the scale items;
                       "labels": {"0": "...", "5": "..."}},   # labels keyed by str(int), subset of min..max
      "items":        [ ...item... ],       # required, non-empty
      "subscales":    {"Harm": {"output": "MFQ_Harm_mean"}}   # optional; name -> score output name
    }

Each item::

    {
      "id":        "mfq_01_emotionally",    # required, unique, [A-Za-z0-9_]+; it is the form field name
      "text":      "Whether or not ...",    # required
      "type":      "single" | "multi" | "scale",
      "options":   ["...", "..."],          # single/multi only: >= 2 unique non-empty strings
      "reverse":   false,                   # optional (default false); true only on scale items
      "subscale":  "Harm",                  # optional; must be declared in "subscales"; scale items only
      "required":  true,                    # optional (default true)
      "scale":     {...},                   # optional, scale items only: overrides the instrument scale
      "exclusive": ["Prefer not to answer"],# optional, multi only: options that cannot be combined
      "other":     "Other",                 # optional, single/multi: the option that opens a text box
      "section":   "Part 2. ...",           # optional: heading shown when it changes between items
      "facet":     "ethics",                # optional, informational (e.g. a construct within a subscale)
      "note":      "..."                    # optional, for researchers; not shown to annotators
    }

Every scale item must resolve to a scale (its own or the instrument's); every declared subscale must
have at least one item; subscale outputs must be unique. Unknown keys are errors (they are typos).

Answers and scores
==================
:func:`answers_validate` returns ``(answers, errors)``: ``answers`` maps item id to an ``int`` (scale),
the chosen option (single) or the chosen options joined with ``","`` in option order (multi, as the
PluriHarms release stores them); ``errors`` maps item id to a message for the annotator. Nothing is
skipped silently: blank required items, values outside the options or the scale, several values for a
one-value item, duplicated or contradictory multi choices are all errors.

:func:`instrument_score` gives, per subscale output name, the mean of the subscale's item values after
reverse keying (``min + max - x`` on the item's scale).

Factor scores
=============
``benchmark/datasets/pluriharms/factor_loadings.csv`` holds the loadings of the 21 z-scored subscale
means (``<output>_z_scored``) on Factor_1..3. :func:`factor_scores` z-scores each subscale mean against a
reference sample (mean and sample SD, ddof=1; by default the input itself, as the release did within
its own 100 annotators) and returns ``score_k = sum_j z_j * loading_jk``. The release does not ship the
subscale means, so its factor columns cannot be recomputed from raw answers; only the arithmetic is
reproducible (and tested).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BASE_DIR",
    "DEFAULT_INSTRUMENTS",
    "FACTOR_COLUMNS",
    "FACTOR_LOADINGS_PATH",
    "INSTRUMENT_DIR",
    "ITEM_TYPES",
    "answers_validate",
    "factor_inputs",
    "factor_scores",
    "instrument_keys",
    "instrument_load",
    "instrument_score",
    "instrument_validate",
    "load_factor_loadings",
    "multi_split",
]

# Derived from this file rather than django.conf.settings so the module stays importable without Django.
BASE_DIR = Path(__file__).resolve().parent.parent
INSTRUMENT_DIR = Path(__file__).resolve().parent / "instruments"
FACTOR_LOADINGS_PATH = BASE_DIR / "benchmark" / "datasets" / "pluriharms" / "factor_loadings.csv"

DEFAULT_INSTRUMENTS: list[str] = [
    "demographics",
    "schwartz_short",
    "mfq20",
    "iri_brief",
    "mini_ipip_intellect",
    "ai_literacy",
]
ITEM_TYPES = ("single", "multi", "scale")
FACTOR_COLUMNS = ["Factor_1", "Factor_2", "Factor_3"]
Z_SUFFIX = "_z_scored"
MULTI_SEPARATOR = ","

MSG_REQUIRED = "Please answer this question."
MSG_OPTION = "Choose one of the listed options."
MSG_MULTI_OPTION = "Choose only from the listed options."
MSG_MULTI_DUPLICATE = "Choose each option at most once."
MSG_EXCLUSIVE = "“{option}” cannot be combined with other answers."
MSG_SCALE = "Choose a whole number from {min} to {max}."

_KEY_RE = re.compile(r"^[a-z0-9_]+$")
_ITEM_ID_RE = re.compile(r"^[A-Za-z0-9_]+$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_TOP_REQUIRED = ("key", "version", "title", "source", "instructions", "items")
_TOP_OPTIONAL = ("scale", "subscales")
_ITEM_REQUIRED = ("id", "text", "type")
_ITEM_OPTIONAL = (
    "options",
    "reverse",
    "subscale",
    "required",
    "scale",
    "exclusive",
    "other",
    "section",
    "facet",
    "note",
)
# The form field (and answers key) of the text typed beside an item's "other" option.
OTHER_SUFFIX = "__other"
OTHER_MAX_LENGTH = 200


# --------------------------------------------------------------------------------------------------
# Loading and validating definitions
# --------------------------------------------------------------------------------------------------


def instrument_keys(*, directory: Path | None = None) -> list[str]:
    """Return the keys of the instruments available as ``<key>.json`` files, sorted."""
    directory = Path(directory) if directory is not None else INSTRUMENT_DIR
    return sorted(path.stem for path in directory.glob("*.json") if path.is_file())


def instrument_load(key: str, *, directory: Path | None = None) -> dict[str, Any]:
    """Load and validate the instrument ``key``; raise ``ValueError`` naming the file and the problem.

    Returns a fresh dict each call (callers may modify it) with defaults filled in: every item has
    ``reverse`` and ``required``; every scale item has its resolved ``scale``.
    """
    directory = Path(directory) if directory is not None else INSTRUMENT_DIR
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"invalid instrument key {key!r}: use lowercase letters, digits and '_'")
    path = directory / f"{key}.json"
    if not path.is_file():
        known = ", ".join(instrument_keys(directory=directory)) or "none"
        raise ValueError(f"unknown instrument {key!r} (no {path.name} in {directory}); known: {known}")
    try:
        definition = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: not valid JSON: {exc}") from exc
    definition = instrument_validate(definition, source=path.name)
    if definition["key"] != key:
        raise ValueError(f"{path.name}: 'key' is {definition['key']!r} but the file name says {key!r}")
    return definition


def instrument_validate(definition: Any, *, source: str = "<definition>") -> dict[str, Any]:
    """Check a definition against the schema (module docstring); return a normalised deep copy.

    ``source`` names the definition in error messages (the file name when loading from disk).
    """

    def fail(problem: str) -> ValueError:
        return ValueError(f"{source}: {problem}")

    if not isinstance(definition, Mapping):
        raise fail("the definition must be a JSON object")
    try:
        definition = json.loads(json.dumps(definition))  # deep copy; also rejects non-JSON values
    except (TypeError, ValueError) as exc:
        raise fail(f"the definition is not plain JSON data: {exc}") from exc
    _check_keys(definition, _TOP_REQUIRED, _TOP_OPTIONAL, "the definition", fail)
    for field in ("key", "version", "title", "source", "instructions"):
        if not isinstance(definition[field], str) or not definition[field].strip():
            raise fail(f"'{field}' must be a non-empty string")
    if not _KEY_RE.match(definition["key"]):
        raise fail(f"'key' {definition['key']!r} must use lowercase letters, digits and '_'")

    default_scale = None
    if "scale" in definition:
        default_scale = _scale_check(definition["scale"], "'scale'", fail)

    subscales = definition.setdefault("subscales", {})
    if not isinstance(subscales, Mapping):
        raise fail("'subscales' must be an object mapping subscale names to {\"output\": name}")
    outputs: dict[str, str] = {}
    for name, spec in subscales.items():
        if not name.strip():
            raise fail("a subscale name is empty")
        if not isinstance(spec, Mapping) or set(spec) != {"output"}:
            raise fail(f"subscale {name!r} must be an object with exactly one key, 'output'")
        output = spec["output"]
        if not isinstance(output, str) or not _ITEM_ID_RE.match(output):
            raise fail(f"subscale {name!r}: 'output' must be a name of letters, digits and '_'")
        if output in outputs:
            raise fail(f"subscales {outputs[output]!r} and {name!r} have the same output {output!r}")
        outputs[output] = name

    items = definition["items"]
    if not isinstance(items, list) or not items:
        raise fail("'items' must be a non-empty list")
    seen: set[str] = set()
    used_subscales: set[str] = set()
    for position, item in enumerate(items, start=1):
        where = f"item {position}"
        if not isinstance(item, Mapping):
            raise fail(f"{where} must be an object")
        _check_keys(item, _ITEM_REQUIRED, _ITEM_OPTIONAL, where, fail)
        item_id = item["id"]
        if not isinstance(item_id, str) or not _ITEM_ID_RE.match(item_id):
            raise fail(f"{where}: 'id' must be a non-empty string of letters, digits and '_'")
        where = f"item {item_id!r}"
        if item_id in seen:
            raise fail(f"duplicate item id {item_id!r}")
        seen.add(item_id)
        if not isinstance(item["text"], str) or not item["text"].strip():
            raise fail(f"{where}: 'text' must be a non-empty string")
        kind = item["type"]
        if kind not in ITEM_TYPES:
            raise fail(f"{where}: unknown type {kind!r} (expected one of {', '.join(ITEM_TYPES)})")
        for flag, default in (("reverse", False), ("required", True)):
            item.setdefault(flag, default)
            if not isinstance(item[flag], bool):
                raise fail(f"{where}: '{flag}' must be true or false")
        for text_field in ("section", "facet", "note"):
            if text_field in item and (not isinstance(item[text_field], str) or not item[text_field].strip()):
                raise fail(f"{where}: '{text_field}' must be a non-empty string")

        if kind == "scale":
            for forbidden in ("options", "exclusive", "other"):
                if forbidden in item:
                    raise fail(f"{where}: a scale item cannot have '{forbidden}'")
            if "scale" in item:
                item["scale"] = _scale_check(item["scale"], f"{where}: 'scale'", fail)
            elif default_scale is not None:
                item["scale"] = json.loads(json.dumps(default_scale))
            else:
                raise fail(f"{where}: a scale item needs a 'scale' (its own or the instrument's)")
        else:
            if item["reverse"]:
                raise fail(f"{where}: 'reverse' is only allowed on scale items, not on {kind!r} items")
            if "scale" in item:
                raise fail(f"{where}: only scale items can have a 'scale'")
            if "options" not in item:
                raise fail(f"{where}: missing 'options' for a {kind!r} item")
            options = item["options"]
            if not isinstance(options, list) or len(options) < 2:
                raise fail(f"{where}: 'options' must be a list of at least two options")
            for option in options:
                if not isinstance(option, str) or not option.strip() or option != option.strip():
                    raise fail(f"{where}: option {option!r} must be a non-empty string without outer spaces")
            duplicates = sorted({o for o in options if options.count(o) > 1})
            if duplicates:
                raise fail(f"{where}: duplicate options {duplicates}")
            if "exclusive" in item:
                if kind != "multi":
                    raise fail(f"{where}: 'exclusive' is only allowed on multi items")
                exclusive = item["exclusive"]
                if not isinstance(exclusive, list) or any(o not in options for o in exclusive):
                    raise fail(f"{where}: 'exclusive' must list some of the item's options")
            if "other" in item and item["other"] not in options:
                raise fail(f"{where}: 'other' must be one of the item's options")

        if "subscale" in item:
            subscale = item["subscale"]
            if kind != "scale":
                raise fail(f"{where}: only scale items can belong to a subscale")
            if subscale not in subscales:
                raise fail(f"{where}: subscale {subscale!r} is not declared in 'subscales'")
            used_subscales.add(subscale)

    empty = [name for name in subscales if name not in used_subscales]
    if empty:
        raise fail(f"subscales without items: {', '.join(empty)}")
    return definition


def _check_keys(obj: Mapping, required: Iterable[str], optional: Iterable[str], where: str, fail) -> None:
    missing = [key for key in required if key not in obj]
    if missing:
        raise fail(f"{where} is missing {', '.join(repr(k) for k in missing)}")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise fail(f"{where} has unknown keys {', '.join(repr(k) for k in unknown)}")


def _scale_check(scale: Any, where: str, fail) -> dict[str, Any]:
    if not isinstance(scale, Mapping) or set(scale) - {"min", "max", "labels"} or not {"min", "max"} <= set(scale):
        raise fail(f"{where} must be an object with 'min', 'max' and optional 'labels'")
    low, high = scale["min"], scale["max"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) or low >= high:
        raise fail(f"{where}: 'min' and 'max' must be integers with min < max")
    labels = scale.get("labels", {})
    if not isinstance(labels, Mapping):
        raise fail(f"{where}: 'labels' must be an object keyed by scale points")
    for point, label in labels.items():
        if not _INT_RE.match(point) or not low <= int(point) <= high:
            raise fail(f"{where}: label key {point!r} is not a point of the scale {low}..{high}")
        if not isinstance(label, str) or not label.strip():
            raise fail(f"{where}: label for {point} must be a non-empty string")
    return {"min": low, "max": high, "labels": dict(labels)}


# --------------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------------


def answers_validate(definition: Mapping[str, Any], data: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Check submitted answers against a (validated) definition; return ``(answers, errors)``.

    ``data`` is a Django ``QueryDict`` (anything with ``.getlist(name)``) or a plain mapping whose
    values are a string, a number or a list of them; the field name of each item is its id. Blank
    strings count as not answered; names that are not item ids are ignored (CSRF token, buttons).
    ``answers`` holds only valid answers (see the module docstring for their types); ``errors`` maps
    item id to the message to show next to the question.
    """
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for item in definition["items"]:
        item_id = item["id"]
        values = [v for v in _submitted(data, item_id) if v != ""]
        if not values:
            if item.get("required", True):
                errors[item_id] = MSG_REQUIRED
            continue
        kind = item["type"]
        if kind == "scale":
            scale = _item_scale(definition, item)
            value = _scale_value(values, scale)
            if value is None:
                errors[item_id] = MSG_SCALE.format(min=scale["min"], max=scale["max"])
            else:
                answers[item_id] = value
        elif kind == "single":
            if len(values) == 1 and values[0] in item["options"]:
                answers[item_id] = values[0]
            else:
                errors[item_id] = MSG_OPTION
        else:
            error = _multi_error(values, item)
            if error:
                errors[item_id] = error
            else:
                chosen = set(values)
                answers[item_id] = MULTI_SEPARATOR.join(o for o in item["options"] if o in chosen)
        _other_text(item, values, data, answers, errors)
    return answers, errors


def _other_text(item, values, data, answers, errors) -> None:
    """The optional text typed beside the item's "other" option, kept only when that option is chosen."""
    if "other" not in item or item["other"] not in values or item["id"] in errors:
        return
    typed = [v for v in _submitted(data, item["id"] + OTHER_SUFFIX) if v != ""]
    if not typed:
        return
    text = " ".join(typed[0].split())
    if len(text) > OTHER_MAX_LENGTH:
        errors[item["id"]] = f"Please describe it in at most {OTHER_MAX_LENGTH} characters."
        answers.pop(item["id"], None)
        return
    answers[item["id"] + OTHER_SUFFIX] = text


def _submitted(data: Any, name: str) -> list[str]:
    if hasattr(data, "getlist"):
        raw = data.getlist(name)
    else:
        raw = data.get(name) if isinstance(data, Mapping) else None
        if raw is None:
            raw = []
        elif isinstance(raw, (str, int, float)):
            raw = [raw]
        else:
            raw = list(raw)
    # Non-string values (a JSON body, a test) are compared as text; bool is excluded so True never
    # passes as the scale value 1.
    return [v.strip() if isinstance(v, str) else ("\0bool" if isinstance(v, bool) else str(v)) for v in raw]


def _item_scale(definition: Mapping[str, Any], item: Mapping[str, Any]) -> Mapping[str, Any]:
    # instrument_load copies the shared scale onto each item; a hand-built definition may not have.
    scale = item.get("scale") or definition.get("scale")
    if scale is None:
        raise ValueError(f"item {item['id']!r} has no scale; validate the definition first")
    return scale


def _scale_value(values: list[str], scale: Mapping[str, Any]) -> int | None:
    if len(values) != 1 or not _INT_RE.match(values[0]):
        return None
    value = int(values[0])
    return value if scale["min"] <= value <= scale["max"] else None


def _multi_error(values: list[str], item: Mapping[str, Any]) -> str | None:
    options = item["options"]
    if any(v not in options for v in values):
        return MSG_MULTI_OPTION
    if len(set(values)) != len(values):
        return MSG_MULTI_DUPLICATE
    if len(values) > 1:
        for option in item.get("exclusive", []):
            if option in values:
                return MSG_EXCLUSIVE.format(option=option)
    return None


def multi_split(value: str, options: Iterable[str]) -> list[str]:
    """Split a stored multi answer back into its options; raise ``ValueError`` if it does not parse.

    Options may themselves contain ", " (e.g. "American Indian, Alaska Native, or other Indigenous
    culture"), so the string is consumed greedily with the longest option that matches, each followed
    by the separator (spaces around the separator are tolerated, as in the PluriHarms release).
    """
    by_length = sorted(set(options), key=len, reverse=True)
    parts: list[str] = []
    rest = value.strip()
    while rest:
        match = next((o for o in by_length if rest.startswith(o)), None)
        if match is None:
            raise ValueError(f"{value!r}: {rest!r} does not start with a known option")
        parts.append(match)
        rest = rest[len(match) :].lstrip()
        if rest:
            if not rest.startswith(MULTI_SEPARATOR):
                raise ValueError(f"{value!r}: expected {MULTI_SEPARATOR!r} after {match!r}")
            rest = rest[len(MULTI_SEPARATOR) :].lstrip()
            if not rest:
                raise ValueError(f"{value!r}: ends with a separator")
    return parts


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def instrument_score(definition: Mapping[str, Any], answers: Mapping[str, Any]) -> dict[str, float]:
    """Return ``{output name: mean of the subscale's items after reverse keying}``.

    A reverse-keyed answer ``x`` counts as ``min + max - x`` on the item's scale. An unanswered
    optional item is left out of its mean (NaN if none of the subscale's items was answered); a missing
    or out-of-scale answer to a required item raises ``ValueError``, because validated answers cannot
    have one.
    """
    values: dict[str, list[float]] = {name: [] for name in definition.get("subscales", {})}
    for item in definition["items"]:
        subscale = item.get("subscale")
        if subscale is None:
            continue
        answer = answers.get(item["id"])
        if answer is None:
            if item.get("required", True):
                raise ValueError(f"no answer to required item {item['id']!r}")
            continue
        scale = _item_scale(definition, item)
        if isinstance(answer, bool) or not isinstance(answer, int) or not scale["min"] <= answer <= scale["max"]:
            raise ValueError(f"answer {answer!r} to item {item['id']!r} is not on its scale")
        values[subscale].append(scale["min"] + scale["max"] - answer if item.get("reverse") else answer)
    return {
        spec["output"]: (sum(values[name]) / len(values[name]) if values[name] else math.nan)
        for name, spec in definition.get("subscales", {}).items()
    }


# --------------------------------------------------------------------------------------------------
# PluriHarms factor scores
# --------------------------------------------------------------------------------------------------


def load_factor_loadings(path: Path | None = None) -> pd.DataFrame:
    """Return the PluriHarms loadings: index = the 21 ``<subscale mean>_z_scored`` names, columns Factor_1..3."""
    loadings = pd.read_csv(path or FACTOR_LOADINGS_PATH, index_col=0)
    missing = [c for c in FACTOR_COLUMNS if c not in loadings.columns]
    if missing or loadings.empty or not all(str(i).endswith(Z_SUFFIX) for i in loadings.index):
        raise ValueError(f"{path or FACTOR_LOADINGS_PATH}: expected '..._z_scored' rows and columns {FACTOR_COLUMNS}")
    return loadings[FACTOR_COLUMNS].astype(float)


@functools.cache
def factor_inputs() -> tuple[str, ...]:
    """The 21 subscale means the shipped loadings expect, as instruments store them (no ``_z_scored``)."""
    return tuple(name[: -len(Z_SUFFIX)] for name in load_factor_loadings().index)


def factor_scores(
    subscale_means: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    *,
    loadings: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Compute Factor_1..3 from per-annotator subscale means, as the PluriHarms release defines them.

    ``subscale_means`` has one row per annotator and the 21 columns named as the loadings' index
    without ``_z_scored`` (``Schwartz_Power_mean`` … ``AI_literacy_score_mean``; other columns are
    ignored). Each column is z-scored with the mean and sample SD (ddof=1) of ``reference`` (default:
    ``subscale_means`` itself, i.e. within-sample standardisation as in the release), then
    ``score_k = sum_j z_j * loading_jk``. A NaN mean gives NaN scores for that row. Returns a DataFrame
    with the input's index and columns Factor_1..3. Raises ``ValueError`` naming missing columns or
    columns whose reference SD is zero or undefined.
    """
    loadings = load_factor_loadings() if loadings is None else loadings
    names = [str(i)[: -len(Z_SUFFIX)] if str(i).endswith(Z_SUFFIX) else str(i) for i in loadings.index]
    reference = subscale_means if reference is None else reference
    for label, frame in (("subscale_means", subscale_means), ("reference", reference)):
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise ValueError(f"{label} is missing columns: {', '.join(missing)}")
    values = subscale_means[names].astype(float)
    ref = reference[names].astype(float)
    mean = ref.mean()
    sd = ref.std(ddof=1)
    degenerate = [n for n in names if not np.isfinite(sd[n]) or sd[n] == 0]
    if degenerate:
        raise ValueError(
            "cannot z-score against a reference whose SD is zero or undefined (fewer than 2 values) "
            f"for: {', '.join(degenerate)}"
        )
    z = (values - mean) / sd
    scores = z.to_numpy() @ loadings[FACTOR_COLUMNS].to_numpy(dtype=float)
    return pd.DataFrame(scores, index=subscale_means.index, columns=FACTOR_COLUMNS)
