"""Why ratings differ: linear mixed models of harm ratings on prompt features, annotator traits and
their interactions (PluriHarms RQ1–RQ3), with variance explained and a BIC ladder.

Input: the long ratings frame. Columns used: `annotator`, `prompt`, `rating` (NaN = Unsure, dropped),
the prompt features (`action_*`, `effect_*`, `value_topic_*`, optionally `harm_level`), the ten
demographic columns (encoded by `traits.encode_demographics`) and `Factor_1..3`.

Model (every RQ): rating = Xβ + a_annotator + b_prompt + e, with crossed random intercepts
a ~ N(0, σ²_a), b ~ N(0, σ²_p), e ~ N(0, σ²). Both intercepts are kept in every model, also in RQ1
and RQ2, which are often written with one: features vary only between prompts and traits only between annotators,
so leaving the other intercept out would treat 15,000 ratings as independent evidence about 150
prompts (or 100 annotators) and make the confidence intervals far too narrow. `random_effects=`
chooses otherwise (e.g. ("annotator",) reproduces "random intercept per annotator" alone).

Estimation is exact (RE)ML for crossed random intercepts, profiled as in lme4 (Bates, Mächler, Bolker
& Walker 2015, J. Stat. Softw. 67(1)): the deviance is a function of the relative standard deviations
θ only, evaluated through a block Cholesky factor in which the factor with more levels is eliminated
as a diagonal block, so a fit costs milliseconds on 15,000 ratings. statsmodels' `MixedLM` maximizes
the same likelihood (checked in the tests) and can be chosen with `engine="statsmodels"`, but treats a
crossed design as one group with dense variance-component matrices and is orders of magnitude slower.

Predictors are z-scored at their own level (features over prompts, traits over annotators, SD with
ddof=1); an interaction column is the product of the two z-scores. Coefficients are in rating points
(0–100) per SD. Intervals and p-values are Wald (normal) from the REML fit; log-likelihood and BIC are
from the ML fit of the same model, so that models with different fixed effects can be compared.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, optimize, sparse, stats
from threadpoolctl import threadpool_limits

from .release import FACTOR_COLUMNS, FEATURE_PREFIXES
from .traits import encode_demographics, zscore

BLOCK_PREFIXES = ("action_", "effect_")  # each block sums to 1 per prompt
DEFAULT_RANDOM = ("annotator", "prompt")


# --------------------------------------------------------------------------- the estimator


@dataclass
class _Cross:
    """θ-independent cross products of the design, for the profiled deviance."""

    n: int
    p: int
    q1: int
    rest_sizes: list[int]
    n1: np.ndarray
    b0: np.ndarray  # Z1'[Z_rest, X]
    g0: np.ndarray  # [Z_rest, X]'[Z_rest, X]
    z1y: np.ndarray
    wy: np.ndarray
    yy: float
    by_count: dict | None = None  # the diagonal factor's levels pooled by their number of rows (`_pool_by_count`)


def _indicator(codes: np.ndarray, size: int) -> sparse.csr_matrix:
    n = len(codes)
    return sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, size))


@dataclass
class RowColumns:
    """Fixed-effect columns made on demand, a block of rows at a time, so that a design with a million
    rows and a hundred columns is never held whole. `make(start, stop)` returns the rows' values
    (stop − start, len(names)) as floats."""

    names: list[str]
    n: int
    make: object
    block_rows: int | None = None  # default: about 160 MB of float64 per block
    products: list = field(default_factory=list, repr=False)  # [(y, groups, cross products)] of past fits

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> RowColumns:
        values = frame.to_numpy(dtype=float)
        return cls([str(c) for c in frame.columns], len(frame), lambda a, b: values[a:b])

    def chunks(self):
        rows = self.block_rows or max(1, int(2e7 // max(1, len(self.names) + 1)))
        for start in range(0, self.n, rows):
            stop = min(self.n, start + rows)
            block = np.empty((stop - start, len(self.names) + 1))
            block[:, 0] = 1.0  # the intercept
            block[:, 1:] = self.make(start, stop)
            yield start, stop, block


def _cross_products(y: np.ndarray, columns: RowColumns, factors: list[np.ndarray], sizes: list[int]):
    """Every cross product of [intercept, X], the indicator matrices Z and y, accumulated over row blocks."""
    n, p = len(y), len(columns.names) + 1
    q1 = sizes[0] if factors else 0
    rest = [(c, s) for c, s in zip(factors[1:], sizes[1:])]
    q2 = sum(s for _, s in rest)
    xtx, xy = np.zeros((p, p)), np.zeros(p)
    z1x, zrx = np.zeros((q1, p)), np.zeros((q2, p))
    for start, stop, block in columns.chunks():
        xtx += block.T @ block
        xy += block.T @ y[start:stop]
        if q1:
            z1x += _indicator(factors[0][start:stop], q1).T @ block
        offset = 0
        for codes, size in rest:
            zrx[offset : offset + size] += _indicator(codes[start:stop], size).T @ block
            offset += size
    z1 = _indicator(factors[0], q1) if q1 else sparse.csr_matrix((n, 0))
    z_rest = (
        sparse.hstack([_indicator(c, size) for c, size in rest], format="csr") if rest else sparse.csr_matrix((n, 0))
    )
    return {
        "n": n,
        "q1": q1,
        "rest_sizes": [size for _, size in rest],
        "xtx": xtx,
        "xy": xy,
        "z1x": z1x,
        "zrx": zrx,
        "z1z_rest": np.asarray((z1.T @ z_rest).todense()),
        "z_rest_z_rest": np.asarray((z_rest.T @ z_rest).todense()),
        "n1": np.asarray(z1.sum(axis=0)).ravel(),
        "z1y": np.asarray(z1.T @ y).ravel(),
        "z_rest_y": np.asarray(z_rest.T @ y).ravel(),
        "yy": float(y @ y),
    }


def _collinear(xtx: np.ndarray, n: int, *, tol: float = 1e-9) -> list[int]:
    """Indices (0 = intercept, always kept) of columns that are not linear combinations of the
    intercept and earlier kept columns, from the cross-product matrix alone.

    Each column's centred sum of squares is compared with what is left of it after projecting out the
    kept columns before it; it is kept when the left-over share exceeds `tol`.
    """
    mean = xtx[0] / n
    cov = xtx - n * np.outer(mean, mean)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    kept, chol = [0], np.zeros((0, 0))
    biggest = max(float(sd[1:].max(initial=0.0)), 1e-300)
    for j in range(1, len(sd)):
        if sd[j] <= 1e-9 * biggest:
            continue
        others = kept[1:]
        corr = cov[others, j] / (sd[others] * sd[j]) if others else np.zeros(0)
        v = linalg.solve_triangular(chol, corr, lower=True, check_finite=False) if others else np.zeros(0)
        rest = 1.0 - v @ v
        if rest > tol:
            size = len(others)
            grown = np.zeros((size + 1, size + 1))
            grown[:size, :size] = chol
            grown[size, :size] = v
            grown[size, size] = math.sqrt(rest)
            chol = grown
            kept.append(j)
    return kept


def _select(products: dict, keep: list[int]) -> _Cross:
    """The θ-independent blocks of the profiled deviance for the kept columns."""
    xtx = products["xtx"][np.ix_(keep, keep)]
    z1x, zrx = products["z1x"][:, keep], products["zrx"][:, keep]
    q2 = zrx.shape[0]
    g0 = np.empty((q2 + len(keep), q2 + len(keep)))
    g0[:q2, :q2] = products["z_rest_z_rest"]
    g0[:q2, q2:] = zrx
    g0[q2:, :q2] = zrx.T
    g0[q2:, q2:] = xtx
    cross = _Cross(
        n=products["n"],
        p=len(keep),
        q1=products["q1"],
        rest_sizes=products["rest_sizes"],
        n1=products["n1"],
        b0=np.hstack([products["z1z_rest"], z1x]),
        g0=g0,
        z1y=products["z1y"],
        wy=np.concatenate([products["z_rest_y"], products["xy"][keep]]),
        yy=products["yy"],
    )
    cross.by_count = _pool_by_count(cross)
    return cross


def _pool_by_count(cp: _Cross) -> dict | None:
    """The diagonal factor's levels pooled by their number of rows n, when few distinct n exist.

    θ enters the elimination of the diagonal block only through d = θ²n + 1, so levels with equal n can
    be summed once: Σ b0ᵢb0ᵢ', Σ b0ᵢ z1yᵢ, Σ z1yᵢ² per distinct n. Each deviance then costs
    O(distinct n · q²) instead of O(levels · q²): 10,000 annotators who each rated 135–150 prompts are
    about 16 pools. None when pooling would not pay (or there is no diagonal factor), and below 1,000
    levels, where the direct sums cost little: the pooled sums agree with them only to rounding, which
    moves the optimizer's stopping point within its tolerance, so smaller studies keep their exact figures.
    """
    if cp.q1 < 1000:
        return None
    counts, level = np.unique(cp.n1, return_inverse=True)
    if len(counts) * 4 > cp.q1 or len(counts) * cp.b0.shape[1] ** 2 > 5e7:
        return None
    order = np.argsort(level, kind="stable")
    starts = np.searchsorted(level[order], np.arange(len(counts)))
    b0, z1y = cp.b0[order], cp.z1y[order]
    bounds = [*starts, len(order)]
    gram = np.stack([b0[a:b].T @ b0[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    return {
        "n": counts,
        "size": np.bincount(level, minlength=len(counts)).astype(float),
        "gram": gram,
        "by": np.add.reduceat(b0 * z1y[:, None], starts, axis=0),
        "yy": np.add.reduceat(z1y * z1y, starts),
    }


def _profiled(theta: np.ndarray, cp: _Cross, reml: bool, want: bool = False):
    """Profiled deviance (−2 log-likelihood) at relative SDs θ; with want=True, also the solution."""
    q2 = int(sum(cp.rest_sizes))
    theta1 = theta[0] if cp.q1 else 0.0
    scale = np.concatenate([np.repeat(theta[1:], cp.rest_sizes), np.ones(cp.p)]) if q2 else np.ones(cp.p)
    s = cp.g0 * np.outer(scale, scale)
    s[np.arange(q2), np.arange(q2)] += 1.0
    r2 = scale * cp.wy
    pooled = cp.by_count
    if pooled is not None:  # the same sums, over pools of levels with equal counts (`_pool_by_count`)
        inv_d = theta1**2 / (theta1**2 * pooled["n"] + 1.0)
        s -= np.tensordot(inv_d, pooled["gram"], axes=1) * np.outer(scale, scale)
        rhs = r2 - scale * (inv_d @ pooled["by"])
    elif cp.q1:
        d = theta1**2 * cp.n1 + 1.0
        b = theta1 * cp.b0 * scale[None, :]
        r1 = theta1 * cp.z1y
        s -= (b / d[:, None]).T @ b
        rhs = r2 - b.T @ (r1 / d)
    else:
        rhs = r2
    try:
        chol = linalg.cholesky(s, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return (np.inf, None) if want else np.inf
    w = linalg.cho_solve((chol, True), rhs, check_finite=False)
    if pooled is not None:
        # u1·r1 = Σᵢ (r1ᵢ − bᵢ·w) r1ᵢ / dᵢ with r1 = θ z1y and b = θ b0 diag(scale)
        fitted_u = inv_d @ pooled["yy"] - (scale * w) @ (inv_d @ pooled["by"])
        logdet_d = float(pooled["size"] @ np.log(theta1**2 * pooled["n"] + 1.0))
    elif cp.q1:
        fitted_u = ((r1 - b @ w) / d) @ r1
        logdet_d = float(np.log(d).sum())
    else:
        fitted_u, logdet_d = 0.0, 0.0
    prss = cp.yy - fitted_u - w @ r2
    if prss <= 0:
        return (np.inf, None) if want else np.inf
    diag = np.log(np.diag(chol))
    logdet_z = float(logdet_d + 2.0 * diag[:q2].sum())
    logdet_x = float(2.0 * diag[q2:].sum())
    if reml:
        dof = cp.n - cp.p
        dev = logdet_z + logdet_x + dof * (1.0 + math.log(2.0 * math.pi * prss / dof))
    else:
        dof = cp.n
        dev = logdet_z + dof * (1.0 + math.log(2.0 * math.pi * prss / dof))
    if not want:
        return dev
    return dev, {"w": w, "chol": chol, "prss": prss, "sigma2": prss / dof, "q2": q2}


class CrossedRandomInterceptsLM:
    """Linear mixed model with one random intercept per grouping factor (crossed or nested), exact (RE)ML.

    Shaped like a scikit-learn estimator: `fit(X, y, groups)` returns self; hyperparameters are stored
    unchanged; learned state ends in `_`.

    - `X`: DataFrame of fixed-effect columns, or a `RowColumns` (an `Intercept` column is added);
    - `y`: ratings (1-d, finite);
    - `groups`: DataFrame with one column per random intercept (any hashable labels), or None for OLS.

    Columns that are constant or linear combinations of the intercept and earlier columns are dropped
    (listed in `dropped_`) instead of making the fit fail.

    Learned: `params_`, `bse_` (Series), `cov_params_` (DataFrame), `variance_components_` (dict:
    one entry per group column and `residual`), `llf_` (maximized log-likelihood of the criterion:
    REML or ML), `theta_`, `n_obs_`, `fixed_fitted_` (Xβ), `dropped_`, `converged_`.
    """

    def __init__(self, *, reml: bool = True, engine: str = "profiled"):
        self.reml = reml
        self.engine = engine

    def fit(self, X, y, groups: pd.DataFrame | None = None) -> CrossedRandomInterceptsLM:
        columns = X if isinstance(X, RowColumns) else RowColumns.from_frame(X)
        y = np.asarray(y, dtype=float)
        groups = groups if groups is not None else pd.DataFrame(index=range(len(y)))
        if self.engine not in ("profiled", "statsmodels"):
            raise ValueError("engine must be 'profiled' or 'statsmodels'")
        # The matrices here are small; multi-threaded BLAS only adds hand-off overhead to each step.
        with threadpool_limits(limits=1, user_api="blas"):
            codes = [pd.factorize(groups[c], sort=False)[0] for c in groups.columns]
            sizes = [int(c.max()) + 1 for c in codes]
            order = sorted(range(len(codes)), key=lambda i: -sizes[i])  # eliminate the biggest factor diagonally
            products = next((done for seen_y, seen, done in columns.products if seen_y is y and seen is groups), None)
            if products is None:  # a REML and an ML fit of the same columns share one pass over the rows
                products = _cross_products(y, columns, [codes[i] for i in order], [sizes[i] for i in order])
                columns.products.append((y, groups, products))
            keep = _collinear(products["xtx"], len(y))
            names = ["Intercept", *columns.names]
            self.dropped_ = [names[j] for j in range(1, len(names)) if j not in set(keep)]
            if self.engine == "statsmodels":
                x = np.vstack([block[:, keep] for _, _, block in columns.chunks()])
                return self._fit_statsmodels(x, [names[j] for j in keep], y, groups)
            return self._fit_profiled(
                _select(products, keep), columns, keep, [names[j] for j in keep], y, groups, order
            )

    def _fit_profiled(self, cp: _Cross, columns: RowColumns, keep, names, y, groups, order):
        k = len(order)
        if k:
            start = np.full(k, 0.5)
            res = optimize.minimize(
                _profiled,
                start,
                args=(cp, self.reml),
                method="L-BFGS-B",
                bounds=[(0.0, 1e3)] * k,
                options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-8},
            )
            theta = np.asarray(res.x, dtype=float)
            self.converged_ = bool(res.success)
        else:
            theta = np.zeros(0)
            self.converged_ = True
        dev, sol = _profiled(theta, cp, self.reml, want=True)
        if sol is None:
            raise np.linalg.LinAlgError("the fixed-effect design is singular")
        q2 = sol["q2"]
        beta = sol["w"][q2:]
        l22 = sol["chol"][q2:, q2:]
        inv_l22 = linalg.solve_triangular(l22, np.eye(len(beta)), lower=True, check_finite=False)
        cov = sol["sigma2"] * inv_l22.T @ inv_l22
        sigma2 = sol["sigma2"]
        comps = {groups.columns[i]: float(theta[j] ** 2 * sigma2) for j, i in enumerate(order)}
        xtx = cp.g0[q2:, q2:]  # X'X of the kept columns; its first row (the intercept's) holds the column sums
        fitted_mean = float(xtx[0] @ beta) / max(len(y), 1)
        fitted_var = max(float(beta @ xtx @ beta) / max(len(y), 1) - fitted_mean**2, 0.0)

        def fitted() -> np.ndarray:
            if not len(y):
                return np.zeros(0)
            return np.concatenate([block[:, keep] @ beta for _, _, block in columns.chunks()])

        self._set(names, beta, cov, {c: comps[c] for c in groups.columns}, sigma2, -dev / 2.0, fitted, y)
        self.fixed_variance_ = fitted_var
        self.theta_ = {groups.columns[i]: float(theta[j]) for j, i in enumerate(order)}
        return self

    def _fit_statsmodels(self, x, names, y, groups):
        # statsmodels takes about a second to import and is only the cross-check engine.
        import statsmodels.api as sm  # noqa: PLC0415
        from statsmodels.regression.mixed_linear_model import VCSpec  # noqa: PLC0415

        # One group holding everything, one variance component per factor: statsmodels' way to write
        # crossed random intercepts (dense indicator matrices, so only for small data).
        names_vc, colnames, mats = [], [], []
        for c in groups.columns:
            codes, levels = pd.factorize(groups[c], sort=False)
            names_vc.append(str(c))
            colnames.append([[f"{c}[{level}]" for level in levels]])
            mats.append([np.eye(len(levels))[codes]])
        exog_vc = VCSpec(names_vc, colnames, mats) if names_vc else None
        model = sm.MixedLM(y, x, groups=np.zeros(len(y)), exog_vc=exog_vc)
        fit = model.fit(reml=self.reml, method=["lbfgs", "powell"])
        beta = np.asarray(fit.fe_params)
        cov = np.asarray(fit.cov_params())[: len(beta), : len(beta)]
        comps = dict(zip(names_vc, np.asarray(fit.vcomp, dtype=float))) if names_vc else {}
        self._set(
            names,
            beta,
            cov,
            {c: float(comps.get(c, np.nan)) for c in groups.columns},
            float(fit.scale),
            float(fit.llf),
            x @ beta,
            y,
        )
        self.fixed_variance_ = float(np.var(self._fitted))
        self.theta_ = {c: math.sqrt(v / fit.scale) for c, v in self.variance_components_.items() if c != "residual"}
        self.converged_ = bool(fit.converged)
        return self

    def _set(self, names, beta, cov, comps, sigma2, llf, fitted, y):
        self.params_ = pd.Series(beta, index=names)
        self.bse_ = pd.Series(np.sqrt(np.maximum(np.diag(cov), 0.0)), index=names)
        self.cov_params_ = pd.DataFrame(cov, index=names, columns=names)
        self.variance_components_ = {**comps, "residual": float(sigma2)}
        self.llf_ = float(llf)
        self.n_obs_ = len(y)
        self._fitted = fitted

    @property
    def fixed_fitted_(self) -> np.ndarray:
        """Xβ per row; made on first use (the profiled engine keeps only the cross products of X)."""
        if callable(self._fitted):
            self._fitted = self._fitted()
        return self._fitted

    @property
    def n_params_(self) -> int:
        return len(self.params_) + len(self.variance_components_)

    def r2_(self) -> tuple[float, float]:
        """(marginal, conditional) R² of Nakagawa & Schielzeth (2013, Methods Ecol. Evol. 4:133)."""
        var_f = self.fixed_variance_  # the variance of Xβ over rows, from X'X for the profiled engine
        var_r = sum(v for k, v in self.variance_components_.items() if k != "residual")
        total = var_f + var_r + self.variance_components_["residual"]
        return (var_f / total, (var_f + var_r) / total) if total > 0 else (math.nan, math.nan)

    def coefficients(self, *, level: float = 0.95) -> pd.DataFrame:
        """term, estimate, se, ci_low, ci_high, p (Wald z, two-sided)."""
        z = stats.norm.ppf(0.5 + level / 2.0)
        est, se = self.params_.to_numpy(), self.bse_.to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            p = 2.0 * stats.norm.sf(np.abs(est / se))
        return pd.DataFrame(
            {
                "term": self.params_.index,
                "estimate": est,
                "se": se,
                "ci_low": est - z * se,
                "ci_high": est + z * se,
                "p": p,
            }
        )


# --------------------------------------------------------------------------- designs


@dataclass
class Design:
    """The analysis sample and its z-scored predictors, built once and shared by all models."""

    y: np.ndarray
    annotator: np.ndarray  # row → annotator code
    prompt: np.ndarray  # row → prompt code
    groups: pd.DataFrame
    features: pd.DataFrame  # per prompt, z-scored
    traits: pd.DataFrame  # per annotator, z-scored
    notes: dict = field(default_factory=dict)
    made: dict = field(default_factory=dict, repr=False)  # `columns` already made, with their cross products

    def feature_rows(self) -> pd.DataFrame:
        return pd.DataFrame(self.features.to_numpy()[self.prompt], columns=self.features.columns)

    def trait_rows(self) -> pd.DataFrame:
        return pd.DataFrame(self.traits.to_numpy()[self.annotator], columns=self.traits.columns)

    def columns(self, *, features: bool = False, traits: bool = False, interactions: list[str] = ()) -> RowColumns:
        """The row-level fixed-effect columns (features, then traits, then `trait:feature` products),
        made a block of rows at a time. The same request returns the same object, so the RQ models and
        the BIC ladder fitting the same columns share their cross products."""
        key = (features, traits, tuple(interactions))
        if key not in self.made:
            self.made[key] = self._columns(features=features, traits=traits, interactions=interactions)
        return self.made[key]

    def _columns(self, *, features: bool, traits: bool, interactions) -> RowColumns:
        f_names = list(self.features.columns) if features else []
        t_names = list(self.traits.columns) if traits else []
        f_all, t_all = self.features.to_numpy(), self.traits.to_numpy()
        f_index = {c: j for j, c in enumerate(self.features.columns)}
        t_index = {c: j for j, c in enumerate(self.traits.columns)}
        pairs = [(t_index[t], f_index[f]) for t, f in (term.split(":", 1) for term in interactions)]
        f_sel, t_sel = [f_index[c] for c in f_names], [t_index[c] for c in t_names]

        def make(start: int, stop: int) -> np.ndarray:
            p_codes, a_codes = self.prompt[start:stop], self.annotator[start:stop]
            parts = [f_all[p_codes][:, f_sel], t_all[a_codes][:, t_sel]]
            if pairs:
                parts.append(np.column_stack([t_all[a_codes, t] * f_all[p_codes, f] for t, f in pairs]))
            return np.hstack(parts)

        return RowColumns([*f_names, *t_names, *interactions], len(self.y), make)


def _drop_collinear(frame: pd.DataFrame, *, tol: float = 1e-9) -> tuple[pd.DataFrame, list[str]]:
    """Drop constant columns and columns that are linear combinations of the intercept and earlier ones."""
    if frame.shape[1] == 0:
        return frame, []
    x = np.column_stack([np.ones(len(frame)), frame.to_numpy(dtype=float)])
    keep = _collinear(x.T @ x, len(frame), tol=tol)
    names = [frame.columns[j - 1] for j in keep[1:]]
    return frame[names], [c for c in frame.columns if c not in set(names)]


def build_design(
    df: pd.DataFrame,
    *,
    features: list[str] | None = None,
    traits: list[str] | None = None,
    include_harm_level: bool = False,
    race: str = "indicators",
    trait_missing: str = "impute",
    random_effects: tuple[str, ...] = DEFAULT_RANDOM,
) -> Design:
    """The analysis sample: rated rows (Unsure dropped), z-scored features per prompt, traits per annotator.

    - `features`: feature columns (default: every `action_*`, `effect_*`, `value_topic_*` column, plus
      `harm_level` when `include_harm_level`); in each of the action and effect blocks, whose columns sum
      to 1 per prompt, the column with the largest mean (the most common category) is dropped as the
      reference; constant columns and columns collinear with earlier ones are dropped (listed in notes).
    - `traits`: annotator columns used as they are (numeric); default: `encode_demographics` of the
      demographic columns present (with `race`) plus `Factor_1..3`.
    - `trait_missing`: "impute" sets a missing z-scored trait to 0 (the mean), so every model uses the
      same ratings (needed for the BIC ladder); "drop" removes annotators with any missing trait.
    """
    rating = pd.to_numeric(df["rating"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    unsure = df["unsure"].fillna(False).to_numpy(dtype=bool) if "unsure" in df.columns else np.zeros(len(df), bool)
    unknown = set(random_effects) - {"annotator", "prompt"}
    if unknown:
        raise ValueError(f"random_effects can name 'annotator' and 'prompt', not {sorted(unknown)}")
    a_codes, a_labels = pd.factorize(df["annotator"], sort=False)
    p_codes, p_labels = pd.factorize(df["prompt"], sort=False)
    rows = np.flatnonzero(np.isfinite(rating) & ~unsure & (a_codes >= 0) & (p_codes >= 0))
    notes: dict = {"dropped_features": {}, "dropped_traits": {}}

    def first_rows(codes: np.ndarray, n: int) -> np.ndarray:
        first = np.full(n, len(codes), dtype=np.int64)
        known = codes >= 0
        np.minimum.at(first, codes[known], np.flatnonzero(known))
        return first

    first_p = first_rows(p_codes, len(p_labels))
    first_a = first_rows(a_codes, len(a_labels))

    if features is None:
        features = [c for c in df.columns if str(c).startswith(FEATURE_PREFIXES)]
        if include_harm_level and "harm_level" in df.columns:
            features = ["harm_level", *features]
    prompt_table = df[features].iloc[first_p].reset_index(drop=True).apply(pd.to_numeric, errors="coerce").astype(float)
    for prefix in BLOCK_PREFIXES:
        block = [c for c in prompt_table.columns if str(c).startswith(prefix)]
        if len(block) > 1 and np.allclose(prompt_table[block].sum(axis=1), 1.0, atol=1e-6):
            reference = str(prompt_table[block].mean().idxmax())
            prompt_table = prompt_table.drop(columns=reference)
            notes["dropped_features"][reference] = f"reference category of the {prefix}* block (its columns sum to 1)"
    if prompt_table.isna().any().any():
        bad = [c for c in prompt_table.columns if prompt_table[c].isna().any()]
        raise ValueError(f"prompt features with missing values: {bad[:5]}")
    constant = [c for c in prompt_table.columns if prompt_table[c].std() == 0 or not np.isfinite(prompt_table[c].std())]
    for c in constant:
        notes["dropped_features"][c] = "constant across prompts"
    feat_z = zscore(prompt_table.drop(columns=constant))
    feat_z, collinear = _drop_collinear(feat_z)
    for c in collinear:
        notes["dropped_features"][c] = "collinear with other features"

    if traits is None:
        demo = encode_demographics(df.iloc[first_a].reset_index(drop=True), race=race)
        factors = df[[c for c in FACTOR_COLUMNS if c in df.columns]].iloc[first_a].reset_index(drop=True)
        trait_table = pd.concat([demo, factors.apply(pd.to_numeric, errors="coerce")], axis=1).astype(float)
    else:
        trait_table = (
            df[traits].iloc[first_a].reset_index(drop=True).apply(pd.to_numeric, errors="coerce").astype(float)
        )
    constant = [c for c in trait_table.columns if not (trait_table[c].std() > 0)]
    for c in constant:
        notes["dropped_traits"][c] = "constant across annotators"
    trait_z = zscore(trait_table.drop(columns=constant))
    missing = trait_z.isna()
    notes["trait_missing"] = trait_missing
    notes["annotators_with_missing_traits"] = int(missing.any(axis=1).sum())
    if trait_missing == "impute":
        trait_z = trait_z.fillna(0.0)
    elif trait_missing == "drop":
        bad = np.flatnonzero(missing.any(axis=1).to_numpy())
        rows = rows[~np.isin(a_codes[rows], bad)]
        trait_z = trait_z.fillna(0.0)  # those annotators have no rows left
    else:
        raise ValueError("trait_missing must be 'impute' or 'drop'")
    trait_z, collinear = _drop_collinear(trait_z)
    for c in collinear:
        notes["dropped_traits"][c] = "collinear with other traits"

    groups = pd.DataFrame({name: (a_codes if name == "annotator" else p_codes)[rows] for name in random_effects})
    return Design(
        y=rating[rows],
        annotator=a_codes[rows],
        prompt=p_codes[rows],
        groups=groups,
        features=feat_z.set_axis(pd.Index(p_labels)[: len(feat_z)], axis=0),
        traits=trait_z.set_axis(pd.Index(a_labels)[: len(trait_z)], axis=0),
        notes=notes,
    )


# --------------------------------------------------------------------------- RQ models


def _formula(terms: list[str], random_effects) -> str:
    fixed = " + ".join(["1", *terms])
    rand = " + ".join(f"(1 | {g})" for g in random_effects)
    return f"rating ~ {fixed}" + (f" + {rand}" if rand else "")


def _summary(name: str, columns: RowColumns, design: Design, engine: str, extra: dict | None = None) -> dict:
    started = time.perf_counter()
    reml = CrossedRandomInterceptsLM(reml=True, engine=engine).fit(columns, design.y, design.groups)
    ml = CrossedRandomInterceptsLM(reml=False, engine=engine).fit(columns, design.y, design.groups)
    r2m, r2c = reml.r2_()
    n = reml.n_obs_
    terms = list(reml.params_.index[1:])
    out = {
        "model": name,
        "formula": _formula(terms, design.groups.columns),
        "terms": terms,
        "dropped_terms": reml.dropped_,
        "random_effects": list(design.groups.columns),
        "n": int(n),
        "n_annotators": int(len(np.unique(design.annotator))),
        "n_prompts": int(len(np.unique(design.prompt))),
        "r2_marginal": r2m,
        "r2_conditional": r2c,
        "variance_components": reml.variance_components_,
        "loglik": ml.llf_,
        "reml_loglik": reml.llf_,
        "n_params": ml.n_params_,
        "bic": -2.0 * ml.llf_ + ml.n_params_ * math.log(n),
        "aic": -2.0 * ml.llf_ + 2.0 * ml.n_params_,
        "converged": bool(reml.converged_ and ml.converged_),
        "coefficients": reml.coefficients().to_dict(orient="records"),
        "engine": engine,
        "seconds": None,
    }
    if extra:
        out.update(extra)
    out["seconds"] = time.perf_counter() - started
    return out


def _residualize(matrix: np.ndarray, design: Design) -> np.ndarray:
    """Residuals of every column on annotator and prompt indicators (two-way fixed effects), exactly.

    The normal equations [D_a C; C' D_p][a; b] = [Z_a'Y; Z_p'Y] are solved by eliminating the factor
    with more levels (a diagonal block) and solving the other factor's Schur complement by least squares
    (it is singular by one: a constant can move between the factors), for all columns at once.
    """
    y = np.asarray(matrix, dtype=float)
    codes = [design.annotator, design.prompt]
    sizes = [int(c.max()) + 1 for c in codes]
    big, small = (0, 1) if sizes[0] >= sizes[1] else (1, 0)
    z_big, z_small = _indicator(codes[big], sizes[big]), _indicator(codes[small], sizes[small])
    n_big = np.maximum(np.asarray(z_big.sum(axis=0)).ravel(), 1.0)
    n_small = np.asarray(z_small.sum(axis=0)).ravel()
    cross = np.asarray((z_big.T @ z_small).todense())
    zb_y, zs_y = z_big.T @ y, z_small.T @ y
    schur = np.diag(n_small) - cross.T @ (cross / n_big[:, None])
    rhs = zs_y - cross.T @ (zb_y / n_big[:, None])
    b_small = np.linalg.lstsq(schur, rhs, rcond=None)[0]
    a_big = (zb_y - cross @ b_small) / n_big[:, None]
    return y - z_big @ a_big - z_small @ b_small


def _eligible_traits(traits: pd.DataFrame, min_group_size: int) -> tuple[list[str], dict]:
    """Traits that may enter an interaction: a categorical trait (at most two observed levels, e.g. a
    0/1 indicator; an imputed missing value sits at the mean and is not a level) needs at least
    `min_group_size` annotators in each level, else a term would rest on a handful of people."""
    kept, left_out = [], {}
    for column in traits.columns:
        values = traits[column].to_numpy(dtype=float)
        levels, counts = np.unique(np.round(values[values != 0.0], 9), return_counts=True)
        if len(levels) <= 2 and len(levels) and counts.min() < min_group_size:
            left_out[column] = f"a level has {int(counts.min())} annotators (< {min_group_size})"
        else:
            kept.append(column)
    return kept, left_out


def _lasso_cv_select(x, y, groups, *, n_folds, alphas, rule, fold_seed):
    """Lasso path cross-validated with folds of whole annotators; returns (coef at the chosen penalty, index)."""
    from sklearn.linear_model import lasso_path  # noqa: PLC0415  (scikit-learn is slow to import: not at URL-conf time)

    labels = np.unique(groups)
    fold_of = np.random.default_rng(fold_seed).permutation(np.arange(len(labels)) % n_folds)
    row_fold = fold_of[np.searchsorted(labels, groups)]
    # One Gram matrix per fold; their sum is the whole Gram, and a fold's training Gram is the rest.
    folds = [np.flatnonzero(row_fold == k) for k in range(n_folds)]
    folds = [rows for rows in folds if len(rows)]
    grams = [(xr.T @ xr, xr.T @ yr) for xr, yr in ((x[rows], y[rows]) for rows in folds)]
    gram, xy = sum(g for g, _ in grams), sum(v for _, v in grams)
    errors = []
    for rows, (g, v) in zip(folds, grams):
        if len(folds) < 2:
            break
        train = np.ones(len(y), dtype=bool)
        train[rows] = False
        _, coefs, _ = lasso_path(
            x[train],
            y[train],
            alphas=alphas,
            precompute=gram - g,
            Xy=xy - v,
            tol=1e-4,
            max_iter=2000,
            check_input=False,  # arrays made here, finite, one dtype: no copy of X in Fortran order per call
        )
        errors.append(((y[rows][:, None] - x[rows] @ coefs) ** 2).mean(axis=0))
    errors = np.asarray(errors)
    mean, se = errors.mean(axis=0), errors.std(axis=0, ddof=1) / math.sqrt(len(errors))
    best = int(mean.argmin())
    pick = int(np.flatnonzero(mean <= mean[best] + se[best]).min()) if rule == "1se" else best
    _, coefs, _ = lasso_path(
        x, y, alphas=alphas[: pick + 1], precompute=gram, Xy=xy, tol=1e-4, max_iter=2000, check_input=False
    )
    return coefs[:, -1], pick


def select_interactions(
    design: Design,
    *,
    seed: int = 0,
    cv: int = 5,
    n_alphas: int = 20,
    eps: float = 1e-2,
    rule: str = "min",
    n_resamples: int = 20,
    threshold: float = 0.8,
    min_group_size: int = 10,
    max_interactions: int = 25,
    max_cells: float = 4e7,
) -> dict:
    """Trait × feature interactions chosen by stability selection over annotator-grouped lasso fits.

    Candidates: every product z(trait) × z(feature) of an eligible trait (`_eligible_traits`: each
    level of a categorical trait held by at least `min_group_size` annotators). The rating and every
    candidate are residualized on annotator and prompt indicators (two-way fixed effects,
    Frisch–Waugh–Lovell), so the lasso sees only what main effects and random intercepts cannot
    explain; candidates are then scaled to unit SD.

    Stability selection (Meinshausen & Bühlmann 2010, JRSS-B 72:417): `n_resamples` times, a random
    half of the annotators is drawn; on it, a lasso path (`n_alphas` penalties from the smallest that
    selects nothing down to `eps` times it) is cross-validated over `cv` folds of *whole annotators*
    (ratings of one person never straddle a fold), the penalty is chosen by `rule` ("min": the
    minimum CV error, a liberal choice per resample as stability selection intends; "1se": the
    largest within one SE of it), and the terms with nonzero coefficients are that resample's
    choice. A term is kept when chosen in at least `threshold` (0.8) of the resamples
    (at most `max_interactions`, most often chosen first). The other half of the annotators in each
    resample is held out: the chosen terms' coefficients (fitted on the half that chose them) are
    scored by the held-out annotators' Gaussian log-likelihood gain over no interaction,
    `heldout_loglik_gain` (for the kept terms, refitted on each resample's half and scored on the
    other half, mean over resamples; positive = the interactions generalize to new people).

    Resamples are drawn over annotators in sorted-label order, so neither the frame's row order nor
    the fold assignment of any single fit decides the result.  When rows × candidates exceeds
    `max_cells`, the rows of a seeded random subset of annotators are used (`rows_used`).
    """
    f_names = list(design.features.columns)
    t_all = list(design.traits.columns)
    t_names, left_out = _eligible_traits(design.traits, min_group_size)
    info = {
        "n_candidates": len(f_names) * len(t_names),
        "selected": [],
        "selection_frequency": {},
        "traits_left_out": left_out,
        "seed": seed,
        "cv": cv,
        "cv_groups": "annotator",
        "rule": rule,
        "n_resamples": n_resamples,
        "threshold": threshold,
        "min_group_size": min_group_size,
        "rows_used": int(len(design.y)),
        "max_interactions": max_interactions,
        "method": "stability selection: lasso on half the annotators, CV over annotator folds, per resample",
    }
    if not f_names or not t_names:
        info["reason"] = "no features or no eligible traits"
        return info
    if rule not in ("1se", "min"):
        raise ValueError("rule must be '1se' or 'min'")
    labels = np.asarray(design.traits.index.astype(str))
    order = np.argsort(labels, kind="stable")  # annotator codes in sorted-label order
    rows = np.arange(len(design.y))
    if len(rows) * info["n_candidates"] > max_cells:
        share = max_cells / (len(rows) * info["n_candidates"])
        chosen = np.random.default_rng([seed, 1]).permutation(order)[: max(4, int(len(order) * share))]
        rows = rows[np.isin(design.annotator, chosen)]
        info["rows_used"] = int(len(rows))
    sub = Design(
        design.y[rows],
        design.annotator[rows],
        design.prompt[rows],
        design.groups.iloc[rows],
        design.features,
        design.traits,
    )
    t_index = [t_all.index(t) for t in t_names]
    f_rows = design.features.to_numpy()[sub.prompt]
    t_rows = design.traits.to_numpy()[sub.annotator][:, t_index]
    cand = (t_rows[:, :, None] * f_rows[:, None, :]).reshape(len(rows), -1)
    del f_rows, t_rows
    names = [f"{t}:{f}" for t in t_names for f in f_names]
    # annotator rank in sorted-label order: the unit of resampling and of the CV folds
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels))
    person = rank[sub.annotator]
    people = np.unique(person)
    with threadpool_limits(limits=1, user_api="blas"):
        both = _residualize(np.column_stack([sub.y, cand]), sub)
        del cand
        y, x = both[:, 0], both[:, 1:]
        del both
        sd = x.std(axis=0)
        usable = sd > 1e-8 * max(float(sd.max(initial=0.0)), 1e-300)
        # single precision for the many Gram products: selection, not estimation, happens here
        x = (x[:, usable] / sd[usable]).astype(np.float32)
        y = y.astype(np.float32)
        names = [n for n, u in zip(names, usable) if u]
        alpha_max = float(np.abs(x.T @ y).max()) / len(y)
        if not alpha_max > 0:
            info["reason"] = "nothing left to explain after the main effects"
            return info
        alphas = np.geomspace(alpha_max, alpha_max * eps, n_alphas)
        counts = np.zeros(len(names))
        picks, halves = [], []
        for r in range(n_resamples):
            rng = np.random.default_rng([seed, 2, r])
            half = np.sort(rng.permutation(people)[: len(people) // 2])
            inside = np.isin(person, half)
            halves.append(inside)
            coef, pick = _lasso_cv_select(
                x[inside],
                y[inside],
                person[inside],
                n_folds=min(cv, len(half)),
                alphas=alphas,
                rule=rule,
                fold_seed=[seed, 3, r],
            )
            picks.append(float(alphas[pick]))
            counts[np.flatnonzero(coef != 0)] += 1
        frequency = counts / n_resamples
        keep = np.flatnonzero(frequency >= threshold)
        keep = keep[np.argsort(-frequency[keep], kind="stable")][:max_interactions]
        # The kept terms judged on people who did not fit them: in each resample, coefficients fitted on
        # one half of the annotators, Gaussian log-likelihood gain on the other half.
        gains = []
        for inside in halves if len(keep) else []:
            out = ~inside
            xin = x[np.ix_(np.flatnonzero(inside), keep)].astype(float)
            xout = x[np.ix_(np.flatnonzero(out), keep)].astype(float)
            yin, yout = y[inside].astype(float), y[out].astype(float)
            gamma = np.linalg.lstsq(xin, yin, rcond=None)[0]
            resid = yin - xin @ gamma
            sigma2 = float(resid @ resid) / max(1, len(yin) - len(keep))
            resid_out = yout - xout @ gamma
            gains.append((float(yout @ yout) - float(resid_out @ resid_out)) / (2.0 * sigma2))
    info["selected"] = [names[i] for i in keep]
    info["selection_frequency"] = {
        names[i]: float(frequency[i]) for i in np.argsort(-frequency, kind="stable")[:25] if frequency[i] > 0
    }
    info["alpha_median"] = float(np.median(picks))
    info["heldout_loglik_gain"] = float(np.mean(gains)) if gains else None  # None: nothing kept
    info["heldout_gain_positive_share"] = float(np.mean(np.asarray(gains) > 0)) if gains else None
    return info


def _adjust(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Holm (family-wise) and Benjamini–Hochberg (false discovery rate) adjusted p-values; NaN kept."""
    from statsmodels.stats.multitest import multipletests  # noqa: PLC0415  (statsmodels is slow to import)

    p = np.asarray(p, dtype=float)
    holm, bh = np.full(len(p), np.nan), np.full(len(p), np.nan)
    finite = np.isfinite(p)
    if finite.any():
        holm[finite] = multipletests(p[finite], method="holm")[1]
        bh[finite] = multipletests(p[finite], method="fdr_bh")[1]
    return holm, bh


def adjust_trait_p_values(result: dict, traits: list[str]) -> dict:
    """Add `p_holm` and `p_bh` to the coefficient rows of the trait terms (corrected over those terms)."""
    rows = [row for row in result.get("coefficients", []) if row["term"] in set(traits)]
    holm, bh = _adjust(np.array([row["p"] for row in rows], dtype=float))
    for row, h, b in zip(rows, holm, bh):
        row["p_holm"], row["p_bh"] = float(h), float(b)
    result["multiple_comparisons"] = f"Holm and Benjamini–Hochberg over the {len(rows)} trait terms"
    return result


def _annotator_slope_sums(design: Design, r: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per annotator and feature: Σ (f − f̄) r and Σ (f − f̄)² over the annotator's rows, f̄ their mean f.

    Rows only enter through (annotator, prompt) cells, so with a dense enough design the sums come from the
    annotators × prompts table of counts and residual sums (a few annotators at a time), not from
    rows × features arrays; otherwise row by row.
    """
    f_all = design.features.to_numpy()
    n_a, (n_p, n_f) = len(counts), f_all.shape
    if n_a * n_p > 2e7:
        f_rows = f_all[design.prompt]
        per_annotator = _indicator(design.annotator, n_a).T.tocsr()
        centred = f_rows - (per_annotator @ f_rows / np.maximum(counts, 1)[:, None])[design.annotator]
        return per_annotator @ (centred * r[:, None]), per_annotator @ (centred**2)
    cell = design.annotator.astype(np.int64) * n_p + design.prompt
    n_cell = np.bincount(cell, minlength=n_a * n_p).reshape(n_a, n_p).astype(float)
    r_cell = np.bincount(cell, weights=r, minlength=n_a * n_p).reshape(n_a, n_p)
    mean_f = n_cell @ f_all / np.maximum(counts, 1)[:, None]
    sxy, sxx = np.empty((n_a, n_f)), np.empty((n_a, n_f))
    step = max(1, int(4e6 // max(1, n_p * n_f)))
    for start in range(0, n_a, step):
        stop = min(n_a, start + step)
        centred = f_all[None, :, :] - mean_f[start:stop, None, :]
        sxy[start:stop] = np.einsum("ap,apf->af", r_cell[start:stop], centred)
        sxx[start:stop] = np.einsum("ap,apf->af", n_cell[start:stop], centred * centred)
    return sxy, sxx


def interaction_tests(
    design: Design,
    *,
    traits: list[str] | None = None,
    selected: list[str] = (),
    n_perm: int = 2000,
    seed: int = 0,
    top: int = 10,
    min_group_size: int = 10,
) -> dict:
    """Every trait × feature candidate tested with annotators as the unit, against a permutation null.

    Per-annotator slopes (the random-slopes view): the rating is residualized on annotator and prompt
    indicators, and each annotator's slope on each z-scored feature is estimated from their own
    ratings (the feature centred over the prompts they rated).  A trait × feature interaction is the
    across-annotator regression of those slopes on the z-scored trait (points per SD of trait per SD
    of feature), so every annotator's own sensitivity to the feature — what per-annotator random
    slopes absorb — is in its error term, and n is the number of annotators, not of ratings.
    Reported per term: `estimate`, `se`, raw two-sided `p` (t with A − 2 df), `p_holm` and `p_bh`
    (corrected over all candidates), and `p_maxT`: the Westfall–Young max-|t| permutation p-value
    with traits shuffled between annotators `n_perm` times (family-wise, selection-free).  `traits`
    defaults to those eligible for interactions (`_eligible_traits` with `min_group_size`).  Returned:
    the `selected` terms and the `top` candidates by raw p.
    """
    traits = list(traits if traits is not None else _eligible_traits(design.traits, min_group_size)[0])
    f_names = list(design.features.columns)
    if not traits or not f_names:
        return {"terms": [], "n_candidates": 0, "reason": "no features or no traits"}
    with threadpool_limits(limits=1, user_api="blas"):
        r = _residualize(design.y[:, None], design)[:, 0]
        a_codes = design.annotator
        n_a = design.traits.shape[0]
        counts = np.bincount(a_codes, minlength=n_a).astype(float)
        rated = counts > 2
        sxy, sxx = _annotator_slope_sums(design, r, counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            slopes = np.where(sxx > 1e-12, sxy / sxx, np.nan)
        keep = rated & np.isfinite(slopes).all(axis=1)
        B = slopes[keep]
        T = design.traits[traits].to_numpy(dtype=float)[keep]
    n = len(B)
    if n < 4:
        return {"terms": [], "n_candidates": 0, "reason": "fewer than 4 annotators with slopes"}

    # Means and sums of squares do not move when traits are shuffled between annotators: centred once.
    bc = B - B.mean(axis=0)
    bss = (bc**2).sum(axis=0)
    tc = T - T.mean(axis=0)
    stt = (tc**2).sum(axis=0)
    tc_t = np.ascontiguousarray(tc.T)  # traits × annotators: a shuffle gathers along contiguous rows

    def t_stats(cross: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """From Σ tc·bc (traits × features, or a stack of them) to estimate, SE and t."""
        with np.errstate(invalid="ignore", divide="ignore"):
            est = cross / stt[:, None]
            resid_ss = bss[None, :] - est**2 * stt[:, None]
            se = np.sqrt(np.maximum(resid_ss, 0.0) / (n - 2) / stt[:, None])
            return est, se, est / se

    est, se, t = t_stats(tc.T @ bc)
    p = 2.0 * stats.t.sf(np.abs(t), n - 2)
    rng = np.random.default_rng([seed, 4])
    observed = np.nan_to_num(np.abs(t))
    exceed = np.zeros_like(observed)
    batch = max(1, min(64, int(2e7 // max(1, tc.size))))  # permutations per product
    for start in range(0, n_perm, batch):
        shuffled = np.concatenate([tc_t[:, rng.permutation(n)] for _ in range(min(batch, n_perm - start))], axis=0)
        _, _, tp = t_stats((shuffled @ bc).reshape(-1, tc.shape[1], bc.shape[1]))
        most = np.fmax.reduce(np.abs(tp).reshape(len(tp), -1), axis=1)  # NaN only if all are NaN
        exceed += (most[:, None, None] >= observed[None]).sum(axis=0)
    p_max = (1.0 + exceed) / (1.0 + n_perm)
    names = [f"{a}:{b}" for a in traits for b in f_names]
    flat_p = p.ravel()
    holm, bh = _adjust(flat_p)
    order = np.argsort(np.where(np.isfinite(flat_p), flat_p, np.inf), kind="stable")
    wanted = [i for i in order[:top]] + [names.index(s) for s in selected if s in names]
    terms = []
    for i in dict.fromkeys(wanted):
        terms.append(
            {
                "term": names[i],
                "estimate": float(est.ravel()[i]),
                "se": float(se.ravel()[i]),
                "p": float(flat_p[i]),
                "p_holm": float(holm[i]),
                "p_bh": float(bh[i]),
                "p_maxT": float(p_max.ravel()[i]),
                "selected": names[i] in set(selected),
            }
        )
    return {
        "terms": terms,
        "n_candidates": len(names),
        "n_annotators": int(n),
        "n_perm": n_perm,
        "significant_holm": [names[i] for i in np.flatnonzero(holm < 0.05)],
        "significant_maxT": [names[i] for i in np.flatnonzero(p_max.ravel() < 0.05)],
        "method": "per-annotator slopes regressed on the trait (annotators as the unit); traits shuffled "
        "between annotators for the max-|t| null; Holm and BH over all candidates",
    }


class _RQModel:
    """Common shape: `fit(df)` returns self; the JSON-ready result is in `result_`."""

    name = ""

    def __init__(
        self,
        *,
        include_harm_level: bool = False,
        race: str = "indicators",
        trait_missing: str = "impute",
        random_effects: tuple[str, ...] = DEFAULT_RANDOM,
        engine: str = "profiled",
        seed: int = 0,
        max_interactions: int = 25,
    ):
        self.include_harm_level = include_harm_level
        self.race = race
        self.trait_missing = trait_missing
        self.random_effects = random_effects
        self.engine = engine
        self.seed = seed
        self.max_interactions = max_interactions

    def _design(self, df_or_design) -> Design:
        if isinstance(df_or_design, Design):
            return df_or_design
        return build_design(
            df_or_design,
            include_harm_level=self.include_harm_level,
            race=self.race,
            trait_missing=self.trait_missing,
            random_effects=self.random_effects,
        )

    def fit(self, df: pd.DataFrame | Design):
        design = self._design(df)
        self.result_ = self._fit(design)
        self.result_["notes"] = design.notes
        return self


class FeatureModel(_RQModel):
    """RQ1: rating ~ z-scored prompt features + random intercepts. `harm_level` is left out by default
    (it is a classifier's summary of the same content; `include_harm_level=True` adds it)."""

    name = "rq1"

    def _fit(self, design: Design) -> dict:
        return _summary(self.name, design.columns(features=True), design, self.engine)


class TraitModel(_RQModel):
    """RQ2: rating ~ z-scored annotator traits (encoded demographics + Factor_1..3) + random intercepts."""

    name = "rq2"

    def _fit(self, design: Design) -> dict:
        result = _summary(self.name, design.columns(traits=True), design, self.engine)
        return adjust_trait_p_values(result, list(design.traits.columns))


class InteractionModel(_RQModel):
    """RQ3: features + traits + stably selected trait × feature interactions + random intercepts.

    Selection: `select_interactions` (stability selection over annotator-grouped lasso fits, judged on
    held-out annotators). Inference: `interaction_tests` (per-annotator slopes, i.e. annotators as
    the unit; permutation null with traits shuffled between annotators; Holm and BH), not the Wald
    p-values of the mixed model, which were chosen on the same data and ignore per-annotator slopes."""

    name = "rq3"

    def _fit(self, design: Design) -> dict:
        lasso = select_interactions(design, seed=self.seed, max_interactions=self.max_interactions)
        self.selected_ = lasso["selected"]
        columns = design.columns(features=True, traits=True, interactions=lasso["selected"])
        tests = interaction_tests(design, selected=lasso["selected"], seed=self.seed)
        result = _summary(self.name, columns, design, self.engine, {"lasso": lasso, "interaction_tests": tests})
        return adjust_trait_p_values(result, list(design.traits.columns))


def bic_ladder(
    df: pd.DataFrame | Design,
    *,
    interactions: list[str] | None = None,
    seed: int = 0,
    engine: str = "profiled",
    **design_kwargs,
) -> list[dict]:
    """Nested ML fits on the same ratings: null → +features → +traits → +interactions, with ΔBIC.

    Each step: {"model", "terms_added", "n_params", "loglik", "bic", "delta_bic" (vs the previous step;
    negative = better), "r2_marginal", "r2_conditional"}. `interactions` defaults to a fresh lasso
    selection (`select_interactions`, seeded).
    """
    design = df if isinstance(df, Design) else build_design(df, **design_kwargs)
    if interactions is None:
        interactions = select_interactions(design, seed=seed)["selected"]
    n_f, n_t = design.features.shape[1], design.traits.shape[1]
    steps = [
        ("null", "intercept + random intercepts", design.columns()),
        ("features", f"{n_f} prompt features", design.columns(features=True)),
        ("traits", f"{n_t} annotator traits", design.columns(features=True, traits=True)),
        (
            "interactions",
            f"{len(interactions)} trait × feature interactions",
            design.columns(features=True, traits=True, interactions=list(interactions)),
        ),
    ]
    out, previous = [], None
    n = len(design.y)
    for name, added, columns in steps:
        fit = CrossedRandomInterceptsLM(reml=False, engine=engine).fit(columns, design.y, design.groups)
        bic = -2.0 * fit.llf_ + fit.n_params_ * math.log(n)
        r2m, r2c = fit.r2_()
        out.append(
            {
                "model": name,
                "terms_added": added,
                "n_params": fit.n_params_,
                "loglik": fit.llf_,
                "bic": bic,
                "delta_bic": None if previous is None else bic - previous,
                "r2_marginal": r2m,
                "r2_conditional": r2c,
            }
        )
        previous = bic
    return out


def fit_all(
    df: pd.DataFrame,
    *,
    seed: int = 0,
    include_harm_level: bool = False,
    race: str = "indicators",
    trait_missing: str = "impute",
    random_effects: tuple[str, ...] = DEFAULT_RANDOM,
    engine: str = "profiled",
    max_interactions: int = 25,
) -> dict:
    """RQ1–RQ3 and the BIC ladder on one shared analysis sample; JSON-serializable.

    Returns {"rq1", "rq2", "rq3", "bic_ladder", "settings", "seconds"}. A model that cannot be fitted
    (e.g. a study too small) is {"model": name, "skipped": reason}.
    """
    with threadpool_limits(limits=1, user_api="blas"):  # faster here than BLAS threads (see docs/analysis.md)
        return _fit_all(
            df,
            seed=seed,
            include_harm_level=include_harm_level,
            race=race,
            trait_missing=trait_missing,
            random_effects=random_effects,
            engine=engine,
            max_interactions=max_interactions,
        )


def _fit_all(df, *, seed, include_harm_level, race, trait_missing, random_effects, engine, max_interactions) -> dict:
    started = time.perf_counter()
    kwargs = dict(
        include_harm_level=include_harm_level,
        race=race,
        trait_missing=trait_missing,
        random_effects=random_effects,
        engine=engine,
        seed=seed,
        max_interactions=max_interactions,
    )
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    try:
        design = build_design(
            df,
            include_harm_level=include_harm_level,
            race=race,
            trait_missing=trait_missing,
            random_effects=random_effects,
        )
        small = _too_small(design)
    except (KeyError, ValueError) as exc:
        design, small = None, str(exc)
    if small:
        skipped = {name: {"model": name, "skipped": small} for name in ("rq1", "rq2", "rq3")}
        return {**skipped, "bic_ladder": [], "settings": settings, "seconds": time.perf_counter() - started}
    out = {}
    selected = None
    for model in (FeatureModel(**kwargs), TraitModel(**kwargs), InteractionModel(**kwargs)):
        try:
            out[model.name] = model.fit(design).result_
            if model.name == "rq3":
                selected = model.selected_
        except (np.linalg.LinAlgError, ValueError) as exc:
            out[model.name] = {"model": model.name, "skipped": f"could not be fitted: {exc}"}
    try:
        out["bic_ladder"] = bic_ladder(design, interactions=selected or [], seed=seed, engine=engine)
    except (np.linalg.LinAlgError, ValueError) as exc:
        out["bic_ladder"] = []
        out["bic_ladder_skipped"] = f"could not be fitted: {exc}"
    out["settings"] = settings
    out["seconds"] = time.perf_counter() - started
    return out


def _too_small(design: Design) -> str | None:
    n_a, n_p = len(np.unique(design.annotator)), len(np.unique(design.prompt))
    if n_a < 3 or n_p < 3:
        return f"needs at least 3 annotators and 3 prompts with ratings (has {n_a} and {n_p})"
    if len(design.y) <= design.features.shape[1] + design.traits.shape[1] + 5:
        return "fewer ratings than model terms"
    return None
