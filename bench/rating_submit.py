"""Rating submission benchmark (issue 3): the server side of one rating, on PostgreSQL.

Annotators enter a recruiting study over the 150 release prompts (2 attention checks each) through
the real views (link → consent → instructions), then submit every trial as the browser does: an
htmx POST to the rating endpoint, through the middleware, session, service and the next card's
rendering. Each request is timed on its own (time.perf_counter around Django's test client, which
calls the WSGI handler in-process, so no network is measured). Target: p95 ≤ 25 ms.

Run: `python -m bench rating_submit [--quick]`.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from bench.common import (
    database_url,
    django_setup,
    machine_info,
    prepare_database,
    write_section,
)

N_ANNOTATORS = 20
QUICK_ANNOTATORS = 3
P95_TARGET_MS = 25.0


def _setup_study():
    from annotation.importers import prompts_create
    from annotation.models import Study
    from benchmark.science.release import RELEASE_DIR, release_read

    Study.objects.filter(slug="bench-rate").delete()
    study = Study.objects.create(
        slug="bench-rate",
        title="Rating benchmark",
        status=Study.Status.RECRUITING,
        attention_checks=2,
        instruments=[],
        completion_code="BENCH",
    )
    release = release_read(RELEASE_DIR)
    prompts_create(study=study, prompts=release.prompts, feature_columns=release.feature_columns)
    return study


def _annotator_timings(study, index: int, rng) -> tuple[list[float], int]:
    from django.test import Client
    from django.urls import reverse

    from annotation.models import Annotator

    client = Client()
    client.get(f"/s/{study.slug}/?PROLIFIC_PID=bench{index:019d}&STUDY_ID=bench&SESSION_ID=s{index}")
    client.post(reverse("take:consent", args=[study.slug]), {"consent": "agree"})
    client.post(reverse("take:instructions", args=[study.slug]))
    annotator = Annotator.objects.get(study=study, pseudonym=f"P{index + 1:04d}")
    trials = list(annotator.assignments.order_by("position").values_list("pk", "kind", "check_spec"))
    client.get(reverse("take:rate", args=[study.slug]))
    timings = []
    for pk, kind, spec in trials:
        value = spec["expected"] if kind == "attention" else int(rng.integers(0, 101))
        data = {"rating": str(value), "rt_ms": str(int(rng.integers(1500, 9000))), "idempotency_key": f"b{pk}"}
        start = time.perf_counter()
        response = client.post(reverse("take:rate_submit", args=[study.slug, pk]), data, HTTP_HX_REQUEST="true")
        timings.append((time.perf_counter() - start) * 1000)
        if response.status_code not in (200, 204):
            raise RuntimeError(f"submission failed with {response.status_code}: {response.content[:300]!r}")
    return timings, len(trials)


def run(quick: bool = False) -> bool:
    url, owned = database_url()
    prepare_database(url, owned)
    django_setup(url)
    from django.core.management import call_command

    from annotation.models import Rating

    call_command("migrate", verbosity=0)
    study = _setup_study()
    rng = np.random.default_rng(7)
    n = QUICK_ANNOTATORS if quick else N_ANNOTATORS
    timings: list[float] = []
    for index in range(n):
        got, _ = _annotator_timings(study, index, rng)
        timings.extend(got)
    stored = Rating.objects.filter(annotator__study=study).count()
    assert stored == len(timings), f"{stored} ratings stored for {len(timings)} submissions"
    ordered = np.sort(timings)
    median = statistics.median(ordered)
    p95 = float(np.percentile(ordered, 95))
    p99 = float(np.percentile(ordered, 99))
    passed = p95 <= P95_TARGET_MS
    machine = machine_info()
    lines = [
        "<!-- bench:rating_submit -->",
        "## Rating submission (issue 3)",
        "",
        f"Run {machine['date']} with `.venv/bin/python -m bench rating_submit`.",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, "
        f"Python {machine['python']}, PostgreSQL {machine['postgresql']}.",
        "",
        "| Submissions | Median ms | p95 ms | p99 ms | Max ms | Target | Result |",
        "|---:|---:|---:|---:|---:|---|---|",
        f"| {len(timings):,} | {median:.1f} | {p95:.1f} | {p99:.1f} | {ordered[-1]:.1f} | p95 ≤ {P95_TARGET_MS:g} ms | "
        f"{'PASS' if passed else 'FAIL'} |",
        "",
        f"{n} annotators each rate all 150 release prompts plus 2 attention checks through the real views: an "
        "htmx POST per trial, through middleware, session, the `rating_submit` service (row lock, checks, "
        "insert, progress) and rendering of the next card. Timed in-process around Django's test client (no "
        "network); every submission is checked to have stored exactly one rating.",
        "<!-- /bench:rating_submit -->",
    ]
    text = "\n".join(lines)
    print(text)
    if not quick:
        write_section("rating_submit", text)
    return passed
