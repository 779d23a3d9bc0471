"""Peak resident memory against the number of tokens, each measured in its own process.

- audit: C4 (capture of every layer's residual stream and MLP pre-activations, one
  eigendecomposition per layer, the paired bootstrap) on a GPT-2-shaped checkpoint (`mini` =
  6 x 384 unless asked otherwise), default profile (64 sequences of 256 tokens) and the same with
  10x the sequences. Samples kept per site stay within the profile's budget (`max_samples`: more
  sequences, fewer positions each), so tokens past it cost forward time, not memory: forward passes
  run batch by batch, activations go to disk as float16, spline codes bit-packed. Target: 10x the
  tokens, < 1.5x the peak memory.
- streaming spectrum: `eigenspectrum_streaming` over 10x the rows (chunks of 4,096 x 768) against
  1x: the covariance is accumulated in O(d^2), whatever the number of rows.

Peak resident memory is the child's `ru_maxrss` (Linux: KiB).
"""

from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child_audit(model: str, n_seq: int, cache: str) -> dict[str, Any]:
    from polyaudit.profiles import get_profile
    from polyaudit.run.runtime import RunOptions, Runtime

    spec = importlib.util.spec_from_file_location("c4_claim", ROOT / "claims" / "test_c4_alpha_depth.py")
    assert spec is not None and spec.loader is not None
    claim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(claim)
    profile = get_profile("default").with_overrides(n_seq=n_seq)
    rt = Runtime(RunOptions(models=(model,), cache_dir=cache, profile=profile, probe="text:stdlib"))
    subject = rt.subject(model)
    subject.request(claim.SITES)
    probe = subject.probe()
    evidence = claim.measure(subject, SimpleNamespace(profile=profile, rng=rt.rng, correction=rt.options.correction))
    tokens = int(probe.attention_mask.sum()) if probe.attention_mask is not None else int(probe.inputs.numel())
    return {"sequences": int(probe.inputs.shape[0]), "tokens": tokens, "samples_kept": probe.n_samples,
            "effects": {k: ev.effect for k, ev in evidence.items()}, "peak_mib": _peak_mib()}


def _child_streaming(chunks: int, d: int = 768, rows: int = 4096) -> dict[str, Any]:
    import numpy as np

    from polyaudit.measures.spectrum import eigenspectrum_streaming

    rng = np.random.default_rng(0)
    scale = np.arange(1, d + 1) ** -0.5
    ev = eigenspectrum_streaming(rng.standard_normal((rows, d)) * scale for _ in range(chunks))
    return {"rows": chunks * rows, "top_eigenvalue": float(ev[0]), "peak_mib": _peak_mib()}


def _spawn(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", *args], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {args} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(size: str = "mini", n_seq: int = 64) -> dict[str, Any]:
    from benchmarks.bench_audit import SHAPES, build_gpt2

    with tempfile.TemporaryDirectory() as tmp:
        model = build_gpt2(size, Path(tmp) / f"gpt2-{size}")
        small = _spawn("audit", str(model), str(n_seq), str(Path(tmp) / "cache-1x"))
        large = _spawn("audit", str(model), str(10 * n_seq), str(Path(tmp) / "cache-10x"))
    s1, s10 = _spawn("streaming", "4"), _spawn("streaming", "40")
    return {
        "model": f"GPT-2-shaped {size} {SHAPES[size][:2]}, C4 on the default profile",
        "audit_1x": small, "audit_10x": large,
        "tokens_ratio": round(large["tokens"] / small["tokens"], 2),
        "samples_kept_ratio": round(large["samples_kept"] / small["samples_kept"], 2),
        "audit_peak_ratio": round(large["peak_mib"] / small["peak_mib"], 3),
        "streaming_1x": s1, "streaming_10x": s10,
        "streaming_peak_ratio": round(s10["peak_mib"] / s1["peak_mib"], 3),
        "target": "peak ratio < 1.5 for 10x the tokens",
    }


def main(argv: list[str]) -> None:
    kind, *rest = argv
    if kind == "audit":
        result = _child_audit(rest[0], int(rest[1]), rest[2])
    elif kind == "streaming":
        result = _child_streaming(int(rest[0]))
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
