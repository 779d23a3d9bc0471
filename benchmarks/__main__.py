"""Run the benchmarks and print ratios measured side by side in one run.

    python -m benchmarks                 # all
    python -m benchmarks capture cache   # some

Absolute times are context (the machine is noisy); the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks import bench_cache, bench_capture, bench_coding, bench_polytopes

SUITES = {"capture": bench_capture.run, "cache": bench_cache.run, "coding": bench_coding.run,
          "polytopes": bench_polytopes.run}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("suites", nargs="*", help=f"which of {', '.join(SUITES)} (default: all)")
    ap.add_argument("--json", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    results = {}
    for name in args.suites or list(SUITES):
        print(f"== {name} ==", flush=True)
        results[name] = SUITES[name]()
        for k, v in results[name].items():
            print(f"  {k}: {v}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
