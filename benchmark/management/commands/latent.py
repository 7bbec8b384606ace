"""`manage.py latent train|infer`: train a latent-state network on simulations, or apply one to a CSV."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Latent annotator states. `latent train --model engagement|drift [--no-rt] --out CKPT` trains the "
        "recurrent estimator on simulated annotators and stores its validation report in the checkpoint; "
        "`latent infer CSV --checkpoint CKPT --out OUT.csv` adds p_disengaged (and theta for drift) to each "
        "row of a table with columns annotator, trial, rating, rt_ms, consensus (rating empty for Unsure)."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        tr = sub.add_parser("train", help="train a network on simulations")
        tr.add_argument("--model", required=True, choices=["engagement", "drift"])
        tr.add_argument("--no-rt", action="store_true", help="without response times (like the public release)")
        tr.add_argument("--out", required=True, help="checkpoint file to write")
        tr.add_argument("--seed", type=int, default=0)
        tr.add_argument("--hidden", type=int, default=64)
        tr.add_argument("--layers", type=int, default=2)
        tr.add_argument("--epochs", type=int, default=60, help="most epochs (early stopping usually ends first)")
        tr.add_argument("--per-epoch", type=int, default=8192, help="simulated annotators per epoch")
        tr.add_argument("--patience", type=int, default=6)
        tr.add_argument("--time-budget", type=float, default=540.0, help="seconds of training at most")
        tr.add_argument("--validation", type=int, default=1000, help="held-out annotators in the report")
        tr.add_argument(
            "--threads", type=int, default=1, help="torch threads (1: see docs/latent.md on a shared machine)"
        )
        tr.add_argument("--map-steps", type=int, default=300, help="optimiser steps of the MAP reference")
        inf = sub.add_parser("infer", help="apply a checkpoint to a CSV")
        inf.add_argument("csv")
        inf.add_argument("--checkpoint", required=True)
        inf.add_argument("--out", required=True)
        inf.add_argument("--model", choices=["engagement", "drift"], help="refuse a checkpoint of another model")
        inf.add_argument("--summary", default="", help="also write one row per annotator to this CSV")

    def handle(self, *args, action, **options):
        if action == "train":
            self._train(**options)
        else:
            self._infer(**options)

    def _train(
        self,
        *,
        model,
        no_rt,
        out,
        seed,
        hidden,
        layers,
        epochs,
        per_epoch,
        patience,
        time_budget,
        validation,
        threads,
        map_steps,
        **_,
    ):
        from benchmark.science.latent import TrainConfig, checkpoint_train  # noqa: PLC0415  (torch is slow to import)

        out_path = Path(out)
        if not out_path.parent.is_dir():
            raise CommandError(f"{out}: the directory {out_path.parent} does not exist")
        if min(hidden, layers, epochs, per_epoch, patience, validation, threads, map_steps) < 1:
            raise CommandError("the sizes, counts and steps (--hidden … --map-steps) must be ≥ 1")
        cfg = TrainConfig(
            model=model,
            use_rt=not no_rt,
            hidden=hidden,
            layers=layers,
            max_epochs=epochs,
            train_per_epoch=per_epoch,
            patience=patience,
            time_budget_s=time_budget,
            seed=seed,
            threads=threads,
        )
        if hasattr(os, "nice") and os.getpriority(os.PRIO_PROCESS, 0) < 10:
            os.nice(10 - os.getpriority(os.PRIO_PROCESS, 0))  # a long CPU job yields to the site
        started = time.perf_counter()

        def progress(epoch, loss, seconds):
            self.stderr.write(f"epoch {epoch}: validation loss {loss:.4f} ({seconds:.0f} s)")

        report = checkpoint_train(cfg, out_path, report_n=validation, map_steps=map_steps, progress=progress)
        summary = {
            "checkpoint": str(out_path),
            "seconds": round(time.perf_counter() - started, 1),
            "training": report["training"],
            **{name: {"log_loss": m["log_loss"], "auroc": m["auroc"]} for name, m in report["methods"].items()},
        }
        self.stdout.write(json.dumps(summary, indent=1))

    def _infer(self, *, csv, checkpoint, out, summary, model=None, **_):
        import pandas as pd  # noqa: PLC0415

        from benchmark.science.latent import CheckpointError, LatentInputError, checkpoint_load, infer_frame  # noqa: PLC0415

        try:
            ckpt = checkpoint_load(checkpoint, model=model)
        except CheckpointError as exc:
            raise CommandError(str(exc)) from None
        try:
            frame = pd.read_csv(csv, dtype={"annotator": str}, keep_default_na=False, na_values=[""])
        except FileNotFoundError:
            raise CommandError(f"{csv}: no such file") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise CommandError(f"{csv}: not a readable CSV ({exc})") from None
        try:
            rows, per_annotator = infer_frame(frame, ckpt, row_label=lambda i: f"{csv}, line {i + 2}")
        except LatentInputError as exc:
            message = str(exc)
            raise CommandError(message if message.startswith(csv) else f"{csv}: {message}") from None
        if ckpt.use_rt is False and frame["rt_ms"].notna().any():
            self.stderr.write("note: this checkpoint was trained without response times; rt_ms is ignored")
        rows.to_csv(out, index=False)
        if summary:
            per_annotator.to_csv(summary, index=False)
        flagged = int(per_annotator["flag_review"].sum())
        self.stdout.write(
            f"{len(rows)} rows of {len(per_annotator)} annotators → {out} ({ckpt.model} model, "
            f"{'with' if ckpt.use_rt else 'without'} response times); {flagged} flagged for review"
        )
