"""Fitting the tree-level aggregation model to labels or ratings: losses, objective, global search.

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

The losses, target checks and thread limit here are shared with the feature-level variant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
from scipy import optimize
from scipy.special import expit

from .aggregation import (
    ACTION,
    BENEFIT_WEIGHT,
    N_PARAMS,
    UNIT_INTERVAL,
    AggregationWeights,
    CompiledTrees,
    compile_trees,
    count_matrices,
    tree_scores,
    weight_tables,
)

try:  # installed with scikit-learn
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

_ABS_EPS = 0.01
#: With calibration, the slope multiplies these weights (H is linear in them jointly).
SLOPE_SCALED = np.r_[np.arange(N_PARAMS)[ACTION], BENEFIT_WEIGHT]
#: With calibration, the intercept follows the 29 weights in the optimized vector.
INTERCEPT = N_PARAMS
_LBFGS_OPTIONS = {"ftol": 1e-13, "gtol": 1e-9}


def single_thread():
    """The fits are many tiny products; multithreaded BLAS makes them 10-20x slower on a busy machine."""
    return threadpool_limits(limits=1) if threadpool_limits is not None else contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------
# Losses shared by both models
# --------------------------------------------------------------------------------------------------
def loss_and_grad(z: np.ndarray, r: np.ndarray, w: np.ndarray, loss: str):
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


def targets_and_loss(y, target: str, rating_scale: float, loss: str) -> tuple[np.ndarray, str]:
    """Targets rescaled to [0, 1] and the loss that applies to them (Bernoulli for binary targets)."""
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


def sample_weights(sample_weight, n: int) -> np.ndarray:
    """One non-negative weight per item (all 1 when None)."""
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=float).reshape(-1)
    if w.shape != (n,) or np.any(w < 0):
        raise ValueError("sample_weight needs one non-negative value per item")
    return w


# --------------------------------------------------------------------------------------------------
# Tree-level fit as pure functions
# --------------------------------------------------------------------------------------------------
def tree_objective(
    compiled: CompiledTrees, r: np.ndarray, w: np.ndarray, loss: str, *, calibrate: bool, start: np.ndarray, l2: float
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """(value, gradient) of the penalized loss over the 29 raw values (+ intercept if calibrated).

    With calibration, the :data:`SLOPE_SCALED` entries are the *effective* action and benefit weights
    (slope x weight): H is linear in them jointly, so ``slope * H(weights) == H(effective weights)``.
    """
    harm_counts, benefit_counts = count_matrices(compiled)
    l2 = float(l2)

    def objective(x):
        theta = x[:N_PARAMS]
        harm, benefit, j_harm, j_benefit = weight_tables(theta, jac=True)
        h = harm_counts @ harm + benefit_counts @ benefit
        value, dz = loss_and_grad(h + x[INTERCEPT] if calibrate else h, r, w, loss)
        grad = (harm_counts.T @ dz) @ j_harm + (benefit_counts.T @ dz) @ j_benefit + l2 * (theta - start)
        value += 0.5 * l2 * np.sum((theta - start) ** 2)
        if calibrate:
            grad = np.append(grad, dz.sum())
        return value, grad

    return objective


def tree_bounds(*, calibrate: bool, benefit_weight_max: float | None) -> list[tuple[float | None, float | None]]:
    """L-BFGS-B bounds of the optimized vector (see :func:`tree_objective`)."""
    bounds: list[tuple[float | None, float | None]] = [(0.0, 1.0)] * N_PARAMS
    bounds[BENEFIT_WEIGHT] = (0.0, benefit_weight_max)
    if calibrate:
        # effective weights (slope * weight) are unbounded above
        for i in SLOPE_SCALED:
            bounds[i] = (0.0, None)
        bounds.append((None, None))
    return bounds


def global_search(objective, bounds, *, seed: int | None, maxiter: int) -> np.ndarray:
    """A differential-evolution start for L-BFGS-B within `bounds`."""
    # differential evolution needs a finite box: unbounded values get +-20 (effective action
    # weights: 20) and an unbounded benefit weight 5; the L-BFGS-B polish uses the true bounds
    finite = [(-20.0 if low is None else low, 20.0 if high is None else high) for low, high in bounds]
    if bounds[BENEFIT_WEIGHT][1] is None:
        finite[BENEFIT_WEIGHT] = (0.0, 5.0)
    result = optimize.differential_evolution(
        lambda x: objective(x)[0], finite, seed=seed, maxiter=maxiter, tol=1e-8, polish=False
    )
    return result.x


def tree_solution(x: np.ndarray, *, calibrate: bool) -> tuple[AggregationWeights, tuple[float, float]]:
    """The weights and (slope, intercept) of an optimized vector, back in the reference's gauge."""
    theta = np.clip(x[:N_PARAMS], 0.0, None)  # guard against round-off just outside the box
    slope, intercept = 1.0, 0.0
    if calibrate:
        # back to the gauge "largest action weight = 1" (the reference's own), slope carrying the rest
        slope = float(theta[ACTION].max()) if theta[ACTION].max() > 0 else 1.0
        theta[ACTION] /= slope
        theta[BENEFIT_WEIGHT] /= slope
        intercept = float(x[INTERCEPT])
    theta[UNIT_INTERVAL] = np.clip(theta[UNIT_INTERVAL], 0.0, 1.0)
    return AggregationWeights.from_array(theta), (slope, intercept)


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

    def __init__(
        self,
        weights: AggregationWeights | None = None,
        *,
        l2: float = 1.0,
        loss: str = "squared",
        calibrate: bool = True,
        rating_scale: float = 100.0,
        method: str = "L-BFGS-B",
        benefit_weight_max: float | None = None,
        max_iter: int = 2000,
        de_maxiter: int = 200,
        random_state: int | None = 0,
    ):
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
    def fit(self, trees, y, *, target: str = "binary", sample_weight=None) -> SafetyAnalystAggregator:
        """Fit the weights to binary labels or 0-``rating_scale`` ratings (see the module docstring)."""
        compiled = compile_trees(trees)
        n = len(compiled)
        r, loss = targets_and_loss(y, target, self.rating_scale, self.loss)
        if r.shape != (n,):
            raise ValueError(f"{n} trees but {r.size} targets")
        w = sample_weights(sample_weight, n)
        start = (self.weights if self.weights is not None else AggregationWeights.reference()).to_array()
        calibrate = bool(self.calibrate and target == "rating")
        objective = tree_objective(compiled, r, w, loss, calibrate=calibrate, start=start, l2=self.l2)
        bounds = tree_bounds(calibrate=calibrate, benefit_weight_max=self.benefit_weight_max)
        x0 = np.append(start, 0.0) if calibrate else start.copy()
        if self.method not in ("L-BFGS-B", "differential_evolution"):
            raise ValueError(f"unknown method {self.method!r}")
        with single_thread():
            if self.method == "differential_evolution":
                x0 = global_search(objective, bounds, seed=self.random_state, maxiter=self.de_maxiter)
            result = optimize.minimize(
                objective,
                x0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": self.max_iter, **_LBFGS_OPTIONS},
            )
        self.weights_, self.calibration_ = tree_solution(result.x, calibrate=calibrate)
        self.target_ = target
        self.loss_value_ = float(result.fun)
        self.n_iter_ = int(result.nit)
        self.converged_ = bool(result.success)
        return self
