"""Run the benchmarks: `python -m bench` runs all; `python -m bench import_export` runs one.

`--quick` uses smaller generated data for a smoke run and leaves BENCHMARKS.md alone.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "import_export": "bench.import_export",
    "rating_submit": "bench.rating_submit",
    "analytics": "bench.analytics",
    "prediction": "bench.prediction",
    "benchmark10k": "bench.benchmark10k",
    "steering": "bench.steering",
    "load": "bench.load",
    "stream": "bench.stream",
    "latent": "bench.latent",
    "jury": "bench.jury",
    "curation": "bench.curation",
    "curation_disagreement": "bench.curation_disagreement",
    "curation_pool": "bench.curation_pool",
    "chart_page": "bench.chart_page",
    "pages": "bench.pages",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})"
    )
    parser.add_argument("--quick", action="store_true", help="smaller generated data; do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    failed = False
    for name in args.names or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        ok = module.run(quick=args.quick)
        failed = failed or not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
