"""Golden report rows: the numbers the audit gives, recorded so a change that must not move them
(a refactor) is checked: the same rows, floats to float32 rounding (see `differences`).

    python -m tests.golden.golden record    # (re)write tests/golden/rows/*.json: an explicit act
    python -m tests.golden.golden check     # compare a fresh run with them (what the test does)

Each case is one `pytest claims/` run in a subprocess with `--profile=quick --seed=0` (one control
twin: the control's code path is checked, at half the cost of three) and a private cache: the built-in default models, and every claim on a tiny checkpoint of each architecture family
(`fixtures/tiny_models.py`, saved with save_pretrained, loaded as `--model=./dir`). A row keeps the
fields a verdict rests on (effect, ci, p, p_adj, n, verdict, notes, details, ...), keyed by test id.

Rows match when every string, integer, verdict and structure is the same and every float (arrays
in details included) equals the recorded one to float32 rounding (`RTOL` relative): the forward
passes run in float32, and one CI run computed one 256-row batch of a tiny BERT's path points ~1e-7
apart (relative) from this machine's, the same numbers by any reading, not a moved one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path(__file__).resolve().parent / "rows"
FIELDS = ("claim", "claim_version", "site", "statistic", "effect", "ci", "p", "p_adj", "n", "verdict",
          "reason", "notes", "details", "caveat", "control", "vs_control", "origin")
CASES: dict[str, tuple[str, ...]] = {"default": ()}  # case -> tiny families audited (none: the default)
FAMILIES = ("gpt2", "gpt_neox", "llama", "opt", "bert")
CASES.update({f"tiny-{fam}": (fam,) for fam in FAMILIES})


def run_case(case: str, work: Path) -> dict[str, Any]:
    """{test_id: {field: value}} of one `pytest claims/` run."""
    from fixtures.tiny_models import build_tiny

    models: list[str] = []
    for fam in CASES[case]:
        folder = work / fam
        if not folder.exists():
            build_tiny(fam, folder)
        models.append(f"--model=./{fam}")
    out = work / f"{case}.json"
    env = {**os.environ, "POLYAUDIT_CACHE": str(work / f"cache-{case}"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "claims"), "--profile=quick", "--seed=0", "--control-twins=1", *models,
           f"--json={out}", "--no-reports", "-q", "-p", "no:cacheprovider", f"--rootdir={ROOT}"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
    if proc.returncode > 1 or not out.exists():
        raise RuntimeError(f"audit {case} did not run (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    doc = json.loads(out.read_text())
    return {r["test_id"]: {k: r.get(k) for k in FIELDS} for r in doc["rows"]}


def dumps(rows: Mapping[str, Any]) -> str:
    return json.dumps(rows, sort_keys=True, indent=1, allow_nan=False) + "\n"


RTOL = 1e-6  # float32 rounding, with margin for what it feeds (JS of nearby distributions, sums)
ATOL = 1e-12


def differences(recorded: Any, fresh: Any, where: str = "") -> list[str]:
    """Where `fresh` departs from `recorded` (empty: the same rows, floats to float32 rounding)."""
    from polyaudit.serial import decode_array

    if isinstance(recorded, dict) and "zlib_b64" in recorded and isinstance(fresh, dict) and "zlib_b64" in fresh:
        a, b = decode_array(recorded), decode_array(fresh)
        if a.shape != b.shape or a.dtype != b.dtype:
            return [f"{where}: array {a.dtype}{list(a.shape)} -> {b.dtype}{list(b.shape)}"]
        import numpy as np

        ok = np.isclose(b, a, rtol=RTOL, atol=ATOL, equal_nan=True) if a.dtype.kind == "f" else a == b
        return [] if bool(np.all(ok)) else [f"{where}: {int(np.size(ok) - np.count_nonzero(ok))} array entries moved"]
    if isinstance(recorded, dict) and isinstance(fresh, dict):
        if set(recorded) != set(fresh):
            return [f"{where}: keys {sorted(set(recorded) ^ set(fresh))} added or removed"]
        return [d for k in sorted(recorded) for d in differences(recorded[k], fresh[k], f"{where}/{k}")]
    if isinstance(recorded, list) and isinstance(fresh, list):
        if len(recorded) != len(fresh):
            return [f"{where}: length {len(recorded)} -> {len(fresh)}"]
        return [d for i, (a, b) in enumerate(zip(recorded, fresh, strict=True)) for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(recorded, float) and isinstance(fresh, float) and not isinstance(fresh, bool):
        same = math.isclose(fresh, recorded, rel_tol=RTOL, abs_tol=ATOL) or (math.isnan(fresh) and math.isnan(recorded))
        return [] if same else [f"{where}: {recorded!r} -> {fresh!r}"]
    return [] if type(recorded) is type(fresh) and recorded == fresh else [f"{where}: {recorded!r} -> {fresh!r}"]


def path_of(case: str) -> Path:
    return FOLDER / f"{case}.json"


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "check"
    cases = argv[1:] or list(CASES)
    FOLDER.mkdir(exist_ok=True)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            rows = run_case(case, Path(tmp))
            text = dumps(rows)
            if what == "record":
                path_of(case).write_text(text)
                print(f"recorded {path_of(case)}")
                continue
            recorded = path_of(case).read_text()
            moved = differences(json.loads(recorded), json.loads(text))
            if moved:
                bad += 1
                print(f"{case}: rows differ from {path_of(case)} ({len(moved)} values):")
                print("\n".join(f"  {m}" for m in moved[:40]))
            else:
                print(f"{case}: {'identical' if text == recorded else 'the same to float32 rounding'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
