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
