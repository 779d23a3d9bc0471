"""Warm versus cold: C4 (alpha vs depth) on a GPT-2-small-sized checkpoint (12 x 768, random
weights, saved and loaded like a user's `--model=./dir`), first with an empty cache, then again with
the cache the first run left. Measured with the model already loaded (the C4 step itself) and as
whole runs that include loading the checkpoint."""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _claim_module() -> Any:
    spec = importlib.util.spec_from_file_location("c4_claim", ROOT / "claims" / "test_c4_alpha_depth.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _c4_once(ckpt: Path, cache: Path, profile: str) -> tuple[float, float, dict[str, Any]]:
    """(load seconds, C4 seconds, evidence) for one run with a fresh Runtime."""
    from polyaudit.profiles import get_profile
    from polyaudit.run.runtime import RunOptions, Runtime

    claim = _claim_module()
    rt = Runtime(RunOptions(models=(str(ckpt),), cache_dir=str(cache), profile=get_profile(profile)))
    t0 = time.perf_counter()
    subject = rt.subject(str(ckpt))
    subject.request(claim.SITES)
    subject.prepare()
    t1 = time.perf_counter()
    audit = SimpleNamespace(profile=rt.options.profile, rng=rt.rng, correction=rt.options.correction)
    evidence = rt.measure(subject, "C4", 1, None, lambda: claim.measure(subject, audit))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, evidence


def run(profile: str = "quick") -> dict[str, Any]:
    from fixtures.tiny_models import build_tiny

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_tiny("gpt2", Path(tmp) / "gpt2-small-sized", n_layers=12, hidden=768)
        cache = Path(tmp) / "cache"
        load_cold, c4_cold, ev_cold = _c4_once(ckpt, cache, profile)
        load_warm, c4_warm, ev_warm = _c4_once(ckpt, cache, profile)
    same = all(ev_cold[k].effect == ev_warm[k].effect and ev_cold[k].ci == ev_warm[k].ci for k in ev_cold)
    return {
        "profile": profile,
        "seconds": {"load_cold": round(load_cold, 3), "c4_cold": round(c4_cold, 3),
                    "load_warm": round(load_warm, 3), "c4_warm": round(c4_warm, 4)},
        "c4_cold_over_warm_ratio": round(c4_cold / max(c4_warm, 1e-9), 1),
        "whole_run_cold_over_warm_ratio": round((load_cold + c4_cold) / (load_warm + c4_warm), 2),
        "identical_numbers": same,
    }
