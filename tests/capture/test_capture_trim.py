"""Capture runs only the positions its kept samples need (`Capture._plan`), on real families:
causal decoders stop at each sequence's last kept position, an encoder at its last real token;
sequences run shortest first. The activations must be those of the whole padded batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.tiny_models import build_tiny
from polyaudit.capture import Capture
from polyaudit.models.loader import load_model
from polyaudit.probes.registry import build_probe
from polyaudit.profiles import PROFILES


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_trimmed_capture_equals_the_whole_padded_forward(family: str, tmp_path: Path) -> None:
    loaded = load_model(str(build_tiny(family, tmp_path / family)))
    probe = build_probe("labelled:categories", loaded, PROFILES["quick"], seed=0)
    assert probe.attention_mask is not None and not bool(probe.attention_mask.all())  # padded: something to cut
    layer = loaded.adapter.n_layers - 2  # hidden_states[layer + 1] is that block's output (no final norm)
    tokens: list[int] = []
    handle = loaded.model.register_forward_pre_hook(
        lambda mod, args, kwargs: tokens.append(int((kwargs.get("input_ids", args[0] if args else None)).numel())),
        with_kwargs=True)
    try:
        got = Capture(loaded, probe, cache=None, batch_size=8).get(loaded.adapter.site("resid", layer)).samples
    finally:
        handle.remove()
    with torch.inference_mode():
        states = loaded.model(input_ids=probe.inputs, attention_mask=probe.attention_mask,
                              output_hidden_states=True).hidden_states[layer + 1]
    seq, pos = probe.positions[:, 0], probe.positions[:, 1]
    want = states[torch.from_numpy(seq), torch.from_numpy(pos)].float().numpy()
    # captured samples are stored as float16 (with the entry's scale): equal to that rounding
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * float(np.abs(want).max()))
    assert sum(tokens) < probe.inputs.numel()  # fewer positions ran than the padded probe holds
    assert max(tokens) <= 8 * probe.inputs.shape[1]  # no batch above batch_size full-length sequences
