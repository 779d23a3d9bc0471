"""Print the calibration and power table of docs/claims.md ("Calibration and power").

    python -m tests.calibration.table              # Markdown table on stdout (about 2 minutes)
    python -m tests.calibration.table --mde-seeds 10

Per setting: the seeds run, the profile, how many PASSed (null: false-pass rate; planted: power),
with a 95% Clopper-Pearson interval. Per claim, the minimum detectable effect (MDE) at the default
profile: from each row's bootstrap CI on the null, SE = (hi - lo) / (2 z_0.975) (median over
seeds), MDE = (z_{1 - 0.025 / m} + z_0.8) SE, the effect one row detects with 80% power at
alpha = 0.05 after Holm across the claim's m rows (m = 1: no adjustment).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from calibration_cases import (
    N_NULL,
    N_POWER,
    NULL_PROFILE,
    POWER_PROFILE,
    SETTINGS,
    Setting,
    tally,
)
from scipy import stats

ROWS_IN_AUDIT = {"C1": 9, "C2": 3, "C3": 2, "C4": 2, "C5 family": 4, "C5 single": 1, "C6": 2}  # zoo default


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    lo = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def mde(setting: Setting, seeds: int) -> dict[str, tuple[float, float, float]]:
    """Row -> (SE, MDE single row, MDE after Holm over the audit's rows) on the null, default profile."""
    t = tally(setting, range(seeds), POWER_PROFILE)
    z = stats.norm.ppf
    m = ROWS_IN_AUDIT[setting.claim]
    out = {}
    for key in setting.rows or t.rows[0]:
        widths = [r[key].ci[1] - r[key].ci[0] for r in t.rows if r[key].error is None and r[key].skip is None]
        if not widths:
            continue
        se = float(np.median(widths)) / (2 * z(0.975))
        out[key] = (se, (z(0.975) + z(0.8)) * se, (z(1 - 0.025 / m) + z(0.8)) * se)
    if setting.claim == "C4":  # in alpha units: the step between adjacent layers one pair resolves
        ses = [(lay["ci"][1] - lay["ci"][0]) / (2 * z(0.975)) for r in t.rows for lay in r["resid"].details["layers"]]
        se = float(np.median(ses))
        out["alpha step between adjacent layers"] = (se, (z(0.975) + z(0.8)) * np.sqrt(2) * se, float("nan"))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mde-seeds", type=int, default=10, help="null seeds at the default profile for the MDE")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    print("| claim | setting | profile | seeds | PASS | rate [95% CI] | enforced |")
    print("|---|---|---|---|---|---|---|")
    for s in SETTINGS:
        prof, n = (NULL_PROFILE, N_NULL) if s.kind == "null" else (POWER_PROFILE, N_POWER)
        t0 = time.perf_counter()
        t = tally(s, range(n), prof)
        print(f"  {s.id}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        lo, hi = clopper_pearson(len(t.passed), n)
        rule = ("<= 10% PASS" if s.kind == "null" else ">= 90% PASS") if s.enforced else "reported only"
        if s.finding:
            rule += " (xfail: finding)"
        rows = f" ({', '.join(s.rows)} row)" if s.rows else ""
        print(f"| {s.claim} | {s.kind}: {s.name}{rows} | {prof} | {n} | {len(t.passed)} | "
              f"{t.rate:.0%} [{lo:.0%}, {hi:.0%}] | {rule} |")
    print()
    print(f"| claim | row | SE (null, {POWER_PROFILE}) | MDE (one row) | MDE (Holm, m rows) |")
    print("|---|---|---|---|---|")
    for s in SETTINGS:
        if s.kind != "null" or not s.enforced or (s.claim == "C2" and s.rows):
            continue
        for key, (se, one, adj) in mde(s, args.mde_seeds).items():
            print(f"| {s.claim} | {key} | {se:.3g} | {one:.3g} | {adj:.3g} (m={ROWS_IN_AUDIT[s.claim]}) |")
    print(f"\n(computed in {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
