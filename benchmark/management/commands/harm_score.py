import json
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from benchmark.science.harm_benefit import AggregationWeights, SafetyAnalystAggregator, TreeError


class Command(BaseCommand):
    help = (
        "Score SafetyAnalyst harm-benefit trees: FILE.json holds one object with a 'harm_benefit_tree' "
        "or a list of them; prints a JSON list of {H, p_harmful} in order."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--weights", default="", help="a 29-value .npy file (default: the reference weights)")
        parser.add_argument("--json", action="store_true", help="print JSON (the default and only output format)")

    def handle(self, *args, file, weights, **options):
        path = Path(file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CommandError(f"{file}: no such file") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{file}: not valid JSON ({exc})") from None
        items = data if isinstance(data, list) else [data]
        trees = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "harm_benefit_tree" not in item:
                raise CommandError(f"{file}: item {i} has no 'harm_benefit_tree'")
            trees.append(item["harm_benefit_tree"])
        try:
            loaded = AggregationWeights.reference() if not weights else AggregationWeights.from_array(np.load(weights))
        except (OSError, ValueError) as exc:
            raise CommandError(f"{weights}: cannot use these weights ({exc})") from None
        model = SafetyAnalystAggregator(loaded)
        try:
            scores = model.score_many(trees)
        except TreeError as exc:
            raise CommandError(f"{file}: {exc}") from None
        out = [{"H": float(h), "p_harmful": float(1 / (1 + np.exp(-h)))} for h in scores]
        self.stdout.write(json.dumps(out))
