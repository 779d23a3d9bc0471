"""Capture: activations equal a manual hook, the forward is truncated, one pass serves all kinds."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from polyaudit.capture import Capture
from polyaudit.errors import PolyauditError
from polyaudit.models.base import Adapter, Capabilities, LoadedModel, Site, SiteKind
from polyaudit.probes.base import ProbeSet
from polyaudit.store.activations import ActivationCache

D, VOCAB, SEQ, N_SEQ, N_LAYERS = 16, 50, 12, 10, 3


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(self.act(self.fc(self.ln(x))))


class ToyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        self.pos = nn.Parameter(torch.randn(SEQ, D))
        self.blocks = nn.ModuleList(Block(D) for _ in range(N_LAYERS))
        self.head = nn.Linear(D, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class ToyLMAdapter(Adapter):
    family = "toy-lm"
    input_kind = "tokens"
    activation = "gelu"
    n_layers = N_LAYERS

    def _site(self, kind: SiteKind, layer: int) -> Site:
        module = {
            "mlp_pre": f"blocks.{layer}.fc",
            "mlp_out": f"blocks.{layer}.proj",
            "resid": f"blocks.{layer}",
        }
        return Site(layer, kind, module[kind])

    def _call(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        return self.model(inputs)

    def _logits(self, output: Any) -> torch.Tensor:
        return output  # type: ignore[no-any-return]


class MLPAdapter(Adapter):
    """nn.Sequential(Linear, ReLU, Linear, ReLU, Linear, ReLU, Linear): layer i = modules 2i, 2i+1."""

    family = "toy-mlp"
    input_kind = "vectors"
    activation = "relu"
    piecewise_linear = True
    n_layers = 3
    site_kinds = ("mlp_pre", "mlp_out")

    def _site(self, kind: SiteKind, layer: int) -> Site:
        return Site(layer, kind, str(2 * layer + (kind == "mlp_out")))

    def _call(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        return self.model(inputs)

    def _logits(self, output: Any) -> torch.Tensor:
        return output  # type: ignore[no-any-return]


def toy_lm(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    model = ToyLM().eval()
    return LoadedModel(
        spec="toy-lm", model=model, adapter=ToyLMAdapter(model), sha256=f"toy-lm-{seed}"
    )


def toy_mlp(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(8, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    ).eval()
    return LoadedModel(
        spec="toy-mlp", model=model, adapter=MLPAdapter(model), sha256=f"toy-mlp-{seed}"
    )


def token_probe(seed: int = 0) -> ProbeSet:
    """Kept positions in shuffled order; sequences 4 and 5 have none (their batch can be skipped)."""
    rng = np.random.default_rng(seed)
    pairs = [
        (s, p) for s in range(N_SEQ) if s not in (4, 5) for p in rng.choice(SEQ, 3, replace=False)
    ]
    positions = np.array(pairs, dtype=np.int64)[rng.permutation(len(pairs))]
    inputs = torch.from_numpy(rng.integers(0, VOCAB, (N_SEQ, SEQ)))
    return ProbeSet(
        name="toy-text",
        kind="tokens",
        inputs=inputs,
        attention_mask=torch.ones_like(inputs),
        positions=positions,
        labels=rng.integers(0, 3, len(pairs)),
    )


def vector_probe(n: int = 37, seed: int = 0) -> ProbeSet:
    rng = np.random.default_rng(seed)
    return ProbeSet(
        name="toy-vec",
        kind="vectors",
        inputs=torch.from_numpy(rng.normal(size=(n, 8)).astype(np.float32)),
        labels=rng.integers(0, 4, n),
    )


def manual(loaded: LoadedModel, probe: ProbeSet, site: Site) -> np.ndarray:
    """The reference: a plain forward hook on the same module over the whole probe in one batch."""
    seen: list[torch.Tensor] = []
    handle = loaded.model.get_submodule(site.module).register_forward_hook(
        lambda m, a, out: seen.append(out)
    )
    try:
        with torch.no_grad():
            loaded.model(probe.inputs)
    finally:
        handle.remove()
    full = seen[0]
    if probe.positions is None:
        return full.reshape(full.shape[0], -1).numpy()
    return full[probe.positions[:, 0], probe.positions[:, 1]].numpy()


def assert_stored_equal(samples: np.ndarray, ref: np.ndarray) -> None:
    """Capture hands claims the values as the cache stores them (float16 with a power-of-two
    scale): equal to the hooked float32 tensor within float16 rounding of the entry's range."""
    tol = 2.0**-11 * float(np.abs(ref).max())
    np.testing.assert_allclose(samples, ref, rtol=2.0**-10, atol=tol)


@pytest.mark.parametrize("in_order", [False, True], ids=["shuffled", "sequence-order"])
@pytest.mark.parametrize("kind", ["mlp_pre", "mlp_out", "resid"])
def test_tokens_equal_manual_hook(kind: SiteKind, in_order: bool) -> None:
    loaded, probe = toy_lm(), token_probe()
    if in_order:
        keep = np.lexsort((probe.positions[:, 1], probe.positions[:, 0]))
        probe = dataclasses.replace(
            probe, positions=probe.positions[keep], labels=probe.labels[keep]
        )
    cap = Capture(loaded, probe, cache=None, batch_size=3)
    for site in loaded.adapter.sites(kind):
        data = cap.get(site)
        assert data.samples.dtype == np.float32 and data.samples.shape == (probe.n_samples, data.d)
        assert_stored_equal(data.samples, manual(loaded, probe, site))
        assert np.array_equal(data.groups, probe.groups)
        assert np.array_equal(data.labels, probe.labels)
        assert data.n_nonfinite == 0
        with pytest.raises(ValueError, match="read-only"):
            data.samples[0, 0] = 1.0  # shared by every claim: read-only


def test_vectors_equal_manual_hook() -> None:
    loaded, probe = toy_mlp(), vector_probe()
    cap = Capture(loaded, probe, cache=None, batch_size=8)
    for data in cap.get_kind("mlp_pre"):
        assert_stored_equal(data.samples, manual(loaded, probe, data.site))
    # get_kind requests the kind: one pass for all its layers
    assert cap.stats.n_forward_passes == 1
    assert cap.stats.n_forward_batches == 5
    for data in cap.get_kind("mlp_out"):  # not requested up front: a second pass
        assert_stored_equal(data.samples, manual(loaded, probe, data.site))
    assert cap.stats.n_forward_passes == 2


def test_truncated_forward_stops_at_deepest_site() -> None:
    loaded, probe = toy_lm(), token_probe()
    calls: dict[str, int] = {}
    handles = [
        m.register_forward_pre_hook(
            lambda mod, args, name=name: calls.__setitem__(name, calls.get(name, 0) + 1)
        )
        for name, m in loaded.model.named_modules()
        if name
    ]
    try:
        Capture(loaded, probe, cache=None, batch_size=4).get(loaded.adapter.site("mlp_pre", 0))
        ran = set(calls)
        assert "blocks.0.fc" in ran and "blocks.0.act" not in ran and "blocks.0.proj" not in ran
        assert not any(name.startswith(("blocks.1", "blocks.2", "head")) for name in ran)

        calls.clear()
        cap = Capture(loaded, probe, cache=None, batch_size=4)
        cap.request(["mlp_pre"])
        # the request makes this pass reach the last layer
        cap.get(loaded.adapter.site("mlp_pre", 0))
        assert "blocks.2.fc" in calls and "blocks.2.proj" not in calls and "head" not in calls
    finally:
        for h in handles:
            h.remove()


def test_one_pass_serves_all_requested_kinds() -> None:
    loaded, probe = toy_lm(), token_probe()
    cap = Capture(loaded, probe, cache=None, batch_size=4)
    cap.request(["mlp_pre", "mlp_out", "resid"])
    out = {k: cap.get_kind(k) for k in ("mlp_pre", "mlp_out", "resid")}
    assert cap.stats.n_forward_passes == 1
    assert cap.stats.n_forward_batches == 2  # sequences 0-3 and 6-9: 4 and 5 keep no samples, they do not run
    assert [d.d for d in out["mlp_pre"]] == [4 * D] * N_LAYERS
    assert [d.d for d in out["resid"]] == [D] * N_LAYERS
    assert cap.get(loaded.adapter.site("resid", 1)) is out["resid"][1]  # memory


def test_batches_without_samples_are_skipped() -> None:
    loaded, probe = toy_lm(), token_probe()
    cap = Capture(loaded, probe, cache=None, batch_size=2)
    cap.get(loaded.adapter.site("resid", 0))
    # of 5 batches, the one holding sequences 4 and 5 is skipped
    assert cap.stats.n_forward_batches == 4


def test_second_capture_served_from_cache(tmp_path: Path) -> None:
    loaded, probe = toy_lm(), token_probe()
    first = Capture(loaded, probe, cache=ActivationCache(tmp_path), batch_size=4)
    first.request(["mlp_pre", "resid"])
    a = first.get_kind("resid")
    assert first.stats.cache_misses == 2 * N_LAYERS and first.stats.cache_hits == 0

    second = Capture(loaded, probe, cache=ActivationCache(tmp_path), batch_size=4)
    second.request(["mlp_pre", "resid"])
    b = second.get_kind("resid")
    assert second.stats.n_forward_passes == 0 and second.stats.cache_hits == 2 * N_LAYERS
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(y.samples, x.samples)  # cold and warm runs see identical numbers
        assert np.array_equal(y.labels, probe.labels)

    # another model does not read these entries
    other = Capture(toy_lm(seed=1), probe, cache=ActivationCache(tmp_path), batch_size=4)
    other.get(loaded.adapter.site("resid", 0))
    assert other.stats.cache_hits == 0 and other.stats.n_forward_passes == 1


def test_no_model_hash_no_disk_cache(tmp_path: Path) -> None:
    loaded = toy_mlp()
    loaded.sha256 = ""
    cap = Capture(loaded, vector_probe(), cache=ActivationCache(tmp_path), batch_size=8)
    cap.get_kind("mlp_pre")
    assert not any(tmp_path.iterdir())


def test_deterministic_rerun() -> None:
    probe = token_probe()
    runs = []
    for _ in range(2):
        loaded = toy_lm()
        cap = Capture(loaded, probe, cache=None, batch_size=3)
        runs.append([d.samples for d in cap.get_kind("mlp_pre")])
    for x, y in zip(*runs, strict=True):
        assert np.array_equal(x, y)


def test_nonfinite_counted_and_kept() -> None:
    loaded, probe = toy_mlp(), vector_probe(n=10)
    inputs = probe.inputs.clone()
    inputs[3, 0] = float("nan")
    bad = ProbeSet(name="nan", kind="vectors", inputs=inputs)
    data = Capture(loaded, bad, cache=None, batch_size=4).get(loaded.adapter.site("mlp_pre", 0))
    assert data.n_nonfinite == 32
    assert np.isnan(data.samples[3]).all() and np.isfinite(data.samples[4]).all()


def test_probe_kind_mismatch() -> None:
    with pytest.raises(PolyauditError) as err:
        Capture(toy_mlp(), token_probe(), cache=None, batch_size=4)
    assert "\n" not in str(err.value)


def test_progress_bar_advances_once_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    import polyaudit.capture as capture_mod

    calls: list[tuple[str, int, bool]] = []
    steps: list[int] = []

    @contextlib.contextmanager
    def fake_bar(description: str, total: int, enabled: bool):  # type: ignore[no-untyped-def]
        calls.append((description, total, enabled))
        yield steps.append

    monkeypatch.setattr(capture_mod, "progress_bar", fake_bar)
    loaded = toy_mlp()
    cap = Capture(loaded, vector_probe(), cache=None, batch_size=8, progress=True)
    cap.get(loaded.adapter.site("mlp_pre", 0))
    assert len(calls) == 1 and calls[0][1:] == (5, True) and "capturing" in calls[0][0]
    assert steps == [1] * 5


@pytest.mark.parametrize("family", ["gpt2", "opt"])  # opt runs its MLP on flattened [B*T, d] tokens
def test_optional_tiny_hf_models(family: str, tmp_path: Path) -> None:
    """When the models layer and fixtures/tiny_models.py are present: a real HF checkpoint, the
    stdlib text probe, one pass for every site kind, equal to a hook over the full forward."""
    tiny = pytest.importorskip("fixtures.tiny_models")
    loader = pytest.importorskip("polyaudit.models.loader")
    registry = pytest.importorskip("polyaudit.probes.registry")
    from polyaudit.profiles import Profile

    loaded = loader.load_model(str(tiny.build_tiny(family, tmp_path / family)))
    profile = Profile(name="t", n_seq=6, seq_len=48, k_per_seq=5, skip=4, max_samples=64,
                      n_boot=10, n_perm=10, batch_size=4)  # fmt: skip
    probe = registry.build_probe("text:stdlib", loaded, profile, seed=0)
    cap = Capture(loaded, probe, cache=ActivationCache(tmp_path / "cache"), batch_size=4)
    cap.request(loaded.adapter.site_kinds)
    for kind in loaded.adapter.site_kinds:
        for data in cap.get_kind(kind):
            seen: list[torch.Tensor] = []
            keep = functools.partial(lambda out, _site, t: out.append(t.clone()), seen)
            with loaded.adapter.hooks(reads={data.site: keep}):
                loaded.adapter.logits(probe.inputs, probe.attention_mask)
            full = seen[0].reshape(*probe.inputs.shape, -1)
            ref = full[probe.positions[:, 0], probe.positions[:, 1]].float().numpy()
            assert_stored_equal(data.samples, ref)
    assert cap.stats.n_forward_passes == 1


class CausalToyLMAdapter(ToyLMAdapter):
    """The toy LM mixes no positions (each position reads its own token): causal as declared."""

    capabilities = Capabilities(causal=True)


def _padded_probe(seed: int = 0) -> ProbeSet:
    """Right-padded sequences of random lengths, kept positions anywhere among the real tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, SEQ + 1, N_SEQ)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    pairs = [(s, int(p)) for s in range(N_SEQ) for p in rng.choice(int(lengths[s]), 2, replace=False)]
    positions = np.array(pairs, dtype=np.int64)[rng.permutation(len(pairs))]
    return ProbeSet(name="toy-padded", kind="tokens", inputs=torch.from_numpy(rng.integers(0, VOCAB, (N_SEQ, SEQ))),
                    attention_mask=torch.from_numpy(mask), positions=positions, labels=rng.integers(0, 3, len(pairs)))


@pytest.mark.parametrize("causal", [True, False])
def test_short_sequences_run_only_the_positions_they_need(causal: bool) -> None:
    """Causal: up to each sequence's last kept position; otherwise up to its last real token. The
    activations are those of whole sequences run one at a time; no batch holds more tokens than
    `batch_size` full-length sequences, and fewer tokens run than the padded probe holds."""
    probe = _padded_probe()
    loaded = toy_lm()
    if causal:
        loaded = LoadedModel(spec="toy-lm", model=loaded.model, adapter=CausalToyLMAdapter(loaded.model),
                             sha256="toy-lm-causal")
    shapes: list[tuple[int, ...]] = []
    handle = loaded.model.register_forward_pre_hook(lambda mod, args: shapes.append(tuple(args[0].shape)))
    try:
        cap = Capture(loaded, probe, cache=None, batch_size=3)
        got = cap.get(loaded.adapter.site("mlp_pre", 1)).samples
    finally:
        handle.remove()
    whole = np.stack([
        loaded.model.blocks[1].fc(loaded.model.blocks[1].ln(_resid_before(loaded.model, probe.inputs[s:s + 1], 1)))[0, p]
        .detach().numpy() for s, p in probe.positions])
    np.testing.assert_allclose(got, whole, rtol=2e-3, atol=2e-3 * float(np.abs(whole).max()))  # float16 storage
    assert all(b * t <= 3 * SEQ for b, t in shapes)
    mask = probe.attention_mask.numpy().astype(bool)
    last_kept = np.zeros(N_SEQ, dtype=np.int64)
    np.maximum.at(last_kept, probe.positions[:, 0], probe.positions[:, 1] + 1)
    needed = last_kept if causal else mask.sum(axis=1)
    assert sum(b * t for b, t in shapes) < N_SEQ * SEQ
    assert max(t for _, t in shapes) == needed.max()
    assert sum(b for b, _ in shapes) == N_SEQ


def _resid_before(model: ToyLM, ids: torch.Tensor, layer: int) -> torch.Tensor:
    with torch.no_grad():
        x = model.embed(ids) + model.pos[: ids.shape[1]]
        for block in model.blocks[:layer]:
            x = block(x)
    return x
