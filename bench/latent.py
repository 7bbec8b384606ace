"""Latent annotator states (issue 11): training time, inference speed and validation of the shipped networks.

- Training: each shipped checkpoint (`benchmark/science/latent/checkpoints/*.pt`) carries the record of
  the `manage.py latent train` run that made it on this machine (wall seconds, epochs, why it stopped,
  simulated annotators). With `LATENT_BENCH_RETRAIN=1` the four are retrained here (into a temporary
  folder, the shipped files are left alone) and those runs are reported instead (about 40 minutes).
- Inference: 10,000 simulated annotators × 150 trials through each shipped network (2 threads), and
  exact forward–backward for the same 10,000 (model 1 with the true parameters). Targets: ≤ 20 s.
- Validation (from each checkpoint's report on 1,000 held-out simulated annotators × 150 trials):
  engagement with response times: AUROC ≥ 0.98 and log-loss within 5 % of MAP + forward–backward;
  drift: log-loss ≥ 30 % below the misspecified baseline (model 1's MAP + forward–backward).

The machine is shared; the load average before and after each measurement is written with it.

Run: `python -m bench latent [--quick]` (--quick: 1,000 annotators, BENCHMARKS.md left alone).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import machine_info, write_section

INFER_SECONDS_TARGET = 20.0
TRAIN_SECONDS_TARGET = 600.0
NAMES = ("engagement", "engagement-no-rt", "drift", "drift-no-rt")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _retrain(folder: Path) -> dict[str, Path]:
    from benchmark.science.latent import TrainConfig, checkpoint_train  # noqa: PLC0415

    out = {}
    for name in NAMES:
        model = name.removesuffix("-no-rt")
        cfg = TrainConfig(model=model, use_rt=not name.endswith("-no-rt"))
        path = folder / f"{name}.pt"
        checkpoint_train(cfg, path)
        out[name] = path
    return out


def release_distribution(paths: dict[str, Path]) -> dict:
    """The public release (no response times) through the no-rt networks and through MAP + FB."""
    import numpy as np  # noqa: PLC0415

    from benchmark.science.latent import (  # noqa: PLC0415
        checkpoint_load,
        engagement_posterior,
        infer_frame,
        map_fit,
        release_frame,
        sequences_from_frame,
    )

    frame = release_frame()
    out = {}
    for name in ("engagement-no-rt", "drift-no-rt"):
        if paths[name].is_file():
            _, summary = infer_frame(frame, checkpoint_load(paths[name]))
            out[name] = summary.set_index("annotator")
    seqs, layout = sequences_from_frame(frame)
    fitted = map_fit(seqs, steps=300)
    p_map, _ = engagement_posterior(seqs, fitted)
    out["map_fb"] = np.nansum(p_map, axis=1)
    out["map_params"] = fitted
    rating = seqs.rating
    prev = np.full_like(rating, np.nan)
    prev[:, 1:] = rating[:, :-1]
    out["repeat_share"] = np.nanmean(np.where(np.isnan(rating) | np.isnan(prev), np.nan, rating == prev), axis=1)
    out["annotators"] = layout.annotators
    return out


def _release_section(paths: dict[str, Path]) -> list[str]:
    import numpy as np  # noqa: PLC0415

    r = release_distribution(paths)
    net = r["engagement-no-rt"].loc[r["annotators"], "expected_disengaged"].to_numpy()
    drift = r["drift-no-rt"].loc[r["annotators"], "expected_disengaged"].to_numpy() if "drift-no-rt" in r else None
    qs = (0.1, 0.25, 0.5, 0.75, 0.9)

    def quant(x):
        return " / ".join(f"{np.quantile(x, q):.1f}" for q in qs)

    bins = [0, 1, 2, 5, 10, 20, 40, 150]
    counts = np.histogram(net, bins=bins)[0]
    lines = [
        "",
        "The public release (100 annotators × 150 trials, no response times; leave-one-out consensus), expected",
        "disengaged trials per annotator (Σ_t p(z_t = 1)), quantiles 10 / 25 / 50 / 75 / 90 %:",
        "",
        "| estimate | quantiles | mean | flagged (share ≥ 0.2) |",
        "|---|---|---:|---:|",
        f"| network `engagement-no-rt` | {quant(net)} | {net.mean():.1f} | {(net / 150 >= 0.2).sum()} |",
        *(
            [f"| network `drift-no-rt` | {quant(drift)} | {drift.mean():.1f} | {(drift / 150 >= 0.2).sum()} |"]
            if drift is not None
            else []
        ),
        f"| MAP + forward–backward (model 1) | {quant(r['map_fb'])} | {r['map_fb'].mean():.1f} | "
        f"{(r['map_fb'] / 150 >= 0.2).sum()} |",
        "",
        "Annotators by expected disengaged trials (`engagement-no-rt`): "
        + ", ".join(f"[{lo}, {hi}): {c}" for lo, hi, c in zip(bins[:-1], bins[1:], counts)),
        "",
        f"Spearman ρ between the network's and MAP + FB's counts: "
        f"{_spearman(net, r['map_fb']):.2f}; between the network's count and the share of ratings that repeat "
        f"the previous one: {_spearman(net, r['repeat_share']):.2f}.",
    ]
    return lines


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr  # noqa: PLC0415

    return float(spearmanr(x, y, nan_policy="omit").statistic)


def run(quick: bool = False) -> bool:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from benchmark.science.latent import (  # noqa: PLC0415
        checkpoint_load,
        default_checkpoint,
        engagement_posterior,
        release_pool,
        simulate,
    )

    torch.set_num_threads(2)
    n = 1000 if quick else 10_000
    pool = release_pool()
    paths = {
        name: default_checkpoint(name.removesuffix("-no-rt"), use_rt=not name.endswith("-no-rt")) for name in NAMES
    }
    retrained = os.environ.get("LATENT_BENCH_RETRAIN") == "1" and not quick
    if retrained:
        paths = _retrain(Path(tempfile.mkdtemp(prefix="latent-bench-")))

    missing = [name for name in NAMES if not paths[name].is_file()]
    lines, ok = [], True
    rows = []
    for name in [n for n in NAMES if n not in missing]:
        ckpt = checkpoint_load(paths[name])
        seqs = simulate(ckpt.model, n, pool=pool, rng=np.random.default_rng(2024), n_trials=150)
        before = _load()
        started = time.perf_counter()
        ckpt.predict(seqs)
        seconds = time.perf_counter() - started
        training = ckpt.training
        ok = ok and seconds <= INFER_SECONDS_TARGET and training["seconds"] <= TRAIN_SECONDS_TARGET
        rows.append((name, ckpt, seconds, before, _load()))
    seqs = simulate("engagement", n, pool=pool, rng=np.random.default_rng(2025), n_trials=150)
    started = time.perf_counter()
    engagement_posterior(seqs, seqs.params)
    fb_seconds = time.perf_counter() - started

    info = machine_info()
    lines.append("<!-- bench:latent -->")
    lines.append("## Latent annotator states (issue 11)")
    lines.append("")
    lines.append(
        f"{info['date']} · {info['cpus']} CPUs ({info['cpu']}) · {info['memory']} · Python {info['python']} · "
        f"torch {torch.__version__}, 2 threads"
    )
    lines.append("")
    source = (
        "retrained by this run"
        if retrained
        else "the record stored in each shipped checkpoint by `manage.py latent train`"
    )
    if missing:
        lines.append(f"Not shipped, so not measured: {', '.join(missing)}.")
        lines.append("")
    lines.append(f"Training (target ≤ {TRAIN_SECONDS_TARGET / 60:.0f} min each; {source}):")
    lines.append("")
    lines.append("| checkpoint | wall s | epochs | stopped by | simulated annotators | size | weights |")
    lines.append("|---|---:|---:|---|---:|---:|---:|")
    for name, ckpt, *_ in rows:
        t = ckpt.training
        size = paths[name].stat().st_size / 1024
        weights = sum(p.numel() for p in ckpt.net.parameters())
        lines.append(
            f"| {name} | {t['seconds']:.0f} | {t['epochs']} | {t['stopped_by']} | {t['simulated_annotators']:,} | "
            f"{size:.0f} KiB | {weights:,} |"
        )
    lines.append("")
    lines.append(f"Inference, {n:,} annotators × 150 trials (target ≤ {INFER_SECONDS_TARGET:.0f} s):")
    lines.append("")
    lines.append("| what | seconds | load average before → after |")
    lines.append("|---|---:|---|")
    for name, _, seconds, before, after in rows:
        lines.append(f"| network `{name}` | {seconds:.1f} | {before} → {after} |")
    lines.append(f"| exact forward–backward (model 1, true parameters, numpy) | {fb_seconds:.1f} | |")
    lines.append("")
    lines.append("Validation on held-out simulations (1,000 annotators × 150 trials each, a seed training never used):")
    lines.append("")
    lines.append("| checkpoint | method | log-loss | AUROC | ECE |")
    lines.append("|---|---|---:|---:|---:|")
    for name, ckpt, *_ in rows:
        for method, m in ckpt.report["methods"].items():
            lines.append(f"| {name} | {method} | {m['log_loss']:.4f} | {m['auroc']:.4f} | {m['ece']:.4f} |")
    lines.append("")
    for name, ckpt, *_ in rows:
        r = ckpt.report
        if "network_vs_map_log_loss" in r:
            target = "AUROC ≥ 0.98 and log-loss ≤ MAP + FB × 1.05"
            met = r["methods"]["network"]["auroc"] >= 0.98 and r["network_vs_map_log_loss"] <= 0.05
            verdict = f"{target}: {'met' if met else 'NOT met'}" if name == "engagement" else "no target without rt"
            lines.append(
                f"- `{name}`: network log-loss {100 * r['network_vs_map_log_loss']:+.1f} % vs MAP + FB, AUROC "
                f"{r['methods']['network']['auroc']:.4f} ({verdict})"
            )
            if name == "engagement":
                ok = ok and met
        else:
            met = r["network_vs_baseline_log_loss"] <= -0.30
            ref = (
                r["methods"]["particle_smoother_true"]["log_loss"] / r["methods"]["misspecified_baseline"]["log_loss"]
                - 1
            )
            lines.append(
                f"- `{name}`: network log-loss {100 * r['network_vs_baseline_log_loss']:+.1f} % vs the misspecified "
                f"baseline (target ≤ −30 %: {'met' if met else 'NOT met'}); the particle smoother with the true "
                f"parameters is {100 * ref:+.1f} %; θ R² network {r['theta']['network']['r2']:.3f}, particle smoother "
                f"{r['theta']['particle_smoother_true']['r2']:.3f}"
            )
    lines.extend(_release_section(paths))
    lines.append("<!-- /bench:latent -->")
    text = "\n".join(lines)
    print(text)
    if not quick:
        write_section("latent", text)
    return ok
