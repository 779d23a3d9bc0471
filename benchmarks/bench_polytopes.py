"""Polytope Lens (C1-C3) performance, as ratios measured side by side in one run.

- hamming: Hamming distances between two sets of 8,000 spline codes of 3,072 bits (`hamming`, one
  +-1 float32 matrix product) versus a bare float32 BLAS product of two matrices of the same shape
  ([8000, 3072] x [3072, 8000]). Target: <= 1.5x.
- crossings: `segment_crossings` (exact walk) on a 3-hidden-layer ReLU MLP of width 256 (random
  weights, 64 inputs) versus the uniform grid that finds the same crossings: the smallest
  power-of-two grid that sees every crossing as its own code change (each changed grid interval
  flips exactly one unit, and every unit flips as often as the walk says), so that each crossing is
  localised to one grid interval. Targets: >= 20x fewer network evaluations, and less wall time.
- analysis: C1-C3 on the default profile on a GPT-2-shaped model (random weights, the locally
  trained tokenizer of `fixtures.tiny_models`; size `mini` = 6 x 384 unless asked otherwise) and on
  zoo:mlp-digits: seconds in forward passes (the capture, and every downstream evaluation of C2/C3,
  exact walks included) versus seconds of everything else, torch on one thread. Target: analysis
  <= forward.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import interleaved

SIZES = {"tiny": (3, 64), "mini": (6, 384), "small": (12, 768)}  # GPT-2 shapes: layers, width


def hamming_vs_matmul(n: int = 8000, d: int = 3072, repeats: int = 3) -> dict[str, Any]:
    from polyaudit.measures.polytopes import hamming

    rng = np.random.default_rng(0)
    codes_a, codes_b = rng.random((n, d)) < 0.5, rng.random((n, d)) < 0.5
    a, b = rng.standard_normal((n, d), dtype=np.float32), rng.standard_normal((n, d), dtype=np.float32)
    t = interleaved({"hamming": lambda: hamming(codes_a, codes_b), "float32_matmul": lambda: a @ b.T},
                    repeats=repeats)
    return {"shape": [n, d], "seconds": {k: round(v, 3) for k, v in t.items()},
            "hamming_over_matmul": round(t["hamming"] / t["float32_matmul"], 3), "target": "<= 1.5"}


def _relu_mlp(width: int, depth: int, d_in: int, seed: int) -> Any:
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        lin = nn.Linear(d, width).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(width, d, generator=g, dtype=torch.float64) * (2.0 / d) ** 0.5)
            lin.bias.copy_(0.1 * torch.randn(width, generator=g, dtype=torch.float64))
        mods += [lin, nn.ReLU()]
        d = width
    mods.append(nn.Linear(d, 10).double())
    return nn.Sequential(*mods).eval()


def _grid_flips(layers: Any, x0: np.ndarray, x1: np.ndarray, n: int,
                chunk: int = 8192) -> tuple[np.ndarray, int]:
    """(code changes per unit, grid intervals whose code changed) on an n-interval grid."""
    from polyaudit.measures.polytopes import codes_along

    flips = np.zeros(sum(layer.bias.size for layer in layers), dtype=np.int64)
    changed = 0
    prev = None
    for start in range(0, n + 1, chunk):
        ts = np.arange(start, min(start + chunk, n + 1)) / n
        codes = codes_along(layers, x0 + ts[:, None] * (x1 - x0))
        if prev is not None:
            codes = np.concatenate([prev[None], codes])
        diff = codes[1:] != codes[:-1]
        flips += diff.sum(axis=0)
        changed += int(diff.any(axis=1).sum())
        prev = codes[-1]
    return flips, changed


def crossings_vs_grid(width: int = 256, depth: int = 3, d_in: int = 64, n_segments: int = 5) -> dict[str, Any]:
    from polyaudit.measures.polytopes import affine_layers, walk_segment

    net = _relu_mlp(width, depth, d_in, seed=0)
    layers = affine_layers(net)
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(n_segments):
        x0, x1 = rng.standard_normal((2, d_in))
        walk = walk_segment(layers, x0, x1)
        per_unit = np.bincount(walk.layer * width + walk.unit, minlength=depth * width)
        n = 256
        while True:  # the grid finds them when it sees every crossing as its own code change
            flips, changed = _grid_flips(layers, x0, x1, n)
            if np.array_equal(flips, per_unit) and changed == walk.t.size:
                break
            n *= 2
            if n > 2**24:
                raise RuntimeError("no grid up to 2**24 intervals finds the exact crossings")
        t = interleaved({"walk": lambda x0=x0, x1=x1: walk_segment(layers, x0, x1),
                         "grid": lambda x0=x0, x1=x1, n=n: _grid_flips(layers, x0, x1, n)}, repeats=1, warmup=0)
        rows.append({"crossings": int(walk.t.size), "walk_evaluations": walk.n_evaluations,
                     "grid_points": n + 1, "walk_s": t["walk"], "grid_s": t["grid"]})
    ev = np.median([r["grid_points"] / r["walk_evaluations"] for r in rows])
    wall = np.median([r["grid_s"] / r["walk_s"] for r in rows])
    return {"net": f"{depth} x {width} ReLU, {d_in} inputs", "segments": rows,
            "grid_over_walk_evaluations": round(float(ev), 1), "grid_over_walk_seconds": round(float(wall), 1),
            "targets": "evaluations >= 20, seconds > 1"}


def _gpt2(size: str, folder: Path) -> Any:
    """A GPT-2-shaped random model behind the real adapter, with the locally trained tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from fixtures.tiny_models import train_tokenizer
    from polyaudit.models.base import LoadedModel
    from polyaudit.models.hf import make_hf_adapter

    n_layer, width = SIZES[size]
    tok = train_tokenizer(folder / "tok")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=width, n_head=max(1, width // 64),
                                           vocab_size=len(tok), n_positions=128)).eval()
    model.requires_grad_(False)
    return LoadedModel(spec=f"bench:gpt2-{size}", model=model, adapter=make_hf_adapter(model),
                       tokenizer=tok, sha256="bench", max_positions=128)


def _lens_times(loaded: Any, profile_name: str) -> dict[str, Any]:
    from polyaudit.analyses import c1, c2, c3
    from polyaudit.capture import Capture
    from polyaudit.interventions.evaluators import make_downstream
    from polyaudit.interventions.lens import depth_layers, site_for
    from polyaudit.probes.registry import build_probe
    from polyaudit.profiles import get_profile

    profile = get_profile(profile_name)
    ad = loaded.adapter
    probe = build_probe("labelled:categories" if ad.input_kind == "tokens" else None, loaded, profile, 0)
    cap = Capture(loaded, probe, cache=None, batch_size=profile.batch_size)
    cap.request(["mlp_pre", "resid"])
    forward = {"capture": 0.0, "C2": 0.0, "C3": 0.0}
    analysis = {"C1": 0.0, "C2": 0.0, "C3": 0.0}
    layers = [layer for layer in depth_layers(ad.n_layers).values() if layer is not None]
    datas = [cap.get(ad.site("mlp_pre", layer)) for layer in layers]
    forward["capture"] = cap.stats.forward_seconds
    t0 = time.perf_counter()
    for data in datas:
        c1.monosemanticity(data.samples, data.labels, codes=data.codes, groups=data.groups, site="x",
                           rng=np.random.default_rng(0), n_boot=profile.n_boot, n_perm=profile.n_perm)
    analysis["C1"] = time.perf_counter() - t0
    for claim, fn, settings in (("C2", c2.boundaries_track_semantics, c2.settings_for(profile.name)),
                                ("C3", c3.direction_validity, c3.settings_for(profile.name))):
        site, name = site_for(ad, claim)
        from polyaudit.interventions.downstream import Contexts

        if probe.positions is not None:
            seq = probe.positions[:, 0]
            ctx = Contexts(probe.inputs[seq], probe.attention_mask[seq], probe.positions[:, 1])
        else:
            ctx = Contexts(probe.inputs)
        acts = (probe.inputs.double().numpy() if site is None
                else np.asarray(cap.get(site).samples, dtype=np.float64))
        down = make_downstream(loaded, site, ctx)
        t0 = time.perf_counter()
        fn(down, acts, probe.labels, site=name, rng=np.random.default_rng(0), settings=settings,
           n_boot=profile.n_boot, ctx=np.arange(len(probe.labels)))
        total = time.perf_counter() - t0
        forward[claim] = down.work.seconds
        analysis[claim] = total - down.work.seconds
    f, a = sum(forward.values()), sum(analysis.values())
    return {"model": loaded.spec, "profile": profile.name, "n_samples": probe.n_samples,
            "forward_s": {k: round(v, 2) for k, v in forward.items()},
            "analysis_s": {k: round(v, 2) for k, v in analysis.items()},
            "analysis_over_forward": round(a / f, 3), "target": "<= 1"}


def analysis_vs_forward(size: str = "mini", profile: str = "default") -> dict[str, Any]:
    import torch

    from polyaudit.models.loader import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # forwards on one thread, like k-means: no spinning threads on a busy box
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = {"transformer": _lens_times(_gpt2(size, Path(tmp)), profile)}
        out["zoo"] = _lens_times(load_model("zoo:mlp-digits"), profile)
    finally:
        torch.set_num_threads(threads)
    return out


def run(size: str = "mini", profile: str = "default") -> dict[str, Any]:
    return {"hamming": hamming_vs_matmul(), "crossings": crossings_vs_grid(),
            "analysis": analysis_vs_forward(size, profile)}
