"""Scaling out: the same audit serial and with pytest-xdist (`-n 2`), side by side.

`pytest claims/` on the default model (zoo:mlp-digits, its dropout family included), each run with
an empty activation and results cache (the zoo's trained checkpoints are copied in first, so both
runs start from the same trained models and neither pays for training). Workers share the cache:
a (model, probe) is captured once under a file lock and the others read it, a claim's measurement
is computed once and the others read its result, and each worker takes its share of the cores
(`polyaudit/threads.py`). Reports: serial / parallel wall time (> 1 is a speed-up) and whether every
row's numbers are identical.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = ("effect", "ci", "p", "p_adj", "n", "verdict")


def _pytest(cache: Path, out: Path, profile: str, extra: list[str]) -> float:
    env = dict(os.environ, POLYAUDIT_CACHE=str(cache), CI="true")
    env.pop("OMP_NUM_THREADS", None)
    args = [sys.executable, "-m", "pytest", str(ROOT / "claims"), f"--profile={profile}", f"--json={out}",
            "--no-reports", "-q", "-p", "no:cacheprovider", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"pytest {' '.join(extra)} exited {proc.returncode}: {proc.stdout[-2000:]}")
    return wall


def _rows(path: Path) -> dict[str, tuple[Any, ...]]:
    return {r["test_id"]: tuple(json.dumps(r[k]) for k in NUMBERS) for r in json.loads(path.read_text())["rows"]}


def run(profile: str = "default", repeats: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        warm = base / "warm"
        _pytest(warm, base / "warmup.json", "quick", [])  # trains the zoo models once
        times: dict[str, list[float]] = {"serial": [], "xdist_n2": []}
        docs: dict[str, Path] = {}
        for r in range(repeats):  # interleaved: serial, parallel, serial, parallel
            for name, extra in (("serial", []), ("xdist_n2", ["-n", "2"])):
                cache = base / f"{name}-{r}"
                shutil.copytree(warm / "zoo", cache / "zoo")
                docs[name] = base / f"{name}-{r}.json"
                times[name].append(_pytest(cache, docs[name], profile, extra))
        serial, parallel = _rows(docs["serial"]), _rows(docs["xdist_n2"])
    best = {k: min(v) for k, v in times.items()}
    return {
        "profile": profile, "cores": os.cpu_count(), "rows": len(serial),
        "seconds": {k: [round(x, 1) for x in v] for k, v in times.items()},
        "serial_over_parallel": round(best["serial"] / best["xdist_n2"], 3),
        "identical_numbers": serial == parallel,
        "target": "identical numbers; serial / parallel > 1",
    }
