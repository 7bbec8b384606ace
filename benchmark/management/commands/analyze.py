import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from benchmark.analysis import study_report
from benchmark.science.report import mixed_effects_markdown, replace_docs_block


class Command(BaseCommand):
    help = "Compute a study's disagreement report (agreement statistics and mixed-effects models) as JSON."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--json", dest="out", required=True, help="file to write the report to ('-' for stdout)")
        parser.add_argument("--no-mixed-effects", action="store_true", help="descriptive statistics only")
        parser.add_argument(
            "--include-excluded", action="store_true", help="keep annotators excluded for failed attention checks"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--n-boot", type=int, default=1000)
        parser.add_argument(
            "--docs",
            default="",
            help="also write the mixed models (RQ1–RQ3) as Markdown into this file's <!-- analyze:mixed_effects --> "
            "block (docs/analysis.md), or '-' to print it",
        )

    def handle(self, *args, slug, out, no_mixed_effects, include_excluded, seed, n_boot, docs, **options):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"no study with slug {slug!r}")
        if not study.annotators.exists():
            raise CommandError(f"study {slug!r} has no ratings yet")

        def progress(fraction: float, message: str) -> None:
            self.stderr.write(f"[{fraction:4.0%}] {message}")

        report = study_report(
            study=study,
            mixed_effects=not no_mixed_effects,
            include_excluded=include_excluded,
            seed=seed,
            n_boot=n_boot,
            progress=progress,
        )
        if docs and not report.get("mixed_effects"):
            raise CommandError("--docs needs the mixed models (leave out --no-mixed-effects)")
        if docs:
            block = mixed_effects_markdown(report["mixed_effects"])
            if docs == "-":
                self.stdout.write(block)
            else:
                path = Path(docs)
                try:
                    path.write_text(replace_docs_block(path.read_text(encoding="utf-8"), block), encoding="utf-8")
                except (OSError, ValueError) as exc:
                    raise CommandError(f"cannot write the block into {docs}: {exc}") from exc
        text = json.dumps(report, indent=1, allow_nan=False)
        if out == "-":
            self.stdout.write(text)
        else:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text)
        alpha = report.get("krippendorff_alpha_interval")
        rho = report.get("spearman_harm_level_vs_mean")
        self.stderr.write(
            self.style.SUCCESS(
                f"{report['n_ratings']:,} ratings, {report['n_unsure']:,} Unsure; Krippendorff's alpha (interval) "
                f"{alpha:.3f}"
                + (f"; Spearman rho(harm level, mean) {rho:.3f}" if rho is not None else "")
                + ("" if out == "-" else f"; report written to {out}")
            )
        )
