"""Regenerate reports/examples/: the default audit (`pytest claims/`, the built-in default models,
their control twins, seed 0; the quick profile CI runs, unless --profile says otherwise) rendered as
JSON, Markdown and HTML, and its model-card section, so a reader sees what an audit gives before
running one.

    python examples/regenerate_reports.py [--profile default]

It runs the same command a user runs (the claims in claims/, through the pytest plugin) and then the
`polyaudit` command on its JSON. The files are committed; rerun this after a change that moves a
number (a claim version, a statistic, the zoo recipes) and commit what it writes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "examples"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", help="the audit profile (default: quick, as CI runs it)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    audit = args.out / "default-audit"
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "claims"), f"--profile={args.profile}", "--seed=0",
           "--control=init", f"--json={audit}.json", f"--md={audit}.md", f"--html={audit}.html", "--no-reports",
           "-q", "-p", "no:cacheprovider"]
    print("$", " ".join(cmd[2:]), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc > 1:  # 0: every claim PASSed or was INCONCLUSIVE; 1: some FAILed (findings), still a report
        print(f"the audit did not run (pytest exit {rc})", file=sys.stderr)
        return rc
    card = [sys.executable, "-m", "polyaudit.cli", "report", f"{audit}.json", "--model-card",
            "--out", str(args.out / "model-card.md")]
    print("$ polyaudit", " ".join(card[3:]), flush=True)
    return subprocess.call(card, cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())
