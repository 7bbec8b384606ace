"""Annotator behaviour models: priors, per-annotator parameters and simulators (numpy, no Django).

Observed per trial t of one annotator's session: a rating y_t on 0…100 or Unsure (NaN), a response time
rt_t in ms (NaN when not recorded; the public release has none), and the consensus c_t, the mean rating
of that prompt by the other annotators.

**engagement** (model 1): z_t ∈ {0 = engaged, 1 = disengaged} is a two-state Markov chain,
P(z_1 = 1) = 0.1, P(0 → 1) = λ, P(1 → 0) = ρ.

- engaged: y_t = clip(round(μ_t + σ ε), 0, 100) with μ_t = 50 + a (c_t − 50) + b, ε ~ N(0, 1); so
  P(y = k) = Φ((k + ½ − μ)/σ) − Φ((k − ½ − μ)/σ) inside, and the tail masses at 0 and 100;
- disengaged: with probability s the previous trial's rating is repeated (uniform on 0…100 when there
  is no previous trial or it was Unsure), otherwise uniform on 0…100;
- in both states the answer is Unsure with probability u (instead of a rating);
- log rt_t ~ N(m, τ) when engaged, N(m − Δ, τ) when disengaged.

**drift** (model 2): model 1 with a drifting offset added to the engaged mean, μ_t = … + θ_t,
θ_t = φ θ_{t−1} + η_t, η_t ~ N(0, q), θ_1 ~ N(0, q / sqrt(1 − φ²)) (its stationary law).

Priors per annotator are in `PRIORS`; `params_sample` draws them. Simulations are vectorised over
annotators (`simulate`) and return a `Sequences` with the true latents. Sequence lengths vary; positions
past an annotator's length are padding (`mask` False).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MODELS = ("engagement", "drift")
SCALE_MAX = 100
N_LEVELS = SCALE_MAX + 1  # ratings 0…100
P_DISENGAGED_FIRST = 0.1
RT_CENTRE = float(np.log(9000.0))  # the prior mean of m; inputs are centred on it

# name -> (distribution, arguments). Uniform(lo, hi); Beta(α, β); LogNormal(μ, σ) of the log; Normal(μ, σ).
PRIORS: dict[str, tuple[str, tuple[float, float]]] = {
    "lam": ("beta", (1.0, 19.0)),
    "rho": ("beta", (2.0, 8.0)),
    "a": ("lognormal", (0.0, 0.25)),
    "b": ("normal", (0.0, 12.0)),
    "sigma": ("uniform", (8.0, 25.0)),
    "s": ("uniform", (0.3, 0.9)),
    "u": ("uniform", (0.0, 0.05)),
    "m": ("normal", (RT_CENTRE, 0.3)),
    "tau": ("uniform", (0.3, 0.6)),
    "delta": ("uniform", (0.7, 1.6)),
}
DRIFT_PRIORS: dict[str, tuple[str, tuple[float, float]]] = {
    "phi": ("uniform", (0.9, 0.99)),
    "q": ("uniform", (1.0, 4.0)),
}


def model_priors(model: str) -> dict[str, tuple[str, tuple[float, float]]]:
    model_check(model)
    return {**PRIORS, **DRIFT_PRIORS} if model == "drift" else dict(PRIORS)


def model_check(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    return model


@dataclass
class Sequences:
    """A batch of annotators' sessions as (n_annotators, n_trials) arrays, padded to the longest.

    `rating` is 0…100 (NaN for Unsure and padding), `rt_ms` NaN when missing, `consensus` 0…100,
    `mask` True on real trials. Simulations also carry the true `z` (1 = disengaged), `theta`
    (zeros for model 1) and `params` (name -> (n_annotators,) array).
    """

    rating: np.ndarray
    rt_ms: np.ndarray
    consensus: np.ndarray
    mask: np.ndarray
    z: np.ndarray | None = None
    theta: np.ndarray | None = None
    params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.rating.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)

    @property
    def unsure(self) -> np.ndarray:
        return np.isnan(self.rating) & self.mask

    def without_rt(self) -> Sequences:
        return Sequences(
            rating=self.rating,
            rt_ms=np.full_like(self.rt_ms, np.nan),
            consensus=self.consensus,
            mask=self.mask,
            z=self.z,
            theta=self.theta,
            params=self.params,
        )

    def trimmed(self) -> Sequences:
        """The same sequences without the trailing trials that are padding for every one of them."""
        keep = int(self.lengths.max()) if self.n else 0
        return Sequences(
            rating=self.rating[:, :keep],
            rt_ms=self.rt_ms[:, :keep],
            consensus=self.consensus[:, :keep],
            mask=self.mask[:, :keep],
            z=None if self.z is None else self.z[:, :keep],
            theta=None if self.theta is None else self.theta[:, :keep],
            params=self.params,
        )

    def subset(self, index) -> Sequences:
        return Sequences(
            rating=self.rating[index],
            rt_ms=self.rt_ms[index],
            consensus=self.consensus[index],
            mask=self.mask[index],
            z=None if self.z is None else self.z[index],
            theta=None if self.theta is None else self.theta[index],
            params={k: v[index] for k, v in self.params.items()},
        )


def params_sample(model: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw n annotators' parameters from the model's priors."""
    out = {}
    for name, (dist, (p1, p2)) in model_priors(model).items():
        if dist == "beta":
            out[name] = rng.beta(p1, p2, n)
        elif dist == "lognormal":
            out[name] = rng.lognormal(p1, p2, n)
        elif dist == "normal":
            out[name] = rng.normal(p1, p2, n)
        else:
            out[name] = rng.uniform(p1, p2, n)
    return out


def consensus_draw(pool: np.ndarray, n: int, n_trials: int, rng: np.random.Generator) -> np.ndarray:
    """Each annotator sees the pool's prompts in a random order (a new permutation when it runs out)."""
    pool = np.asarray(pool, dtype=float)
    pool = pool[np.isfinite(pool)]
    if pool.size == 0:
        raise ValueError("the consensus pool has no finite prompt means")
    repeats = -(-n_trials // pool.size)
    keys = rng.random((n, repeats, pool.size))
    order = np.argsort(keys, axis=2).reshape(n, -1)[:, :n_trials]
    return pool[order]


def simulate(
    model: str,
    n: int,
    *,
    pool: np.ndarray,
    rng: np.random.Generator,
    n_trials: int = 150,
    min_trials: int | None = None,
    params: dict[str, np.ndarray] | None = None,
) -> Sequences:
    """Simulate n annotators; lengths uniform on [min_trials, n_trials] (all n_trials by default)."""
    model_check(model)
    p = params if params is not None else params_sample(model, n, rng)
    lengths = np.full(n, n_trials) if min_trials is None else rng.integers(min_trials, n_trials + 1, n)
    mask = np.arange(n_trials)[None, :] < lengths[:, None]
    consensus = consensus_draw(pool, n, n_trials, rng)

    z = np.zeros((n, n_trials), dtype=np.int8)
    theta = np.zeros((n, n_trials))
    rating = np.full((n, n_trials), np.nan)
    if model == "drift":
        theta[:, 0] = rng.normal(0.0, 1.0, n) * p["q"] / np.sqrt(1.0 - p["phi"] ** 2)
        for t in range(1, n_trials):
            theta[:, t] = p["phi"] * theta[:, t - 1] + p["q"] * rng.normal(0.0, 1.0, n)

    z[:, 0] = rng.random(n) < P_DISENGAGED_FIRST
    for t in range(1, n_trials):
        switch = rng.random(n) < np.where(z[:, t - 1] == 1, p["rho"], p["lam"])
        z[:, t] = np.where(switch, 1 - z[:, t - 1], z[:, t - 1])

    mu = 50.0 + p["a"][:, None] * (consensus - 50.0) + p["b"][:, None] + theta
    engaged = np.clip(np.rint(mu + p["sigma"][:, None] * rng.normal(size=(n, n_trials))), 0, SCALE_MAX)
    uniform = rng.integers(0, N_LEVELS, size=(n, n_trials)).astype(float)
    repeat = rng.random((n, n_trials)) < p["s"][:, None]
    unsure = rng.random((n, n_trials)) < p["u"][:, None]
    previous = np.full(n, np.nan)
    for t in range(n_trials):
        disengaged = np.where(repeat[:, t] & ~np.isnan(previous), previous, uniform[:, t])
        value = np.where(z[:, t] == 1, disengaged, engaged[:, t])
        value = np.where(unsure[:, t], np.nan, value)
        rating[:, t] = value
        previous = value

    log_rt = p["m"][:, None] - p["delta"][:, None] * z + p["tau"][:, None] * rng.normal(size=(n, n_trials))
    rt_ms = np.exp(log_rt)

    rating[~mask] = np.nan
    rt_ms[~mask] = np.nan
    consensus = np.where(mask, consensus, np.nan)
    return Sequences(
        rating=rating,
        rt_ms=rt_ms,
        consensus=consensus,
        mask=mask,
        z=np.where(mask, z, 0).astype(np.int8),
        theta=np.where(mask, theta, 0.0),
        params=p,
    )
