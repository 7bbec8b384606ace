"""Researcher pages at 1.5 million ratings (issue 14): five pages of a 10,000 × 150 study, server time.

The study is the synthetic one of bench/import_export.py (10,000 annotators × the release's 150 prompts,
seeded, uniformly random ratings, 2 % Unsure), imported once with `import_pluriharms` into its own
PostgreSQL database and kept there for later runs, with its agreement report (the analysis job, without
the mixed models: `n_boot` 200). Pages, through Django's test client in this process (middleware, views,
templates; no network): the study page, the collection dashboard, the agreement dashboard, the
participants table (first page; and sorted by agreement) and a prompt page (all annotators; and by a
demographic group).

Each page is timed twice, ~20 requests each: warm (the page asked again, nothing written in between) and
cold (a new rating submitted through `rating_submit` just before each request, so every request follows
a write and finds its cached data stale). The new ratings come from one bench annotator added to the
study with a trial for every prompt (removed again at the next run). Target: ≤ 300 ms server time.

Database: DATABASE_URL if set, else postgres://postgres@127.0.0.1:5432/pluriharms_bench_pages (created if
missing, never dropped). Cache: Redis at REDIS_URL (default redis://127.0.0.1:6379/3), as in production.

Run: `python -m bench pages [--quick]` (quick: 5 requests a case, BENCHMARKS.md left alone; the study is
still the big one, built on the first run: about 3 minutes).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import database_url, django_setup, machine_info, prepare_database, write_section

SLUG = "pages-synth"
TARGET_MS = 300.0
RUNS = 20
QUICK_RUNS = 5
DEFAULT_DATABASE = "pluriharms_bench_pages"
DEFAULT_REDIS = "redis://127.0.0.1:6379/3"
BENCH_PSEUDONYM = "PBENCH"
AFTER_QUESTIONNAIRE = "prompt page, after a questionnaire"  # cold: an annotator's demographics saved before each
REPORT_PARAMS = {"mixed_effects": False, "n_boot": 200}


def _study():
    """The 10,000 × 150 study, imported on the first run."""
    from django.core.management import call_command

    from annotation.models import Study
    from bench.import_export import SYNTH_ANNOTATORS, make_synthetic

    study = Study.objects.filter(slug=SLUG).first()
    if study is None:
        with tempfile.TemporaryDirectory() as directory:
            print(f"building the {SYNTH_ANNOTATORS:,} × 150 study (once) …", flush=True)
            make_synthetic(Path(directory), SYNTH_ANNOTATORS)
            call_command("import_pluriharms", directory, study=SLUG, verbosity=0)
        study = Study.objects.get(slug=SLUG)
    return study


def _researcher(study):
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-pages")
    if study.owner_id != user.pk:
        type(study).objects.filter(pk=study.pk).update(owner=user)
        study.refresh_from_db()
    return user


def _report(study):
    """The study's agreement report: the latest analysis job, run here (about a minute) if none exists."""
    from benchmark.selectors import job_latest_succeeded
    from jobs.services import job_create, job_run

    job = job_latest_succeeded(study=study, kind="analysis", result=False)
    if job is None:
        print("computing the agreement report (once) …", flush=True)
        job = job_run(job_id=job_create(kind="analysis", study=study, params=REPORT_PARAMS).pk)
        if job.status != "succeeded":
            raise SystemExit(f"the report job failed: {job.error}")
    return job


def _rater(study):
    """`rate()`: a new rating, through rating_submit, by bench annotators (PBENCH1, PBENCH2, …: one trial
    per prompt each, a new one when the last has answered them all; earlier runs' are removed first)."""
    from django.utils import timezone

    from annotation.models import Annotator, Assignment
    from annotation.services.rating import rating_submit

    Annotator.objects.filter(study=study, pseudonym__startswith=BENCH_PSEUDONYM).delete()
    prompts = list(study.prompts.order_by("order", "id").values_list("id", flat=True))
    state = {"annotator": None, "trials": iter(()), "n": 0}

    def next_rater():
        now = timezone.now()
        state["n"] += 1
        annotator = Annotator.objects.create(
            study=study,
            pseudonym=f"{BENCH_PSEUDONYM}{state['n']}",
            recruitment_hash=f"bench-pages-{state['n']}",
            status=Annotator.Status.RATING,
            consented_at=now,
            last_seen_at=now,
        )
        Assignment.objects.bulk_create(
            Assignment(annotator=annotator, prompt_id=pid, kind=Assignment.Kind.PROMPT, position=i, shown_at=now)
            for i, pid in enumerate(prompts)
        )
        annotator.study = study
        state["annotator"] = annotator
        state["trials"] = iter(
            Assignment.objects.filter(annotator=annotator).order_by("position").values_list("id", flat=True)
        )

    def rate() -> None:
        trial = next(state["trials"], None)
        if trial is None:
            next_rater()
            trial = next(state["trials"])
        outcome = rating_submit(
            annotator=state["annotator"], assignment_id=trial, raw_value="42", unsure=False, rt_ms=3000
        )
        assert outcome.created

    def answer() -> None:
        """A questionnaire answered: the bench annotator's demographics saved as survey_submit saves them
        (study_cache: the annotators' version moves, so the prompt page regroups the study's annotators)."""
        annotator = state["annotator"]
        if annotator is None:
            next_rater()
            annotator = state["annotator"]
        state["answers"] = state.get("answers", 0) + 1
        annotator.demographics = {"Gender": "Woman" if state["answers"] % 2 else "Man"}
        annotator.last_seen_at = timezone.now()
        annotator.save(update_fields=["demographics", "traits", "status", "last_seen_at"])

    rate.answer = answer
    return rate


def _pages(study) -> dict[str, str]:
    from django.urls import reverse

    prompt = study.prompts.order_by("order", "id").first()
    group = (study.meta.get("demographic_columns") or ["gender"])[0]
    prompt_url = reverse("benchmark:prompt_detail", args=[study.slug, prompt.external_id])
    participants = reverse("annotation:participants", args=[study.slug])
    return {
        "study page": reverse("annotation:study_detail", args=[study.slug]),
        "collection dashboard": reverse("benchmark:overview", args=[study.slug]),
        "agreement dashboard": reverse("benchmark:agreement", args=[study.slug]),
        "participants table": participants,
        "participants, sorted by agreement": f"{participants}?sort=-agreement_r&page=3",
        "prompt page": prompt_url,
        f"prompt page by {group}": f"{prompt_url}?group={group}",
        AFTER_QUESTIONNAIRE: prompt_url,
    }


def _time(client, path: str) -> tuple[float, float]:
    """(wall ms, this process's CPU ms) of one request."""
    start, cpu = time.perf_counter(), time.process_time()
    response = client.get(path)
    elapsed, cpu = (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000
    if response.status_code != 200:
        raise SystemExit(f"{path}: HTTP {response.status_code}")
    return elapsed, cpu


def _summary(samples: list[tuple[float, float]]) -> dict:
    ordered = sorted(wall for wall, _ in samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median": statistics.median(ordered),
        "p95": p95,
        "max": ordered[-1],
        "cpu": statistics.median(cpu for _, cpu in samples),
        "n": len(ordered),
    }


def run(quick: bool = False) -> bool:
    url, _ = database_url()
    url = os.environ.get("DATABASE_URL") or url.rsplit("/", 1)[0] + "/" + DEFAULT_DATABASE
    prepare_database(url, owned=False)
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS)
    os.environ.setdefault("RATING_RATE_LIMIT", "100000/1m")  # the bench annotator answers far faster than a person
    django_setup(url)
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    study = _study()
    user = _researcher(study)
    job = _report(study)
    n_annotators = study.annotators.count()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM annotation_rating r JOIN annotation_annotator a ON a.id = r.annotator_id "
            "WHERE a.study_id = %s",
            [study.pk],
        )
        n_ratings = cursor.fetchone()[0]
    rate = _rater(study)
    client = Client()
    client.force_login(user)
    runs = QUICK_RUNS if quick else RUNS
    pages = _pages(study)
    load_before = os.getloadavg()
    results = {}
    for name, path in pages.items():
        write = rate.answer if name == AFTER_QUESTIONNAIRE else rate
        write()
        _time(client, path)  # the first request of the page: Django's and Python's own first-time costs
        warm = [_time(client, path) for _ in range(runs)]
        cold = []
        for _ in range(runs):
            write()
            cold.append(_time(client, path))
        results[name] = {"warm": _summary(warm), "cold": _summary(cold)}
        print(
            f"{name}: warm median {results[name]['warm']['median']:.1f} ms p95 {results[name]['warm']['p95']:.1f}; "
            f"cold median {results[name]['cold']['median']:.1f} ms p95 {results[name]['cold']['p95']:.1f}",
            flush=True,
        )
    load_after = os.getloadavg()
    machine = machine_info()
    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    passed = all(r["warm"]["p95"] <= TARGET_MS and r["cold"]["p95"] <= TARGET_MS for r in results.values())
    warm_ok = all(r["warm"]["p95"] <= TARGET_MS for r in results.values())

    def verdict(summary) -> str:
        return "PASS" if summary["p95"] <= TARGET_MS else "FAIL"

    lines = [
        "<!-- bench:pages -->",
        "## Researcher pages at 1.5 million ratings (issue 14)",
        "",
        f"Run {machine['date']} with `.venv/bin/python -m bench pages`" + (" --quick" if quick else "") + ".",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, Python {machine['python']}, "
        f"PostgreSQL {machine['postgresql']}; cache: {cache_backend}. Load average before the run "
        f"{load_before[0]:.2f} / {load_before[1]:.2f} (1 / 5 min), after {load_after[0]:.2f} / {load_after[1]:.2f}.",
        "",
        f"Study: {n_annotators:,} annotators × {study.prompts.count()} prompts, {n_ratings:,} ratings (the seeded "
        "generator of bench/import_export.py, plus the bench annotator's new ratings); its agreement report is "
        f"job #{job.pk} (the descriptive report, {REPORT_PARAMS['n_boot']} bootstrap draws, no mixed models).",
        "",
        f"Server time of a request through Django's test client (views, templates, middleware; no network), in ms, "
        f"{runs} requests per case. *Warm*: the page asked again with nothing written in between. *Cold*: a new "
        "rating submitted (rating_submit) just before every request, so each one finds the study's cached data "
        "stale and recomputes what the rating changed (in the last row, an annotator's questionnaire answers saved "
        "instead of a rating). CPU: the median CPU time of this process (Django, not "
        f"PostgreSQL or Redis) per request. Target: ≤ {TARGET_MS:g} ms (judged on p95).",
        "",
        "| Page | Warm median | Warm p95 | Warm CPU | Cold median | Cold p95 | Cold max | Cold CPU | Warm | Cold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, r in results.items():
        w, c = r["warm"], r["cold"]
        lines.append(
            f"| {name} | {w['median']:.1f} | {w['p95']:.1f} | {w['cpu']:.1f} | {c['median']:.1f} | {c['p95']:.1f} | "
            f"{c['max']:.1f} | {c['cpu']:.1f} | {verdict(w)} | {verdict(c)} |"
        )
    lines += [
        "",
        "After a write, the participants table rereads the annotators whose rows changed and recomputes the "
        "agreement column for the whole study from cached arrays (annotation/participant_figures.py), then is "
        "served from the cache until the next write; the prompt page reads "
        "its prompt's ratings (annotator, value, Unsure: 10,000 rows) and takes the annotators' demographic groups "
        "and exclusions from data cached under the study's annotator version, which a rating leaves alone (rebuilt "
        "when a questionnaire, an exclusion or an import changes the annotators); the counters recount one prompt.",
        "",
        "<!-- /bench:pages -->",
    ]
    text = "\n".join(lines)
    print(text)
    if not quick:
        write_section("pages", text)
    return passed if not quick else warm_ok
