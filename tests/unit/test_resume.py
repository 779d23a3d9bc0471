"""The single-checkpoint C5's runs that start after the perturbed site: the same numbers as whole
runs, on every family (with and without its head), and the blocks before the site never compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polyaudit.interventions.unit_dropout import (
    record_blocks,
    resume_after,
    score,
    score_layers,
    task_for,
    unit_site_kind,
)
from polyaudit.models.loader import load_model
from polyaudit.probes.registry import build_probe
from polyaudit.profiles import get_profile

FAMILIES = ("gpt2", "gpt_neox", "llama", "opt", "bert")


CASES = [(f, True) for f in FAMILIES] + [("bert", False), ("llama", False)]  # headless: the representation


@pytest.mark.parametrize(("family", "head"), CASES, ids=[f"{f}-{'head' if h else 'headless'}" for f, h in CASES])
def test_runs_after_the_site_equal_whole_runs(family: str, head: bool, tiny_models: dict[str, Path],
                                              tiny_headless_models: dict[str, Path]) -> None:
    lm = load_model(str((tiny_models if head else tiny_headless_models)[family]))
    probe = build_probe("text:stdlib", lm, get_profile("quick"), 0)
    task = task_for(lm, probe, representation=True)
    sites = lm.adapter.sites(unit_site_kind(lm.adapter))
    assert lm.adapter.block_modules() is not None and len(lm.adapter.block_modules()) == len(sites)

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(10 + i) for i in range(len(sites))]

    clean, runs = score_layers(lm, probe, task, sites, 0.3, gens(), batch_size=4)
    want_clean = score(lm, probe, task, batch_size=4)
    np.testing.assert_array_equal(clean.loss, want_clean.loss)
    for site, g, run in zip(sites, gens(), runs, strict=True):
        whole = score(lm, probe, task, site=site, q=0.3, generator=g, batch_size=4, reference=want_clean)
        np.testing.assert_array_equal(run.loss, whole.loss)
        assert np.all(run.loss != clean.loss) or task.kind == "represent"


def test_blocks_before_the_site_are_not_computed(tiny_models: dict[str, Path]) -> None:
    lm = load_model(str(tiny_models["llama"]))
    ad = lm.adapter
    blocks = ad.block_modules()
    ids = lm.tokenizer(["one two three four"], return_tensors="pt")["input_ids"]
    ran: list[int] = []
    mlp = [ad.module(s) for s in ad.sites("mlp_pre")]
    handles = [m.register_forward_hook(lambda *_a, i=i: ran.append(i)) for i, m in enumerate(mlp)]
    try:
        with record_blocks(blocks) as recorded:
            whole = ad.logits(ids)
        assert ran == list(range(len(mlp)))
        ran.clear()
        with resume_after(blocks, 2, recorded):
            resumed = ad.logits(ids)
        assert ran == list(range(2, len(mlp)))
        torch.testing.assert_close(resumed, whole, rtol=0, atol=0)
        ran.clear()
        ad.logits(ids)  # the blocks are restored
        assert ran == list(range(len(mlp)))
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_losses_at_scored_positions_are_those_of_the_whole_output(family: str, tiny_models: dict[str, Path]) -> None:
    """The head fed only the scored positions gives the losses the whole output gives there."""
    from polyaudit.interventions.unit_dropout import scored_positions

    lm = load_model(str(tiny_models[family]))
    probe = build_probe("text:stdlib", lm, get_profile("quick"), 0)
    task = task_for(lm, probe)
    positions = scored_positions(probe, budget=probe.inputs.numel() // 3)
    assert positions is not None and positions[1] - positions[0] == 3
    clean, _ = score_layers(lm, probe, task, [], 0.0, [], batch_size=4, positions=positions)
    with torch.inference_mode():
        logits = lm.adapter.logits(probe.inputs, probe.attention_mask).float()
    ids, mask = probe.inputs, probe.attention_mask.float()
    shift = task.kind == "next_token"
    pos = torch.as_tensor(positions)
    if shift:
        pos = pos[pos + 1 < ids.shape[1]]
        target, keep = ids[:, pos + 1], mask[:, pos] * mask[:, pos + 1]
    else:
        target, keep = ids[:, pos], mask[:, pos]
    ce = torch.nn.functional.cross_entropy(logits[:, pos].transpose(1, 2), target, reduction="none")
    want = ((ce * keep).sum(1) / keep.sum(1).clamp(min=1)).double().numpy()
    np.testing.assert_allclose(clean.loss, want, rtol=1e-5, atol=1e-6)
    assert scored_positions(probe, budget=10**9) is None  # a probe within the budget: every position


def test_a_run_told_it_has_enough_stops_with_the_groups_it_measured(tiny_models: dict[str, Path]) -> None:
    """`enough` sees the increases so far after every batch; when it says stop, the Scores are
    the first batches of the whole run, bit for bit (the masks are drawn in batch order)."""
    lm = load_model(str(tiny_models["gpt2"]))
    probe = build_probe("text:stdlib", lm, get_profile("quick"), 0)
    task = task_for(lm, probe, representation=True)
    sites = lm.adapter.sites(unit_site_kind(lm.adapter))
    seen: list[tuple[int, ...]] = []

    def enough(so_far: np.ndarray) -> bool:
        seen.append(so_far.shape)
        return so_far.shape[1] >= 8

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(20 + i) for i in range(len(sites))]

    clean, runs = score_layers(lm, probe, task, sites, 0.2, gens(), batch_size=4, enough=enough)
    whole_clean, whole = score_layers(lm, probe, task, sites, 0.2, gens(), batch_size=4)
    assert seen == [(len(sites), 4), (len(sites), 8)]
    np.testing.assert_array_equal(clean.loss, whole_clean.loss[:8])
    for run, full in zip(runs, whole, strict=True):
        np.testing.assert_array_equal(run.loss, full.loss[:8])
