"""The feature-level variant: SafetyAnalyst aggregation on category distributions instead of trees.

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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import expit

from .aggregation import AggregationWeights, consecutive_slices
from .fitting import loss_and_grad, sample_weights, single_thread, targets_and_loss
from .schema import ACTION_CATEGORIES, EFFECT_CATEGORIES, N_ACTIONS, N_EFFECTS


def _column_suffix(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


#: PluriHarms feature column -> taxonomy category, in weight order.
ACTION_FEATURE_COLUMNS: dict[str, str] = {f"action_{_column_suffix(c)}": c for c in ACTION_CATEGORIES}
EFFECT_FEATURE_COLUMNS: dict[str, str] = {f"effect_{c.split()[0]}": c for c in EFFECT_CATEGORIES}

#: :class:`FeatureWeights` field -> its slice of :meth:`FeatureWeights.to_array`.
FEATURE_LAYOUT: dict[str, slice] = consecutive_slices(
    {"action": N_ACTIONS, "effect": N_EFFECTS, "scale": 1, "offset": 1}
)
# The vector the fit optimizes: effective action weights (scale * action), effect weights, offset.
_FIT_LAYOUT = consecutive_slices({"effective_action": N_ACTIONS, "effect": N_EFFECTS, "offset": 1})
_FIT_ACTION, _FIT_EFFECT = _FIT_LAYOUT["effective_action"], _FIT_LAYOUT["effect"]
_FIT_OFFSET = _FIT_LAYOUT["offset"].start
_N_FIT = _FIT_LAYOUT["offset"].stop


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
    def reference(cls) -> FeatureWeights:
        """Reference action weights, effect weights 1 (the reference uses none), scale 1, offset 0."""
        return cls.from_aggregation(AggregationWeights.reference())

    @classmethod
    def from_aggregation(cls, weights: AggregationWeights) -> FeatureWeights:
        return cls(weights.action, np.ones(N_EFFECTS), 1.0, 0.0)

    def to_array(self) -> np.ndarray:
        return np.concatenate([self.action, self.effect, [self.scale, self.offset]])

    @classmethod
    def from_array(cls, values) -> FeatureWeights:
        v = np.asarray(values, dtype=float).reshape(-1)
        layout = FEATURE_LAYOUT
        return cls(v[layout["action"]], v[layout["effect"]], v[layout["scale"].start], v[layout["offset"].start])

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
        Q = (
            X[list(EFFECT_FEATURE_COLUMNS)].to_numpy(dtype=float)
            if all(c in X.columns for c in EFFECT_FEATURE_COLUMNS)
            else None
        )
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

    def __init__(
        self,
        weights: FeatureWeights | AggregationWeights | None = None,
        *,
        use_effects: bool = False,
        fit_scale: bool = True,
        fit_offset: bool = True,
        l2: float = 0.01,
        l2_offset: float = 0.0,
        loss: str = "squared",
        rating_scale: float = 100.0,
        max_iter: int = 2000,
    ):
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

    def fit(self, X, y, *, target: str = "rating", sample_weight=None) -> FeatureLevelSafetyAnalyst:
        P, Q = feature_matrices(X)
        n = P.shape[0]
        r, loss = targets_and_loss(y, target, self.rating_scale, self.loss)
        if r.shape != (n,):
            raise ValueError(f"{n} rows but {r.size} targets")
        if self.use_effects and Q is None:
            raise ValueError("use_effects=True needs the effect_* columns")
        w = sample_weights(sample_weight, n)
        start_weights = self._start()
        # optimize the effective action weights v = scale * action (see the class docstring): the L2
        # pull then measures real changes of H instead of being undone by an unpenalized scale
        start = np.empty(_N_FIT)
        start[_FIT_ACTION] = start_weights.scale * start_weights.action
        start[_FIT_EFFECT] = start_weights.effect
        start[_FIT_OFFSET] = start_weights.offset
        free = np.ones(_N_FIT, dtype=bool)
        free[_FIT_EFFECT] = self.use_effects
        free[_FIT_OFFSET] = self.fit_offset
        penalty = np.full(_N_FIT, float(self.l2))
        penalty[_FIT_OFFSET] = float(self.l2_offset)
        Qm = Q if Q is not None else np.zeros((n, N_EFFECTS))

        def objective(x_free):
            x = start.copy()
            x[free] = x_free
            v, e, c = x[_FIT_ACTION], x[_FIT_EFFECT], x[_FIT_OFFSET]
            pv = P @ v
            qe = Qm @ e if self.use_effects else np.ones(n)
            value, dz = loss_and_grad(pv * qe + c, r, w, loss)
            grad = np.empty(_N_FIT)
            grad[_FIT_ACTION], grad[_FIT_EFFECT], grad[_FIT_OFFSET] = (dz * qe) @ P, (dz * pv) @ Qm, dz.sum()
            value += 0.5 * np.sum(penalty * (x - start) ** 2)
            grad += penalty * (x - start)
            return value, grad[free]

        v_max = None if self.fit_scale else start_weights.scale
        bounds_all = [(None, None)] * _N_FIT
        bounds_all[_FIT_ACTION] = [(0.0, v_max)] * N_ACTIONS
        bounds_all[_FIT_EFFECT] = [(0.0, 1.0)] * N_EFFECTS
        bounds = [b for b, f in zip(bounds_all, free) if f]
        with single_thread():
            result = optimize.minimize(
                objective,
                start[free],
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": self.max_iter, "ftol": 1e-13, "gtol": 1e-9},
            )
        x = start.copy()
        x[free] = result.x
        v = np.clip(x[_FIT_ACTION], 0.0, v_max)
        if self.fit_scale:
            scale = float(v.max()) if v.max() > 0 else 1.0  # gauge: the largest action weight is 1
        else:
            scale = start_weights.scale
        action = np.clip(v / scale, 0.0, 1.0) if scale > 0 else start_weights.action
        self.weights_ = FeatureWeights(action, np.clip(x[_FIT_EFFECT], 0.0, 1.0), scale, x[_FIT_OFFSET])
        self.loss_value_ = float(result.fun)
        self.converged_ = bool(result.success)
        return self
