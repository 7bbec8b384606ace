"""Steering benchmark (issue 15): the server time of one slider move, at 15,000 and 1.5 million ratings.

A slider move posts 16 weights to the steering endpoint; the server takes the study's cached steering
model (built once per study version) and re-scores every prompt. Each request is timed in-process
around Django's test client (no network): session, access check, the study's version (one aggregate
over its annotators), the cache read, the product and the rendering of the results table. The one-off
build of the model (it reads every rating) is reported beside it. Target: p95 ≤ 50 ms per move.

Run: `python -m bench steering [--quick]` (quick: 1,000 synthetic annotators instead of 10,000).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, database_url, django_setup, machine_info, prepare_database, write_section

MOVES = 50
P95_TARGET_MS = 50.0
N_SYNTHETIC = 10_000
QUICK_SYNTHETIC = 1_000


def _moves(client, slug: str, rng) -> list[float]:
    """Open the steering page (it builds the model if the study changed), then move sliders as its form
    does: each move names the model version the page was built from."""
    import re

    from django.urls import reverse

    page = client.get(reverse("benchmark:steering", args=[slug])).content.decode()
    version = re.search(r'name="model" value="([0-9a-f]{32})"', page).group(1)
    url = reverse("benchmark:steering_score", args=[slug])
    timings = []
    for _ in range(MOVES):
        data = {"model": version, **{f"w{i}": f"{value:.3f}" for i, value in enumerate(rng.random(16))}}
        start = time.perf_counter()
        response = client.post(url, data, HTTP_HX_REQUEST="true")
        timings.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"slider move failed with {response.status_code}: {response.content[:300]!r}")
    return timings


def _case(client, study, rng) -> dict:
    from annotation.models import Rating
    from benchmark import steering

    n_ratings = Rating.objects.filter(annotator__study=study).count()
    start = time.perf_counter()
    steering.steering_model_build(study=study)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    timings = np.sort(_moves(client, study.slug, rng))  # the page load builds and caches the model
    first = [(time.perf_counter() - start) * 1000 - float(timings.sum())]
    return {
        "slug": study.slug,
        "ratings": n_ratings,
        "build_s": build_s,
        "first_ms": first[0],
        "median": statistics.median(timings),
        "p95": float(np.percentile(timings, 95)),
        "max": float(timings[-1]),
    }


def run(quick: bool = False) -> bool:
    url, owned = database_url()
    prepare_database(url, owned)
    django_setup(url)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from annotation.importers import pluriharms_import
    from annotation.models import Study
    from bench.import_export import make_synthetic

    call_command("migrate", verbosity=0)
    Study.objects.filter(slug__in=["bench-steer-release", "bench-steer-synthetic"]).delete()
    user = get_user_model().objects.create_user("bench-steering", password="bench-steering-pw")
    client = Client()
    client.force_login(user)
    rng = np.random.default_rng(11)
    n_synthetic = QUICK_SYNTHETIC if quick else N_SYNTHETIC
    release = pluriharms_import(
        directory=REPO / "benchmark" / "datasets" / "pluriharms", slug="bench-steer-release", owner=user
    )
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic(Path(tmp), n_synthetic)
        synthetic = pluriharms_import(directory=tmp, slug="bench-steer-synthetic", owner=user)
    cases = [_case(client, release, rng), _case(client, synthetic, rng)]
    passed = all(case["p95"] <= P95_TARGET_MS for case in cases)
    machine = machine_info()
    lines = [
        "<!-- bench:steering -->",
        "## Steering: one slider move (issue 15)",
        "",
        f"Run {machine['date']} with `.venv/bin/python -m bench steering`.",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']} memory, "
        f"Python {machine['python']}, PostgreSQL {machine['postgresql']}.",
        "",
        "| Study | Ratings | Model build s (once per version) | Page load ms | Median ms | p95 ms | Max ms "
        "| Target | Result |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
        *[
            f"| {c['slug']} | {c['ratings']:,} | {c['build_s']:.2f} | {c['first_ms']:.0f} | {c['median']:.1f} | "
            f"{c['p95']:.1f} | {c['max']:.1f} | p95 ≤ {P95_TARGET_MS:g} ms | "
            f"{'PASS' if c['p95'] <= P95_TARGET_MS else 'FAIL'} |"
            for c in cases
        ],
        "",
        f"The steering page is opened once (it builds the model when the study changed: it reads every rating, "
        "and stores the model in the cache backend, the database cache here or Redis when `REDIS_URL` is set), "
        f"then {MOVES} slider moves with random weights, each an htmx POST through the real view as the page's "
        "form sends it: session, access check, the cached model of the version the page was built from, the "
        "re-scoring product and the rendering of the 150-row table. The synthetic study is the import "
        "benchmark's generator "
        f"({n_synthetic:,} annotators x 150 prompts).",
        "<!-- /bench:steering -->",
    ]
    text = "\n".join(lines)
    print(text)
    if not quick:
        write_section("steering", text)
    return passed
