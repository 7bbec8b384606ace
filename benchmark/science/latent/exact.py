"""Exact inference for the engagement model: emission log-probabilities and forward–backward (numpy).

Vectorised over annotators: every array is (n_annotators, n_trials[, 2]) and the only Python loop is
over trials, so 10,000 annotators × 150 trials take well under a second per pass. State 0 is engaged,
state 1 disengaged. Padding positions (mask False) emit with probability 1 in both states, which leaves
the posteriors of the real trials exact.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

from .models import N_LEVELS, P_DISENGAGED_FIRST, SCALE_MAX, Sequences

LOG_2PI = float(np.log(2.0 * np.pi))


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 − exp(x)) for x ≤ 0, accurate at both ends."""
    x = np.minimum(x, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(x > -0.693, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def log_normal_interval(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """log(Φ(hi) − Φ(lo)) for lo < hi (either may be infinite), without cancellation in the tails."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = log_ndtr(hi) + _log1mexp(log_ndtr(lo) - log_ndtr(hi))
        upper = log_ndtr(-lo) + _log1mexp(log_ndtr(-hi) - log_ndtr(-lo))
    return np.where(lo > 0, upper, lower)


def log_rating_engaged(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log P(y | engaged) for integer y on 0…100: a normal(μ, σ) rounded and censored to the scale."""
    lo = np.where(y <= 0, -np.inf, (y - 0.5 - mu) / sigma)
    hi = np.where(y >= SCALE_MAX, np.inf, (y + 0.5 - mu) / sigma)
    return log_normal_interval(lo, hi)


def previous_ratings(rating: np.ndarray) -> np.ndarray:
    """The previous trial's rating (NaN on the first trial and after an Unsure)."""
    prev = np.full_like(rating, np.nan)
    prev[:, 1:] = rating[:, :-1]
    return prev


def log_rating_disengaged(rating: np.ndarray, s: np.ndarray) -> np.ndarray:
    """log P(y | disengaged): repeat the previous rating with probability s, else uniform on 0…100."""
    prev = previous_ratings(rating)
    same = (rating == prev).astype(float)
    s = s[:, None]
    with np.errstate(divide="ignore"):
        repeat_mix = np.log(s * same + (1.0 - s) / N_LEVELS)
    return np.where(np.isnan(prev), -np.log(N_LEVELS), repeat_mix)


def log_rt_normal(log_rt: np.ndarray, mean: np.ndarray, tau: np.ndarray) -> np.ndarray:
    return -0.5 * ((log_rt - mean) / tau) ** 2 - np.log(tau) - 0.5 * LOG_2PI


def log_emissions(seqs: Sequences, params: dict[str, np.ndarray], theta: np.ndarray | None = None) -> np.ndarray:
    """(n, T, 2) log P(rating_t, rt_t | z_t, past ratings) under model 1 (model 2 when θ is given)."""
    rating, mask = seqs.rating, seqs.mask
    unsure = np.isnan(rating)
    u = params["u"][:, None]
    mu = 50.0 + params["a"][:, None] * (seqs.consensus - 50.0) + params["b"][:, None]
    if theta is not None:
        mu = mu + theta
    y = np.where(unsure, 0.0, rating)
    with np.errstate(divide="ignore"):
        log_u, log_1mu = np.log(u), np.log1p(-u)
    engaged = np.where(unsure, log_u, log_1mu + log_rating_engaged(y, mu, params["sigma"][:, None]))
    disengaged = np.where(unsure, log_u, log_1mu + log_rating_disengaged(rating, params["s"]))

    log_rt = np.log(seqs.rt_ms)
    has_rt = np.isfinite(log_rt)
    if has_rt.any():
        m, tau, delta = params["m"][:, None], params["tau"][:, None], params["delta"][:, None]
        x = np.where(has_rt, log_rt, 0.0)
        engaged = engaged + np.where(has_rt, log_rt_normal(x, m, tau), 0.0)
        disengaged = disengaged + np.where(has_rt, log_rt_normal(x, m - delta, tau), 0.0)
    out = np.stack([engaged, disengaged], axis=-1)
    out[~mask] = 0.0
    return out


def log_transitions(lam: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """(n, 2, 2) log transition matrices, [from, to]."""
    lam, rho = np.asarray(lam, float), np.asarray(rho, float)
    a = np.stack([np.stack([1.0 - lam, lam], -1), np.stack([rho, 1.0 - rho], -1)], -2)
    with np.errstate(divide="ignore"):
        return np.log(a)


def forward_backward(
    log_e: np.ndarray, lam: np.ndarray, rho: np.ndarray, p_first: float = P_DISENGAGED_FIRST
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior P(z_t = disengaged | all trials) (n, T) and the log-likelihood (n,) of each sequence."""
    n, n_trials, _ = log_e.shape
    log_a = log_transitions(lam, rho)
    alpha = np.empty_like(log_e)
    beta = np.zeros_like(log_e)
    alpha[:, 0] = np.log([1.0 - p_first, p_first])[None, :] + log_e[:, 0]
    for t in range(1, n_trials):
        prev = alpha[:, t - 1][:, :, None] + log_a  # (n, from, to)
        alpha[:, t] = np.logaddexp(prev[:, 0], prev[:, 1]) + log_e[:, t]
    for t in range(n_trials - 2, -1, -1):
        nxt = log_a + (log_e[:, t + 1] + beta[:, t + 1])[:, None, :]  # (n, from, to)
        beta[:, t] = np.logaddexp(nxt[:, :, 0], nxt[:, :, 1])
    loglik = np.logaddexp(alpha[:, -1, 0], alpha[:, -1, 1])
    log_post = alpha + beta - loglik[:, None, None]
    return np.exp(log_post[:, :, 1]), loglik


def engagement_posterior(seqs: Sequences, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Model 1's exact posterior of disengagement given parameters: (p_disengaged (n, T), loglik (n,))."""
    post, loglik = forward_backward(log_emissions(seqs, params), params["lam"], params["rho"])
    return np.where(seqs.mask, post, np.nan), loglik
