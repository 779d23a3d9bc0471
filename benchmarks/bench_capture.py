"""Capture overhead: capturing every site of every layer of a GPT-2-small-sized model (12 layers,
d=768, MLP 3072; random weights) versus the bare truncated forward (the transformer body without the
LM head, no hooks) on the same tokens; and the full forward with the LM head, for context."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.common import interleaved


def gpt2_small() -> Any:
    """GPT-2 small's shape (12 x 768, vocab 50257) with random weights, behind the real adapter."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from polyaudit.models.base import LoadedModel
    from polyaudit.models.hf import make_hf_adapter

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config()).eval()
    model.requires_grad_(False)
    return LoadedModel(spec="bench:gpt2-small-random", model=model, adapter=make_hf_adapter(model),
                       sha256="bench", max_positions=1024)


def run(n_seq: int = 16, seq_len: int = 256, batch_size: int = 8, repeats: int = 5) -> dict[str, Any]:
    from polyaudit.capture import Capture
    from polyaudit.probes.base import ProbeSet
    from polyaudit.probes.text import sample_positions

    loaded = gpt2_small()
    vocab = int(loaded.model.config.vocab_size)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (n_seq, seq_len), generator=g)
    pos = sample_positions(seq_len, 48, 25)
    positions = np.array([(s, p) for s in range(n_seq) for p in pos], dtype=np.int64)
    probe = ProbeSet(name="bench:random-tokens", kind="tokens", inputs=ids,
                     attention_mask=torch.ones_like(ids), positions=positions, skip=25)
    body = loaded.model.transformer

    @torch.inference_mode()
    def bare() -> None:
        for i in range(0, n_seq, batch_size):
            body(input_ids=ids[i:i + batch_size], use_cache=False)

    @torch.inference_mode()
    def full() -> None:
        for i in range(0, n_seq, batch_size):
            loaded.model(input_ids=ids[i:i + batch_size], use_cache=False)

    def capture() -> None:
        cap = Capture(loaded, probe, cache=None, batch_size=batch_size)
        cap.request(["mlp_pre", "mlp_out", "resid"])
        for kind in ("mlp_pre", "mlp_out", "resid"):
            cap.get_kind(kind)

    t = interleaved({"bare_truncated_forward": bare, "capture_all_sites": capture,
                     "full_forward_with_lm_head": full}, repeats=repeats)
    return {
        "tokens": n_seq * seq_len,
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "capture_over_bare_ratio": round(t["capture_all_sites"] / t["bare_truncated_forward"], 3),
        "full_over_bare_ratio": round(t["full_forward_with_lm_head"] / t["bare_truncated_forward"], 3),
        "sites_captured": 3 * 12,
    }


def plan(repeats: int = 2) -> dict[str, Any]:
    """The capture of C1's labelled probe (`labelled:categories` at the default profile: up to 4,096
    template sentences, right-padded) at C1's three `mlp_pre` sites of the same GPT-2-small-shaped
    model, side by side: each sequence run only up to its kept (last word) position, shortest
    first (`Capture._plan`), vs every sequence run over the whole padded length in probe order
    (the plan before it: `_needed` returning the full length). The same activations up to float16
    storage."""
    import tempfile
    from pathlib import Path

    from fixtures.tiny_models import train_tokenizer
    from polyaudit.capture import Capture
    from polyaudit.interventions.lens import depth_layers
    from polyaudit.probes.categories import categories_probe
    from polyaudit.profiles import PROFILES

    loaded = gpt2_small()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_tokenizer(Path(tmp))
    probe = categories_probe(tokenizer, PROFILES["default"], 0, 1024)
    layers = [layer for layer in depth_layers(loaded.adapter.n_layers).values() if layer is not None]
    sites = [loaded.adapter.site("mlp_pre", layer) for layer in layers]
    got: dict[str, list[np.ndarray]] = {}
    ran: dict[str, int] = {}

    def whole_length(self: Capture, pos: np.ndarray, n_inputs: int, seq_len: int) -> np.ndarray:
        kept = np.zeros(n_inputs, dtype=bool)
        kept[pos[:, 0]] = True
        return np.where(kept, seq_len, 0)

    def run_with(name: str, needed: Any) -> None:
        cap = Capture(loaded, probe, cache=None, batch_size=PROFILES["default"].batch_size)
        if needed is not None:
            cap._needed = needed.__get__(cap)  # type: ignore[method-assign]
        ran[name] = sum(b.size * (b.length or 0) for b in cap._plan(torch.device("cpu"))[0])
        cap.request(["mlp_pre"])
        got[name] = [cap.get(s).samples for s in sites]

    t = interleaved({"whole_padded_length": lambda: run_with("whole_padded_length", whole_length),
                     "needed_positions": lambda: run_with("needed_positions", None)}, repeats=repeats)
    diff = max(float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-30))
               for a, b in zip(got["whole_padded_length"], got["needed_positions"], strict=True))
    return {
        "sentences": int(probe.inputs.shape[0]), "padded_length": int(probe.inputs.shape[1]),
        "positions_run": dict(ran), "seconds": {k: round(v, 2) for k, v in t.items()},
        "speedup": round(t["whole_padded_length"] / t["needed_positions"], 2),
        "max_relative_difference": diff, "sites": [s.name for s in sites],
    }
