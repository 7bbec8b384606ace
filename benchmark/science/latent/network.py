"""The neural estimator: a bidirectional GRU trained on simulated annotators (torch, CPU).

Following LaseNet (Pan, Li, Thompson & Collins), the network never sees real labels: it is trained on
annotators simulated from a model's priors (`models.simulate`) to output, per trial, p(z_t = disengaged)
(softmax head, cross-entropy) and θ_t (linear head, mean squared error; drift model only). With enough
simulations its outputs approximate the posterior with the parameters integrated out under the prior.

Per-trial inputs (`features`): rating/100 and an Unsure flag; log rt centred on ln 9000 and on the
annotator's own median, and an rt-missing flag; consensus/100; (rating − consensus)/100; and whether
the rating repeats the previous one (the disengaged state's signature, which a GRU would otherwise have
to learn to detect as an exact equality of two real inputs). The variant without response times always
sees rt as missing.

Each epoch draws fresh simulations (so there is no overfitting to a fixed training set, only to the
simulator); training stops early when the loss on a fixed validation set has not improved for
`patience` epochs, or at the time budget, and keeps the best weights. Seeds are fixed.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models import RT_CENTRE, Sequences, model_check, simulate

FORMAT = "pluriharms-latent/1"
N_FEATURES = 10
THETA_SCALE = 10.0  # θ is learned in units of 10 rating points


class CheckpointError(ValueError):
    """A file that is not a latent-state checkpoint, or one of another model or version."""


@dataclass
class TrainConfig:
    model: str = "engagement"
    use_rt: bool = True
    hidden: int = 64
    layers: int = 2
    n_trials: int = 150
    min_trials: int = 20
    train_per_epoch: int = 8192
    n_val: int = 2048
    batch: int = 64
    lr: float = 3e-3
    max_epochs: int = 60
    patience: int = 6
    time_budget_s: float = 540.0
    theta_weight: float = 1.0
    bucket: bool = True  # batches of similar lengths, cut to their longest (about 1.7x faster)
    seed: int = 0
    threads: int = 1
    extra: dict = field(default_factory=dict)


def _reverse_index(lengths: torch.Tensor, n_trials: int) -> torch.Tensor:
    """(n, T) index that reverses each sequence's first `length` trials and leaves its padding in place."""
    t = torch.arange(n_trials)[None, :]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


class LatentGRU(nn.Module):
    """A bidirectional GRU with a softmax head for z_t and a linear head for θ_t.

    Built from unidirectional GRUs: the backward direction runs over each sequence reversed within its
    own length, so padding (at the end) never reaches a real trial. This gives what a packed
    bidirectional GRU gives, about three times faster on CPU than packing.
    """

    def __init__(self, hidden: int = 64, layers: int = 2):
        super().__init__()
        self.forward_layers = nn.ModuleList(
            nn.GRU(N_FEATURES if i == 0 else 2 * hidden, hidden, batch_first=True) for i in range(layers)
        )
        self.backward_layers = nn.ModuleList(
            nn.GRU(N_FEATURES if i == 0 else 2 * hidden, hidden, batch_first=True) for i in range(layers)
        )
        self.z_head = nn.Linear(2 * hidden, 2)
        self.theta_head = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = _reverse_index(lengths, x.shape[1])[:, :, None]
        h = x
        for fwd, bwd in zip(self.forward_layers, self.backward_layers):
            out_f, _ = fwd(h)
            rev = torch.gather(h, 1, index.expand(-1, -1, h.shape[2]))
            out_b, _ = bwd(rev)
            out_b = torch.gather(out_b, 1, index.expand(-1, -1, out_b.shape[2]))
            h = torch.cat([out_f, out_b], dim=-1)
        return self.z_head(h), self.theta_head(h)[..., 0]


def _nanmedian(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=1, keepdims=True)


def _rating_residual_z(y: np.ndarray, c: np.ndarray, rated: np.ndarray) -> np.ndarray:
    """Each rating's residual from the annotator's own line y ≈ α + β c, in robust SDs (0 where unrated).

    A least-squares line, refitted once on the ratings within 2.5 robust SDs of the first (so that
    disengaged, uniform ratings pull it less); the scale is 1.4826 × the median absolute residual, at
    least 3 points. This gives the network each annotator's own use of the scale explicitly."""
    w = rated.astype(float)
    for _ in range(2):
        n = np.maximum(w.sum(axis=1, keepdims=True), 1.0)
        my = (w * y).sum(axis=1, keepdims=True) / n
        mc = (w * c).sum(axis=1, keepdims=True) / n
        var = (w * (c - mc) ** 2).sum(axis=1, keepdims=True)
        slope = np.where(var > 1e-9, (w * (c - mc) * (y - my)).sum(axis=1, keepdims=True) / np.maximum(var, 1e-9), 1.0)
        resid = y - (my + slope * (c - mc))
        scale = np.maximum(1.4826 * _nanmedian(np.where(rated, np.abs(resid), np.nan)), 3.0)
        scale = np.where(np.isfinite(scale), scale, 15.0)
        w = (rated & (np.abs(resid) <= 2.5 * scale)).astype(float)
    return np.where(rated, np.clip(resid / scale, -6, 6), 0.0)


def features(seqs: Sequences, *, use_rt: bool) -> np.ndarray:
    """(n, T, N_FEATURES) float32 network inputs (zeros on padding)."""
    rating, mask = seqs.rating, seqs.mask
    unsure = np.isnan(rating) & mask
    y = np.where(np.isnan(rating), 0.0, rating) / 100.0
    c = np.where(mask, seqs.consensus, 50.0) / 100.0
    prev = np.full_like(rating, np.nan)
    prev[:, 1:] = rating[:, :-1]
    repeat = (rating == prev) & mask
    if use_rt:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_rt = np.log(seqs.rt_ms)
        has_rt = np.isfinite(log_rt) & mask
        log_rt = np.where(has_rt, log_rt, np.nan)
        median = _nanmedian(log_rt)
        median = np.where(np.isfinite(median), median, RT_CENTRE)
        mad = 1.4826 * _nanmedian(np.abs(log_rt - median))
        mad = np.where(np.isfinite(mad), np.maximum(mad, 0.1), 0.45)
        rt_abs = np.where(has_rt, log_rt - RT_CENTRE, 0.0)
        rt_rel = np.where(has_rt, log_rt - median, 0.0)
        rt_z = np.where(has_rt, rt_rel / mad, 0.0)
    else:
        has_rt = np.zeros_like(mask)
        rt_abs = rt_rel = rt_z = np.zeros(rating.shape)
    rated = ~np.isnan(rating) & mask
    res_z = _rating_residual_z(np.where(rated, rating, 0.0), np.where(mask, seqs.consensus, 50.0), rated)
    x = np.stack(
        [
            y,
            unsure,
            np.clip(rt_abs, -5, 5),
            np.clip(rt_rel, -5, 5),
            ~has_rt,
            c,
            np.where(np.isnan(rating), 0.0, y - c),
            repeat,
            np.clip(rt_z, -6, 6),
            res_z,
        ],
        axis=-1,
    ).astype(np.float32)
    x[~mask] = 0.0
    return x


def _tensors(seqs: Sequences, use_rt: bool):
    x = torch.from_numpy(features(seqs, use_rt=use_rt))
    lengths = torch.from_numpy(seqs.lengths.astype(np.int64))
    return x, lengths


def _loss(net, seqs: Sequences, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, lengths = _tensors(seqs, cfg.use_rt)
    mask = torch.from_numpy(seqs.mask)
    logits, theta = net(x, lengths)
    z = torch.from_numpy(seqs.z.astype(np.int64))
    ce = nn.functional.cross_entropy(logits[mask], z[mask])
    if cfg.model == "drift":
        target = torch.from_numpy((seqs.theta / THETA_SCALE).astype(np.float32))
        mse = ((theta[mask] - target[mask]) ** 2).mean()
    else:
        mse = torch.zeros(())
    return ce + cfg.theta_weight * mse, ce, mse


def _length_buckets(lengths: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
    """An epoch's order in which each batch holds sequences of similar length (so a batch can be cut to
    its longest and the GRU does not run over padding), batches themselves in random order."""
    order = np.argsort(lengths + rng.random(len(lengths)), kind="stable")
    full = len(order) // batch * batch
    # Whole batches shuffled, the short remainder last, so slicing every `batch` stays on batch boundaries.
    batches = [order[i : i + batch] for i in range(0, full, batch)]
    return np.concatenate([*(batches[i] for i in rng.permutation(len(batches))), order[full:]])


def train(cfg: TrainConfig, *, pool: np.ndarray, progress=None) -> tuple[LatentGRU, dict]:
    """Train a network for cfg.model; returns it (best validation weights) and a training record."""
    model_check(cfg.model)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    val_rng = np.random.default_rng(cfg.seed + 1_000_003)
    val = simulate(cfg.model, cfg.n_val, pool=pool, rng=val_rng, n_trials=cfg.n_trials, min_trials=cfg.min_trials)
    net = LatentGRU(cfg.hidden, cfg.layers)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    best, best_state, stale, history = float("inf"), None, 0, []
    started = time.perf_counter()
    stop = "max_epochs"
    for epoch in range(cfg.max_epochs):
        net.train()
        data = simulate(
            cfg.model, cfg.train_per_epoch, pool=pool, rng=rng, n_trials=cfg.n_trials, min_trials=cfg.min_trials
        )
        order = _length_buckets(data.lengths, cfg.batch, rng) if cfg.bucket else rng.permutation(data.n)
        for start in range(0, data.n, cfg.batch):
            batch = data.subset(order[start : start + cfg.batch])
            if cfg.bucket:
                batch = batch.trimmed()
            opt.zero_grad()
            loss, _, _ = _loss(net, batch, cfg)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        net.eval()
        with torch.no_grad():
            parts = [_loss(net, val.subset(slice(i, i + 512)), cfg) for i in range(0, val.n, 512)]
        weights = [min(512, val.n - i) for i in range(0, val.n, 512)]
        val_loss = float(np.average([p[0].item() for p in parts], weights=weights))
        val_ce = float(np.average([p[1].item() for p in parts], weights=weights))
        val_mse = float(np.average([p[2].item() for p in parts], weights=weights))
        sched.step(val_loss)
        elapsed = time.perf_counter() - started
        history.append(
            {"epoch": epoch + 1, "val_loss": val_loss, "val_ce": val_ce, "val_theta_mse": val_mse, "seconds": elapsed}
        )
        if progress:
            progress(epoch + 1, val_loss, elapsed)
        if val_loss < best - 1e-5:
            best, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
        if stale >= cfg.patience:
            stop = "early_stopping"
            break
        if elapsed >= cfg.time_budget_s:
            stop = "time_budget"
            break
    net.load_state_dict(best_state)
    net.eval()
    record = {
        "epochs": len(history),
        "stopped_by": stop,
        "seconds": time.perf_counter() - started,
        "best_val_loss": best,
        "history": history,
        "simulated_annotators": len(history) * cfg.train_per_epoch,
    }
    return net, record


@torch.no_grad()
def predict(net: LatentGRU, seqs: Sequences, *, use_rt: bool, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(p_disengaged, θ) per trial, each (n, T), NaN on padding."""
    net.eval()
    p = np.full(seqs.rating.shape, np.nan)
    theta = np.full(seqs.rating.shape, np.nan)
    for start in range(0, seqs.n, batch):
        part = seqs.subset(slice(start, start + batch))
        x, lengths = _tensors(part, use_rt)
        logits, th = net(x, lengths)
        prob = torch.softmax(logits, dim=-1)[..., 1].numpy()
        sl = slice(start, start + part.n)
        p[sl] = np.where(part.mask, prob, np.nan)
        theta[sl] = np.where(part.mask, th.numpy() * THETA_SCALE, np.nan)
    return p, theta


@dataclass
class Checkpoint:
    net: LatentGRU
    model: str
    use_rt: bool
    config: dict
    training: dict
    report: dict

    def predict(self, seqs: Sequences) -> tuple[np.ndarray, np.ndarray]:
        return predict(self.net, seqs, use_rt=self.use_rt)


def checkpoint_save(path: str | Path, net: LatentGRU, cfg: TrainConfig, training: dict, report: dict) -> None:
    payload = {
        "format": FORMAT,
        "model": cfg.model,
        "use_rt": cfg.use_rt,
        "config": asdict(cfg),
        "training": training,
        "report": report,
        "state_dict": net.state_dict(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    Path(path).write_bytes(buffer.getvalue())


def checkpoint_load(path: str | Path, *, model: str | None = None) -> Checkpoint:
    """Load a checkpoint (weights only: no code in the file runs); `model` checks which model it is."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike for a foreign file
        raise CheckpointError(f"{path}: not a latent-state checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a latent-state checkpoint (expected format {FORMAT})")
    if model is not None and payload["model"] != model:
        raise CheckpointError(f"{path}: a checkpoint of the {payload['model']!r} model, not {model!r}")
    cfg = payload["config"]
    net = LatentGRU(cfg["hidden"], cfg["layers"])
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the configuration ({exc})") from None
    net.eval()
    return Checkpoint(
        net=net,
        model=payload["model"],
        use_rt=bool(payload["use_rt"]),
        config=cfg,
        training=payload["training"],
        report=payload["report"],
    )
