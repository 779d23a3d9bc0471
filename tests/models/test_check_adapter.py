"""`check_adapter` catches planted adapter bugs: a site table naming the wrong module or hooked one
layer off, hooks that hand readers another tensor, a truncated forward that does not stop, and
capabilities that lie. (That every built-in adapter conforms is in test_families.py and
test_conv_adapter.py.)"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import Adapter, Capabilities, LoadedModel, Reader, Site, SiteKind, Writer
from polyaudit.models.check import Finding, check_adapter
from polyaudit.models.hf import HFAdapter
from polyaudit.models.loader import load_model
from polyaudit.models.sequential import SequentialAdapter


@pytest.fixture(scope="module")
def gpt2(tiny_models: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_models["gpt2"]))


@pytest.fixture(scope="module")
def bert(tiny_models: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_models["bert"]))


def _ids(lm: LoadedModel) -> torch.Tensor:
    return lm.tokenizer(["The for statement iterates over a sequence."], return_tensors="pt")["input_ids"]


def _relu_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                         nn.Linear(8, 3)).eval()


X = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))


def _hf(lm: LoadedModel, cls: type[HFAdapter], **caps: bool) -> HFAdapter:
    ad = lm.adapter
    assert isinstance(ad, HFAdapter)
    planted = cls(lm.model, ad.layout, ad.blocks)
    if caps:
        planted.capabilities = Capabilities(**caps)
    return planted


def _checks(findings: list[Finding]) -> set[str]:
    return {f.check for f in findings}


def test_the_unplanted_adapters_conform(gpt2: LoadedModel) -> None:
    assert check_adapter(gpt2.adapter, _ids(gpt2), strict=False) == []
    assert check_adapter(SequentialAdapter(_relu_net()), X, strict=False) == []


def test_a_module_the_model_lacks(gpt2: LoadedModel) -> None:
    class Misspelt(HFAdapter):
        def _site(self, kind: SiteKind, layer: int) -> Site:
            s = super()._site(kind, layer)
            return Site(layer, kind, s.module + "_x") if kind == "mlp_pre" else s

    found = check_adapter(_hf(gpt2, Misspelt), _ids(gpt2), strict=False)
    assert found and _checks(found) == {"site_table"}
    assert "names module 'transformer.h.0.mlp.c_fc_x', which the model lacks" in str(found[0])


def test_resid_at_the_wrong_module_of_the_block(gpt2: LoadedModel) -> None:
    """resid names the block's second layer norm (inside the block, before its MLP)."""
    class Early(HFAdapter):
        def _site(self, kind: SiteKind, layer: int) -> Site:
            s = super()._site(kind, layer)
            return Site(layer, kind, s.module + ".ln_2") if kind == "resid" else s

    found = check_adapter(_hf(gpt2, Early), _ids(gpt2), strict=False)
    assert "fires" in _checks(found)
    assert any("fire shallow to deep" in f.message for f in found)


def test_mlp_out_at_the_up_projection(gpt2: LoadedModel) -> None:
    """mlp_out names c_fc (d_mlp wide): it cannot be what the MLP adds to the residual stream."""
    class Up(HFAdapter):
        def _site(self, kind: SiteKind, layer: int) -> Site:
            s = super()._site(kind, layer)
            return Site(layer, kind, s.module.replace(".mlp", ".mlp.c_fc")) if kind == "mlp_out" else s

    found = check_adapter(_hf(gpt2, Up), _ids(gpt2), strict=False)
    assert any("residual stream" in f.message for f in found)
    assert any("hooks the same tensor" in f.message for f in found)  # c_fc is mlp_pre's module too


@pytest.mark.parametrize("how", ["wrapped", "clamped"])
def test_a_site_table_one_layer_off(how: str) -> None:
    """resid of layer l hooks layer l + 1's nonlinearity (the last wraps to layer 0, or stays)."""
    class OneOff(SequentialAdapter):
        def _site(self, kind: SiteKind, layer: int) -> Site:
            if kind != "resid":
                return super()._site(kind, layer)
            off = (layer + 1) % self.n_layers if how == "wrapped" else min(layer + 1, self.n_layers - 1)
            return Site(layer, kind, self.paths[off], "output")

    found = check_adapter(OneOff(_relu_net()), X, strict=False)
    if how == "wrapped":
        assert "fires" in _checks(found) and "run_until" in _checks(found)
    else:
        assert any("hooks the same tensor" in f.message for f in found)


def test_hooks_that_hand_readers_another_tensor() -> None:
    """A hooks() override (say a reshape gone wrong) hands readers the batch in another order."""
    class Shuffled(SequentialAdapter):
        @contextmanager
        def hooks(self, reads: Mapping[Site, Reader] | None = None, writes: Mapping[Site, Writer] | None = None,
                  stop_when_done: bool = False) -> Iterator[None]:
            flipped = {s: (lambda s, t, r=r: r(s, t.flip(0))) for s, r in (reads or {}).items()}
            with super().hooks(flipped, writes, stop_when_done):
                yield

    found = check_adapter(Shuffled(_relu_net()), X, strict=False)
    assert _checks(found) == {"manual_hook", "modules_after"}  # the rest of the net, run on what it read
    assert len([f for f in found if f.check == "manual_hook"]) == 6  # every site


def test_a_truncated_forward_that_runs_on(gpt2: LoadedModel) -> None:
    class NoStop(HFAdapter):
        def run_until(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None,
                      reads: Mapping[Site, Reader], writes: Mapping[Site, Writer] | None = None) -> None:
            with self.hooks(reads, writes):
                self._call(self.prepare(inputs), attention_mask)

    found = check_adapter(_hf(gpt2, NoStop), _ids(gpt2), strict=False)
    assert _checks(found) == {"run_until"}
    assert all("the output head" in f.message for f in found)


def test_a_causal_encoder_is_a_lie(bert: LoadedModel) -> None:
    found = check_adapter(_hf(bert, HFAdapter, causal=True, prefix_cache=True), _ids(bert), strict=False)
    assert {"causal", "prefix_cache"} <= _checks(found)


def test_an_encoder_that_is_causal_is_a_lie(gpt2: LoadedModel) -> None:
    found = check_adapter(_hf(gpt2, HFAdapter, encoder=True), _ids(gpt2), strict=False)
    assert _checks(found) == {"causal"}


def test_no_output_head_is_a_lie_when_logits_are_vocabulary_wide(gpt2: LoadedModel) -> None:
    found = check_adapter(_hf(gpt2, HFAdapter, causal=True, prefix_cache=True, output_head=False), _ids(gpt2),
                          strict=False)
    assert _checks(found) == {"output_head"} and len(found) == 2  # vocabulary-wide; a head module exists


def test_capabilities_a_model_cannot_have() -> None:
    gelu = SequentialAdapter(nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3)).eval())
    gelu.capabilities = Capabilities(exact_walk=True, causal=True, spatial_positions=True, feature_maps=True)
    messages = " | ".join(str(f) for f in check_adapter(gelu, X, strict=False))
    for lie in ("exact_walk is declared", "causal is declared for a vectors model",
                "spatial_positions is declared without a position_selector",
                "feature_maps is declared, but no site is a spatial map"):
        assert lie in messages


def test_strict_raises_one_line_per_problem() -> None:
    net = _relu_net()
    adapter = SequentialAdapter(net)
    adapter.capabilities = Capabilities(causal=True, encoder=True)
    findings = check_adapter(adapter, X, strict=False)
    with pytest.raises(PolyauditError) as info:
        check_adapter(adapter, X)
    lines = str(info.value).splitlines()
    assert lines[0] == f"the sequential adapter (SequentialAdapter) fails {len(findings)} conformance check(s):"
    assert [line.strip() for line in lines[1:]] == [str(f) for f in findings]


def test_what_check_adapter_needs() -> None:
    with pytest.raises(PolyauditError, match="takes a polyaudit Adapter"):
        check_adapter(_relu_net())  # type: ignore[arg-type]
    with pytest.raises(PolyauditError, match="pass inputs="):
        check_adapter(SequentialAdapter(_relu_net()))


def test_a_crashing_check_is_a_finding() -> None:
    class Broken(SequentialAdapter):
        def modules_after(self, site: Site | None) -> Any:
            raise RuntimeError("boom")

    found = check_adapter(Broken(_relu_net()), X, strict=False)
    assert [str(f) for f in found] == ["modules_after: raised RuntimeError: boom"]

    class Bare(Adapter):  # no site table at all: the checks that need one do not run
        input_kind, n_layers = "vectors", 2

    found = check_adapter(Bare(_relu_net()), X, strict=False)
    assert [str(f) for f in found] == ["site_table: raised NotImplementedError: "]
