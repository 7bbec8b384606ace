"""Per-annotator MAP parameters of the engagement model (torch autograd, vectorised over annotators).

The objective of each annotator is log p(y, rt | params) (the forward algorithm, z summed out) plus the
log prior, in an unconstrained parameterisation: bounded parameters go through a scaled logistic,
positive ones through exp, and the log-Jacobian of that map is included. So the estimate is the mode of
the posterior density of the unconstrained parameters, which keeps u, λ, ρ off the boundaries where the
untransformed density has its mode (u = 0 would make one Unsure impossible). Annotators' objectives are
independent, so their sum is maximised by Adam in one batch; each annotator's gradient is its own.
Without response times the rt parameters (m, τ, Δ) have no data and stay at their prior modes.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from .models import N_LEVELS, P_DISENGAGED_FIRST, PRIORS, RT_CENTRE, SCALE_MAX, Sequences

LOG_2PI = math.log(2.0 * math.pi)

# name -> transform from an unconstrained x: ("logistic", lo, hi) | ("exp",) | ("identity",)
TRANSFORMS = {
    "lam": ("logistic", 0.0, 1.0),
    "rho": ("logistic", 0.0, 1.0),
    "a": ("exp",),
    "b": ("identity",),
    "sigma": ("logistic", 8.0, 25.0),
    "s": ("logistic", 0.3, 0.9),
    "u": ("logistic", 0.0, 0.05),
    "m": ("identity",),
    "tau": ("logistic", 0.3, 0.6),
    "delta": ("logistic", 0.7, 1.6),
}
NAMES = list(TRANSFORMS)


def _constrain(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(value, log |d value / d x|)."""
    kind = TRANSFORMS[name]
    if kind[0] == "logistic":
        lo, hi = kind[1], kind[2]
        return lo + (hi - lo) * torch.sigmoid(x), math.log(hi - lo) + torch.nn.functional.logsigmoid(
            x
        ) + torch.nn.functional.logsigmoid(-x)
    if kind[0] == "exp":
        return torch.exp(x), x
    return x, torch.zeros_like(x)


def _unconstrain(name: str, value: np.ndarray) -> np.ndarray:
    kind = TRANSFORMS[name]
    if kind[0] == "logistic":
        lo, hi = kind[1], kind[2]
        f = np.clip((value - lo) / (hi - lo), 1e-6, 1 - 1e-6)
        return np.log(f) - np.log1p(-f)
    if kind[0] == "exp":
        return np.log(value)
    return value


def _log_prior(name: str, v: torch.Tensor) -> torch.Tensor:
    dist, (p1, p2) = PRIORS[name]
    if dist == "beta":
        return (p1 - 1) * torch.log(v) + (p2 - 1) * torch.log1p(-v)
    if dist == "lognormal":
        return -0.5 * ((torch.log(v) - p1) / p2) ** 2 - torch.log(v)
    if dist == "normal":
        return -0.5 * ((v - p1) / p2) ** 2
    return torch.zeros_like(v)  # uniform: constant on its support, which the transform enforces


def _log_normal_interval(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    def log1mexp(x):
        x = torch.clamp(x, max=-1e-12)
        return torch.where(x > -0.693, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))

    ndtr = torch.special.log_ndtr
    lower = ndtr(hi) + log1mexp(ndtr(lo) - ndtr(hi))
    upper = ndtr(-lo) + log1mexp(ndtr(-hi) - ndtr(-lo))
    return torch.where(lo > 0, upper, lower)


class _Data:
    """What the objective needs, as tensors, computed once."""

    def __init__(self, seqs: Sequences):
        rating = seqs.rating
        unsure = np.isnan(rating) & seqs.mask
        y = np.where(np.isnan(rating), 0.0, rating)
        prev = np.full_like(rating, np.nan)
        prev[:, 1:] = rating[:, :-1]
        log_rt = np.log(seqs.rt_ms)
        self.has_rt = torch.tensor(np.isfinite(log_rt) & seqs.mask)
        self.log_rt = torch.tensor(np.where(np.isfinite(log_rt), log_rt, 0.0))
        self.unsure = torch.tensor(unsure)
        self.mask = torch.tensor(seqs.mask)
        self.y = torch.tensor(y)
        self.c = torch.tensor(np.where(seqs.mask, seqs.consensus, 50.0))
        self.has_prev = torch.tensor(~np.isnan(prev))
        self.same = torch.tensor((rating == prev).astype(float))
        self.lo_open = torch.tensor(y <= 0)
        self.hi_open = torch.tensor(y >= SCALE_MAX)


def _loglik(data: _Data, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(ratings, rts | params) per annotator, by the forward algorithm (as exact.forward_backward)."""
    col = {k: v[:, None] for k, v in p.items()}
    mu = 50.0 + col["a"] * (data.c - 50.0) + col["b"]
    inf = torch.tensor(math.inf, dtype=mu.dtype)
    lo = torch.where(data.lo_open, -inf, (data.y - 0.5 - mu) / col["sigma"])
    hi = torch.where(data.hi_open, inf, (data.y + 0.5 - mu) / col["sigma"])
    log_u, log_1mu = torch.log(col["u"]), torch.log1p(-col["u"])
    eng = torch.where(data.unsure, log_u, log_1mu + _log_normal_interval(lo, hi))
    rep = torch.log(col["s"] * data.same + (1.0 - col["s"]) / N_LEVELS)
    dis_rating = torch.where(data.has_prev, rep, torch.full_like(rep, -math.log(N_LEVELS)))
    dis = torch.where(data.unsure, log_u, log_1mu + dis_rating)

    z_e = (data.log_rt - col["m"]) / col["tau"]
    z_d = (data.log_rt - col["m"] + col["delta"]) / col["tau"]
    rt_e = -0.5 * z_e**2 - torch.log(col["tau"]) - 0.5 * LOG_2PI
    rt_d = -0.5 * z_d**2 - torch.log(col["tau"]) - 0.5 * LOG_2PI
    eng = eng + torch.where(data.has_rt, rt_e, torch.zeros_like(rt_e))
    dis = dis + torch.where(data.has_rt, rt_d, torch.zeros_like(rt_d))
    log_e = torch.stack([eng, dis], -1)
    log_e = torch.where(data.mask[:, :, None], log_e, torch.zeros_like(log_e))

    # Scaled forward recursion in probability space: two states make this a handful of (n,) operations
    # per trial, several times faster under autograd than logsumexp over (n, 2, 2).
    lam, rho = p["lam"], p["rho"]
    shift = log_e.max(dim=-1).values
    e = torch.exp(log_e - shift[:, :, None])
    a0 = (1 - P_DISENGAGED_FIRST) * e[:, 0, 0]
    a1 = P_DISENGAGED_FIRST * e[:, 0, 1]
    c = a0 + a1
    total = torch.log(c) + shift[:, 0]
    a0, a1 = a0 / c, a1 / c
    for t in range(1, log_e.shape[1]):
        b0 = (a0 * (1 - lam) + a1 * rho) * e[:, t, 0]
        b1 = (a0 * lam + a1 * (1 - rho)) * e[:, t, 1]
        c = b0 + b1
        total = total + torch.log(c)
        a0, a1 = b0 / c, b1 / c
    return total + shift[:, 1:].sum(dim=1)


def _initial(seqs: Sequences) -> dict[str, np.ndarray]:
    n = seqs.n
    log_rt = np.log(seqs.rt_ms)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an annotator without response times
        m = np.nanmedian(np.where(np.isfinite(log_rt), log_rt, np.nan), axis=1)
    m = np.where(np.isfinite(m), m, RT_CENTRE)
    return {
        "lam": np.full(n, 0.05),
        "rho": np.full(n, 0.2),
        "a": np.ones(n),
        "b": np.zeros(n),
        "sigma": np.full(n, 15.0),
        "s": np.full(n, 0.6),
        "u": np.full(n, 0.01),
        "m": m,
        "tau": np.full(n, 0.45),
        "delta": np.full(n, 1.15),
    }


def map_fit(seqs: Sequences, *, steps: int = 400, lr: float = 0.05, batch: int = 2000) -> dict[str, np.ndarray]:
    """Per-annotator MAP estimates of model 1's parameters: name -> (n,) array."""
    out = {name: np.empty(seqs.n) for name in NAMES}
    for start in range(0, seqs.n, batch):
        part = seqs.subset(slice(start, start + batch))
        fitted = _map_fit_batch(part, steps=steps, lr=lr)
        for name in NAMES:
            out[name][start : start + part.n] = fitted[name]
    return out


def _map_fit_batch(seqs: Sequences, *, steps: int, lr: float) -> dict[str, np.ndarray]:
    data = _Data(seqs)
    init = _initial(seqs)
    x = {name: torch.tensor(_unconstrain(name, init[name]), dtype=torch.float64, requires_grad=True) for name in NAMES}
    opt = torch.optim.Adam(list(x.values()), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 20)

    def objective():
        values, total = {}, 0.0
        for name in NAMES:
            v, log_jac = _constrain(name, x[name])
            values[name] = v
            total = total + _log_prior(name, v) + log_jac
        return -(_loglik(data, values) + total).sum()

    for _ in range(steps):
        opt.zero_grad()
        loss = objective()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return {name: _constrain(name, x[name])[0].numpy().copy() for name in NAMES}


def loglik_torch(seqs: Sequences, params: dict[str, np.ndarray]) -> np.ndarray:
    """The forward-algorithm log-likelihood the fit maximises, for checking it against exact.py."""
    with torch.no_grad():
        p = {k: torch.tensor(np.asarray(v, float)) for k, v in params.items() if k in NAMES}
        return _loglik(_Data(seqs), p).numpy()
