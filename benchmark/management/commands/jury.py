import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from benchmark.jury import study_jury
from benchmark.science.report import to_jsonable
from config.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Draw juries of N synthetic annotators from a population mix (raking the study's annotators) and "
        "write what they would say about every prompt: share rating at or above the threshold, with intervals."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        population = parser.add_mutually_exclusive_group()
        population.add_argument(
            "--mix", help='JSON file {"<demographic column>": {"<level>": share, ...}, ...} (default: as collected)'
        )
        population.add_argument("--census", help="a shipped named census (benchmark/datasets/census/NAME.json)")
        parser.add_argument("--size", type=int, default=1000, help="members per jury (N)")
        parser.add_argument("--juries", type=int, default=200, help="bootstrap juries")
        parser.add_argument("--threshold", type=float, default=50.0, help="harm threshold: rating ≥ this (0–100)")
        parser.add_argument("--predictor", default="", help="a new-annotator predictor (default: the best one)")
        parser.add_argument(
            "--ratings",
            action="store_true",
            help="also use the members' own ratings of other prompts (a warm predictor; default observed_ramp)",
        )
        parser.add_argument("--fits", type=int, default=5, help="refits of the predictor (its uncertainty)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--validate", action="store_true", help="also hold out 30 annotators and validate")
        parser.add_argument("--json", dest="out", required=True, help="file to write the result to ('-' for stdout)")

    def handle(
        self,
        *args,
        slug,
        mix,
        census,
        size,
        juries,
        threshold,
        predictor,
        ratings,
        fits,
        seed,
        validate,
        out,
        **options,
    ):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"no study with slug {slug!r}")
        if size < 1 or juries < 2 or fits < 1:
            raise CommandError("--size must be ≥ 1, --juries ≥ 2 and --fits ≥ 1")
        if not 0 <= threshold <= 100:
            raise CommandError("--threshold is a rating from 0 to 100")
        requested = None
        if mix:
            try:
                requested = json.loads(Path(mix).read_text(encoding="utf-8"))
            except OSError as exc:
                raise CommandError(f"cannot read the mix file {mix}: {exc.strerror}") from None
            except json.JSONDecodeError as exc:
                raise CommandError(f"the mix file {mix} is not JSON: {exc}") from None
            if not isinstance(requested, dict):
                raise CommandError('the mix file must hold {"<column>": {"<level>": share, ...}, ...}')
        mode = "custom" if mix else "census" if census else "collected"

        def progress(fraction: float, message: str) -> None:
            self.stderr.write(f"[{fraction:4.0%}] {message}")

        try:
            result = study_jury(
                study=study,
                mode=mode,
                mix=requested,
                census=census,
                size=size,
                n_juries=juries,
                threshold=threshold,
                predictor=predictor or None,
                n_fits=fits,
                seed=seed,
                ratings=ratings,
                validate=validate,
                progress=progress,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        text = json.dumps(to_jsonable(result), indent=1)
        if out == "-":
            self.stdout.write(text)
        else:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text)
        if not result["raking"]["feasible"]:
            for problem in result["raking"]["problems"]:
                self.stderr.write(f"cannot be met: {problem}")
        moved = sorted(result["prompts"], key=lambda p: -abs(p["shift"]))[:5]
        for p in moved:
            self.stderr.write(
                f"prompt {p['prompt']:>6}: share ≥ {threshold:g} {p['share_harmful']:.2f} "
                f"[{p['ci_low']:.2f}, {p['ci_high']:.2f}], collected {p['collected_share']:.2f}, "
                f"shift {p['shift']:+.2f}"
            )
