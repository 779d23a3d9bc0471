"""Every adapter family: the sites it names are the tensors of the modules it names, truncated forwards
stop early, and replacing a site runs the rest of the model. Tiny checkpoints come from the
`tiny_models` fixture and load through `load_model(dir)`, the path `--model=./dir` takes."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fixtures.tiny_models import FAMILIES, build_tiny
from polyaudit.errors import PolyauditError
from polyaudit.models.base import Capabilities, LoadedModel, Site
from polyaudit.models.check import check_adapter
from polyaudit.models.hf import make_hf_adapter
from polyaudit.models.loader import load_model
from polyaudit.models.sequential import SequentialAdapter
from polyaudit.probes.registry import build_probe
from polyaudit.profiles import PROFILES

N_LAYERS = 3  # build_tiny's default


@pytest.fixture(scope="module")
def loaded(tiny_models: dict[str, Path]) -> dict[str, LoadedModel]:
    return {fam: load_model(str(path)) for fam, path in tiny_models.items()}


def _batch(lm: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sentences of different lengths, right-padded: the mask has zeros."""
    enc = lm.tokenizer(
        ["The for statement iterates over a sequence.", "A short one."],
        return_tensors="pt",
        padding=True,
    )
    assert enc["attention_mask"].min() == 0
    return enc["input_ids"], enc["attention_mask"]


def _read_all(
    lm: LoadedModel, sites: list[Site], ids: torch.Tensor, mask: torch.Tensor | None
) -> dict[Site, torch.Tensor]:
    got: dict[Site, torch.Tensor] = {}
    lm.adapter.run_until(
        ids, mask, {s: (lambda s, t: got.__setitem__(s, t.clone())) for s in sites}
    )
    return got


CAPABILITIES = {
    "gpt2": Capabilities(causal=True, prefix_cache=True),
    "gpt_neox": Capabilities(causal=True, prefix_cache=True),
    "llama": Capabilities(causal=True, gated_mlp=True, prefix_cache=True),
    "opt": Capabilities(causal=True, prefix_cache=True),
    "bert": Capabilities(encoder=True),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_conforms(loaded: dict[str, LoadedModel], family: str) -> None:
    """The public conformance suite on every family's tiny checkpoint, with a padded batch."""
    lm = loaded[family]
    ids, mask = _batch(lm)
    assert check_adapter(lm.adapter, ids, mask) == []
    assert check_adapter(lm.adapter, strict=False) == []  # the default batch: random token ids


@pytest.mark.parametrize("family", FAMILIES)
def test_family_facts(loaded: dict[str, LoadedModel], family: str) -> None:
    """What each family declares and loads with: capabilities, sizes, provenance, an MLP 4x wide."""
    lm = loaded[family]
    adapter = lm.adapter
    assert adapter.family == family and adapter.n_layers == N_LAYERS
    assert adapter.capabilities == CAPABILITIES[family]
    assert adapter.vocab_size == len(lm.tokenizer) and adapter.output_head() is not None
    assert lm.default_probe == "text:stdlib" and lm.max_positions == 128 and len(lm.sha256) == 64
    ids, mask = _batch(lm)
    got = _read_all(lm, [adapter.site("mlp_pre", 0), adapter.site("resid", 0)], ids, mask)
    assert got[adapter.site("mlp_pre", 0)].shape[-1] == 4 * got[adapter.site("resid", 0)].shape[-1]
    assert adapter.logits(ids, mask).shape == (*ids.shape, len(lm.tokenizer))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_half_precision_checkpoints(tmp_path: Path, family: str, dtype: str) -> None:
    lm = load_model(str(build_tiny(family, tmp_path / family, dtype=dtype, n_layers=2)))
    assert lm.adapter.dtype == getattr(torch, dtype) and lm.adapter.n_layers == 2
    ids, mask = _batch(lm)
    sites = [s for kind in lm.adapter.site_kinds for s in lm.adapter.sites(kind)]
    for s, t in _read_all(lm, sites, ids, mask).items():
        assert t.dtype == getattr(torch, dtype) and torch.isfinite(t).all(), s.name
    assert torch.isfinite(lm.adapter.logits(ids, mask)).all()
    assert check_adapter(lm.adapter, ids, mask) == []


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_half_precision_halves_weight_memory(tiny_models: dict[str, Path], family: str, dtype: str) -> None:
    """README "Large models": --dtype bfloat16/float16 loads a float32 checkpoint's weights in half the
    memory (small buffers such as rotary frequencies may stay float32, as transformers keeps them)."""
    def weight_bytes(lm: LoadedModel) -> int:
        return sum(t.numel() * t.element_size() for t in lm.model.parameters())

    full = load_model(str(tiny_models[family]))
    half = load_model(str(tiny_models[family]), dtype=dtype)
    assert full.adapter.dtype == torch.float32 and half.adapter.dtype == getattr(torch, dtype)
    assert weight_bytes(half) * 2 == weight_bytes(full)


def test_float32_override(tmp_path: Path) -> None:
    lm = load_model(
        str(build_tiny("gpt2", tmp_path / "g16", dtype="float16", n_layers=1)), dtype="float32"
    )
    assert lm.adapter.dtype == torch.float32


def test_activation_and_piecewise_linearity(loaded: dict[str, LoadedModel]) -> None:
    acts = {fam: (lm.adapter.activation, lm.adapter.piecewise_linear) for fam, lm in loaded.items()}
    assert acts["opt"] == ("relu", True)
    assert acts["gpt2"] == ("gelu_new", False)
    assert acts["llama"] == ("silu", False)
    assert not acts["bert"][1] and not acts["gpt_neox"][1]


def test_base_model_checkpoint(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A checkpoint saved from AutoModel (no LM head, and GPT-NeoX does not tie it to the
    embedding): blocks at `layers`, not `gpt_neox.layers`; logits are the last hidden state."""
    import transformers as tf

    src = tiny_models["gpt_neox"]
    base = tf.GPTNeoXModel.from_pretrained(src)
    base.save_pretrained(tmp_path, safe_serialization=True)
    tf.AutoTokenizer.from_pretrained(src).save_pretrained(tmp_path)
    lm = load_model(str(tmp_path))
    assert type(lm.model).__name__ == "GPTNeoXModel"
    assert lm.adapter.site("mlp_pre", 0).module == "layers.0.mlp.dense_h_to_4h"
    ids, mask = _batch(lm)
    assert lm.adapter.logits(ids, mask).shape == (*ids.shape, 64)
    assert lm.adapter.output_head() is None and not lm.adapter.capabilities.output_head
    assert check_adapter(lm.adapter, ids, mask) == []


def test_layout_by_model_type_and_by_structure() -> None:
    import transformers as tf

    small = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 64,
    }
    mistral = make_hf_adapter(tf.MistralForCausalLM(tf.MistralConfig(**small)))
    assert (mistral.family, mistral.site("mlp_pre", 1).module) == (
        "llama",
        "model.layers.1.mlp.gate_proj",
    )
    qwen = make_hf_adapter(tf.Qwen2ForCausalLM(tf.Qwen2Config(**small)))
    assert qwen.family == "llama" and qwen.activation == "silu"
    model = tf.LlamaModel(tf.LlamaConfig(**small))
    model.config = types.SimpleNamespace(model_type="mystery", hidden_act="relu")  # type: ignore[assignment]
    mystery = make_hf_adapter(model)  # an unknown model_type with a known layout
    assert mystery.family == "llama" and mystery.piecewise_linear


# --- plain nn.Sequential ---------------------------------------------------------------------
def _net(act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 8),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Sequential(nn.Linear(8, 8), act()),
        nn.Linear(8, 3),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net.eval()


def test_sequential_adapter() -> None:
    net = _net()
    adapter = SequentialAdapter(net)
    assert (adapter.n_layers, adapter.site_kinds, adapter.input_kind) == (
        2,
        ("mlp_pre", "resid"),
        "vectors",
    )
    assert not adapter.piecewise_linear and adapter.activation == "mixed(relu,tanh)"
    assert SequentialAdapter(_net(nn.LeakyReLU)).piecewise_linear
    with pytest.raises(PolyauditError, match="mlp_out"):
        adapter.sites("mlp_out")
    assert adapter.capabilities == Capabilities(exact_walk=False)
    assert SequentialAdapter(_net(nn.ReLU)).capabilities == Capabilities(exact_walk=True)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    assert check_adapter(adapter, x) == []
    sites = adapter.sites("mlp_pre") + adapter.sites("resid")
    got: dict[Site, torch.Tensor] = {}
    adapter.run_until(x, None, {s: (lambda s, t: got.__setitem__(s, t.clone())) for s in sites})
    assert [s.module for s in adapter.sites("resid")] == ["1", "3.1"]
    with torch.no_grad():
        pre0 = net[0](x)
        pre1 = net[3][0](torch.relu(pre0))
    torch.testing.assert_close(got[adapter.site("mlp_pre", 0)], pre0, rtol=0, atol=0)
    torch.testing.assert_close(got[adapter.site("resid", 0)], torch.relu(pre0), rtol=0, atol=0)
    torch.testing.assert_close(got[adapter.site("mlp_pre", 1)], pre1, rtol=0, atol=0)
    torch.testing.assert_close(got[adapter.site("resid", 1)], torch.tanh(pre1), rtol=0, atol=0)
    assert torch.equal(adapter.logits(x), net(x))
    rest = adapter.modules_after(adapter.site("resid", 0))
    assert [type(m).__name__ for m in rest] == ["Dropout", "Linear", "Tanh", "Linear"]  # flat


def test_sequential_rejects_shared_activation() -> None:
    relu = nn.ReLU()
    with pytest.raises(PolyauditError, match="reuses"):
        SequentialAdapter(nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu))


# --- factories -------------------------------------------------------------------------------
FACTORY_SRC = """
import torch
from torch import nn

def make():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))

def make_with_probe():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 4, generator=g)
    return make(), (x, torch.tensor([3, 7] * 10))

def make_inputs_only():
    return make(), (torch.zeros(6, 4),)

def make_gpt2():
    import transformers as tf
    return tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64))


# a residual MLP no built-in adapter knows (blocks in a ModuleList), with the factory's own adapter
from polyaudit.models.base import Adapter, Capabilities, Site


class Residual(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc, self.act, self.out = nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d)

    def forward(self, x):
        return x + self.out(self.act(self.fc(x)))


class ResMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Residual(4) for _ in range(3))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class ResMLPAdapter(Adapter):
    family, input_kind, activation, piecewise_linear, n_layers = "resmlp", "vectors", "relu", True, 3
    capabilities = Capabilities(output_head=True)

    def _site(self, kind, layer):
        rel = {"mlp_pre": ".fc", "mlp_out": ".out", "resid": ""}[kind]
        return Site(layer, kind, f"blocks.{layer}{rel}")

    def _call(self, inputs, attention_mask):
        return self.model(inputs)

    def _logits(self, output):
        return output


def make_own_adapter():
    torch.manual_seed(0)
    x = torch.randn(60, 4)
    return ResMLPAdapter(ResMLP()), (x, (x[:, 0] > 0).long())


def make_own_adapter_only():
    return ResMLPAdapter(ResMLP())


def make_adapter_without_module():
    adapter = ResMLPAdapter(ResMLP())
    adapter.model = "weights.bin"
    return adapter
"""


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"polyaudit_test_factory_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(FACTORY_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_factory_module(factory_module: str) -> None:
    lm = load_model(f"{factory_module}:make")
    assert isinstance(lm.adapter, SequentialAdapter) and lm.adapter.piecewise_linear
    assert lm.probe is None and lm.default_probe is None and lm.tokenizer is None
    assert not any(p.requires_grad for p in lm.model.parameters()) and not lm.model.training


def test_factory_module_and_probe(factory_module: str) -> None:
    spec = f"{factory_module}:make_with_probe"
    lm = load_model(spec)
    probe: Any = build_probe(None, lm, PROFILES["quick"], 0)
    assert probe.name == f"factory:{factory_module}:make_with_probe" == lm.default_probe
    assert probe.kind == "vectors" and probe.inputs.shape == (20, 4) and probe.n_samples == 20
    assert probe.label_names == ("3", "7")
    assert probe.labels.dtype == np.int64 and set(probe.labels) == {0, 1}
    only = build_probe(None, load_model(f"{factory_module}:make_inputs_only"), PROFILES["quick"], 0)
    assert only is not None and only.labels is None


def test_factory_hf_model(factory_module: str) -> None:
    lm = load_model(f"{factory_module}:make_gpt2")
    assert lm.adapter.family == "gpt2" and lm.adapter.n_layers == 2 and lm.max_positions == 1024
    assert lm.default_probe == "text:stdlib"


def test_factory_returning_its_own_adapter(factory_module: str) -> None:
    """`(adapter, probe)` from a factory: loaded as it is, probe, capture and perturbations run
    through it end to end, and it passes the conformance suite."""
    from polyaudit.capture import Capture
    from polyaudit.interventions.downstream import AdapterDownstream, Contexts
    from polyaudit.interventions.evaluators import make_downstream

    lm = load_model(f"{factory_module}:make_own_adapter")
    adapter = lm.adapter
    assert type(adapter).__name__ == "ResMLPAdapter" and adapter.model is lm.model
    assert not lm.model.training and not any(p.requires_grad for p in lm.model.parameters())
    probe: Any = build_probe(None, lm, PROFILES["quick"], 0)
    assert probe.name == f"factory:{factory_module}:make_own_adapter" and probe.n_samples == 60
    assert check_adapter(adapter, probe.inputs[:8]) == []
    cap = Capture(lm, probe, cache=None, batch_size=16)
    cap.request(["mlp_pre", "mlp_out", "resid"])
    data = cap.get(adapter.site("mlp_pre", 2))
    with torch.no_grad():
        h = probe.inputs
        for block in lm.model.blocks[:2]:  # type: ignore[union-attr]
            h = block(h)
        want = lm.model.blocks[2].fc(h)  # type: ignore[union-attr,index,operator]
    np.testing.assert_allclose(data.samples, want.numpy(), rtol=2e-3, atol=1e-3)  # float16 storage
    site = adapter.site("resid", 0)
    down = make_downstream(lm, site, Contexts(inputs=probe.inputs))
    assert isinstance(down, AdapterDownstream)  # no exact walk declared: sampled crossings
    codes, logp = down.outputs(np.array(cap.get(site).samples[:5], dtype=np.float64), np.arange(5))
    assert codes.shape == (5, 16) and logp.shape == (5, 2)  # mlp_pre of blocks 1 and 2: 8 units each
    assert load_model(f"{factory_module}:make_own_adapter_only").probe is None


def test_factory_adapter_errors(factory_module: str) -> None:
    with pytest.raises(PolyauditError, match=r"drop \?pos=all"):
        load_model(f"{factory_module}:make_own_adapter?pos=all")
    with pytest.raises(PolyauditError, match="must be the torch"):
        load_model(f"{factory_module}:make_adapter_without_module")


def test_hub_id_from_the_local_cache(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A hub id loads offline from the Hugging Face cache layout; the revision is the commit."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--polyaudit--tiny-gpt2"
    shutil.copytree(tiny_models["gpt2"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    lm = load_model("polyaudit/tiny-gpt2", hf_cache_dir=str(tmp_path))
    assert (lm.revision, lm.adapter.family, lm.meta and lm.meta["kind"]) == (commit, "gpt2", "hub")
    with pytest.raises(PolyauditError, match=r"at revision 'v2'.*not in the local cache"):
        load_model("polyaudit/tiny-gpt2", hf_cache_dir=str(tmp_path), revision="v2")
