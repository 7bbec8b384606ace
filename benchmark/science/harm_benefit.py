"""SafetyAnalyst harm-benefit trees, their aggregation model, fitting and steering.

SafetyAnalyst (Li et al., "SafetyAnalyst: Interpretable, transparent, and steerable LLM safety
moderation") has an LLM write a *harm-benefit tree* for a prompt and turns the tree into a
harmfulness score ``H`` with a small parameterized aggregation model: the prompt is harmful when
``H > 0`` and ``P(harmful) = sigmoid(H)``. The weights can be fitted to labels or ratings and set by
hand, which is what makes the model *steerable* toward a person, a group or a whole study. This module
is our own implementation of that aggregation (written from the public description and a reading of
``src/aggregation.py`` in github.com/jl3676/SafetyAnalyst; no code copied) plus a feature-level variant
for prompts that carry only category distributions (the PluriHarms release). Pure numpy/scipy/pandas.

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

The aggregation model (29 weights, layout of ``saved_params_decoded.json``)
-------------------------------------------------------------------------
::

    H =   sum over harm effects     a[c(action)] * E_h[extent] * L_h[likelihood] * d_h ** (1 - immediate)
        - b * sum over benefit effects           E_b[extent] * L_b[likelihood] * d_b ** (1 - immediate)

* ``a`` -- 16 action-category weights in [0, 1] (0 for an unknown category);
* ``E`` -- extent level weights derived from three ratios in [0, 1]: ``E[major] = 1`` and each lower
  level is its ratio times the next-higher level (``E[substantial] = r3``, ``E[significant] = r2 r3``,
  ``E[minor] = r1 r2 r3``), so the levels are monotone by construction;
* ``L`` -- likelihood level weights likewise from two ratios: ``L[high] = 1``, ``L[medium] = q2``,
  ``L[low] = q1 q2``;
* ``d`` -- the downstream discount in [0, 1] applied to non-immediate effects (``d ** 0 = 1``);
* ``b`` -- the benefit weight (>= 0; the reference bounds it to [0, 1] when fitting).

Harms and benefits have separate ``E``, ``L`` and ``d``. With the reference weights
(``saved_params/SafetyReporter_both_wildjailbreak.npy``) the example tree scores
``H = 0.51704094`` (:data:`REFERENCE_EXAMPLE_H`). ``H`` is linear in each weight group, so it is
computed by counting each tree's effects in a (category x extent x likelihood x immediacy) table once
and taking a dot product with the weight table; fitting uses the exact gradient.

Fitting (steering)
------------------
:meth:`SafetyAnalystAggregator.fit` runs scipy's L-BFGS-B on the 29 raw values (ratios, not levels)
with bounds [0, 1] (benefit weight >= 0), optionally after a differential-evolution global search as
the reference did. The objective is a sum over items plus an L2 pull ``l2/2 * ||theta - theta_0||^2``
toward the starting weights (a Gaussian prior: small samples stay near the start, large samples
dominate it):

* ``target="binary"`` -- labels in {0, 1} (or probabilities): Bernoulli negative log-likelihood of
  ``sigmoid(H)``, no intercept, exactly the reference objective;
* ``target="rating"`` -- 0-100 ratings (``rating_scale``), rescaled to r in [0, 1]; the prediction is
  ``sigmoid(s * H + c)`` with a fitted slope ``s >= 0`` and intercept ``c`` (``calibrate=True``) or
  ``sigmoid(H)`` (``calibrate=False``, so the weights alone remain a classifier with ``H > 0`` <=>
  predicted rating > 50). Because H is linear in the action and benefit weights jointly, the slope is
  not fitted separately: those 17 weights are fitted as effective weights ``s * weight`` (>= 0, pulled
  toward the start) and reported afterwards in the gauge "largest action weight = 1" (the reference's
  own), the slope carrying the rest -- an unpenalized slope would otherwise absorb every change and
  defeat the L2 pull. Loss ``"squared"`` (sum of squared errors), ``"absolute"`` (sum of
  ``sqrt(err^2 + 0.01^2)``, a smoothed absolute error that L-BFGS-B can handle and that targets
  conditional medians) or ``"cross_entropy"`` (r as a soft label).

Feature-level variant
---------------------
:class:`FeatureLevelSafetyAnalyst` works on prompts described only by category distributions -- the
PluriHarms release's ``action_*`` (16 columns, sums to 1) and ``effect_*`` (7 columns, sums to 1)::

    H = s * (p . a) * (q . w) + c

``p . a`` is the expected action weight under the prompt's action distribution; ``q . w`` the expected
effect-category weight (``w = 1``, i.e. ``q . w = 1``, unless ``use_effects=True``; the reference
multiplies action and effect weights per effect, and with only the marginals the expectation under
independence is the product). ``s >= 0`` and ``c`` are a fittable scale and offset. Because each
distribution sums to 1, a common shift of all action weights is indistinguishable from a change of
offset (and a common factor from a change of scale): only weight *differences* between categories are
identified when the offset is fitted; the L2 pull toward the starting weights picks the solution
closest to them. Scale and action weights are fitted together as effective weights ``s * a`` (the pull
acts on those) and reported with the largest action weight at 1. Column mapping
(:data:`ACTION_FEATURE_COLUMNS`, :data:`EFFECT_FEATURE_COLUMNS`): a column name is ``action_`` plus the
taxonomy name with every run of non-alphanumeric characters replaced by ``_`` (``"Violence &
Extremism"`` -> ``action_Violence_Extremism``, ``"Hate/Toxicity"`` -> ``action_Hate_Toxicity``,
``"Self-harm"`` -> ``action_Self_harm``, ``"Discrimination/Bias"`` -> ``action_Discrimination_Bias``);
the columns appear in the weight order. Effect columns are ``effect_`` plus the first word of the
harmful-effect taxonomy's level-1 names (``"Physical harm"`` -> ``effect_Physical``, ...,
``"Ecological harm"`` -> ``effect_Ecological``), also in the reference effect-weight order (whose
substring keys are ``"Physical harm"``, ``"Psychological"``, ``"Social"``, ``"Property"``,
``"Liberty"``, ``"Collective"``, ``"Ecological"``).

Not implemented: the reference's harm-only / benefit-only analyses (their 23-value weight files have an
undocumented layout) and per-effect-category weights on trees (its 36-value layout).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, sparse
from scipy.special import expit

DATA_DIR = Path(__file__).resolve().parents[1] / "datasets" / "safetyanalyst"
REFERENCE_WEIGHTS_PATH = DATA_DIR / "saved_params" / "SafetyReporter_both_wildjailbreak.npy"
EXAMPLE_TREE_PATH = DATA_DIR / "example_tree_fig2.json"
TAXONOMY_PATH = DATA_DIR / "taxonomy.json"
#: H of ``example_tree_fig2.json`` under the reference weights, as computed by the reference code.
REFERENCE_EXAMPLE_H = 0.51704094

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


def _column_suffix(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


#: PluriHarms feature column -> taxonomy category, in weight order.
ACTION_FEATURE_COLUMNS: dict[str, str] = {f"action_{_column_suffix(c)}": c for c in ACTION_CATEGORIES}
EFFECT_FEATURE_COLUMNS: dict[str, str] = {f"effect_{c.split()[0]}": c for c in EFFECT_CATEGORIES}

N_ACTIONS = len(ACTION_CATEGORIES)
N_EFFECTS = len(EFFECT_CATEGORIES)
_N_CAT = N_ACTIONS + 1  # last row: harm actions matching no category (weight 0)
_HARM_SHAPE = (_N_CAT, len(EXTENT_LEVELS), len(LIKELIHOOD_LEVELS), 2)
_BENEFIT_SHAPE = (len(EXTENT_LEVELS), len(LIKELIHOOD_LEVELS), 2)
_ABS_EPS = 0.01


try:  # installed with scikit-learn
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


def _single_thread():
    """The fits are many tiny products; multithreaded BLAS makes them 10-20x slower on a busy machine."""
    return threadpool_limits(limits=1) if threadpool_limits is not None else contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------
# Tree schema
# --------------------------------------------------------------------------------------------------
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
            actions = entry.get(kind)
            if actions is None:
                continue
            kpath = f"{epath}.{kind}"
            if not isinstance(actions, list):
                raise TreeError(kpath, f"expected a list, got {type(actions).__name__}")
            for j, action in enumerate(actions):
                apath = f"{kpath}[{j}]"
                if not isinstance(action, dict):
                    raise TreeError(apath, f"expected an object, got {type(action).__name__}")
                text = _require(action, "action", str, apath)
                effects = _require(action, "effects", list, apath)
                parsed_effects = []
                for k, effect in enumerate(effects):
                    fpath = f"{apath}.effects[{k}]"
                    if not isinstance(effect, dict):
                        raise TreeError(fpath, f"expected an object, got {type(effect).__name__}")
                    name = _require(effect, "effect", str, fpath)
                    for key in ("immediacy", "extent", "likelihood"):
                        if key not in effect:
                            raise TreeError(fpath, f"missing key {key!r}")
                    parsed_effects.append({
                        "effect": name,
                        "immediacy": _parse_immediacy(effect["immediacy"], f"{fpath}.immediacy"),
                        "extent": _parse_level(effect["extent"], EXTENT_LEVELS, f"{fpath}.extent"),
                        "likelihood": _parse_level(effect["likelihood"], LIKELIHOOD_LEVELS, f"{fpath}.likelihood"),
                    })
                parsed = {"action": text, "effects": parsed_effects}
                if kind == "harms":
                    parsed["category"] = action_category(text)
                normalized[kind].append(parsed)
        entries.append(normalized)
    return entries


@dataclass(frozen=True)
class CompiledTrees:
    """Effect counts per tree: ``harm[n, category(16 + unknown), extent, likelihood, immediate]`` and
    ``benefit[n, extent, likelihood, immediate]`` (immediate index 1 = immediate, 0 = downstream)."""

    harm: np.ndarray
    benefit: np.ndarray

    def __len__(self) -> int:
        return self.harm.shape[0]

    def subset(self, index) -> "CompiledTrees":
        return CompiledTrees(self.harm[index], self.benefit[index])


def compile_trees(trees: Iterable[Any] | CompiledTrees) -> CompiledTrees:
    """Validate each tree and count its effects (see :class:`CompiledTrees`)."""
    if isinstance(trees, CompiledTrees):
        return trees
    trees = list(trees)
    harm = np.zeros((len(trees),) + _HARM_SHAPE)
    benefit = np.zeros((len(trees),) + _BENEFIT_SHAPE)
    for n, tree in enumerate(trees):
        try:
            entries = tree_validate(tree)
        except TreeError as exc:
            raise TreeError(f"trees[{n}]{exc.path[1:]}", exc.detail) from None
        for entry in entries:
            for action in entry["harms"]:
                c = ACTION_CATEGORIES.index(action["category"]) if action["category"] else N_ACTIONS
                for e in action["effects"]:
                    harm[n, c, EXTENT_LEVELS.index(e["extent"]), LIKELIHOOD_LEVELS.index(e["likelihood"]),
                         int(e["immediacy"])] += 1
            for action in entry["benefits"]:
                for e in action["effects"]:
                    benefit[n, EXTENT_LEVELS.index(e["extent"]), LIKELIHOOD_LEVELS.index(e["likelihood"]),
                            int(e["immediacy"])] += 1
    return CompiledTrees(harm, benefit)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------
def levels_from_ratios(ratios: Sequence[float]) -> np.ndarray:
    """Level weights lowest-first from ratios ``level[i] / level[i+1]``; the top level is 1."""
    ratios = np.asarray(ratios, dtype=float)
    levels = np.ones(len(ratios) + 1)
    for i in range(len(ratios) - 1, -1, -1):
        levels[i] = ratios[i] * levels[i + 1]
    return levels


def _levels_jacobian(ratios: np.ndarray) -> np.ndarray:
    """d level[i] / d ratio[j]: the product of ratios i..end without j (0 when j < i)."""
    m = len(ratios)
    jac = np.zeros((m + 1, m))
    for i in range(m):
        for j in range(i, m):
            jac[i, j] = np.prod([ratios[k] for k in range(i, m) if k != j])
    return jac


_EXTENT_RATIO_NAMES = ("minor/significant", "significant/substantial", "substantial/major")
_LIKELIHOOD_RATIO_NAMES = ("low/medium", "medium/high")


@dataclass(eq=False)
class AggregationWeights:
    """The 29 weights of the aggregation model, in the layout of the reference ``.npy`` files.

    ``[0:16]`` action-category weights (order of :data:`ACTION_CATEGORIES`); ``[16:19]`` harm extent
    ratios minor/significant, significant/substantial, substantial/major; ``[19:21]`` harm likelihood
    ratios low/medium, medium/high; ``[21]`` harm downstream discount; ``[22:25]``, ``[25:27]``,
    ``[27]`` the same for benefits; ``[28]`` benefit weight. Everything is in [0, 1] except the benefit
    weight (>= 0).
    """

    action: np.ndarray
    harm_extent_ratios: np.ndarray
    harm_likelihood_ratios: np.ndarray
    harm_discount: float
    benefit_extent_ratios: np.ndarray
    benefit_likelihood_ratios: np.ndarray
    benefit_discount: float
    benefit_weight: float

    N_PARAMS: ClassVar[int] = 29

    def __post_init__(self):
        shapes = {"action": N_ACTIONS, "harm_extent_ratios": 3, "harm_likelihood_ratios": 2,
                  "benefit_extent_ratios": 3, "benefit_likelihood_ratios": 2}
        for name, size in shapes.items():
            value = np.array(getattr(self, name), dtype=float).reshape(-1)
            if value.shape != (size,):
                raise ValueError(f"{name} needs {size} values, got {value.size}")
            setattr(self, name, value)
        for name in ("harm_discount", "benefit_discount", "benefit_weight"):
            setattr(self, name, float(getattr(self, name)))
        array = self.to_array()
        if not np.all(np.isfinite(array)):
            raise ValueError("weights must be finite")
        unit = np.delete(array, 28)
        if np.any(unit < 0) or np.any(unit > 1):
            raise ValueError("action weights, ratios and discounts must lie in [0, 1]")
        if self.benefit_weight < 0:
            raise ValueError("the benefit weight must be >= 0")

    @classmethod
    def from_array(cls, values: Sequence[float]) -> "AggregationWeights":
        v = np.asarray(values, dtype=float).reshape(-1)
        if v.size != cls.N_PARAMS:
            raise ValueError(f"expected {cls.N_PARAMS} values, got {v.size}")
        return cls(v[0:16], v[16:19], v[19:21], v[21], v[22:25], v[25:27], v[27], v[28])

    def to_array(self) -> np.ndarray:
        return np.concatenate([
            self.action, self.harm_extent_ratios, self.harm_likelihood_ratios, [self.harm_discount],
            self.benefit_extent_ratios, self.benefit_likelihood_ratios, [self.benefit_discount],
            [self.benefit_weight],
        ])

    @classmethod
    def reference(cls, path: str | Path | None = None) -> "AggregationWeights":
        """SafetyAnalyst's published weights (``SafetyReporter_both_wildjailbreak.npy``)."""
        return cls.from_array(np.load(path or REFERENCE_WEIGHTS_PATH))

    # derived, monotone level weights (lowest level first)
    @property
    def harm_extent_levels(self) -> np.ndarray:
        return levels_from_ratios(self.harm_extent_ratios)

    @property
    def harm_likelihood_levels(self) -> np.ndarray:
        return levels_from_ratios(self.harm_likelihood_ratios)

    @property
    def benefit_extent_levels(self) -> np.ndarray:
        return levels_from_ratios(self.benefit_extent_ratios)

    @property
    def benefit_likelihood_levels(self) -> np.ndarray:
        return levels_from_ratios(self.benefit_likelihood_ratios)

    def action_weight(self, category: str | None) -> float:
        return 0.0 if category is None else float(self.action[ACTION_CATEGORIES.index(category)])

    def replace(self, **changes) -> "AggregationWeights":
        """A copy with some fields changed; ``action`` may be a dict ``{category: weight}``."""
        if isinstance(changes.get("action"), dict):
            action = self.action.copy()
            for category, value in changes["action"].items():
                action[ACTION_CATEGORIES.index(category)] = value
            changes["action"] = action
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Named, JSON-serializable weights (the raw ratios plus the derived levels, for reading)."""
        def side(prefix):
            return {
                "extent_ratios": dict(zip(_EXTENT_RATIO_NAMES, getattr(self, f"{prefix}_extent_ratios").tolist())),
                "likelihood_ratios": dict(zip(_LIKELIHOOD_RATIO_NAMES,
                                              getattr(self, f"{prefix}_likelihood_ratios").tolist())),
                "downstream_discount": getattr(self, f"{prefix}_discount"),
                "extent_levels": dict(zip(EXTENT_LEVELS, getattr(self, f"{prefix}_extent_levels").tolist())),
                "likelihood_levels": dict(zip(LIKELIHOOD_LEVELS,
                                              getattr(self, f"{prefix}_likelihood_levels").tolist())),
            }

        return {
            "action_weights": dict(zip(ACTION_CATEGORIES, self.action.tolist())),
            "harms": side("harm"),
            "benefits": side("benefit"),
            "benefit_weight": self.benefit_weight,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "AggregationWeights":
        """Inverse of :meth:`to_dict` (reads the ratios; the derived levels are ignored)."""
        def side(name):
            part = data[name]
            return ([part["extent_ratios"][k] for k in _EXTENT_RATIO_NAMES],
                    [part["likelihood_ratios"][k] for k in _LIKELIHOOD_RATIO_NAMES],
                    part["downstream_discount"])

        he, hl, hd = side("harms")
        be, bl, bd = side("benefits")
        action = [data["action_weights"][c] for c in ACTION_CATEGORIES]
        return cls(action, he, hl, hd, be, bl, bd, data["benefit_weight"])

    def allclose(self, other: "AggregationWeights", atol: float = 1e-8) -> bool:
        return bool(np.allclose(self.to_array(), other.to_array(), atol=atol, rtol=0))

    def __repr__(self) -> str:
        return f"AggregationWeights({np.array2string(self.to_array(), precision=4, separator=', ')})"


def _side_tensor(theta_e, theta_l, d, jac: bool):
    """E (x) L (x) D over (extent, likelihood, immediacy) and its Jacobian wrt (3 + 2 + 1) raw values."""
    e, l = levels_from_ratios(theta_e), levels_from_ratios(theta_l)
    dvec = np.array([d, 1.0])  # immediacy index 0 = downstream (discounted), 1 = immediate
    t = np.einsum("x,k,i->xki", e, l, dvec)
    if not jac:
        return t, None
    de, dl = _levels_jacobian(np.asarray(theta_e, float)), _levels_jacobian(np.asarray(theta_l, float))
    j = np.concatenate([
        np.einsum("xp,k,i->xkip", de, l, dvec),
        np.einsum("x,kp,i->xkip", e, dl, dvec),
        np.einsum("x,k,i->xki", e, l, np.array([1.0, 0.0]))[..., None],
    ], axis=-1)
    return t, j


def _weight_tables(theta: np.ndarray, jac: bool = False):
    """Flattened harm table (408), benefit table (24) and, if asked, their Jacobians wrt the 29 values."""
    a = np.append(theta[0:16], 0.0)
    side_h, jh = _side_tensor(theta[16:19], theta[19:21], theta[21], jac)
    side_b, jb = _side_tensor(theta[22:25], theta[25:27], theta[27], jac)
    bw = theta[28]
    harm = np.einsum("c,xki->cxki", a, side_h).reshape(-1)
    benefit = (-bw * side_b).reshape(-1)
    if not jac:
        return harm, benefit, None, None
    j_harm = np.zeros(_HARM_SHAPE + (29,))
    eye = np.eye(_N_CAT)[:, :16]
    j_harm[..., 0:16] = np.einsum("cp,xki->cxkip", eye, side_h)
    j_harm[..., 16:22] = np.einsum("c,xkip->cxkip", a, jh)
    j_benefit = np.zeros(_BENEFIT_SHAPE + (29,))
    j_benefit[..., 22:28] = -bw * jb
    j_benefit[..., 28] = -side_b
    return harm, benefit, j_harm.reshape(-1, 29), j_benefit.reshape(-1, 29)


def tree_scores(weights: AggregationWeights, trees) -> np.ndarray:
    """H for each tree under `weights` (vectorized over trees)."""
    compiled = compile_trees(trees)
    harm, benefit, _, _ = _weight_tables(weights.to_array())
    n = len(compiled)
    return (sparse.csr_matrix(compiled.harm.reshape(n, -1)) @ harm
            + sparse.csr_matrix(compiled.benefit.reshape(n, -1)) @ benefit)


# --------------------------------------------------------------------------------------------------
# Losses shared by both models
# --------------------------------------------------------------------------------------------------
def _loss_and_grad(z: np.ndarray, r: np.ndarray, w: np.ndarray, loss: str):
    """Sum of weighted losses of ``sigmoid(z)`` against targets r in [0, 1], and d/dz."""
    p = expit(z)
    if loss in ("bernoulli", "cross_entropy"):
        value = np.sum(w * (np.logaddexp(0.0, z) - r * z))
        return value, w * (p - r)
    err = p - r
    if loss == "squared":
        return np.sum(w * err**2), w * 2 * err * p * (1 - p)
    if loss == "absolute":
        root = np.sqrt(err**2 + _ABS_EPS**2)
        return np.sum(w * root), w * err / root * p * (1 - p)
    raise ValueError(f"unknown loss {loss!r}; use squared, absolute or cross_entropy")


def _targets(y, target: str, rating_scale: float, loss: str) -> tuple[np.ndarray, str]:
    y = np.asarray(y, dtype=float).reshape(-1)
    if not np.all(np.isfinite(y)):
        raise ValueError("targets contain NaN or infinity (drop Unsure ratings first)")
    if target == "binary":
        if np.any((y < 0) | (y > 1)):
            raise ValueError("binary targets must lie in [0, 1]")
        return y, "bernoulli"
    if target == "rating":
        if np.any((y < 0) | (y > rating_scale)):
            raise ValueError(f"ratings must lie in [0, {rating_scale}]")
        if loss not in ("squared", "absolute", "cross_entropy"):
            raise ValueError(f"unknown loss {loss!r}; use squared, absolute or cross_entropy")
        return y / rating_scale, loss
    raise ValueError(f"unknown target {target!r}; use 'binary' or 'rating'")


def _sample_weight(sample_weight, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=float).reshape(-1)
    if w.shape != (n,) or np.any(w < 0):
        raise ValueError("sample_weight needs one non-negative value per item")
    return w


# --------------------------------------------------------------------------------------------------
# Tree-level aggregator
# --------------------------------------------------------------------------------------------------
class SafetyAnalystAggregator:
    """The SafetyAnalyst aggregation model on harm-benefit trees, shaped like a scikit-learn estimator.

    Parameters (stored unchanged): ``weights`` -- the starting weights and the anchor of the L2 pull
    (None = the reference weights); ``l2`` -- strength of the pull, added to the *summed* loss (so
    data outweigh it as items accumulate; 1.0 suits Bernoulli labels, whose NLL curves by at most 0.25
    per item); ``loss`` -- for rating targets;
    ``calibrate`` -- fit slope and intercept for rating targets; ``rating_scale``; ``method`` --
    ``"L-BFGS-B"`` or ``"differential_evolution"`` (global search then L-BFGS-B polish);
    ``benefit_weight_max`` -- upper bound of the benefit weight (None = unbounded; the reference used 1;
    ignored with calibration, where the weights are rescaled by the slope);
    ``max_iter`` (L-BFGS-B); ``de_maxiter`` and ``random_state`` (differential evolution only).

    Learned: ``weights_``, ``calibration_`` (slope, intercept), ``target_``, ``loss_value_``,
    ``n_iter_``, ``converged_``.
    """

    def __init__(self, weights: AggregationWeights | None = None, *, l2: float = 1.0, loss: str = "squared",
                 calibrate: bool = True, rating_scale: float = 100.0, method: str = "L-BFGS-B",
                 benefit_weight_max: float | None = None, max_iter: int = 2000, de_maxiter: int = 200,
                 random_state: int | None = 0):
        self.weights = weights
        self.l2 = l2
        self.loss = loss
        self.calibrate = calibrate
        self.rating_scale = rating_scale
        self.method = method
        self.benefit_weight_max = benefit_weight_max
        self.max_iter = max_iter
        self.de_maxiter = de_maxiter
        self.random_state = random_state

    # -- scoring -----------------------------------------------------------------------------------
    @property
    def current_weights(self) -> AggregationWeights:
        if hasattr(self, "weights_"):
            return self.weights_
        return self.weights if self.weights is not None else AggregationWeights.reference()

    def score(self, tree) -> float:
        """H of one tree (> 0 means harmful)."""
        return float(self.score_many([tree])[0])

    def score_many(self, trees) -> np.ndarray:
        return tree_scores(self.current_weights, trees)

    def p_harmful(self, tree) -> float:
        return float(expit(self.score(tree)))

    def p_harmful_many(self, trees) -> np.ndarray:
        return expit(self.score_many(trees))

    def decision_function(self, trees) -> np.ndarray:
        """``slope * H + intercept`` (just H before fitting to ratings or without calibration)."""
        slope, intercept = getattr(self, "calibration_", (1.0, 0.0))
        return slope * self.score_many(trees) + intercept

    def predict(self, trees) -> np.ndarray:
        """1 = harmful (decision function > 0)."""
        return (self.decision_function(trees) > 0).astype(int)

    def predict_rating(self, trees) -> np.ndarray:
        """Predicted rating on ``rating_scale``: ``rating_scale * sigmoid(decision_function)``."""
        return self.rating_scale * expit(self.decision_function(trees))

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, trees, y, *, target: str = "binary", sample_weight=None) -> "SafetyAnalystAggregator":
        """Fit the weights to binary labels or 0-``rating_scale`` ratings (see the module docstring)."""
        compiled = compile_trees(trees)
        n = len(compiled)
        r, loss = _targets(y, target, self.rating_scale, self.loss)
        if r.shape != (n,):
            raise ValueError(f"{n} trees but {r.size} targets")
        w = _sample_weight(sample_weight, n)
        start = (self.weights if self.weights is not None else AggregationWeights.reference()).to_array()
        calibrate = bool(self.calibrate and target == "rating")
        objective = self._objective(compiled, r, w, loss, calibrate, start)

        bounds = [(0.0, 1.0)] * 28 + [(0.0, self.benefit_weight_max)]
        x0 = start.copy()
        if calibrate:
            # action and benefit weights become effective weights (slope * weight), unbounded above
            for i in list(range(16)) + [28]:
                bounds[i] = (0.0, None)
            bounds.append((None, None))
            x0 = np.append(x0, 0.0)
        if self.method not in ("L-BFGS-B", "differential_evolution"):
            raise ValueError(f"unknown method {self.method!r}")
        with _single_thread():
            if self.method == "differential_evolution":
                x0 = self._global_search(objective, bounds)
            result = optimize.minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                       options={"maxiter": self.max_iter, "ftol": 1e-13, "gtol": 1e-9})
        theta = np.clip(result.x[:29], 0.0, None)  # guard against round-off just outside the box
        slope, intercept = 1.0, 0.0
        if calibrate:
            # back to the gauge "largest action weight = 1" (the reference's own), slope carrying the rest
            slope = float(theta[:16].max()) if theta[:16].max() > 0 else 1.0
            theta[:16] /= slope
            theta[28] /= slope
            intercept = float(result.x[29])
        theta[:28] = np.clip(theta[:28], 0.0, 1.0)
        self.weights_ = AggregationWeights.from_array(theta)
        self.calibration_ = (slope, intercept)
        self.target_ = target
        self.loss_value_ = float(result.fun)
        self.n_iter_ = int(result.nit)
        self.converged_ = bool(result.success)
        return self

    def _objective(self, compiled: CompiledTrees, r, w, loss: str, calibrate: bool, start: np.ndarray):
        """(value, gradient) of the penalized loss over the 29 raw values (+ intercept if calibrated).

        With calibration, entries 0:16 and 28 are the *effective* action and benefit weights (slope x
        weight): H is linear in them jointly, so ``slope * H(weights) == H(effective weights)``.
        """
        n = len(compiled)
        # trees touch few cells of the 408 + 24 tables: sparse products are much faster than dense BLAS
        th = sparse.csr_matrix(compiled.harm.reshape(n, -1))
        tb = sparse.csr_matrix(compiled.benefit.reshape(n, -1))
        l2 = float(self.l2)

        def objective(x):
            theta = x[:29]
            harm, benefit, j_harm, j_benefit = _weight_tables(theta, jac=True)
            h = th @ harm + tb @ benefit
            value, dz = _loss_and_grad(h + x[29] if calibrate else h, r, w, loss)
            grad = (th.T @ dz) @ j_harm + (tb.T @ dz) @ j_benefit + l2 * (theta - start)
            value += 0.5 * l2 * np.sum((theta - start) ** 2)
            if calibrate:
                grad = np.append(grad, dz.sum())
            return value, grad

        return objective

    def _global_search(self, objective, bounds):
        # differential evolution needs a finite box: unbounded values get +-20 (effective action
        # weights: 20) and an unbounded benefit weight 5; the L-BFGS-B polish uses the true bounds
        finite = [(-20.0 if low is None else low, 20.0 if high is None else high) for low, high in bounds]
        if bounds[28][1] is None:
            finite[28] = (0.0, 5.0)
        result = optimize.differential_evolution(lambda x: objective(x)[0], finite, seed=self.random_state,
                                                 maxiter=self.de_maxiter, tol=1e-8, polish=False)
        return result.x


# --------------------------------------------------------------------------------------------------
# Feature-level variant
# --------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class FeatureWeights:
    """Weights of the feature-level model ``H = scale * (p . action) * (q . effect) + offset``."""

    action: np.ndarray
    effect: np.ndarray
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self):
        self.action = np.array(self.action, dtype=float).reshape(-1)
        self.effect = np.array(self.effect, dtype=float).reshape(-1)
        if self.action.shape != (N_ACTIONS,) or self.effect.shape != (N_EFFECTS,):
            raise ValueError(f"need {N_ACTIONS} action and {N_EFFECTS} effect weights")
        self.scale, self.offset = float(self.scale), float(self.offset)
        if np.any(self.action < 0) or np.any(self.action > 1) or np.any(self.effect < 0) or np.any(self.effect > 1):
            raise ValueError("action and effect weights must lie in [0, 1]")
        if self.scale < 0:
            raise ValueError("scale must be >= 0")

    @classmethod
    def reference(cls) -> "FeatureWeights":
        """Reference action weights, effect weights 1 (the reference uses none), scale 1, offset 0."""
        return cls.from_aggregation(AggregationWeights.reference())

    @classmethod
    def from_aggregation(cls, weights: AggregationWeights) -> "FeatureWeights":
        return cls(weights.action, np.ones(N_EFFECTS), 1.0, 0.0)

    def to_array(self) -> np.ndarray:
        return np.concatenate([self.action, self.effect, [self.scale, self.offset]])

    @classmethod
    def from_array(cls, values) -> "FeatureWeights":
        v = np.asarray(values, dtype=float).reshape(-1)
        return cls(v[:16], v[16:23], v[23], v[24])

    def to_dict(self) -> dict:
        return {
            "action_weights": dict(zip(ACTION_CATEGORIES, self.action.tolist())),
            "effect_weights": dict(zip(EFFECT_CATEGORIES, self.effect.tolist())),
            "scale": self.scale,
            "offset": self.offset,
        }

    def __repr__(self) -> str:
        return f"FeatureWeights({np.array2string(self.to_array(), precision=4, separator=', ')})"


def feature_matrices(X) -> tuple[np.ndarray, np.ndarray | None]:
    """(P, Q): action distributions (n x 16) and effect distributions (n x 7, None if absent).

    `X` is a DataFrame with the :data:`ACTION_FEATURE_COLUMNS` (and optionally the
    :data:`EFFECT_FEATURE_COLUMNS`) or an array with 16 or 16 + 7 columns in that order.
    """
    if isinstance(X, pd.DataFrame):
        missing = [c for c in ACTION_FEATURE_COLUMNS if c not in X.columns]
        if missing:
            raise ValueError(f"missing action columns: {', '.join(missing)}")
        P = X[list(ACTION_FEATURE_COLUMNS)].to_numpy(dtype=float)
        Q = X[list(EFFECT_FEATURE_COLUMNS)].to_numpy(dtype=float) if all(
            c in X.columns for c in EFFECT_FEATURE_COLUMNS) else None
    else:
        arr = np.asarray(X, dtype=float)
        if arr.ndim != 2 or arr.shape[1] not in (N_ACTIONS, N_ACTIONS + N_EFFECTS):
            raise ValueError(f"expected an array with {N_ACTIONS} or {N_ACTIONS + N_EFFECTS} columns")
        P, Q = arr[:, :N_ACTIONS], (arr[:, N_ACTIONS:] if arr.shape[1] > N_ACTIONS else None)
    if not np.all(np.isfinite(P)) or (Q is not None and not np.all(np.isfinite(Q))):
        raise ValueError("feature columns contain NaN")
    return P, Q


class FeatureLevelSafetyAnalyst:
    """SafetyAnalyst aggregation on category distributions instead of trees.

    ``H = scale * (p . action) * (q . effect) + offset``; ``P(harmful) = sigmoid(H)``; the predicted
    rating is ``rating_scale * sigmoid(H)``. Parameters (stored unchanged): ``weights`` (start and L2
    anchor; an :class:`AggregationWeights` contributes its action weights; None = reference);
    ``use_effects`` -- include and fit the effect term (otherwise ``q . effect = 1``); ``fit_scale``,
    ``fit_offset``; ``l2`` -- pull toward the start; ``l2_offset`` -- pull of the offset (0 = free);
    ``loss``; ``rating_scale``; ``max_iter``. The penalties are added to the *summed* loss; a squared
    error on the 0-1 scale curves little per item, so 0.01 is already a noticeable pull for ~100 items.

    Scale and action weights are fitted together as the effective weights ``v = scale * action``
    (``v >= 0``; ``v <= scale`` when the scale is fixed), and the L2 pull acts on ``v`` (so it is a pull
    on how much each category moves H; a free, unpenalized scale would otherwise absorb any change and
    let the weights collapse onto the anchor). After fitting, the weights are reported in the gauge
    "largest action weight = 1" -- the reference's own (its Self-harm weight is 1) -- with the scale
    carrying the rest; with ``fit_scale=False`` the start's scale is kept.
    Learned: ``weights_`` (:class:`FeatureWeights`), ``loss_value_``, ``converged_``.
    """

    def __init__(self, weights: FeatureWeights | AggregationWeights | None = None, *, use_effects: bool = False,
                 fit_scale: bool = True, fit_offset: bool = True, l2: float = 0.01, l2_offset: float = 0.0,
                 loss: str = "squared", rating_scale: float = 100.0, max_iter: int = 2000):
        self.weights = weights
        self.use_effects = use_effects
        self.fit_scale = fit_scale
        self.fit_offset = fit_offset
        self.l2 = l2
        self.l2_offset = l2_offset
        self.loss = loss
        self.rating_scale = rating_scale
        self.max_iter = max_iter

    def _start(self) -> FeatureWeights:
        if self.weights is None:
            return FeatureWeights.reference()
        if isinstance(self.weights, AggregationWeights):
            return FeatureWeights.from_aggregation(self.weights)
        return self.weights

    @property
    def current_weights(self) -> FeatureWeights:
        return self.weights_ if hasattr(self, "weights_") else self._start()

    def _effect_term(self, Q, effect) -> np.ndarray | float:
        if not self.use_effects:
            return 1.0
        if Q is None:
            raise ValueError("use_effects=True needs the effect_* columns")
        return Q @ effect

    def decision_function(self, X) -> np.ndarray:
        P, Q = feature_matrices(X)
        w = self.current_weights
        return w.scale * (P @ w.action) * self._effect_term(Q, w.effect) + w.offset

    def p_harmful(self, X) -> np.ndarray:
        return expit(self.decision_function(X))

    def predict_rating(self, X) -> np.ndarray:
        return self.rating_scale * self.p_harmful(X)

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)

    def fit(self, X, y, *, target: str = "rating", sample_weight=None) -> "FeatureLevelSafetyAnalyst":
        P, Q = feature_matrices(X)
        n = P.shape[0]
        r, loss = _targets(y, target, self.rating_scale, self.loss)
        if r.shape != (n,):
            raise ValueError(f"{n} rows but {r.size} targets")
        if self.use_effects and Q is None:
            raise ValueError("use_effects=True needs the effect_* columns")
        w = _sample_weight(sample_weight, n)
        start_weights = self._start()
        # optimize the effective action weights v = scale * action (see the class docstring): the L2
        # pull then measures real changes of H instead of being undone by an unpenalized scale
        start = np.concatenate([start_weights.scale * start_weights.action, start_weights.effect,
                                [start_weights.offset]])
        free = np.ones(24, dtype=bool)
        free[16:23] = self.use_effects
        free[23] = self.fit_offset
        penalty = np.concatenate([np.full(23, float(self.l2)), [float(self.l2_offset)]])
        Qm = Q if Q is not None else np.zeros((n, N_EFFECTS))

        def objective(x_free):
            x = start.copy()
            x[free] = x_free
            v, e, c = x[:16], x[16:23], x[23]
            pv = P @ v
            qe = Qm @ e if self.use_effects else np.ones(n)
            value, dz = _loss_and_grad(pv * qe + c, r, w, loss)
            grad = np.concatenate([(dz * qe) @ P, (dz * pv) @ Qm, [dz.sum()]])
            value += 0.5 * np.sum(penalty * (x - start) ** 2)
            grad += penalty * (x - start)
            return value, grad[free]

        v_max = None if self.fit_scale else start_weights.scale
        bounds_all = [(0.0, v_max)] * 16 + [(0.0, 1.0)] * 7 + [(None, None)]
        bounds = [b for b, f in zip(bounds_all, free) if f]
        with _single_thread():
            result = optimize.minimize(objective, start[free], jac=True, method="L-BFGS-B", bounds=bounds,
                                       options={"maxiter": self.max_iter, "ftol": 1e-13, "gtol": 1e-9})
        x = start.copy()
        x[free] = result.x
        v = np.clip(x[:16], 0.0, v_max)
        if self.fit_scale:
            scale = float(v.max()) if v.max() > 0 else 1.0  # gauge: the largest action weight is 1
        else:
            scale = start_weights.scale
        action = np.clip(v / scale, 0.0, 1.0) if scale > 0 else start_weights.action
        x = np.concatenate([action, np.clip(x[16:23], 0.0, 1.0), [scale, x[23]]])
        self.weights_ = FeatureWeights.from_array(x)
        self.loss_value_ = float(result.fun)
        self.converged_ = bool(result.success)
        return self


# --------------------------------------------------------------------------------------------------
# Steering
# --------------------------------------------------------------------------------------------------
@dataclass
class SteeringResult:
    """New weights fitted to a group, and the items whose side (``H > 0`` = harmful) changed."""

    weights: AggregationWeights | FeatureWeights
    old_score: np.ndarray
    new_score: np.ndarray
    model: SafetyAnalystAggregator | FeatureLevelSafetyAnalyst

    @property
    def changed(self) -> np.ndarray:
        """Boolean mask of items that cross H = 0."""
        return (self.old_score > 0) != (self.new_score > 0)

    @property
    def became_harmful(self) -> np.ndarray:
        return np.flatnonzero((self.old_score <= 0) & (self.new_score > 0))

    @property
    def became_benign(self) -> np.ndarray:
        return np.flatnonzero((self.old_score > 0) & (self.new_score <= 0))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"old_score": self.old_score, "new_score": self.new_score,
                             "old_harmful": self.old_score > 0, "new_harmful": self.new_score > 0,
                             "changed": self.changed})


def steer(weights: AggregationWeights | FeatureWeights | None, *, trees_or_features, ratings,
          target: str = "rating", l2: float | None = None, loss: str = "squared", sample_weight=None,
          use_effects: bool = False, rating_scale: float = 100.0) -> SteeringResult:
    """Fit weights to a group's ratings (or labels) starting from, and pulled toward, `weights`.

    With trees, the tree-level weights are refitted without calibration, so the new
    :class:`AggregationWeights` alone are the group's classifier (``H > 0`` <=> predicted rating > 50).
    With a DataFrame / array of category features, a :class:`FeatureLevelSafetyAnalyst` is refitted
    (its offset and scale are part of the model, so its H includes them). Ratings for the same item
    from several people may be given as repeated rows. ``l2`` (pull toward `weights`) defaults to the
    model's own default (1.0 for trees, 0.01 for features).
    """
    kwargs = {} if l2 is None else {"l2": l2}
    if isinstance(trees_or_features, (pd.DataFrame, np.ndarray)):
        start = FeatureWeights.reference() if weights is None else (
            FeatureWeights.from_aggregation(weights) if isinstance(weights, AggregationWeights) else weights)
        before = FeatureLevelSafetyAnalyst(start, use_effects=use_effects, rating_scale=rating_scale)
        model = FeatureLevelSafetyAnalyst(start, use_effects=use_effects, loss=loss, rating_scale=rating_scale,
                                          **kwargs)
        model.fit(trees_or_features, ratings, target=target, sample_weight=sample_weight)
        old, new = before.decision_function(trees_or_features), model.decision_function(trees_or_features)
    else:
        compiled = compile_trees(trees_or_features)
        start = weights if weights is not None else AggregationWeights.reference()
        if isinstance(start, FeatureWeights):
            raise TypeError("trees need AggregationWeights")
        model = SafetyAnalystAggregator(start, loss=loss, calibrate=False, rating_scale=rating_scale, **kwargs)
        model.fit(compiled, ratings, target=target, sample_weight=sample_weight)
        old, new = tree_scores(start, compiled), model.score_many(compiled)
    return SteeringResult(model.weights_, np.asarray(old), np.asarray(new), model)


# --------------------------------------------------------------------------------------------------
# Data helpers
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_taxonomy() -> dict:
    return json.loads(TAXONOMY_PATH.read_text())


def load_example_tree() -> dict:
    """The hand-transcribed figure-2 tree (``prompt`` + ``harm_benefit_tree``)."""
    return json.loads(EXAMPLE_TREE_PATH.read_text())


def random_trees(n: int, *, seed: int | None = None, max_stakeholders: int = 3, max_actions: int = 2,
                 max_effects: int = 3, p_benefit: float = 0.5, p_unknown: float = 0.05) -> list[list[dict]]:
    """Random schema-valid trees built from the taxonomy (for simulations and tests)."""
    rng = np.random.default_rng(seed)
    taxonomy = load_taxonomy()
    harm_actions = [(top, mid, leaf) for top, mids in taxonomy["harmful_action_taxonomy"].items()
                    for mid, leaves in mids.items() for leaf in leaves]
    harm_effects = [leaf for leaves in taxonomy["harmful_effect_taxonomy"].values() for leaf in leaves]
    benefit_effects = [leaf for leaves in taxonomy["beneficial_effect_taxonomy"].values() for leaf in leaves]

    def effects(names):
        return [{"effect": str(rng.choice(names)), "immediacy": bool(rng.random() < 0.5),
                 "extent": str(rng.choice(EXTENT_LEVELS)).capitalize(),
                 "likelihood": str(rng.choice(LIKELIHOOD_LEVELS)).capitalize()}
                for _ in range(rng.integers(1, max_effects + 1))]

    trees = []
    for _ in range(n):
        tree = []
        for s in range(rng.integers(1, max_stakeholders + 1)):
            actions = []
            for _ in range(rng.integers(1, max_actions + 1)):
                if rng.random() < p_unknown:
                    text = "Unclassified harmful action"
                else:
                    top, mid, leaf = harm_actions[rng.integers(len(harm_actions))]
                    text = f"##{top}## #{mid}# {leaf.split('. ', 1)[-1]}"
                actions.append({"action": text, "effects": effects(harm_effects)})
            tree.append({"stakeholder": f"Stakeholder {s}", "harms": actions})
            if rng.random() < p_benefit:
                tree.append({"stakeholder": f"Stakeholder {s}", "benefits": [
                    {"action": "The response could inform the user.", "effects": effects(benefit_effects)}]})
        trees.append(tree)
    return trees


__all__ = [
    "ACTION_CATEGORIES", "ACTION_FEATURE_COLUMNS", "AggregationWeights", "CompiledTrees", "EFFECT_CATEGORIES",
    "EFFECT_FEATURE_COLUMNS", "EXTENT_LEVELS", "FeatureLevelSafetyAnalyst", "FeatureWeights", "LIKELIHOOD_LEVELS",
    "REFERENCE_EXAMPLE_H", "SafetyAnalystAggregator", "SteeringResult", "TreeError", "action_category",
    "compile_trees", "feature_matrices", "levels_from_ratios", "load_example_tree", "load_taxonomy",
    "random_trees", "steer", "tree_scores", "tree_validate",
]
