import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from benchmark.evaluation import predictor_names, study_benchmark
from benchmark.science.report import to_jsonable
from config.errors import ApplicationError


class Command(BaseCommand):
    help = "Benchmark predictors on a study with the PluriHarms protocol (100/50 prompt splits, MAE on 0–1)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--protocol", default="pluriharms", choices=["pluriharms"])
        parser.add_argument("--splits", type=int, default=10)
        parser.add_argument("--seed", type=int, default=0, help="the first seed")
        parser.add_argument("--seeds", type=int, default=10, help="how many seeds to average (seed, seed + 1, …)")
        parser.add_argument(
            "--locked", action="store_true", help="use the locked seeds (protocol.LOCKED_SEEDS), for claims"
        )
        parser.add_argument("--predictors", default="", help="comma-separated names (default: every built-in one)")
        parser.add_argument(
            "--conditions", default="", help="comma-separated: individual,aggregated,new_annotator,warm"
        )
        parser.add_argument("--json", dest="out", required=True, help="file to write the results to ('-' for stdout)")

    def handle(self, *args, slug, protocol, splits, seed, seeds, locked, predictors, conditions, out, **options):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"no study with slug {slug!r}")
        if splits < 1:
            raise CommandError("--splits must be at least 1")
        if seeds < 1:
            raise CommandError("--seeds must be at least 1")
        names = [p.strip() for p in predictors.split(",") if p.strip()] or None
        unknown = sorted(set(names or []) - set(predictor_names()))
        if unknown:
            raise CommandError(f"unknown predictor(s): {', '.join(unknown)}; known: {', '.join(predictor_names())}")

        def progress(fraction: float, message: str) -> None:
            self.stderr.write(f"[{fraction:4.0%}] {message}")

        try:
            summary, _ = study_benchmark(
                study=study,
                predictors=names,
                n_splits=splits,
                seed=seed,
                n_seeds=seeds,
                locked=locked,
                conditions=[c.strip() for c in conditions.split(",") if c.strip()] or None,
                progress=progress,
            )
        except (ApplicationError, ValueError) as exc:
            raise CommandError(getattr(exc, "message", str(exc))) from exc
        text = json.dumps(to_jsonable(summary), indent=1)
        if out == "-":
            self.stdout.write(text)
        else:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text)
        for row in summary["results"]:
            self.stderr.write(
                f"{row['predictor']:>26} {row['condition']:<14} MAE {row['mae']:.3f} "
                f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] over {row['n_seeds']} seeds (SD {row['sd_seeds']:.4f})"
            )
