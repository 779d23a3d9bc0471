"""The single-checkpoint C5 measurement, before and after it ran only the part of the model after
each perturbed site, side by side in one process (interleaved), in forward-pass equivalents.

Both measure the same thing on the same loaded checkpoint and text probe (random weights, the
GPT-2- or Llama-shaped checkpoints of `bench_audit`, loaded through `--model=./dir`):
- whole passes (C5 version 2's cost): one clean run plus one whole run per layer, the LM head at
  every position (`score` per layer, as the C5 family still scores);
- resumed (version 3): `score_layers`: each layer's run replays the blocks before its site from
  the clean run of its batch and feeds the head only the scored positions (`scored_positions`).
FPE: one bare truncated forward over the probe (`bench_audit.bare_forward_seconds`), timed in the
same process. The resumed runs' losses at every position equal the whole runs' (the same positions
scored: checked here), so the ratio is the saving of the replay and of the head's positions.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _measure(model: Path, profile: str, device: str) -> dict[str, Any]:
    from benchmarks.bench_audit import bare_forward_seconds
    from polyaudit.interventions.unit_dropout import (
        score,
        score_layers,
        scored_positions,
        task_for,
        torch_generator,
        unit_site_kind,
    )
    from polyaudit.profiles import PROFILES
    from polyaudit.run.options import RunOptions
    from polyaudit.run.runtime import Runtime

    runtime = Runtime(RunOptions(models=(str(model),), profile=PROFILES[profile], device=device, control="none",
                                 use_cache=False))
    subject = runtime.subject(str(model))
    probe, loaded = subject.probe(), subject.loaded
    task = task_for(loaded, probe)
    sites = loaded.adapter.sites(unit_site_kind(loaded.adapter))
    batch = PROFILES[profile].batch_size
    positions = scored_positions(probe)

    def gens() -> list[Any]:
        rng = np.random.default_rng(0)
        return [torch_generator(rng) for _ in sites]

    def whole() -> np.ndarray:
        clean = score(loaded, probe, task, batch_size=batch)
        return np.stack([score(loaded, probe, task, site=s, q=0.2, generator=g, batch_size=batch).loss - clean.loss
                         for s, g in zip(sites, gens(), strict=True)])

    def resumed(pos: Any) -> np.ndarray:
        clean, runs = score_layers(loaded, probe, task, sites, 0.2, gens(), batch_size=batch, positions=pos)
        return np.stack([r.loss - clean.loss for r in runs])

    fpe = bare_forward_seconds(model, profile, device)
    best: dict[str, float] = {}
    results: dict[str, np.ndarray] = {}
    # one after the other in this process: whole passes, resumed with the scored positions, and
    # resumed at every position (the replay alone, whose numbers must equal the whole passes')
    for name, fn in (("whole", whole), ("resumed", lambda: resumed(positions)), ("replay", lambda: resumed(None))):
        t0 = time.perf_counter()
        results[name] = fn()
        best[name] = time.perf_counter() - t0
    same = bool(np.array_equal(results["whole"], results["replay"]))
    return {"layers": len(sites), "tokens": int(probe.inputs.numel()), "bare_forward_s": round(fpe, 3),
            "scored_positions": None if positions is None else len(positions),
            "whole_s": round(best["whole"], 2), "resumed_s": round(best["resumed"], 2),
            "replay_only_s": round(best["replay"], 2),
            "whole_fpe": round(best["whole"] / fpe, 2), "resumed_fpe": round(best["resumed"] / fpe, 2),
            "replay_only_fpe": round(best["replay"] / fpe, 2),
            "speedup": round(best["whole"] / best["resumed"], 2), "replay_identical": same}


def run(size: str = "small", profile: str = "default", device: str = "cpu", llama: str | None = None) -> dict[str, Any]:
    from benchmarks.bench_audit import LLAMA_SHAPES, SHAPES, build_gpt2, build_llama

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        shapes = [("gpt2-" + size, lambda p: build_gpt2(size, p), f"GPT-2-shaped {size} {SHAPES[size]}")]
        if llama:
            shapes.append(("llama-" + llama, lambda p: build_llama(llama, p), f"Llama-shaped {llama} {LLAMA_SHAPES[llama]}"))
        for key, build, label in shapes:
            r = _measure(build(Path(tmp) / key), profile, device)
            r["model"], r["profile"] = label, profile
            print(f"  {label}, profile {profile}: {r['layers']} layers, {r['tokens']:,} tokens, 1 FPE = "
                  f"{r['bare_forward_s']:.2f} s; whole passes {r['whole_fpe']:.1f} FPE, resumed "
                  f"{r['resumed_fpe']:.1f} FPE (x{r['speedup']:.2f} faster; scored positions "
                  f"{r['scored_positions'] or 'all'}); replay alone {r['replay_only_fpe']:.1f} FPE, numbers identical: "
                  f"{r['replay_identical']}", flush=True)
            out[key] = r
    return out
