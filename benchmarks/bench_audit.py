"""The whole audit against the cost of its forward passes, per claim, in forward-pass equivalents.

FPE: a part's wall time divided by the time of ONE bare truncated forward pass over the run's text
probe (the transformer without its LM head, no hooks, the profile's batch size), timed in the same
process right after the audit. Two checkpoint shapes (random weights, saved with save_pretrained and
loaded through `--model=./dir`): GPT-2-shaped (`--size`) and Llama-shaped (`--llama`: `smol` = 30
layers x 576, 9 heads / 3 KV heads, 49,152-token vocabulary, the shape of a 135M Llama-family
decoder). `--control none` measures the audit without the control twin (target <= 8 FPE), the
default `init` with it (target <= 16 FPE).

`pytest claims/ --model=DIR --profile=default` runs in this process on a GPT-2-shaped checkpoint
(random weights; `small` = GPT-2 small: 12 layers x 768, 12 heads, 1,024 positions, the 50,257-token
vocabulary, so the LM head costs what it costs in GPT-2), saved with `save_pretrained` and loaded
through the same `--model=./dir` path a user takes. Every forward pass of the audited model is timed
(`polyaudit.timing.FORWARD_CLOCK`: capture, C2/C3 downstream evaluations and exact walks, unit
dropout, the moving-stimulus passes), and each test's wall time is split into forward and
everything else (capture bookkeeping, codes, clustering, spectra and their bootstrap, paths,
statistics). Collection (loading the model, building probes) and the session's end (reports) are
their own lines. Target: forward passes >= 70% of the whole run's wall time.

A second run on the cache the first one left gives the warm/cold ratio (target <= 10%).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"tiny": (3, 64, 4, 512), "mini": (6, 384, 6, 8192), "small": (12, 768, 12, 50257)}
LLAMA_SHAPES = {"tiny": (4, 64, 4, 2, 128, 512), "mini": (12, 256, 8, 4, 704, 8192),
                "smol": (30, 576, 9, 3, 1536, 49152)}  # layers, width, heads, kv heads, mlp, vocab


def build_gpt2(size: str, out: Path) -> Path:
    """A GPT-2-shaped random checkpoint (seed 0) with the locally trained tokenizer, in `out`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from fixtures.tiny_models import train_tokenizer

    n_layer, width, heads, vocab = SHAPES[size]
    tok = train_tokenizer(out)
    tok.model_max_length = 1024
    tok.save_pretrained(str(out))
    config = GPT2Config(n_layer=n_layer, n_embd=width, n_head=heads, n_positions=1024, vocab_size=vocab,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def build_llama(size: str, out: Path) -> Path:
    """A Llama-shaped random checkpoint (seed 0) with the locally trained tokenizer, in `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from fixtures.tiny_models import train_tokenizer

    layers, width, heads, kv, mlp, vocab = LLAMA_SHAPES[size]
    tok = train_tokenizer(out)
    tok.model_max_length = 2048
    tok.save_pretrained(str(out))
    config = LlamaConfig(num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads,
                         num_key_value_heads=kv, intermediate_size=mlp, vocab_size=vocab,
                         max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def bare_forward_seconds(model: Path, profile: str, device: str, repeats: int = 3) -> float:
    """One bare truncated forward over the run's text probe: the transformer without its LM head,
    no hooks, in the profile's batches (the fastest of `repeats`, after a warm-up batch)."""
    import torch

    from polyaudit.profiles import PROFILES
    from polyaudit.run.options import RunOptions
    from polyaudit.run.runtime import Runtime

    runtime = Runtime(RunOptions(models=(str(model),), profile=PROFILES[profile], device=device, control="none",
                                 use_cache=False))
    subject = runtime.subject(str(model))
    probe = subject.probe()
    net = subject.loaded.model
    body = getattr(net, "base_model", net)  # the transformer without its head
    size = PROFILES[profile].batch_size
    ids, mask = probe.inputs, probe.attention_mask
    dev = next(net.parameters()).device
    best = float("inf")
    with torch.inference_mode():
        body(input_ids=ids[:1].to(dev), attention_mask=None if mask is None else mask[:1].to(dev))
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(0, ids.shape[0], size):
                body(input_ids=ids[i:i + size].to(dev),
                     attention_mask=None if mask is None else mask[i:i + size].to(dev))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    return best


class _Timer:
    """A pytest plugin: wall and forward seconds per claim, for collection and for the session end."""

    def __init__(self) -> None:
        from polyaudit.timing import FORWARD_CLOCK

        self.clock = FORWARD_CLOCK
        self.wall: dict[str, float] = defaultdict(float)
        self.forward: dict[str, float] = defaultdict(float)
        self.tests: dict[str, int] = defaultdict(int)

    def _span(self, name: str) -> Any:
        t0, f0 = time.perf_counter(), self.clock.seconds
        yield
        wall, fwd = time.perf_counter() - t0, self.clock.seconds - f0
        self.wall[name] += wall
        self.forward[name] += fwd
        print(f"\n  [{name}] +{wall:.1f} s wall, +{fwd:.1f} s forward "
              f"(so far {self.wall[name]:.1f} / {self.forward[name]:.1f})", file=sys.stderr, flush=True)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_collection(self, session: Any) -> Any:
        yield from self._span("collection (load model, probes)")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> Any:
        name = Path(str(item.fspath)).stem.removeprefix("test_")
        claim = name.split("_")[0].upper() + " " + "_".join(name.split("_")[1:])
        self.tests[claim] += 1
        yield from self._span(claim)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_sessionfinish(self, session: Any, exitstatus: Any) -> Any:
        yield from self._span("session end (reports)")


def _audit(model: Path, cache: Path, reports: Path, profile: str, device: str,
           control: str = "none", twins: int = 3) -> dict[str, Any]:
    timer = _Timer()
    out = reports / f"audit-{time.monotonic_ns()}.json"
    args = [str(ROOT / "claims"), f"--model={model}", f"--profile={profile}", f"--cache-dir={cache}",
            f"--control={control}", f"--control-twins={twins}",
            f"--report-dir={reports}", f"--json={out}", f"--device={device}", "-q", "-p", "no:cacheprovider",
            "--rootdir", str(ROOT)]
    t0 = time.perf_counter()
    rc = pytest.main(args, plugins=[timer])
    total = time.perf_counter() - t0
    if rc not in (0, 1):
        raise RuntimeError(f"the audit did not run (pytest exit {rc})")
    rows = json.loads(out.read_text())["rows"]
    return {"total": total, "wall": dict(timer.wall), "forward": dict(timer.forward),
            "tests": dict(timer.tests), "rows": rows}


def _table(run: dict[str, Any], fpe: float) -> list[dict[str, Any]]:
    lines = []
    for name, wall in run["wall"].items():
        fwd = run["forward"].get(name, 0.0)
        lines.append({"part": name, "tests": run["tests"].get(name, 0), "wall_s": round(wall, 2),
                      "forward_s": round(fwd, 2), "other_s": round(wall - fwd, 2),
                      "forward_share": round(fwd / wall, 3) if wall > 0 else None,
                      "fpe": round(wall / fpe, 2)})
    return lines


def run(size: str = "small", profile: str = "default", device: str = "cpu", llama: str | None = None,
        control: str = "none") -> dict[str, Any]:
    """The audit of one checkpoint shape (GPT-2-shaped `size`, or Llama-shaped `llama`), cold and
    warm, with its per-claim breakdown in seconds and in FPE."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if llama:
            model, shape = build_llama(llama, folder / f"llama-{llama}"), (
                f"Llama-shaped {llama} (layers, width, heads, kv heads, mlp, vocab) {LLAMA_SHAPES[llama]}")
        else:
            model, shape = build_gpt2(size, folder / f"gpt2-{size}"), (
                f"GPT-2-shaped {size} {SHAPES[size][:2]}, vocab {SHAPES[size][3]}")
        cold = _audit(model, folder / "cache", folder / "reports", profile, device, control)
        fpe = bare_forward_seconds(model, profile, device)
        warm = _audit(model, folder / "cache", folder / "reports", profile, device, control)
    fwd = sum(cold["forward"].values())
    unmeasured = cold["total"] - sum(cold["wall"].values())
    same = [(r["effect"], r["ci"], r["p"]) for r in cold["rows"]] == \
        [(r["effect"], r["ci"], r["p"]) for r in warm["rows"]]
    claims_s = sum(w for k, w in cold["wall"].items() if not k.startswith(("collection", "session end")))
    result = {
        "model": f"{shape}, random weights",
        "profile": profile, "device": device, "control": control,
        "bare_forward_s": round(fpe, 3),
        "total_fpe": round(cold["total"] / fpe, 2),
        "claims_fpe": round(claims_s / fpe, 2),
        "fpe_target": 16 if control != "none" else 8,
        "breakdown": _table(cold, fpe),
        "unattributed_s": round(unmeasured, 2),
        "total_s": round(cold["total"], 2),
        "forward_s": round(fwd, 2),
        "forward_share": round(fwd / cold["total"], 3),
        "target": "forward_share >= 0.70; warm_over_cold <= 0.10",
        "warm_total_s": round(warm["total"], 2),
        "warm_over_cold": round(warm["total"] / cold["total"], 4),
        "warm_identical_numbers": same,
        "verdicts": {v: sum(r["verdict"] == v for r in cold["rows"])
                     for v in ("PASS", "FAIL", "INCONCLUSIVE", "ERROR", "SKIPPED")},
    }
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"  {result['model']}, profile {result['profile']}")
    print(f"  one bare forward over the probe: {result['bare_forward_s']:.3f} s (1 FPE); control {result['control']}")
    print(f"  {'part':34s} {'tests':>5s} {'wall s':>8s} {'forward s':>9s} {'other s':>8s} {'fwd share':>9s} {'FPE':>7s}")
    for row in result["breakdown"]:
        share = "" if row["forward_share"] is None else f"{row['forward_share']:.2f}"
        print(f"  {row['part']:34s} {row['tests']:5d} {row['wall_s']:8.2f} {row['forward_s']:9.2f} "
              f"{row['other_s']:8.2f} {share:>9s} {row['fpe']:7.1f}")
    print(f"  whole audit {result['total_fpe']:.1f} FPE (claims {result['claims_fpe']:.1f}); "
          f"target <= {result['fpe_target']} FPE")
    print(f"  total {result['total_s']:.1f} s, forward {result['forward_s']:.1f} s "
          f"-> forward share {result['forward_share']:.2f} (target >= 0.70)")


def control_cost(size: str = "tiny", profile: str = "quick", device: str = "cpu", llama: str | None = None,
                 twins: tuple[int, ...] = (1, 3)) -> dict[str, Any]:
    """The control twins' extra cost as a ratio to the model's own audit, measured side by side in one
    process: the same checkpoint audited cold (each run its own empty cache) with --control=none and
    with --control=init and 1, 3, ... twins. Issue target: at most 1.0x extra."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_llama(llama, folder / "llama") if llama else build_gpt2(size, folder / "gpt2")
        base = _audit(model, folder / "cache-none", folder / "reports", profile, device, "none")["total"]
        extra = {}
        for k in twins:
            total = _audit(model, folder / f"cache-init-{k}", folder / "reports", profile, device, "init", k)["total"]
            extra[f"init x{k}"] = round((total - base) / base, 2)
    result = {"model": f"{'Llama-shaped ' + llama if llama else 'GPT-2-shaped ' + size}, random weights",
              "profile": profile, "no_control_s": round(base, 1), "extra_over_own_audit": extra,
              "target": "extra <= 1.0x"}
    print(f"  {result['model']}, profile {profile}: own audit {base:.1f} s; extra with the twins "
          + ", ".join(f"{k}: {v:.2f}x" for k, v in extra.items()) + " (target <= 1.0x)")
    return result
