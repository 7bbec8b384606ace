"""First chart page load (issue 10): a researcher opens a dashboard in a fresh browser, on loopback.

Starts gunicorn with the production settings of gunicorn.conf.py (static files served by WhiteNoise from
the source folders, as `make demo` and a clone do; the Plotly bundle's gzip copy beside it) on a fresh
PostgreSQL database holding the release-size study (the PluriHarms release: 100 annotators × 150
prompts, 15,000 ratings) with its agreement report. Each run opens a new Chromium context (empty cache,
no cookies but the session's), loads a page and times, inside the page, from the navigation's start to
the first Plotly plot drawn (its SVG in the DOM). Pages: the collection dashboard (3 plots) and the
agreement report (the harm × agreement plane, 150 points). For comparison, the same page with the full
4.8 MB bundle served uncompressed (the bundle before issue 10, from git history) when git has it.
Target: under 1 s.

Run: `python -m bench chart_page [--quick]` (quick: 3 runs per page, a 5-prompt study; BENCHMARKS.md left alone).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import REPO, database_url, django_setup, machine_info, prepare_database, write_section
from bench.load import _free_port, start_server, stop_server

TARGET_S = 1.0
BUSY_NOTE = (
    " **The machine was busy** (a load above its {cpus} cores before the benchmark started, from other work{niced}):"
    " every time above is stretched by waiting for a core, so they bound the page's cost from above; rerun on a"
    " quiet machine to judge the target."
)
RUNS = 9
QUICK_RUNS = 3
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
FULL_BUNDLE_COMMIT = "73e23e2"  # the last commit that served static/vendor/plotly.min.js (4.8 MB)
# Set before any page script: the time (ms since the navigation started) the first plot's SVG appears.
FIRST_PLOT = """
window.__firstPlot = null;
new MutationObserver(function (changes, observer) {
  if (document.querySelector(".js-plotly-plot .main-svg")) {
    window.__firstPlot = performance.now();
    observer.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""


def _setup(quick: bool):
    """The study (release-size, or a 5-prompt slice when quick), its report, and a signed-in session key."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from annotation.importers import pluriharms_import
    from annotation.models import Study
    from jobs.models import Job
    from jobs.services import job_create, job_run

    call_command("migrate", verbosity=0)
    owner, _ = get_user_model().objects.get_or_create(username="bench-researcher")
    Study.objects.filter(slug="chart-bench").delete()  # a database given by DATABASE_URL is not recreated
    release = REPO / "benchmark" / "datasets" / "pluriharms"
    if quick:
        from tests.conftest import write_small_release

        release = write_small_release(Path(tempfile.mkdtemp()) / "small")
    study = pluriharms_import(directory=release, slug="chart-bench", owner=owner)
    started = time.perf_counter()
    job = job_create(kind="analysis", study=study, params={"mixed_effects": False, "n_boot": 200})
    if job_run(job_id=job.pk).status != Job.Status.SUCCEEDED:
        raise RuntimeError("the agreement report failed")
    report_s = time.perf_counter() - started
    client = Client()
    client.force_login(owner)
    size = study.annotators.count(), study.prompts.count()
    return study.slug, client.cookies["sessionid"].value, size, report_s


def _full_bundle() -> bytes | None:
    try:
        return subprocess.run(
            ["git", "show", f"{FULL_BUNDLE_COMMIT}:static/vendor/plotly.min.js"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def _load(browser, base: str, session: str, path: str, full_bundle: bytes | None = None) -> dict:
    context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 800})
    try:
        context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        page = context.new_page()
        page.add_init_script(FIRST_PLOT)
        # The renderer's main-thread work (CDP Performance metrics): the part of the time that is this
        # page's own cost, which a busy machine stretches but does not add to.
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        encodings, sizes = {}, {}
        if full_bundle is not None:
            page.route(
                "**/vendor/plotly-basic.min.js",
                lambda route: route.fulfill(body=full_bundle, content_type="application/javascript"),
            )

        def seen(response):
            if "/vendor/plotly" in response.url:
                encodings["plotly"] = response.headers.get("content-encoding", "identity")
                # Bytes as sent (compressed when gzip), not as decoded: what the network carried.
                sizes["plotly"] = response.request.sizes()["responseBodySize"]

        page.on("response", seen)
        started = time.perf_counter()
        response = page.goto(path, wait_until="commit")
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        page.wait_for_selector(".js-plotly-plot .main-svg", state="attached", timeout=30_000)
        outside_s = time.perf_counter() - started
        first_plot_ms = page.evaluate("window.__firstPlot")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        timing = page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0];"
            " return n ? {ttfb: n.responseStart, dcl: n.domContentLoadedEventStart} : {}; }"
        )
        page.wait_for_load_state("load")
        return {
            "first_plot_s": first_plot_ms / 1000,
            "outside_s": outside_s,
            "ttfb_s": (timing.get("ttfb") or 0) / 1000,
            "main_thread_s": metrics.get("TaskDuration", 0.0),
            "script_s": metrics.get("ScriptDuration", 0.0),
            "encoding": encodings.get("plotly", "?"),
            "bundle_bytes": sizes.get("plotly", 0),
        }
    finally:
        context.close()


def _summary(runs: list[dict]) -> dict:
    values = [r["first_plot_s"] for r in runs]
    return {
        "median": statistics.median(values),
        "max": max(values),
        "min": min(values),
        "outside_median": statistics.median(r["outside_s"] for r in runs),
        "ttfb_median": statistics.median(r["ttfb_s"] for r in runs),
        "main_thread_median": statistics.median(r["main_thread_s"] for r in runs),
        "script_median": statistics.median(r["script_s"] for r in runs),
        "encoding": runs[-1]["encoding"],
        "bundle_bytes": runs[-1]["bundle_bytes"],
        "runs": len(values),
    }


def run(quick: bool = False) -> bool:
    from playwright.sync_api import sync_playwright

    url, owned = database_url()
    prepare_database(url, owned)
    django_setup(url)
    slug, session, (n_annotators, n_prompts), report_s = _setup(quick)
    info = machine_info()
    env = {**os.environ, "DATABASE_URL": url, "PLURIHARMS_DEV": "1", "PYTHONPATH": str(REPO)}
    env.pop("REDIS_URL", None)  # sessions in the database, shared with this process
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    port = _free_port()
    log_path = Path(os.environ.get("PLURIHARMS_ARTIFACTS", "/tmp")) / "bench-chart-page-gunicorn.log"
    server = start_server(env, port, log_path)
    base = f"http://127.0.0.1:{port}"
    pages = {
        "collection dashboard": f"/research/studies/{slug}/overview/",
        "agreement report": f"/research/studies/{slug}/agreement/",
    }
    runs = QUICK_RUNS if quick else RUNS
    full = _full_bundle()
    results: dict[str, dict] = {}
    load_before = os.getloadavg()[:2]
    try:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop in this thread; no ORM from here on
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                _load(browser, base, session, pages["collection dashboard"])  # Chromium's own first start
                for name, path in pages.items():
                    results[name] = _summary([_load(browser, base, session, path) for _ in range(runs)])
                if full is not None:
                    results["collection dashboard, full bundle uncompressed (before)"] = _summary(
                        [_load(browser, base, session, pages["collection dashboard"], full) for _ in range(runs)]
                    )
            finally:
                browser.close()
    finally:
        stop_server(server)
    load_after = os.getloadavg()[:2]
    now = {name: r for name, r in results.items() if "before" not in name}
    met = all(r["median"] < TARGET_S for r in now.values())
    every_run = all(r["max"] < TARGET_S for r in now.values())
    cpus = os.cpu_count() or 1
    # Busy means other work: the load before the first run (afterwards it counts the benchmark's own
    # server and browser too).
    busy = load_before[0] > cpus
    for name, r in results.items():
        print(
            f"{name}: first plot median {r['median']:.3f} s, max {r['max']:.3f} s over {r['runs']} fresh contexts, "
            f"first byte {r['ttfb_median']:.3f} s, main thread {r['main_thread_median']:.3f} s "
            f"(script {r['script_median']:.3f} s) "
            f"(bundle {r['bundle_bytes'] / 1e6:.2f} MB on the wire, {r['encoding']})"
        )
    print(
        f"target < {TARGET_S:.0f} s: median {'met' if met else 'NOT met'}, every run {'yes' if every_run else 'no'}; "
        "load average (1, 5 min) "
        f"{load_before[0]:.2f}, {load_before[1]:.2f} before, {load_after[0]:.2f}, {load_after[1]:.2f} after"
    )
    if quick:
        return met

    rows = "\n".join(
        f"| {name} | {r['median']:.3f} | {r['max']:.3f} | {r['min']:.3f} | {r['ttfb_median']:.3f} | "
        f"{r['main_thread_median']:.3f} ({r['script_median']:.3f}) | {r['outside_median']:.3f} | "
        f"{r['bundle_bytes'] / 1e6:.2f} MB ({r['encoding']}) |"
        for name, r in results.items()
    )
    niced = f"; the benchmark ran at nice {os.nice(0)}" if os.nice(0) > 0 else ""
    note = BUSY_NOTE.format(cpus=cpus, niced=niced) if busy else ""
    text = f"""<!-- bench:chart_page -->
## First chart page load (issue 10)

`python -m bench chart_page`: gunicorn (gunicorn.conf.py) on loopback, static files from WhiteNoise, PostgreSQL
{info["postgresql"]}; the release-size study ({n_annotators} annotators × {n_prompts} prompts) with its agreement
report (computed beforehand in {report_s:.0f} s). Each run is a new Chromium context (empty cache), 1280 × 800;
time from the navigation's start to the first Plotly plot's SVG in the page (`performance.now()` in the page;
the other columns are medians: "first byte" is when the page's HTML began to arrive, i.e. the server's time;
"main thread" is the renderer's main-thread work read just after the first plot (Chrome DevTools'
TaskDuration, of which ScriptDuration in brackets; it can include the next plots being drawn), which a
busy machine stretches too;
"outside" is the first plot seen from Playwright). {runs} runs per page. Target: under {TARGET_S:.0f} s —
median of both pages **{"met" if met else "not met"}**; every run of both pages under {TARGET_S:.0f} s:
**{"yes" if every_run else "no"}**.

| page | median (s) | max (s) | min (s) | first byte (s) | main thread (script) (s) | outside (s) | Plotly bundle sent |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
{rows}

The last row serves the full plotly.js bundle (4.8 MB, uncompressed, from commit {FULL_BUNDLE_COMMIT}) in place of
the partial one, on the same page and server: what the page cost before. Machine: {info["cpu"]}, {info["cpus"]}
CPUs, {info["memory"]}, Python {info["python"]}; {info["date"]}. Load average (1, 5 min) {load_before[0]:.2f},
{load_before[1]:.2f} before and {load_after[0]:.2f}, {load_after[1]:.2f} after.{note}
<!-- /bench:chart_page -->"""
    write_section("chart_page", text)
    return met
