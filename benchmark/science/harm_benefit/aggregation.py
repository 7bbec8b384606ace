"""The aggregation model on trees: the 29 named weights, effect-count tables and the score H.

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

Each of the 29 values has a name (:data:`WEIGHT_NAMES`): its path in ``saved_params_decoded.json``,
where the reference layout was decoded. :data:`WEIGHT_LAYOUT` maps each :class:`AggregationWeights`
field to its slice of the flat array; code indexes the array only through these.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import sparse

from .schema import (
    ACTION_CATEGORIES,
    DATA_DIR,
    EXTENT_LEVELS,
    LIKELIHOOD_LEVELS,
    N_ACTIONS,
    TreeError,
    tree_validate,
)

REFERENCE_WEIGHTS_PATH = DATA_DIR / "saved_params" / "SafetyReporter_both_wildjailbreak.npy"
#: H of ``example_tree_fig2.json`` under the reference weights, as computed by the reference code.
REFERENCE_EXAMPLE_H = 0.51704094


def _ratio_names(levels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{low}/{high}" for low, high in itertools.pairwise(levels))


EXTENT_RATIO_NAMES = _ratio_names(EXTENT_LEVELS)  # minor/significant, significant/substantial, ...
LIKELIHOOD_RATIO_NAMES = _ratio_names(LIKELIHOOD_LEVELS)


def consecutive_slices(sizes: dict[str, int]) -> dict[str, slice]:
    """Name -> slice of a flat array holding the named groups one after another, in dict order."""
    slices, start = {}, 0
    for name, size in sizes.items():
        slices[name] = slice(start, start + size)
        start += size
    return slices


def _side_names(field_prefix: str, json_key: str) -> dict[str, tuple[str, ...]]:
    return {
        f"{field_prefix}_extent_ratios": tuple(f"{json_key}.extent_raw_ratios.{r}" for r in EXTENT_RATIO_NAMES),
        f"{field_prefix}_likelihood_ratios": tuple(
            f"{json_key}.likelihood_raw_ratios.{r}" for r in LIKELIHOOD_RATIO_NAMES
        ),
        f"{field_prefix}_discount": (f"{json_key}.downstream_discount",),
    }


# The order is that of the reference .npy files (unpack_params() in the reference src/aggregation.py).
_WEIGHT_GROUPS: dict[str, tuple[str, ...]] = {
    "action": tuple(f"action_weights.{c}" for c in ACTION_CATEGORIES),
    **_side_names("harm", "harms"),
    **_side_names("benefit", "benefits"),
    "benefit_weight": ("benefit_weight",),
}
#: The name of each of the 29 values: its path in ``saved_params_decoded.json`` (e.g.
#: ``"action_weights.Hate/Toxicity"``, ``"harms.likelihood_raw_ratios.medium/high"``, ``"benefit_weight"``).
WEIGHT_NAMES: tuple[str, ...] = tuple(name for names in _WEIGHT_GROUPS.values() for name in names)
#: :class:`AggregationWeights` field -> its slice of the flat 29-value array.
WEIGHT_LAYOUT: dict[str, slice] = consecutive_slices({k: len(v) for k, v in _WEIGHT_GROUPS.items()})
N_PARAMS = len(WEIGHT_NAMES)
_SCALAR_FIELDS = ("harm_discount", "benefit_discount", "benefit_weight")

ACTION = WEIGHT_LAYOUT["action"]
# one side's (extent ratios, likelihood ratios, discount): the columns of _side_tensor's Jacobian
HARM_SIDE = slice(WEIGHT_LAYOUT["harm_extent_ratios"].start, WEIGHT_LAYOUT["harm_discount"].stop)
BENEFIT_SIDE = slice(WEIGHT_LAYOUT["benefit_extent_ratios"].start, WEIGHT_LAYOUT["benefit_discount"].stop)
BENEFIT_WEIGHT = WEIGHT_LAYOUT["benefit_weight"].start
#: Values bounded to [0, 1]: all but the benefit weight.
UNIT_INTERVAL = np.arange(N_PARAMS) != BENEFIT_WEIGHT

_N_CAT = N_ACTIONS + 1  # last row: harm actions matching no category (weight 0)
_HARM_SHAPE = (_N_CAT, len(EXTENT_LEVELS), len(LIKELIHOOD_LEVELS), 2)
_BENEFIT_SHAPE = (len(EXTENT_LEVELS), len(LIKELIHOOD_LEVELS), 2)


# --------------------------------------------------------------------------------------------------
# Effect counts
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompiledTrees:
    """Effect counts per tree: ``harm[n, category(16 + unknown), extent, likelihood, immediate]`` and
    ``benefit[n, extent, likelihood, immediate]`` (immediate index 1 = immediate, 0 = downstream)."""

    harm: np.ndarray
    benefit: np.ndarray

    def __len__(self) -> int:
        return self.harm.shape[0]

    def subset(self, index) -> CompiledTrees:
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
                    harm[
                        n,
                        c,
                        EXTENT_LEVELS.index(e["extent"]),
                        LIKELIHOOD_LEVELS.index(e["likelihood"]),
                        int(e["immediacy"]),
                    ] += 1
            for action in entry["benefits"]:
                for e in action["effects"]:
                    benefit[
                        n,
                        EXTENT_LEVELS.index(e["extent"]),
                        LIKELIHOOD_LEVELS.index(e["likelihood"]),
                        int(e["immediacy"]),
                    ] += 1
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


@dataclass(eq=False)
class AggregationWeights:
    """The 29 weights of the aggregation model, in the layout of the reference ``.npy`` files.

    ``[0:16]`` action-category weights (order of :data:`ACTION_CATEGORIES`); ``[16:19]`` harm extent
    ratios minor/significant, significant/substantial, substantial/major; ``[19:21]`` harm likelihood
    ratios low/medium, medium/high; ``[21]`` harm downstream discount; ``[22:25]``, ``[25:27]``,
    ``[27]`` the same for benefits; ``[28]`` benefit weight. Everything is in [0, 1] except the benefit
    weight (>= 0). :data:`WEIGHT_LAYOUT` holds these slices and :data:`WEIGHT_NAMES` names each value.
    """

    action: np.ndarray
    harm_extent_ratios: np.ndarray
    harm_likelihood_ratios: np.ndarray
    harm_discount: float
    benefit_extent_ratios: np.ndarray
    benefit_likelihood_ratios: np.ndarray
    benefit_discount: float
    benefit_weight: float

    N_PARAMS: ClassVar[int] = N_PARAMS

    def __post_init__(self):
        for name, part in WEIGHT_LAYOUT.items():
            if name in _SCALAR_FIELDS:
                continue
            size = part.stop - part.start
            value = np.array(getattr(self, name), dtype=float).reshape(-1)
            if value.shape != (size,):
                raise ValueError(f"{name} needs {size} values, got {value.size}")
            setattr(self, name, value)
        for name in _SCALAR_FIELDS:
            setattr(self, name, float(getattr(self, name)))
        array = self.to_array()
        if not np.all(np.isfinite(array)):
            raise ValueError("weights must be finite")
        unit = array[UNIT_INTERVAL]
        if np.any(unit < 0) or np.any(unit > 1):
            raise ValueError("action weights, ratios and discounts must lie in [0, 1]")
        if self.benefit_weight < 0:
            raise ValueError("the benefit weight must be >= 0")

    @classmethod
    def from_array(cls, values: Sequence[float]) -> AggregationWeights:
        v = np.asarray(values, dtype=float).reshape(-1)
        if v.size != cls.N_PARAMS:
            raise ValueError(f"expected {cls.N_PARAMS} values, got {v.size}")
        return cls(
            **{name: v[part.start] if name in _SCALAR_FIELDS else v[part] for name, part in WEIGHT_LAYOUT.items()}
        )

    def to_array(self) -> np.ndarray:
        return np.concatenate([np.atleast_1d(getattr(self, name)) for name in WEIGHT_LAYOUT])

    def named(self) -> dict[str, float]:
        """``{name: value}`` for the 29 values, named as in :data:`WEIGHT_NAMES`."""
        return dict(zip(WEIGHT_NAMES, self.to_array().tolist()))

    @classmethod
    def reference(cls, path: str | Path | None = None) -> AggregationWeights:
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

    def replace(self, **changes) -> AggregationWeights:
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
                "extent_ratios": dict(zip(EXTENT_RATIO_NAMES, getattr(self, f"{prefix}_extent_ratios").tolist())),
                "likelihood_ratios": dict(
                    zip(LIKELIHOOD_RATIO_NAMES, getattr(self, f"{prefix}_likelihood_ratios").tolist())
                ),
                "downstream_discount": getattr(self, f"{prefix}_discount"),
                "extent_levels": dict(zip(EXTENT_LEVELS, getattr(self, f"{prefix}_extent_levels").tolist())),
                "likelihood_levels": dict(
                    zip(LIKELIHOOD_LEVELS, getattr(self, f"{prefix}_likelihood_levels").tolist())
                ),
            }

        return {
            "action_weights": dict(zip(ACTION_CATEGORIES, self.action.tolist())),
            "harms": side("harm"),
            "benefits": side("benefit"),
            "benefit_weight": self.benefit_weight,
        }

    @classmethod
    def from_dict(cls, data: dict) -> AggregationWeights:
        """Inverse of :meth:`to_dict` (reads the ratios; the derived levels are ignored)."""

        def side(name):
            part = data[name]
            return (
                [part["extent_ratios"][k] for k in EXTENT_RATIO_NAMES],
                [part["likelihood_ratios"][k] for k in LIKELIHOOD_RATIO_NAMES],
                part["downstream_discount"],
            )

        he, hl, hd = side("harms")
        be, bl, bd = side("benefits")
        action = [data["action_weights"][c] for c in ACTION_CATEGORIES]
        return cls(action, he, hl, hd, be, bl, bd, data["benefit_weight"])

    def allclose(self, other: AggregationWeights, atol: float = 1e-8) -> bool:
        return bool(np.allclose(self.to_array(), other.to_array(), atol=atol, rtol=0))

    def __repr__(self) -> str:
        return f"AggregationWeights({np.array2string(self.to_array(), precision=4, separator=', ')})"


# --------------------------------------------------------------------------------------------------
# Weight tables and scores
# --------------------------------------------------------------------------------------------------
def _side_tensor(theta: np.ndarray, side: str, jac: bool):
    """E (x) L (x) D over (extent, likelihood, immediacy) of `side` (``"harm"`` or ``"benefit"``), and its
    Jacobian wrt that side's (3 + 2 + 1) values in layout order."""
    theta_e = theta[WEIGHT_LAYOUT[f"{side}_extent_ratios"]]
    theta_l = theta[WEIGHT_LAYOUT[f"{side}_likelihood_ratios"]]
    d = theta[WEIGHT_LAYOUT[f"{side}_discount"].start]
    extent, likelihood = levels_from_ratios(theta_e), levels_from_ratios(theta_l)
    dvec = np.array([d, 1.0])  # immediacy index 0 = downstream (discounted), 1 = immediate
    t = np.einsum("x,k,i->xki", extent, likelihood, dvec)
    if not jac:
        return t, None
    de, dl = _levels_jacobian(np.asarray(theta_e, float)), _levels_jacobian(np.asarray(theta_l, float))
    j = np.concatenate(
        [
            np.einsum("xp,k,i->xkip", de, likelihood, dvec),
            np.einsum("x,kp,i->xkip", extent, dl, dvec),
            np.einsum("x,k,i->xki", extent, likelihood, np.array([1.0, 0.0]))[..., None],
        ],
        axis=-1,
    )
    return t, j


def weight_tables(theta: np.ndarray, jac: bool = False):
    """Flattened harm table (408), benefit table (24) and, if asked, their Jacobians wrt the 29 values.

    ``H = counts_harm . harm + counts_benefit . benefit`` for the flattened :class:`CompiledTrees` counts.
    """
    a = np.append(theta[ACTION], 0.0)
    side_h, jh = _side_tensor(theta, "harm", jac)
    side_b, jb = _side_tensor(theta, "benefit", jac)
    bw = theta[BENEFIT_WEIGHT]
    harm = np.einsum("c,xki->cxki", a, side_h).reshape(-1)
    benefit = (-bw * side_b).reshape(-1)
    if not jac:
        return harm, benefit, None, None
    j_harm = np.zeros(_HARM_SHAPE + (N_PARAMS,))
    eye = np.eye(_N_CAT)[:, :N_ACTIONS]
    j_harm[..., ACTION] = np.einsum("cp,xki->cxkip", eye, side_h)
    j_harm[..., HARM_SIDE] = np.einsum("c,xkip->cxkip", a, jh)
    j_benefit = np.zeros(_BENEFIT_SHAPE + (N_PARAMS,))
    j_benefit[..., BENEFIT_SIDE] = -bw * jb
    j_benefit[..., BENEFIT_WEIGHT] = -side_b
    return harm, benefit, j_harm.reshape(-1, N_PARAMS), j_benefit.reshape(-1, N_PARAMS)


def count_matrices(compiled: CompiledTrees) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """The harm and benefit counts as (trees x table cells) sparse matrices.

    Trees touch few cells of the 408 + 24 tables: sparse products are much faster than dense BLAS.
    """
    n = len(compiled)
    return sparse.csr_matrix(compiled.harm.reshape(n, -1)), sparse.csr_matrix(compiled.benefit.reshape(n, -1))


def tree_scores(weights: AggregationWeights, trees) -> np.ndarray:
    """H for each tree under `weights` (vectorized over trees)."""
    harm_counts, benefit_counts = count_matrices(compile_trees(trees))
    harm, benefit, _, _ = weight_tables(weights.to_array())
    return harm_counts @ harm + benefit_counts @ benefit
