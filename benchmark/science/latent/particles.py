"""The reference for the drift model: a particle smoother with the true parameters (numpy).

Forward: a particle filter over x_t = (z_t, θ_t). θ_t is proposed from its AR(1) transition; z_t is then
drawn from its exact conditional given the ancestor's z and the new θ_t (the locally optimal proposal
for the discrete part), so the incremental weight is Σ_z' A[z, z'] p(y_t, rt_t | z', θ_t). Particles are
resampled (systematic) every trial.

Backward: forward-filtering backward-smoothing (FFBSm, Doucet, Godsill & Andrieu 2000), which reweights
every trial's filter particles by their transition density to the next trial's smoothed particles, so
early trials do not suffer the path degeneracy of the filter's genealogy. Cost O(P²) per trial and
annotator; vectorised over annotators in chunks.
"""

from __future__ import annotations

import numpy as np

from .exact import log_emissions
from .models import P_DISENGAGED_FIRST, Sequences


def _systematic(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, P) normalised weights -> (n, P) ancestor indices."""
    n, p = weights.shape
    positions = (rng.random((n, 1)) + np.arange(p)[None, :]) / p
    cum = np.cumsum(weights, axis=1)
    cum[:, -1] = 1.0
    return np.minimum(np.array([np.searchsorted(c, pos) for c, pos in zip(cum, positions)]), p - 1)


def _emissions_at(seqs: Sequences, params: dict, t: int, theta: np.ndarray) -> np.ndarray:
    """(n, P, 2) log emissions at trial t for each particle's θ."""
    n, n_particles = theta.shape
    lo = max(t - 1, 0)
    window = Sequences(
        rating=np.repeat(seqs.rating[:, lo : t + 1], n_particles, axis=0),
        rt_ms=np.repeat(seqs.rt_ms[:, lo : t + 1], n_particles, axis=0),
        consensus=np.repeat(seqs.consensus[:, lo : t + 1], n_particles, axis=0),
        mask=np.repeat(seqs.mask[:, lo : t + 1], n_particles, axis=0),
    )
    rep = {k: np.repeat(v, n_particles) for k, v in params.items()}
    th = np.repeat(theta.reshape(-1, 1), window.rating.shape[1], axis=1)
    out = log_emissions(window, rep, theta=th)[:, -1]
    return out.reshape(n, n_particles, 2)


def particle_smoother(
    seqs: Sequences,
    params: dict[str, np.ndarray],
    *,
    n_particles: int = 200,
    seed: int = 0,
    chunk: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed P(z_t = disengaged | all trials) and E[θ_t | all trials], each (n, T) (NaN on padding)."""
    p_dis = np.full(seqs.rating.shape, np.nan)
    theta = np.full(seqs.rating.shape, np.nan)
    rng = np.random.default_rng(seed)
    for start in range(0, seqs.n, chunk):
        sl = slice(start, start + chunk)
        part = seqs.subset(sl)
        pp = {k: v[sl] for k, v in params.items()}
        d, th = _smooth_chunk(part, pp, n_particles, rng)
        p_dis[sl], theta[sl] = d, th
    p_dis[~seqs.mask] = np.nan
    theta[~seqs.mask] = np.nan
    return p_dis, theta


def _smooth_chunk(seqs: Sequences, p: dict, n_particles: int, rng: np.random.Generator):
    n, n_trials = seqs.rating.shape
    phi, q = p["phi"][:, None], p["q"][:, None]
    lam, rho = p["lam"][:, None], p["rho"][:, None]
    trans = np.stack([np.stack([1 - lam, lam], -1), np.stack([rho, 1 - rho], -1)], -2)  # (n,1,from,to)

    zs = np.zeros((n_trials, n, n_particles), dtype=np.int8)
    ths = np.zeros((n_trials, n, n_particles))
    log_w = np.zeros((n_trials, n, n_particles))
    rows = np.arange(n)[:, None]

    th = rng.normal(size=(n, n_particles)) * q / np.sqrt(1 - phi**2)
    prior_z = np.broadcast_to(np.array([1 - P_DISENGAGED_FIRST, P_DISENGAGED_FIRST]), (n, n_particles, 2))
    for t in range(n_trials):
        if t > 0:
            w = np.exp(log_w[t - 1] - log_w[t - 1].max(axis=1, keepdims=True))
            anc = _systematic(w / w.sum(axis=1, keepdims=True), rng)
            z_prev = zs[t - 1][rows, anc]
            th = phi * ths[t - 1][rows, anc] + q * rng.normal(size=(n, n_particles))
            prior_z = np.take_along_axis(
                trans[:, 0][:, None, :, :].repeat(n_particles, 1),
                z_prev[:, :, None, None].astype(int).repeat(2, 3),
                axis=2,
            )[:, :, 0, :]
        log_e = _emissions_at(seqs, p, t, th)
        joint = np.log(prior_z) + log_e  # (n, P, 2)
        norm = np.logaddexp(joint[..., 0], joint[..., 1])
        prob_dis = np.exp(joint[..., 1] - norm)
        zs[t] = rng.random((n, n_particles)) < prob_dis
        ths[t] = th
        real = seqs.mask[:, t][:, None]
        log_w[t] = np.where(real, norm, 0.0)

    # Backward pass (FFBSm). Padding trials carry uniform weights and the transition, which leaves the
    # real trials' smoothed weights as they would be without them.
    w = np.exp(log_w - log_w.max(axis=2, keepdims=True))
    w /= w.sum(axis=2, keepdims=True)
    smooth = np.empty_like(w)
    smooth[-1] = w[-1]
    log_norm_q = -np.log(q)[:, :, None]
    for t in range(n_trials - 2, -1, -1):
        # f[i, j] = A[z_i, z_j] N(θ_j; φ θ_i, q), particles i at t, j at t+1.
        diff = (ths[t + 1][:, None, :] - phi[:, :, None] * ths[t][:, :, None]) / q[:, :, None]
        a = trans[:, 0][np.arange(n)[:, None, None], zs[t][:, :, None], zs[t + 1][:, None, :]]
        f = a * np.exp(-0.5 * diff**2 + log_norm_q)
        denom = np.einsum("ni,nij->nj", w[t], f)
        ratio = np.where(denom > 0, smooth[t + 1] / np.where(denom > 0, denom, 1.0), 0.0)
        s = w[t] * np.einsum("nij,nj->ni", f, ratio)
        total = s.sum(axis=1, keepdims=True)
        smooth[t] = np.where(total > 0, s / np.where(total > 0, total, 1.0), w[t])
    p_dis = np.einsum("tnp,tnp->nt", smooth, zs.astype(float))
    theta = np.einsum("tnp,tnp->nt", smooth, ths)
    return p_dis, theta
