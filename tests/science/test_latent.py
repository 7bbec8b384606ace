"""Latent annotator states: simulators, exact inference, MAP, particle smoother, network, tables."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.science.latent import (
    CheckpointError,
    LatentInputError,
    TrainConfig,
    checkpoint_load,
    checkpoint_save,
    engagement_posterior,
    infer_frame,
    log_emissions,
    map_fit,
    particle_smoother,
    sequences_from_frame,
    simulate,
    train,
)
from benchmark.science.latent.exact import log_rating_disengaged, log_rating_engaged
from benchmark.science.latent.fit import loglik_torch
from benchmark.science.latent.models import P_DISENGAGED_FIRST, Sequences, params_sample
from benchmark.science.latent.network import LatentGRU, features, predict

POOL = np.linspace(5, 95, 150)


def _params(n, **fixed):
    p = params_sample("drift", n, np.random.default_rng(99))
    for k, v in fixed.items():
        p[k] = np.full(n, float(v))
    return p


def _brute_force(log_e, lam, rho, mask):
    """Posterior P(z_t = 1) by summing the joint probability of every path of the real trials."""
    length = int(mask.sum())
    log_a = np.log([[1 - lam, lam], [rho, 1 - rho]])
    paths, weights = [], []
    for path in itertools.product([0, 1], repeat=length):
        lw = np.log([1 - P_DISENGAGED_FIRST, P_DISENGAGED_FIRST])[path[0]] + log_e[0, path[0]]
        for t in range(1, length):
            lw += log_a[path[t - 1], path[t]] + log_e[t, path[t]]
        paths.append(path)
        weights.append(lw)
    weights = np.array(weights)
    total = np.logaddexp.reduce(weights)
    post = np.exp(weights - total) @ np.array(paths, dtype=float)
    return post, total


def test_forward_backward_matches_brute_force_enumeration():
    rng = np.random.default_rng(1)
    n, n_trials = 6, 8
    seqs = simulate("engagement", n, pool=POOL, rng=rng, n_trials=n_trials, min_trials=3)
    # Unsure answers, missing response times, a repeat and extreme ratings, all in the short sequences.
    seqs.rating[0, 2] = np.nan
    seqs.rt_ms[1, :4] = np.nan
    seqs.rating[2, 1] = seqs.rating[2, 0] = 100.0
    seqs.rating[3, 0] = 0.0
    seqs.params["lam"][:] = 0.3  # switches are common, so every path matters
    p, loglik = engagement_posterior(seqs, seqs.params)
    log_e = log_emissions(seqs, seqs.params)
    for i in range(n):
        expected, total = _brute_force(log_e[i], seqs.params["lam"][i], seqs.params["rho"][i], seqs.mask[i])
        length = seqs.lengths[i]
        np.testing.assert_allclose(p[i, :length], expected, rtol=1e-9, atol=1e-12)
        assert np.isnan(p[i, length:]).all()
        np.testing.assert_allclose(loglik[i], total, rtol=1e-10)


def test_emission_probabilities_sum_to_one_over_the_scale_and_unsure():
    y = np.arange(101, dtype=float)
    for mu, sigma in [(50.0, 10.0), (-30.0, 8.0), (140.0, 25.0), (99.7, 8.0)]:
        total = np.exp(log_rating_engaged(y, np.full(101, mu), np.full(101, sigma))).sum()
        assert total == pytest.approx(1.0, abs=1e-12)
    # Disengaged after a rating of 37: every next value 0…100.
    pairs = np.stack([np.full(101, 37.0), y], axis=1)
    total = np.exp(log_rating_disengaged(pairs, np.full(101, 0.6))[:, 1]).sum()
    assert total == pytest.approx(1.0, abs=1e-12)
    # Unsure with probability u in both states: the emission of an Unsure trial is u exactly.
    seqs = Sequences(
        rating=np.array([[40.0, np.nan]]),
        rt_ms=np.full((1, 2), np.nan),
        consensus=np.array([[50.0, 50.0]]),
        mask=np.ones((1, 2), bool),
    )
    params = {k: v[:1] for k, v in _params(1, u=0.03).items()}
    np.testing.assert_allclose(np.exp(log_emissions(seqs, params)[0, 1]), [0.03, 0.03])


def test_simulator_follows_its_equations():
    rng = np.random.default_rng(2)
    n = 4000
    p = _params(n, lam=0.05, rho=0.2, a=1.2, b=5.0, sigma=10.0, s=0.5, u=0.02, m=9.0, tau=0.4, delta=1.0)
    seqs = simulate("engagement", n, pool=POOL, rng=rng, n_trials=60, params=p)
    z, r, c = seqs.z, seqs.rating, seqs.consensus
    assert z[:, 0].mean() == pytest.approx(0.1, abs=0.015)
    stationary = 0.05 / 0.25
    assert z[:, 40:].mean() == pytest.approx(stationary, abs=0.01)
    assert np.isnan(r).mean() == pytest.approx(0.02, abs=0.003)
    engaged = (z == 0) & ~np.isnan(r) & (c > 30) & (c < 70)  # inside the scale: no censoring
    resid = r[engaged] - (50 + 1.2 * (c[engaged] - 50) + 5.0)
    assert resid.mean() == pytest.approx(0.0, abs=0.1)
    assert resid.std() == pytest.approx(np.sqrt(10.0**2 + 1 / 12), rel=0.02)
    prev = np.roll(r, 1, axis=1)
    dis = (z == 1) & ~np.isnan(r) & ~np.isnan(prev)
    dis[:, 0] = False
    assert (r[dis] == prev[dis]).mean() == pytest.approx(0.5 + 0.5 / 101, abs=0.02)
    log_rt = np.log(seqs.rt_ms)
    assert log_rt[z == 0].mean() - log_rt[z == 1].mean() == pytest.approx(1.0, abs=0.02)


def test_simulated_drift_is_the_stationary_ar1():
    rng = np.random.default_rng(3)
    p = _params(20000, phi=0.9, q=2.0)
    seqs = simulate("drift", 20000, pool=POOL, rng=rng, n_trials=30, params=p)
    sd = 2.0 / np.sqrt(1 - 0.81)
    assert seqs.theta[:, 0].std() == pytest.approx(sd, rel=0.03)
    assert seqs.theta[:, -1].std() == pytest.approx(sd, rel=0.03)
    assert np.corrcoef(seqs.theta[:, 10], seqs.theta[:, 11])[0, 1] == pytest.approx(0.9, abs=0.01)


def test_lengths_vary_and_padding_is_masked():
    seqs = simulate("engagement", 200, pool=POOL, rng=np.random.default_rng(4), n_trials=40, min_trials=10)
    lengths = seqs.lengths
    assert lengths.min() >= 10 and lengths.max() <= 40 and len(set(lengths)) > 10
    assert np.isnan(seqs.rating[~seqs.mask]).all() and np.isnan(seqs.consensus[~seqs.mask]).all()
    # Each annotator sees the pool in a random order, no prompt twice within one pass.
    assert len(np.unique(seqs.consensus[0, : lengths[0]])) == lengths[0]


def test_forward_backward_posteriors_are_calibrated_with_the_true_parameters():
    seqs = simulate("engagement", 2000, pool=POOL, rng=np.random.default_rng(5), n_trials=60)
    p, _ = engagement_posterior(seqs, seqs.params)
    m = seqs.mask
    # The posterior mean of z equals the share of disengaged trials (a property of exact inference).
    assert p[m].mean() == pytest.approx(seqs.z[m].mean(), abs=0.01)
    mid = (p[m] > 0.3) & (p[m] < 0.7)
    assert seqs.z[m][mid].mean() == pytest.approx(p[m][mid].mean(), abs=0.1)


def test_torch_likelihood_is_the_numpy_one():
    seqs = simulate("engagement", 30, pool=POOL, rng=np.random.default_rng(6), n_trials=50, min_trials=5)
    seqs.rt_ms[:3] = np.nan
    _, loglik = engagement_posterior(seqs, seqs.params)
    np.testing.assert_allclose(loglik_torch(seqs, seqs.params), loglik, rtol=1e-9)


def test_map_fit_recovers_each_annotators_scale():
    rng = np.random.default_rng(7)
    n = 40
    p = params_sample("engagement", n, rng)
    p["lam"][:] = 0.03
    seqs = simulate("engagement", n, pool=POOL, rng=rng, n_trials=150, params=p)
    fitted = map_fit(seqs, steps=150)
    assert np.median(np.abs(fitted["b"] - p["b"])) < 4
    assert np.median(np.abs(fitted["a"] - p["a"])) < 0.12
    assert np.median(np.abs(fitted["delta"] - p["delta"])) < 0.3


def test_particle_smoother_agrees_with_exact_inference_when_drift_vanishes():
    rng = np.random.default_rng(8)
    p = _params(12, phi=0.5, q=1e-3, lam=0.2)
    seqs = simulate("drift", 12, pool=POOL, rng=rng, n_trials=40, params=p)
    exact, _ = engagement_posterior(seqs, p)
    smoothed, theta = particle_smoother(seqs, p, n_particles=300, seed=1)
    assert np.abs(smoothed - exact)[seqs.mask].mean() < 0.02
    assert np.abs(theta[seqs.mask]).max() < 0.05


def test_particle_smoother_tracks_the_drift():
    rng = np.random.default_rng(9)
    p = _params(20, phi=0.98, q=3.0)
    seqs = simulate("drift", 20, pool=POOL, rng=rng, n_trials=80, params=p)
    _, theta = particle_smoother(seqs, p, n_particles=100, seed=2)
    err = np.mean((theta - seqs.theta)[seqs.mask] ** 2)
    assert err < 0.5 * np.var(seqs.theta[seqs.mask])


def test_network_ignores_padding_and_sees_both_directions():
    torch.manual_seed(0)
    net = LatentGRU(hidden=8, layers=2)
    seqs = simulate("engagement", 3, pool=POOL, rng=np.random.default_rng(10), n_trials=30, min_trials=10)
    x = torch.from_numpy(features(seqs, use_rt=True))
    lengths = torch.from_numpy(seqs.lengths)
    out, _ = net(x, lengths)
    noisy = x.clone()
    noisy[~torch.from_numpy(seqs.mask)] = 7.0
    out2, _ = net(noisy, lengths)
    m = torch.from_numpy(seqs.mask)
    assert torch.allclose(out[m], out2[m], atol=1e-6)
    # A change at the last real trial reaches the first one (the backward direction).
    later = x.clone()
    later[0, lengths[0] - 1, 0] += 0.5
    out3, _ = net(later, lengths)
    assert not torch.allclose(out[0, 0], out3[0, 0])


def test_no_rt_features_hide_response_times():
    seqs = simulate("engagement", 2, pool=POOL, rng=np.random.default_rng(11), n_trials=10)
    a = features(seqs, use_rt=False)
    b = features(seqs.without_rt(), use_rt=False)
    np.testing.assert_array_equal(a, b)
    assert (a[..., 4] == 1).all()


def test_tiny_network_learns_and_its_checkpoint_round_trips(tmp_path):
    cfg = TrainConfig(
        model="drift",
        hidden=8,
        layers=1,
        n_trials=40,
        min_trials=20,
        train_per_epoch=512,
        n_val=128,
        batch=64,
        max_epochs=3,
        patience=5,
        lr=1e-2,
        threads=1,
    )
    net, record = train(cfg, pool=POOL)
    history = [h["val_loss"] for h in record["history"]]
    assert len(history) == 3 and min(history[1:]) < history[0]
    path = tmp_path / "tiny.pt"
    checkpoint_save(path, net, cfg, record, {"note": "tiny"})
    ckpt = checkpoint_load(path, model="drift")
    seqs = simulate("drift", 5, pool=POOL, rng=np.random.default_rng(12), n_trials=40)
    p1, t1 = predict(net, seqs, use_rt=True)
    p2, t2 = ckpt.predict(seqs)
    np.testing.assert_allclose(p1, p2)
    np.testing.assert_allclose(t1, t2)
    assert ckpt.report == {"note": "tiny"} and ckpt.config["hidden"] == 8
    with pytest.raises(CheckpointError, match="of the 'drift' model, not 'engagement'"):
        checkpoint_load(path, model="engagement")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a latent-state checkpoint"):
        checkpoint_load(junk)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint_load(tmp_path / "missing.pt")


def _frame(**changes):
    frame = pd.DataFrame(
        {
            "annotator": ["A", "A", "A", "B", "B"],
            "trial": [3.0, 1.0, 2.0, 1.0, 2.0],
            "rating": [30.0, np.nan, 40.0, 90.0, 90.0],
            "rt_ms": [5000.0, 8000.0, np.nan, 900.0, 800.0],
            "consensus": [35.0, 60.0, 42.0, 20.0, 25.0],
        }
    )
    for column, (row, value) in changes.items():
        frame.loc[row, column] = value
    return frame


def test_frames_are_sorted_by_trial_and_estimates_return_in_row_order():
    seqs, layout = sequences_from_frame(_frame())
    assert layout.annotators == ["A", "B"]
    np.testing.assert_array_equal(seqs.lengths, [3, 2])
    np.testing.assert_array_equal(seqs.rating[0], [np.nan, 40.0, 30.0])
    torch.manual_seed(0)
    cfg = TrainConfig(model="engagement", hidden=4, layers=1)
    from benchmark.science.latent.network import Checkpoint

    ckpt = Checkpoint(net=LatentGRU(4, 1), model="engagement", use_rt=True, config={}, training={}, report={})
    rows, summary = infer_frame(_frame(), ckpt)
    p, _ = ckpt.predict(seqs)
    assert rows.loc[0, "p_disengaged"] == pytest.approx(p[0, 2])  # row 0 is A's third trial
    assert rows.loc[3, "p_disengaged"] == pytest.approx(p[1, 0])
    assert "theta" not in rows and cfg.model == "engagement"
    assert summary["expected_disengaged"].tolist() == pytest.approx([p[0].sum(), np.nansum(p[1])])
    assert summary["flag_review"].dtype == bool


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_frame().drop(columns="consensus"), "missing column(s): consensus"),
        (_frame(rating=(2, 150.0)), "row 3: rating 150 is outside the scale 0–100"),
        (_frame(rating=(4, -1.0)), "row 5: rating -1 is outside"),
        (_frame().astype({"rating": object}).assign(rating=["x", None, 4, 5, 6]), "row 1: rating 'x' is not a number"),
        (_frame(rt_ms=(1, 0.0)), "row 2: rt_ms 0 must be a positive number"),
        (_frame(consensus=(0, np.nan)), "row 1: consensus must be a number"),
        (_frame(trial=(1, 3)), "row 2: annotator 'A' has trial 3 twice"),
        (_frame(trial=(1, 1.5)), "row 2: trial must be an integer"),
        (_frame().assign(annotator=["A", "", "A", "B", "B"]), "row 2: annotator is empty"),
    ],
)
def test_bad_tables_name_the_row(frame, message):
    with pytest.raises(LatentInputError) as info:
        sequences_from_frame(frame)
    assert message in str(info.value)


def test_length_buckets_cover_every_sequence_once_in_batches_of_similar_length():
    from benchmark.science.latent.network import _length_buckets

    rng = np.random.default_rng(13)
    lengths = rng.integers(20, 151, 1000)
    order = _length_buckets(lengths, 64, rng)
    assert sorted(order.tolist()) == list(range(1000))
    spreads = [np.ptp(lengths[order[i : i + 64]]) for i in range(0, 1000, 64)]
    assert max(spreads) < 20  # a random batch would span ~120 trials
    seqs = simulate("engagement", 4, pool=POOL, rng=rng, n_trials=50, min_trials=10)
    short = seqs.subset(np.argsort(seqs.lengths)[:2]).trimmed()
    assert short.rating.shape[1] == short.lengths.max()
    assert short.mask.all(axis=1).any()  # the longer of the two has no padding left
