"""polyaudit's capture against TransformerLens' `run_with_cache`, on the same model and tokens.

The same GPT-2-small-shaped checkpoint (random weights, saved once) is loaded by each side in its
own process: polyaudit through `load_model` (transformers, its default attention) and
TransformerLens 4 through `TransformerBridge.boot_transformers(dir)` (its documented entry point;
it forces eager attention so its hooks can see attention patterns). Each captures the MLP
pre-activations of every layer at every position of the same 16 x 256 random tokens in batches of
8: TransformerLens with `run_with_cache(tokens, names_filter=... "mlp.hook_pre")`, polyaudit with
`Capture` (a truncated forward: it stops after the last MLP's input, no LM head). Throughput is the
median of interleaved repetitions (A B A B ...); peak memory is the child's largest resident set
above what it held before the first capture (model loaded), sampled every 2 ms. Both sides' layer 0
and last-layer activations are compared, to show it is the same computation.

Skipped, with the reason, where TransformerLens does not install (`pip install transformer-lens`
with torch==2.13.0 already installed pulls no CUDA wheels; it is not a polyaudit dependency).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
N_SEQ, SEQ_LEN, BATCH = 16, 256, 8


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class _PeakSampler:
    def __init__(self) -> None:
        self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib())
            time.sleep(0.002)

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def _tokens() -> Any:
    import torch

    return torch.randint(0, 50257, (N_SEQ, SEQ_LEN), generator=torch.Generator().manual_seed(0))


def _child_polyaudit(model_dir: str) -> tuple[Any, Any]:
    import numpy as np
    import torch

    from polyaudit.capture import Capture
    from polyaudit.models.loader import load_model
    from polyaudit.probes.base import ProbeSet

    loaded = load_model(model_dir)
    ids = _tokens()
    positions = np.array([(s, p) for s in range(N_SEQ) for p in range(SEQ_LEN)], dtype=np.int64)
    probe = ProbeSet(name="bench:random-tokens", kind="tokens", inputs=ids, attention_mask=torch.ones_like(ids),
                     positions=positions, skip=0)

    def capture() -> list[Any]:
        cap = Capture(loaded, probe, cache=None, batch_size=BATCH)
        return [d.samples for d in cap.get_kind("mlp_pre")]

    return capture, lambda out: (out[0], out[-1])


def _child_tlens(model_dir: str) -> tuple[Any, Any]:
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(model_dir, device="cpu")
    ids = _tokens()

    @torch.inference_mode()
    def capture() -> list[Any]:
        acts = []
        for i in range(0, N_SEQ, BATCH):
            _, cache = bridge.run_with_cache(ids[i:i + BATCH], names_filter=lambda n: n.endswith("mlp.hook_pre"))
            acts.append([cache[k] for k in sorted(cache.keys(), key=lambda k: int(k.split(".")[1]))])
            del cache
        return [torch.cat([b[layer] for b in acts]) for layer in range(len(acts[0]))]

    def ends(out: list[Any]) -> tuple[Any, Any]:
        return tuple(t.reshape(-1, t.shape[-1]).numpy() for t in (out[0], out[-1]))  # type: ignore[return-value]

    return capture, ends


def child(side: str, model_dir: str, repeats: int) -> dict[str, Any]:
    """One side's numbers: seconds per repetition, peak memory above the loaded model."""
    capture, ends = (_child_polyaudit if side == "polyaudit" else _child_tlens)(model_dir)
    base = _rss_mib()
    seconds, peak = [], 0.0
    for _ in range(repeats):
        with _PeakSampler() as sampler:
            t0 = time.perf_counter()
            out = capture()
            seconds.append(time.perf_counter() - t0)
        peak = max(peak, sampler.peak - base)
        first, last = ends(out)
        del out
    return {"seconds": seconds, "peak_above_model_mib": peak, "layer0_head": first[:4, :8].tolist(),
            "last_head": last[:4, :8].tolist()}


def _spawn(side: str, model_dir: Path, repeats: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_tlens", side, str(model_dir), str(repeats)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} child failed: {proc.stderr.strip().splitlines()[-3:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(rounds: int = 2, repeats: int = 2) -> dict[str, Any]:
    import numpy as np

    try:
        import transformer_lens  # noqa: F401
    except ImportError as e:
        return {"skipped": f"TransformerLens is not installed here ({e}); `pip install transformer-lens` "
                           "after torch==2.13.0 to run this comparison"}
    from benchmarks.bench_audit import build_gpt2

    results: dict[str, list[dict[str, Any]]] = {"polyaudit": [], "transformer_lens": []}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_gpt2("small", Path(tmp) / "gpt2-small")
        for _ in range(rounds):  # side by side: A B A B
            for side in results:
                results[side].append(_spawn(side, model, repeats))
    sec = {k: statistics.median(s for r in v for s in r["seconds"]) for k, v in results.items()}
    peak = {k: statistics.median(r["peak_above_model_mib"] for r in v) for k, v in results.items()}
    tokens = N_SEQ * SEQ_LEN
    a, b = results["polyaudit"][0], results["transformer_lens"][0]
    diff = max(float(np.max(np.abs(np.array(a[k]) - np.array(b[k])))) for k in ("layer0_head", "last_head"))
    return {
        "model": "GPT-2 small shape (12 x 768, vocab 50257), random weights", "tokens": tokens,
        "capture": "MLP pre-activations of all 12 layers at every position",
        "tokens_per_s": {k: round(tokens / v, 1) for k, v in sec.items()},
        "peak_above_model_mib": {k: round(v, 1) for k, v in peak.items()},
        "speedup_polyaudit_over_tlens": round(sec["transformer_lens"] / sec["polyaudit"], 3),
        "peak_memory_tlens_over_polyaudit": round(peak["transformer_lens"] / peak["polyaudit"], 3),
        "max_abs_difference_of_activations": diff,
        "target": "polyaudit faster and lower peak memory",
    }


if __name__ == "__main__":
    side, model_dir, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(child("polyaudit" if side == "polyaudit" else "transformer_lens", model_dir, reps)))
