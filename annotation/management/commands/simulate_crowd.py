"""Walk the annotator path over HTTP with many simulated annotators, then reconcile with the database."""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.crowd import Crowd, CrowdError, reconcile
from annotation.models import Study


class Command(BaseCommand):
    help = (
        "A load generator: N simulated annotators (C at a time) take the study at URL as browsers would "
        "(link, consent, questionnaires, instructions, every card, completion page); reports latency per "
        "step, throughput, errors and the reconciliation of acknowledged ratings against this database."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="the site's base address, e.g. http://127.0.0.1:8000")
        parser.add_argument("--study", required=True, help="the study's slug (it must be recruiting)")
        parser.add_argument("--annotators", type=int, default=20)
        parser.add_argument("--concurrency", type=int, default=None, help="annotators at once (default: all)")
        parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause before each rating (ms)")
        parser.add_argument("--fail-checks", type=float, default=0.0, help="rate of attention checks failed")
        parser.add_argument("--surveys", action="store_true", help="answer the study's questionnaires")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one answer")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--no-reconcile", action="store_true", help="skip the database check (the site uses another database)"
        )

    def handle(self, *args, **options):
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None and not options["no_reconcile"]:
            raise CommandError(f"No study {options['study']!r} in this database (or pass --no-reconcile).")
        if study is not None and study.status != Study.Status.RECRUITING:
            raise CommandError(f"Study {study.slug!r} is {study.status}: open it for recruitment first.")
        try:
            crowd = Crowd(
                url=options["url"],
                study=options["study"],
                annotators=options["annotators"],
                concurrency=options["concurrency"] or options["annotators"],
                think_ms=options["think_ms"],
                fail_checks=options["fail_checks"],
                surveys=options["surveys"],
                platform_study_id=(study.recruitment_study_id.strip() if study else "") or "SIMULATED",
                timeout=options["timeout"],
                seed=options["seed"],
            )
        except CrowdError as exc:
            raise CommandError(str(exc)) from exc
        report = crowd.run()
        if study is not None and not options["no_reconcile"]:
            report.reconciliation = reconcile(study=study, report=report)
        data = report.as_dict()
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
        else:
            self._print(data)
        rec = data["reconciliation"] or {}
        if rec.get("lost") or rec.get("duplicated") or rec.get("value_mismatch"):
            raise CommandError("reconciliation failed: acknowledged ratings were lost, duplicated or altered")
        if data["errors"]:
            raise CommandError(f"{data['errors']} requests failed; first: {data['error_examples'][0]}")

    def _print(self, data: dict) -> None:
        w = self.stdout.write
        w(
            f"{data['annotators']} annotators ({data['concurrency']} at once, think {data['think_ms']:g} ms): "
            f"{data['ratings_acknowledged']} ratings acknowledged in {data['rating_seconds']} s "
            f"= {data['ratings_per_second']} ratings/s; whole run {data['seconds']} s"
        )
        w(f"outcomes: {data['outcomes']}; retries {data['retries']}; errors {data['errors']}")
        for example in data["error_examples"]:
            w(f"  error: {example}")
        w(f"{'step':<14}{'n':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for row in data["steps"]:
            w(
                f"{row['step']:<14}{row['n']:>8}{row['p50_ms']:>10}{row['p95_ms']:>10}"
                f"{row['p99_ms']:>10}{row['max_ms']:>10}"
            )
        if data["reconciliation"] is not None:
            w("reconciliation: " + ", ".join(f"{k} {v}" for k, v in data["reconciliation"].items()))
