"""Print the calibration table of docs/claims.md ("Calibration") from the suite's own settings.

    python -m tests.calibration.table            # Markdown on stdout
    python -m tests.calibration.table C4 C6      # only these claims
    python -m tests.calibration.table --from F   # from the lines a test run recorded:
        POLYAUDIT_CALIBRATION_RECORD=F python -m pytest tests/calibration -n 2

Per setting: the subject, the profile, the seeds, the count and rate with a 95% Clopper-Pearson
interval, and the rule it is held to.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import tally, verdict_of
from settings import SETTINGS


def _from_record(path: str) -> None:
    import json

    done = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        done[r["id"]] = r
    print("| claim | kind | setting | profile | seeds | result | holds |")
    print("|---|---|---|---|---|---|---|")
    total = 0.0
    for s in SETTINGS:
        r = done.get(s.id)
        if r is None:
            continue
        total += r["seconds"]
        rows = f" ({', '.join(s.rows)} row)" if s.rows else ""
        held = "yes" if r["ok"] else ("xfail: " + s.finding if s.finding else "NO")
        print(f"| {s.claim} | {s.kind} | {s.name}{rows}: {s.what} | {s.profile} | {r['seeds']} | {r['line']} | {held} |")
    print(f"\n({total / 60:.0f} CPU-minutes in all)")


def main(argv: list[str] | None = None) -> None:
    args = list(argv if argv is not None else sys.argv[1:])
    if args[:1] == ["--from"]:
        _from_record(args[1])
        return
    only = set(args)
    start = time.perf_counter()
    print("| claim | kind | setting | profile | seeds | result | holds |")
    print("|---|---|---|---|---|---|---|")
    for s in SETTINGS:
        if only and s.claim not in only and s.claim.split()[0] not in only:
            continue
        t0 = time.perf_counter()
        t = tally(s)
        ok, line = verdict_of(t)
        rows = f" ({', '.join(s.rows)} row)" if s.rows else ""
        held = "yes" if ok else ("xfail: " + s.finding if s.finding else "NO")
        print(f"| {s.claim} | {s.kind} | {s.name}{rows}: {s.what} | {s.profile} | {len(t.seeds)} | {line} | {held} |")
        print(f"  {s.id}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(f"\n(computed in {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
