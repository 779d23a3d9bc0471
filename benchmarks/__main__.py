"""Run the benchmarks and print ratios measured side by side in one run.

    python -m benchmarks                 # all
    python -m benchmarks capture cache   # some

Absolute times are context (the machine is noisy); the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks import (
    bench_audit,
    bench_c5,
    bench_cache,
    bench_capture,
    bench_coding,
    bench_memory,
    bench_parallel,
    bench_polytopes,
    bench_tlens,
)

SUITES = {"audit": bench_audit.run, "control": bench_audit.control_cost, "c5": bench_c5.run, "capture": bench_capture.run,
          "plan": bench_capture.plan, "cache": bench_cache.run,
          "coding": bench_coding.run, "memory": bench_memory.run,
          "parallel": bench_parallel.run, "polytopes": bench_polytopes.run, "tlens": bench_tlens.run}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("suites", nargs="*", help=f"which of {', '.join(SUITES)} (default: all)")
    ap.add_argument("--json", help="also write the results as JSON here")
    ap.add_argument("--size", choices=sorted(bench_audit.SHAPES), default="small",
                    help="audit suite: the GPT-2-shaped model's size (default small = GPT-2 small)")
    ap.add_argument("--device", default="cpu", help="audit suite: --device for the audit (cpu, cuda, auto)")
    ap.add_argument("--llama", choices=sorted(bench_audit.LLAMA_SHAPES),
                    help="audit suite: also audit a Llama-shaped checkpoint of this size (smol = 30 layers, 135M)")
    ap.add_argument("--profile", default="default", help="audit suite: the audit's profile (default: default)")
    ap.add_argument("--control", default="none", choices=("none", "init", "shuffle"),
                    help="audit suite: --control for the audit (none: the <= 8 FPE target; init: <= 16)")
    args = ap.parse_args(argv)
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    results = {}
    for name in args.suites or list(SUITES):
        print(f"== {name} ==", flush=True)
        suite = SUITES[name]
        if name == "audit":
            common = {"profile": args.profile, "device": args.device, "control": args.control}
            results[name] = suite(size=args.size, **common)
            if args.llama:
                results["audit-llama"] = suite(llama=args.llama, **common)
            continue
        if name == "c5":
            results[name] = suite(size=args.size, profile=args.profile, device=args.device, llama=args.llama)
            continue
        if name == "control":
            results[name] = suite(size="tiny" if args.size == "small" else args.size, profile="quick",
                                  device=args.device, llama=args.llama)
            continue
        results[name] = suite()
        for k, v in results[name].items():
            print(f"  {k}: {v}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
